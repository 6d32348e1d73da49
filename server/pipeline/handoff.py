"""Answering within the call's deadline: an answer still streaming when the deadline nears goes on as a job that
delegate_result collects (or, with jobs off, what streamed is returned marked as cut). The budget reservation is
settled when the answer ends, by the call or by its job."""

from __future__ import annotations

import math
from contextlib import AsyncExitStack

import anyio

from server.calling.chain import Partial
from server.clock import Deadline
from server.errors import AllModelsFailedError
from server.jobs import HANDOFF_MARGIN_S, Job, JobManager, new_job_id
from server.pipeline.answer import Answer, Answering
from server.pipeline.budget import Paid
from server.pipeline.record import Record
from server.results import DelegateResult
from server.settings import Settings


class Handoff:
    """Runs the answer stage for one call, as a job when jobs are on."""

    def __init__(self, settings: Settings, jobs: JobManager, answer: Answer, record: Record) -> None:
        self._settings = settings
        self._jobs = jobs
        self._answer = answer
        self._record = record
        self.at_deadline = True
        """Hand a job back at the call's deadline (the server); one-shot commands wait for the whole answer."""

    async def respond(
        self, tool: str, answering: Answering, paid: Paid, settle: AsyncExitStack, background: bool
    ) -> DelegateResult:
        """Answer within the deadline; `settle` (the budget reservation) is closed when the answer ends."""
        if not self._settings.jobs:
            return await self._without_jobs(answering, paid, settle)
        job = Job(
            new_job_id(),
            answering.spec.name,
            answering.outcome.routing,
            answering.outcome.usage,
            answering.deadline.started,
            owner=answering.caller.owner,
        )
        job.partial.try_limit_s = self._settings.job_max_s
        job_answering = answering._replace(
            deadline=Deadline(self._settings.job_max_s, started=answering.deadline.started), progress=job.progress
        )

        async def work(job: Job) -> DelegateResult:
            async with settle:  # settled here, whether the call or the job returns the answer
                paid.result = await self._answer.run(job_answering, job.partial)
            return paid.result

        async def record(job: Job) -> None:  # a handed-off job counts in usage and the log when it ends
            result = job.result if job.status == "done" else None
            await self._record.record(tool, answering.task, result, job.error, answering.caller)

        job.on_finish = record
        self._jobs.start(job, work)
        if background:
            return await self._handed_off(job, answering)
        return await self._waited(job, answering)

    async def _handed_off(self, job: Job, answering: Answering) -> DelegateResult:
        """The job's result so far, as the tool call returns it."""
        snapshot = await self._jobs.hand_off(job)
        return snapshot.model_copy(update={"startup_wait_ms": answering.startup_wait_ms})

    async def _without_jobs(self, answering: Answering, paid: Paid, settle: AsyncExitStack) -> DelegateResult:
        """Jobs off: the answer within the deadline, or what streamed before it, marked as cut."""
        partial = Partial()
        async with settle:
            try:
                paid.result = await self._answer.run(answering, partial)
            except AllModelsFailedError:
                if not partial.text:
                    raise
                paid.result = self._answer.cut(answering, partial, "Jobs are off (DELEGATE_JOBS=off)")
        return paid.result

    async def _waited(self, job: Job, answering: Answering) -> DelegateResult:
        """Wait for the job until just before the call's deadline; then hand it back, or cut it when every job slot
        is taken."""
        wait = answering.deadline.remaining() - HANDOFF_MARGIN_S if self.at_deadline else math.inf
        try:
            ended = await self._jobs.wait(job, wait, answering.progress)
        except anyio.get_cancelled_exc_class():
            job.cancel()  # the client gave up on this call before a job id reached it: stop paying for it
            raise
        if not ended and not self._jobs.full():
            return await self._handed_off(job, answering)
        if not ended:
            job.cancel()
            await self._jobs.wait(job, math.inf)
            if job.partial.text:
                why = f"{self._settings.max_jobs} jobs were already running (DELEGATE_MAX_JOBS)"
                return self._answer.cut(answering, job.partial, why)
        if job.error is not None:
            raise job.error
        if job.result is None:
            raise AllModelsFailedError(
                f"No answer from specialist '{answering.spec.name}' within the call's deadline (DELEGATE_DEADLINE_S), "
                f"and {self._settings.max_jobs} jobs were already running (DELEGATE_MAX_JOBS) to carry it on.",
                job.partial.attempts,
            )
        return job.result

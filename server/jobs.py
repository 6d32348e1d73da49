"""Jobs: an answer that outlives its tool call — readable while it streams, kept in the store once it ends."""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

from server.calling.chain import Partial
from server.errors import (
    DamagedDocumentError,
    DelegateError,
    JobFailedError,
    JobLostError,
    StoreError,
    TooManyJobsError,
    UnknownJobError,
)
from server.ids import check_id
from server.progress import Progress
from server.results import CallUsage, DelegateResult, Routing, Usage
from server.settings import Settings
from server.store.base import Store

logger = logging.getLogger(__name__)

KIND = "job"
CANCEL_KIND = "job-cancel"
HEARTBEAT_S = 2.0
"""How often a handed-off job writes its text so far to the store (so any server instance can read it)."""
STALE_AFTER_S = 10.0
"""A running job whose record has not been refreshed for this long belongs to a server that stopped."""
MAX_WAIT_S = 50.0
"""delegate_result waits at most this long: clients abandon a tool call after about 60 s."""
HANDOFF_MARGIN_S = 1.0
"""A call hands its job back this long before its deadline, so the result reaches the client in time."""
MAX_FINISHED_IN_MEMORY = 256

JobStatus = Literal["running", "done", "failed", "cancelled"]
Work = Callable[["Job"], Awaitable[DelegateResult]]


@dataclass(eq=False)
class Job:
    """One answer being produced; its text so far is readable at any moment."""

    id: str
    specialist: str
    routing: Routing
    router_usage: CallUsage
    started: float
    """time.monotonic() when the tool call began (the result's latency counts from there)."""
    owner: str | None = None
    """The caller whose job it is, on a server with named callers (no other caller can read or cancel it)."""
    partial: Partial = field(default_factory=Partial)
    status: JobStatus = "running"
    result: DelegateResult | None = None
    error: DelegateError | None = None
    message: str = "started"
    """The latest progress message."""
    call_id: str | None = None
    """The id of the call that started the job (feedback names it; a finished job's result carries it)."""
    handed_off: bool = False
    """The tool call returned before the answer was complete: the job reports and records itself."""
    listeners: set[Progress] = field(default_factory=set)
    done: anyio.Event = field(default_factory=anyio.Event)
    finished_at: float | None = None
    on_finish: Callable[[Job], Awaitable[None]] | None = None
    """Runs when a handed-off job ends (it records its own usage then)."""
    progress: Progress = field(init=False)
    """Progress for the work: remembered for delegate_result, and passed on to whoever is waiting now."""
    _scope: anyio.CancelScope | None = None
    _cancel_asked: bool = False

    def __post_init__(self) -> None:
        async def send(_value: float, message: str) -> None:
            self.message = message
            for listener in list(self.listeners):
                await listener.milestone(message)

        self.progress = Progress(send)

    def cancel(self) -> None:
        """Stop the work; its streaming call closes the upstream request."""
        self._cancel_asked = True
        if self._scope is not None:
            self._scope.cancel()

    def snapshot(self) -> DelegateResult:
        """The result as it stands: the text so far with a marker line, or the final result."""
        if self.status == "done" and self.result is not None:
            update = {"job_id": self.id, "status": "done", "call_id": self.call_id or self.result.call_id}
            return self.result.model_copy(update={**update, "next_offset": len(self.result.output)})
        if self.status == "failed" and self.error is not None:
            raise self.error
        text = self.partial.text
        if self.status == "cancelled":
            marker = f"[... job {self.id} was cancelled after {len(text):,} characters; the rest was not written.]"
        else:
            step = "" if self.message.startswith("answering") else f" ({self.message})"
            marker = (
                f"[... partial answer ({len(text):,} characters so far): the specialist is still working{step}. "
                f'Call delegate_result with job_id "{self.id}" and offset {len(text)} to get only the rest.]'
            )
        return DelegateResult(
            output=f"{text}\n\n{marker}" if text else marker,
            specialist=self.specialist,
            model=self.partial.model or "",
            routing=self.routing,
            attempts=list(self.partial.attempts),
            usage=Usage(router=self.router_usage, total_cost_usd=self.router_usage.cost_usd),
            latency_ms=round((time.monotonic() - self.started) * 1000, 1),
            truncated=self.status == "cancelled",
            status="cancelled" if self.status == "cancelled" else "running",
            job_id=self.id,
            call_id=self.call_id,
            next_offset=len(text),
        )


def new_job_id() -> str:
    """A job id that cannot be guessed from another."""
    return f"job-{uuid.uuid4().hex[:16]}"


class JobManager:
    """Owns the jobs of one server process: starts them outside any tool call, finds, waits for and stops them."""

    def __init__(self, settings: Settings, store: Store | None) -> None:
        self._settings = settings
        self._store = store
        self.instance = uuid.uuid4().hex[:12]
        """This process's identity in job records: a running job of another, silent instance was lost."""
        self._jobs: dict[str, Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def full(self) -> bool:
        """Whether DELEGATE_MAX_JOBS handed-off jobs are working now (no more may be handed off)."""
        running = sum(1 for job in self._jobs.values() if job.handed_off and job.status == "running")
        return running >= self._settings.max_jobs

    def full_error(self) -> TooManyJobsError:
        """Why a background call is refused."""
        return TooManyJobsError(
            f"{self._settings.max_jobs} jobs are already running (DELEGATE_MAX_JOBS); wait for one with "
            "delegate_result, or stop one with delegate_result(job_id, cancel=true). No provider was called."
        )

    def start(self, job: Job, work: Work) -> Job:
        """Run `work` in a task of its own, so it goes on when the tool call that started it returns."""
        self._forget_old()
        self._jobs[job.id] = job
        # anyio has no detached tasks: a task group would tie the job to the tool call's cancel scope.
        task = asyncio.get_running_loop().create_task(self._run(job, work), name=job.id)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: Job, work: Work) -> None:
        lost = False
        heartbeat = asyncio.get_running_loop().create_task(self._heartbeat(job))
        try:
            with anyio.CancelScope() as scope:
                job._scope = scope
                if job._cancel_asked:
                    scope.cancel()
                with anyio.fail_after(self._settings.job_max_s + HANDOFF_MARGIN_S):
                    job.result = await work(job)
            job.status = "done" if job.result is not None else "cancelled"
        except DelegateError as exc:
            job.status, job.error = "failed", exc
        except TimeoutError:
            job.status = "failed"
            job.error = JobFailedError(
                f"job {job.id} ran longer than DELEGATE_JOB_MAX_S ({self._settings.job_max_s:g} s) and was stopped."
            )
        except asyncio.CancelledError:
            lost = True  # the server is shutting down (not a user's cancel, which the scope above absorbs)
            raise
        except Exception:
            logger.exception("job %s failed unexpectedly", job.id)
            job.status = "failed"
            job.error = JobFailedError(f"job {job.id} hit an internal error; the server log (stderr) has details.")
        finally:
            heartbeat.cancel()
            job.finished_at = time.monotonic()
            with anyio.CancelScope(shield=True):
                if lost and job.handed_off:
                    await self._save(job, {"status": "lost"}, self._settings.job_ttl_s)
                elif job.handed_off:
                    await self._save(job, self._record(job), self._settings.job_ttl_s)
                    if job.on_finish is not None:
                        await job.on_finish(job)
            job.done.set()

    async def _heartbeat(self, job: Job) -> None:
        """While handed off: publish the text so far; notice a cancel asked through another instance."""
        while True:
            await anyio.sleep(HEARTBEAT_S)
            if not job.handed_off:
                continue
            await self._save(job, self._record(job), STALE_AFTER_S * 6)
            if self._store is not None and await self._store_call(self._store.get, CANCEL_KIND, job.id):
                job.cancel()

    def _record(self, job: Job) -> dict[str, Any]:
        if job.status == "failed":
            return {"status": "failed", "error": str(job.error)}
        return {"status": job.status, "result": job.snapshot().model_dump(mode="json")}

    async def hand_off(self, job: Job) -> DelegateResult:
        """The tool call returns now: the job records itself when it ends; its text so far, readable anywhere."""
        job.handed_off = True
        await self._save(job, self._record(job), STALE_AFTER_S * 6)
        return job.snapshot()

    async def _save(self, job: Job, record: dict[str, Any], ttl_s: float) -> None:
        if self._store is None:
            return
        document = {**record, "instance": self.instance, "heartbeat": time.time()}
        try:
            await self._store_call(self._store.put, KIND, job.id, document, ttl_s, job.owner)
        except StoreError as exc:  # the job goes on; only other instances and restarts lose sight of it
            logger.warning("cannot record job %s in the store: %s", job.id, exc)

    @staticmethod
    async def _store_call(method: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_thread.run_sync(lambda: method(*args))

    async def wait(self, job: Job, seconds: float, progress: Progress | None = None) -> bool:
        """Wait up to `seconds` for the job to end, passing its progress on meanwhile; True when it ended."""
        if progress is not None:
            job.listeners.add(progress)
        try:
            with anyio.move_on_after(max(0.0, seconds)):
                await job.done.wait()
        finally:
            if progress is not None:
                job.listeners.discard(progress)
        return job.done.is_set()

    def name_call(self, job_id: str | None, call_id: str | None) -> None:
        """Tell a job which call started it (the call's id is given once the call returns)."""
        job = self._jobs.get(job_id or "")
        if job is not None and call_id is not None:
            job.call_id = call_id

    async def result(
        self,
        job_id: str,
        wait_s: float = 0,
        cancel: bool = False,
        progress: Progress | None = None,
        owner: str | None = None,
    ) -> DelegateResult:
        """delegate_result: the job's result now, after waiting up to `wait_s`, or after stopping it. Given an
        owner, another caller's job is an unknown job."""
        check_id("job_id", job_id, 'the job_id a delegate or ask_ result returned with status "running"')
        wait_s = min(max(0.0, wait_s), MAX_WAIT_S, max(0.0, self._settings.deadline_s - HANDOFF_MARGIN_S))
        job = self._jobs.get(job_id)
        if job is not None and owner is not None and job.owner != owner:
            raise UnknownJobError(job_id)
        if job is not None:
            if cancel and job.status == "running":
                job.cancel()
                wait_s = 5.0  # closing the upstream request takes a moment; the job then reports "cancelled"
            await self.wait(job, wait_s if job.status == "running" else 0, progress)
            return job.snapshot()
        return await self._stored_result(job_id, wait_s, cancel, owner)

    async def _stored_result(self, job_id: str, wait_s: float, cancel: bool, owner: str | None) -> DelegateResult:
        """A job this process does not hold: finished earlier, run by another instance, or lost to a restart."""
        if self._store is None:
            raise UnknownJobError(job_id)
        store = self._store
        if owner is not None and cancel:  # before the cancel is written: another caller's job is never touched
            try:
                if await self._store_call(store.get, KIND, job_id, owner) is None:
                    raise UnknownJobError(job_id)
            except DamagedDocumentError:
                raise self._damaged(job_id) from None
        if cancel:
            await self._store_call(store.put, CANCEL_KIND, job_id, {"at": time.time()}, STALE_AFTER_S * 6)
        until = time.monotonic() + wait_s
        while True:
            try:
                record = await self._store_call(store.get, KIND, job_id, owner)
            except DamagedDocumentError:
                raise self._damaged(job_id) from None
            if record is None:
                raise UnknownJobError(job_id)
            status = record.get("status")
            if status == "failed":
                raise JobFailedError(str(record.get("error") or f"job {job_id} failed."))
            try:
                beat = float(record.get("heartbeat") or 0)
                result = None if status == "lost" else DelegateResult.model_validate(record.get("result") or {})
            except (TypeError, ValueError):  # pydantic's ValidationError is a ValueError
                raise self._damaged(job_id) from None
            alive = record.get("instance") != self.instance and time.time() - beat < STALE_AFTER_S
            if result is None or (status == "running" and not alive):
                raise JobLostError(job_id)
            if status != "running" or time.monotonic() >= until:
                return result
            await anyio.sleep(min(1.0, max(0.0, until - time.monotonic())))

    def _damaged(self, job_id: str) -> JobFailedError:
        location = self._store.location if self._store is not None else "the store"
        return JobFailedError(
            f"job {job_id}'s record in {location} is damaged, so its answer cannot be read; start the task again. "
            "(Only this record is affected.)"
        )

    def _forget_old(self) -> None:
        """Drop finished jobs from memory past their TTL, or beyond the newest few (the store keeps them)."""
        now = time.monotonic()
        finished = [j for j in self._jobs.values() if j.finished_at is not None]
        expired = {j.id for j in finished if now - (j.finished_at or now) > self._settings.job_ttl_s}
        finished.sort(key=lambda j: j.finished_at or math.inf)
        expired |= {j.id for j in finished[: max(0, len(finished) - MAX_FINISHED_IN_MEMORY)]}
        for job_id in expired:
            del self._jobs[job_id]

    async def aclose(self) -> None:
        """Stop every running job (server shutdown, end of a test)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await asyncio.wait({task})

"""One delegate, ask or panel call, composed from the pipeline's stages: prepare → route → budget → answer → record."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio

from server.answers import AnswerShelf
from server.callers import Caller, caller_for, check_feedback
from server.catalog import Catalog, Specialist
from server.components import build_components, build_stages
from server.feedback import Correction
from server.files import FileBundle
from server.pipeline.answer import answering as answering_for
from server.pipeline.answer import call_checks
from server.pipeline.panel_call import PanelCall
from server.pipeline.prepare import Request
from server.pipeline.route import direct
from server.progress import NO_PROGRESS, Progress
from server.quality.checks import Check
from server.results import DelegateResult, PanelResult
from server.routing.classifier import Classifier
from server.routing.router import RouteOutcome
from server.settings import Settings
from server.store.base import Store


class Delegator:
    """Runs delegate, ask and panel calls by composing the pipeline's stages; shared by the MCP tools and the CLI."""

    def __init__(
        self, settings: Settings, catalog: Catalog, environ: Mapping[str, str], store: Store | None = None
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        parts = build_components(settings, catalog, environ, store)
        self._environ = parts.environ
        self._usable = parts.usable
        self._lifecycle = parts.lifecycle
        self._roots = parts.file_roots
        self.store: Store = parts.store
        """The one state store (threads, jobs, budget, usage); opened and checked at start-up."""
        self.feedback = parts.feedback
        """Corrections users made to routing, kept in the store."""
        self.feedback_on = parts.feedback_on
        """Whether delegate calls are remembered (task text included) so feedback can name them by call_id."""
        self.usage = parts.usage
        """The totals of delegate://usage."""
        self.threads = parts.threads
        """Conversations, kept in the store unless DELEGATE_THREADS=off."""
        self.jobs = parts.jobs
        """Answers that outlive their tool call (delegate_result reads them)."""
        self.shadow = parts.shadow
        """Shadow runs (DELEGATE_SHADOW), or None when off."""
        self._stages = build_stages(settings, catalog, parts)
        stages = self._stages
        self._panel = PanelCall(
            settings, catalog, parts.usable, (stages.prepare, stages.route, stages.budget, stages.panel)
        )
        self.answers = AnswerShelf(settings, self.store)
        """Big answers kept whole for delegate://answers/{call_id}."""

    def caller(self) -> Caller:
        """The request's caller: a named caller on a shared HTTP server (set per request), else the one caller."""
        return caller_for(self.settings)

    def close(self) -> None:
        """Release the store's connections."""
        self.store.close()

    @property
    def environ(self) -> Mapping[str, str]:
        """The environment snapshot taken at start-up (keys are read once)."""
        return self._environ

    @property
    def wait_for_classifier(self) -> bool:
        """True for one-shot commands (ask, eval); the server sets False so early calls never wait for training."""
        return self._lifecycle.wait

    @wait_for_classifier.setter
    def wait_for_classifier(self, wait: bool) -> None:
        self._lifecycle.wait = wait

    @property
    def hand_off_at_deadline(self) -> bool:
        """Hand a job back at the call's deadline (the server); one-shot commands wait for the whole answer."""
        return self._stages.handoff.at_deadline

    @hand_off_at_deadline.setter
    def hand_off_at_deadline(self, hand_off: bool) -> None:
        self._stages.handoff.at_deadline = hand_off

    @property
    def classifier(self) -> Classifier | None:
        """The embedded classifier, trained on first use (under a second), or by warm_up() in the background."""
        return self._lifecycle.classifier

    def corrections(self) -> list[Correction]:
        """The corrections users made, read from the store once (blocking); they also teach the router."""
        return self._lifecycle.corrections()

    async def give_feedback(
        self,
        *,
        call_id: str | None = None,
        task: str | None = None,
        thread_id: str | None = None,
        turn: int | None = None,
        good: bool,
        should_be: str | None = None,
        caller: Caller | None = None,
    ) -> Correction:
        """Record feedback on a call (by call_id, or by thread_id and turn number) of the caller's own, from a
        caller allowed to give it; a correction takes effect at once and retrains the classifier in the background
        (the exact task is routed as corrected meanwhile)."""
        caller = caller or self.caller()
        check_feedback(caller)
        routed_to = key = None
        if thread_id is not None or turn is not None:
            task, routed_to, key = await self._stages.prepare.turn_of(thread_id, turn, caller.owner)
        named = {"call_id": call_id, "task": task, "routed_to": routed_to, "key": key, "caller": caller.owner}
        record = self._lifecycle.record
        correction = await anyio.to_thread.run_sync(lambda: record(**named, good=good, should_be=should_be))
        self._lifecycle.retrain_in_background()
        return correction

    def warm_up(self) -> None:
        """Import and prime litellm, then train the classifier, so the first call pays for none of it (on a thread)."""
        self._stages.startup.warm_up()

    async def read_files(self, files: Sequence[str], context: str, client_roots: Sequence[Path] = ()) -> FileBundle:
        """Resolve and read the call's files on a worker thread; refused files raise before any provider call."""
        return await self._stages.prepare.read_files(files, context, client_roots)

    async def delegate(
        self,
        task: str,
        context: str = "",
        progress: Progress = NO_PROGRESS,
        files: Sequence[str] = (),
        client_roots: Sequence[Path] = (),
        thread_id: str | None = None,
        background: bool = False,
        checks: list[Any] | None = None,
        caller: Caller | None = None,
    ) -> DelegateResult:
        """Route the task to the best specialist and return its answer with the routing metadata; with a
        thread_id, as the next turn of that conversation (the caller's own); `checks` verify a cascade's drafts."""
        caller = caller or self.caller()
        request = Request(task, context, files, client_roots, thread_id, background, caller)
        graders = call_checks(checks)
        with self._stages.startup.counted():
            call = self._delegate(request, progress, graders)
            result = await self._stages.record.logged("delegate", task, call, caller)
        self.jobs.name_call(result.job_id, result.call_id)
        return result

    async def ask(
        self,
        name: str,
        task: str,
        context: str = "",
        progress: Progress = NO_PROGRESS,
        files: Sequence[str] = (),
        client_roots: Sequence[Path] = (),
        thread_id: str | None = None,
        background: bool = False,
        checks: list[Any] | None = None,
        caller: Caller | None = None,
    ) -> DelegateResult:
        """Send the task straight to one specialist, with no routing; with a thread_id, as the next turn."""
        spec, caller = self.catalog.get(name), caller or self.caller()
        request = Request(task, context, files, client_roots, thread_id, background, caller)
        graders = call_checks(checks)
        with self._stages.startup.counted():
            call = self._ask(spec, request, progress, graders)
            result = await self._stages.record.logged(spec.tool_name, task, call, caller)
        self.jobs.name_call(result.job_id, result.call_id)
        return result

    async def job_result(
        self,
        job_id: str,
        wait_s: float = 0,
        cancel: bool = False,
        progress: Progress = NO_PROGRESS,
        caller: Caller | None = None,
    ) -> DelegateResult:
        """A job's result (the caller's own): done with the whole answer, or running with the text so far."""
        return await self.jobs.result(job_id, wait_s, cancel, progress, (caller or self.caller()).owner)

    async def panel(
        self,
        task: str,
        context: str = "",
        specialists: Sequence[str] = (),
        synthesize: bool = True,
        progress: Progress = NO_PROGRESS,
        files: Sequence[str] = (),
        client_roots: Sequence[Path] = (),
    ) -> PanelResult:
        """The same task to several specialists at once, each blind to the others, and a synthesis of them."""
        return await self._panel.run(task, context, specialists, synthesize, progress, files, client_roots)

    async def _delegate(self, request: Request, progress: Progress, checks: tuple[Check, ...]) -> DelegateResult:
        """prepare → budget reserved → route → answer (maybe handed off as a job) → budget settled."""
        prepared = await self._stages.prepare.run(request)
        task, context, bundle = request.task, request.context, prepared.bundle
        turns = prepared.thread.turns if prepared.thread else []
        worst = self._stages.budget.worst_case(task, context, bundle.text, turns, self._usable, routed=True)
        paid, settle = await self._stages.budget.held(worst)
        try:
            owner = request.caller.owner
            outcome = await self._stages.route.route(task, context, prepared.deadline, bundle.text, owner=owner)
            paid.cost_usd = outcome.usage.cost_usd  # the router is paid for even if no specialist answers
            await progress.milestone(f"routed to {outcome.specialist} ({outcome.routing.decided_by})")
            spec = self.catalog.get(outcome.specialist)
        except BaseException:
            await settle.aclose()
            raise
        answering = answering_for(spec, outcome, request, prepared, progress, checks)
        return await self._stages.handoff.respond("delegate", answering, paid, settle, request.background)

    async def _ask(
        self, spec: Specialist, request: Request, progress: Progress, checks: tuple[Check, ...]
    ) -> DelegateResult:
        """prepare → budget reserved → answer (maybe handed off as a job) → budget settled; no routing."""
        prepared = await self._stages.prepare.run(request)
        bundle, thread = prepared.bundle, prepared.thread
        turns = thread.turns if thread else []
        task, context = request.task, request.context
        worst = self._stages.budget.worst_case(task, context, bundle.text, turns, [spec], routed=False)
        paid, settle = await self._stages.budget.held(worst)
        answering = answering_for(spec, direct(spec), request, prepared, progress, checks)
        return await self._stages.handoff.respond(spec.tool_name, answering, paid, settle, request.background)

    async def route_only(self, task: str, context: str = "", *, remembered: bool = True) -> RouteOutcome:
        """Only the routing decision, as delegate would make it (for evaluation); no specialist is called.
        remembered=False leaves out the exact-task memory of corrections (to measure what the models learned)."""
        prepared = await self._stages.prepare.run(Request(task, context))
        budget = self._stages.budget
        async with budget.reserved(budget.worst_case(task, context, "", [], [], routed=True)) as paid:
            outcome = await self._stages.route.route(task, context, prepared.deadline, remembered=remembered)
            paid.cost_usd = outcome.usage.cost_usd
        return outcome

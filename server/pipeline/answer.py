"""The answer stage: the specialist's messages (the thread's history fitted to its window), the model chain, the
result with its usage and marks of any cut, and the turn saved to its thread."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, NamedTuple

import anyio

from server import tracing
from server.callers import ONLY, Caller
from server.calling import embedded
from server.calling.chain import ChainRunner, Partial
from server.catalog import Specialist
from server.clock import Deadline
from server.errors import AllModelsFailedError, InvalidInputError, StoreError
from server.files import FileBundle
from server.pipeline.cascade import Cascaded, CascadeStage
from server.pipeline.messages import fit_history, material, specialist_messages
from server.pipeline.prepare import Prepared, Request
from server.pipeline.record import Tally
from server.progress import Progress
from server.quality.checks import Check, parse_checks
from server.quality.shadow import ShadowRunner
from server.results import DelegateResult, Usage, total_cost
from server.routing.router import RouteOutcome
from server.settings import Settings
from server.threads import Thread, ThreadBook, Turn, new_thread_id

logger = logging.getLogger(__name__)


def cut_marker(cut: str, cap_tokens: int) -> str:
    """The line appended to an answer the provider stopped early, saying why and what to do."""
    if cut == "length":
        return (
            f"\n\n[... answer cut by the provider: the model reached its output cap of {cap_tokens:,} tokens "
            "(max_output_tokens in the specialist file, DELEGATE_MAX_OUTPUT_TOKENS). Ask for a shorter answer or "
            "for the rest.]"
        )
    return "\n\n[... answer cut by the provider's safety filter; what came before the cut is above.]"


def cap_output(text: str, limit: int | None) -> str:
    """Cut an answer longer than `limit` characters, with a marker saying so (None: never; it can go by link)."""
    if limit is None or len(text) <= limit:
        return text
    return (
        f"{text[:limit]}\n\n[... answer truncated: it was {len(text):,} characters; the limit is {limit:,} "
        "(DELEGATE_MAX_OUTPUT_CHARS). Ask for a shorter answer or a part of it.]"
    )


def call_checks(raw: list[Any] | None) -> tuple[Check, ...]:
    """A call's `checks`, validated before anything is spent; InvalidInputError says which check and what."""
    if not raw:
        return ()
    try:
        return tuple(parse_checks(raw))
    except ValueError as exc:
        raise InvalidInputError(f"'checks': {exc}. No provider was called.") from None


class Answering(NamedTuple):
    """Everything the answer stage needs for one call's answer (a job carries it on)."""

    spec: Specialist
    outcome: RouteOutcome
    task: str
    context: str
    deadline: Deadline
    progress: Progress
    bundle: FileBundle
    thread: Thread | None
    startup_wait_ms: float | None = None
    checks: tuple[Check, ...] = ()
    """The call's checks: a cascade's verifier, or a warning when a plain answer fails them."""
    caller: Caller = ONLY
    """Who asked: the turn is saved in its thread, a job is its job, and usage counts for it."""
    workdir: Path | None = None
    """Where a coding-agent CLI works (the client's root; None: the configured one)."""


def answering(
    spec: Specialist,
    outcome: RouteOutcome,
    request: Request,
    prepared: Prepared,
    progress: Progress,
    checks: tuple[Check, ...],
) -> Answering:
    """What the answer stage needs, from the caller's request and what the prepare stage made of it."""
    return Answering(
        spec,
        outcome,
        request.task,
        request.context,
        prepared.deadline,
        progress,
        prepared.bundle,
        prepared.thread,
        prepared.startup_wait_ms,
        checks,
        request.caller,
        prepared.workdir,
    )


class Answer:
    """Gets the specialist's answer through the model chain and keeps the turn in its thread."""

    def __init__(
        self,
        settings: Settings,
        chain: ChainRunner,
        threads: ThreadBook | None,
        tally: Tally,
        cascade: CascadeStage,
        shadow: ShadowRunner | None = None,
    ) -> None:
        self._settings = settings
        self._chain = chain
        self._cascade = cascade
        self._shadow = shadow
        self._threads = threads
        self._tally = tally

    @property
    def _cap(self) -> int | None:
        """Where an answer is cut: nowhere when a big answer can go by link (the whole one is kept)."""
        return None if self._settings.link_share > 0 else self._settings.max_output_chars

    async def run(self, answering: Answering, partial: Partial | None = None) -> DelegateResult:
        """The specialist's answer as a result, its turn saved; `partial` shows the text while it streams."""
        spec, bundle, thread = answering.spec, answering.bundle, answering.thread
        task, context = answering.task, answering.context
        window = self._chain.largest_window(spec)
        history, trimmed = fit_history(window, spec, task, context, bundle.text, thread.turns if thread else [])
        messages = specialist_messages(spec, task, context, bundle.text, history)
        deadline, progress, checks = answering.deadline, answering.progress, answering.checks
        given = material(context, bundle.text)  # what a verifier or a shadow judge reads beside the task
        try:
            done = await self._cascade.answer(
                spec, messages, task, given, checks, deadline, progress, partial, answering.workdir
            )
        except (AllModelsFailedError, anyio.get_cancelled_exc_class()):
            await self._tally.unanswered(answering.outcome.usage, answering.caller.owner)
            raise
        answer = done.answer
        result = self._result(answering, done, trimmed)
        turn = Turn(
            task=task,
            context=context,
            files=bundle.reads,
            files_text=bundle.text,
            answer=result.output,
            specialist=spec.name,
            model=answer.model,
            at=time.time(),
        )
        await self.save_turn(thread.id if thread else None, turn, result, answering.caller.owner)
        result.latency_ms = answering.deadline.elapsed_ms()
        if self._shadow is not None:  # after the answer, in tasks of their own: the client never waits for them
            self._shadow.after(spec, messages, task, given, result)
        return result

    def _result(self, answering: Answering, done: Cascaded, trimmed: bool) -> DelegateResult:
        """The result of a completed answer: capped, marked when the provider cut it, with its usage (a cascade's
        drafts and verifications included)."""
        spec, outcome, answer = answering.spec, answering.outcome, done.answer
        completion = answer.completion
        verified = done.cascade.verifier.cost_usd if done.cascade else None
        usage = Usage(
            router=outcome.usage,
            specialist=done.specialist,
            cascade=done.cascade,
            total_cost_usd=total_cost(outcome.usage.cost_usd, done.specialist.cost_usd, verified),
        )
        output = cap_output(completion.text, self._cap)
        if completion.cut and not answer.model.startswith(f"{embedded.PROVIDER}/"):  # it writes its own cut note
            output += cut_marker(completion.cut, min(spec.max_output_tokens, self._settings.max_output_tokens))
        return DelegateResult(
            output=output,
            truncated=completion.cut is not None or output != completion.text,
            specialist=spec.name,
            model=answer.model,
            routing=outcome.routing,
            attempts=answer.attempts,
            usage=usage,
            latency_ms=answering.deadline.elapsed_ms(),
            startup_wait_ms=answering.startup_wait_ms,
            thread_trimmed=trimmed,
            files=answering.bundle.reads,
            warnings=[*answering.bundle.warnings, *done.warnings],
            escalations=done.escalations,
        )

    def cut(self, answering: Answering, partial: Partial, why: str) -> DelegateResult:
        """What streamed before the deadline (or a stall), marked truncated: it was paid for, so it is kept."""
        outcome = answering.outcome
        marker = (
            f"[... answer cut after {len(partial.text):,} characters: the model stopped or the call's deadline "
            f"(DELEGATE_DEADLINE_S = {self._settings.deadline_s:g} s) came. {why}, so the rest was not written.]"
        )
        return DelegateResult(
            output=f"{cap_output(partial.text, self._cap)}\n\n{marker}",
            specialist=answering.spec.name,
            model=partial.model or "",
            routing=outcome.routing,
            attempts=partial.attempts,
            usage=Usage(router=outcome.usage, total_cost_usd=outcome.usage.cost_usd),
            latency_ms=answering.deadline.elapsed_ms(),
            startup_wait_ms=answering.startup_wait_ms,
            truncated=True,
            files=answering.bundle.reads,
            warnings=list(answering.bundle.warnings),
        )

    async def save_turn(
        self, thread_id: str | None, turn: Turn, result: DelegateResult, owner: str | None = None
    ) -> None:
        """Add the turn to its thread (a new one when thread_id is None) and put the id in the result. A store
        that cannot be written costs the thread, never the answer: the result carries a warning instead."""
        if self._threads is None:
            return
        continuing = thread_id is not None
        thread_id = thread_id or new_thread_id()
        try:
            with (
                anyio.CancelScope(shield=True),  # the answer is paid for: keep it even if the client gives up
                tracing.stage("store", {"delegate.store.write": "thread.append"}),
            ):
                await anyio.to_thread.run_sync(self._threads.append, thread_id, turn, owner)
        except StoreError as exc:
            logger.warning("a turn of thread %s was not saved: %s", thread_id, exc)
            later = "later turns of this thread will not see it" if continuing else "it cannot be followed up"
            result.warnings.append(f"This turn was not saved ({later}): {exc}")
            if not continuing:
                return
        result.thread_id = thread_id

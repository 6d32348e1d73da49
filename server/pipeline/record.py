"""The record stage: every call is counted for delegate://usage, written to the decision log when it is on, and
(delegate calls, feedback on) remembered so feedback can name it. A store or log that fails costs the answer
nothing: the result carries a warning instead."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio

from server import tracing
from server.callers import ONLY, Caller
from server.calling import llm
from server.calling.chain import usable_models
from server.catalog import Catalog
from server.errors import DelegateError, StoreError
from server.feedback import FeedbackBook
from server.results import CallUsage, DelegateResult
from server.store.decision_log import DecisionLog, entry
from server.store.usage import UsageTally

logger = logging.getLogger(__name__)


def premium_rates(catalog: Catalog, environ: Mapping[str, str]) -> list[tuple[float, float]]:
    """Per-token prices of each specialist's first usable model (those litellm can price)."""
    rates = []
    for spec in catalog:
        models = usable_models(spec, environ)
        found = llm.price(models[0].model) if models else None
        if found:
            rates.append(found)
    return rates


def premium_cost(rates: list[tuple[float, float]], usage: CallUsage) -> float | None:
    """What the specialist call would have cost on the priciest of those models."""
    costs = [usage.input_tokens * per_in + usage.output_tokens * per_out for per_in, per_out in rates]
    return round(max(costs), 10) if costs else None


class Tally:
    """The usage totals in the store, updated off the event loop; each update returns a warning when it failed."""

    def __init__(self, usage: UsageTally) -> None:
        self._usage = usage

    async def answered(
        self, result: DelegateResult | None, premium_usd: float | None, owner: str | None = None
    ) -> str | None:
        """Count a call that ended (result None: it failed), for its caller too."""
        return await self._count(self._usage.record, result, premium_usd, owner)

    async def cancelled(self, owner: str | None = None) -> str | None:
        """Count a call the client cancelled."""
        return await self._count(self._usage.record_cancelled, owner)

    async def unanswered(self, router_usage: CallUsage, owner: str | None = None) -> str | None:
        """Count the router spend of a call no specialist answered."""
        return await self._count(self._usage.record_unanswered, router_usage, owner)

    async def _count(self, record: Callable[..., None], *args: Any) -> str | None:
        with anyio.CancelScope(shield=True):
            try:
                with tracing.stage("store", {"delegate.store.write": f"usage.{record.__name__}"}):
                    await anyio.to_thread.run_sync(record, *args)
            except StoreError as exc:
                logger.warning("cannot update the usage totals: %s", exc)
                return f"The usage totals could not be updated: {exc}"
        return None


class Record:
    """Counts, logs and remembers calls."""

    def __init__(
        self,
        catalog: Catalog,
        environ: Mapping[str, str],
        tally: Tally,
        log: DecisionLog | None,
        feedback: FeedbackBook,
        feedback_on: bool,
        log_tasks: bool = False,
    ) -> None:
        self._catalog = catalog
        self._environ = environ
        self._tally = tally
        self._log = log
        self._feedback = feedback
        self._feedback_on = feedback_on
        self._log_tasks = log_tasks  # DELEGATE_LOG_TASKS: only then may a span carry the task text
        self._premium_rates: list[tuple[float, float]] | None = None

    async def logged(
        self, tool: str, task: str, call: Awaitable[DelegateResult], caller: Caller = ONLY
    ) -> DelegateResult:
        """Await the call; count it for delegate://usage (its caller's too) and, when the decision log is on,
        append its line."""
        call_id = uuid.uuid4().hex[:16]
        try:
            result = (await call).model_copy(update={"call_id": call_id})
        except anyio.get_cancelled_exc_class():
            tracing.count_call(tool, None, "cancelled")
            await self._tally.cancelled(caller.owner)
            raise
        except DelegateError as exc:
            tracing.describe_call(tool, None, type(exc).__name__)
            await self.record(tool, task, None, exc, caller)
            raise
        if result.status != "running":  # a job handed off records itself when it ends
            result = await self.record(tool, task, result, None, caller) or result
        if self._feedback_on and tool == "delegate":
            problem = await self._remember(call_id, task, result, caller.owner)
            if problem:
                result = result.model_copy(update={"warnings": [*result.warnings, problem]})
        tracing.describe_call(tool, result, task=task if self._log_tasks else None)
        return result

    async def record(
        self, tool: str, task: str, result: DelegateResult | None, error: Exception | None, caller: Caller = ONLY
    ) -> DelegateResult | None:
        """Count one call for delegate://usage and, when the decision log is on, append its line; the result,
        with a warning when the usage totals could not be updated."""
        tracing.count_call(tool, result, None if error is None else type(error).__name__)
        if result is None:
            await self._tally.answered(None, None, caller.owner)
            if self._log is not None:
                name = error.__class__.__name__ if error is not None else "cancelled"
                line = entry(tool, task, None, name, None, include_task=self._log.include_task)
                await self._write_log(line, caller)
            return None
        if self._premium_rates is None:  # litellm is loaded by now; keys and prices do not change while we run
            self._premium_rates = premium_rates(self._catalog, self._environ)
        premium = premium_cost(self._premium_rates, result.usage.specialist)
        problem = await self._tally.answered(result, premium, caller.owner)
        if problem:
            result = result.model_copy(update={"warnings": [*result.warnings, problem]})
        if self._log is not None:
            await self._write_log(entry(tool, task, result, None, premium, include_task=self._log.include_task), caller)
        return result

    async def _remember(self, call_id: str, task: str, result: DelegateResult, owner: str | None) -> str | None:
        """Keep the call so feedback can name it; a store failure costs the answer nothing (a warning)."""
        with anyio.CancelScope(shield=True):
            try:
                with tracing.stage("store", {"delegate.store.write": "feedback.remember_call"}):
                    await anyio.to_thread.run_sync(
                        self._feedback.remember_call, call_id, task, result.specialist, result.routing.decided_by, owner
                    )
            except StoreError as exc:
                logger.warning("cannot remember the call for feedback: %s", exc)
                return "this call could not be remembered for feedback (the store failed)"
        return None

    async def _write_log(self, line: dict[str, Any], caller: Caller) -> None:
        assert self._log is not None
        if caller.name is not None:  # a server shared by named callers: the operator's log says whose call it was
            line["caller"] = caller.name
        with anyio.CancelScope(shield=True):
            try:
                with tracing.stage("store", {"delegate.store.write": "decision_log"}):
                    await anyio.to_thread.run_sync(self._log.append, line)
            except OSError as exc:  # a log that cannot be written must not fail the call
                logger.warning("cannot write the decision log %s: %s", self._log.path, exc.__class__.__name__)

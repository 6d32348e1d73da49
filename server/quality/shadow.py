"""Shadow runs: after a sampled call has answered, a candidate model answers the same messages in the background,
and the blind two-order judge compares its answer with the live one. The client never waits for any of it; a
concurrency limit bounds it, and it reserves through the daily budget, refused before any live call would be."""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import anyio

from server.calling.chain import CHARS_PER_TOKEN, ChainRunner
from server.catalog import Catalog, ModelRef, Specialist, split_price
from server.clock import Deadline
from server.errors import BudgetExceededError, ConfigError, DelegateError, StoreError
from server.quality.judge import JudgeFailed, judge_messages, judge_pair, judge_specialist
from server.results import DelegateResult, total_cost
from server.store.budget import DailyBudget, Reservation
from server.store.shadow_book import ShadowBook, candidate_key

logger = logging.getLogger(__name__)
SHADOW_DEADLINE_S = 300.0
"""Time a candidate's answer (and then the judge) may take: nobody is waiting on it."""
BUDGET_KEPT_FOR_LIVE = 0.10
"""The share of the daily budget shadow work never reserves into: when spend is that close to the limit, shadow
runs are refused first, and the rest is left for live calls."""
_ENTRY = re.compile(r"\A([a-z][a-z0-9_]*)=(.+)@(\d*\.?\d+)\Z")


@dataclass(frozen=True)
class Candidate:
    """A model shadowing one specialist, and the share of that specialist's calls it answers too."""

    specialist: str
    ref: ModelRef
    rate: float

    @property
    def key(self) -> str:
        """Its counters' key in the store."""
        return candidate_key(self.specialist, self.ref.label)


def parse_shadow(text: str | None, catalog: Catalog) -> list[Candidate]:
    """DELEGATE_SHADOW: SPECIALIST=MODEL@RATE, comma-separated (MODEL may carry its price, MODEL@IN/OUT)."""
    candidates = []
    for entry in (part.strip() for part in (text or "").split(",")):
        if not entry:
            continue
        found = _ENTRY.match(entry)
        if not found:
            raise ConfigError(
                f"DELEGATE_SHADOW: {entry!r} is not SPECIALIST=MODEL@RATE (e.g. generalist=openai/gpt-5-nano@0.1)."
            )
        name, model, rate = found[1], found[2], float(found[3])
        if name not in catalog.names:
            raise ConfigError(f"DELEGATE_SHADOW: unknown specialist {name!r}. Known: {', '.join(catalog.names)}.")
        if not 0 < rate <= 1:
            raise ConfigError(f"DELEGATE_SHADOW: {entry!r}: the sample rate must be above 0 and at most 1.")
        bare, price = split_price(model)
        candidates.append(Candidate(name, ModelRef(model=bare, price=price), rate))
    return candidates


def judge_chain(judge: str | None, fallback: Callable[[], list[ModelRef]]) -> tuple[ModelRef, ...]:
    """The shadow judge: DELEGATE_SHADOW_JUDGE (MODEL or MODEL@IN/OUT), else the router's cheap models."""
    if judge:
        bare, price = split_price(judge)
        return (ModelRef(model=bare, price=price),)
    return tuple(fallback())


class ShadowRunner:
    """Samples answered calls and shadows them in tasks of their own; one per server."""

    def __init__(
        self,
        candidates: list[Candidate],
        chain: ChainRunner,
        judge: tuple[ModelRef, ...],
        book: ShadowBook,
        budget: DailyBudget | None,
        concurrency: int,
        include_task: bool,
        sample: Callable[[], float] = random.random,
    ) -> None:
        self._candidates = candidates
        self._chain = chain
        self._judge = replace(judge_specialist(judge[0]), chain=judge) if judge else None
        self._book = book
        self._budget = budget
        self._concurrency = concurrency
        self._include_task = include_task
        self._sample = sample
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> int:
        """Shadow runs in flight now."""
        return self._running

    def after(
        self, spec: Specialist, messages: list[dict[str, str]], task: str, context: str, live: DelegateResult
    ) -> None:
        """A call of `spec` has answered: start the sampled candidates' runs in the background (never awaited)."""
        if live.status != "done" or live.truncated or self._judge is None:
            return
        for candidate in self._candidates:
            if candidate.specialist != spec.name or candidate.ref.model == live.model:
                continue
            if self._sample() >= candidate.rate:
                continue
            if self._running >= self._concurrency:  # counted before the task starts: one event loop, no race
                self._start(self._skip(candidate, "busy"))
                continue
            self._running += 1
            self._start(self._shadow(candidate, spec, messages, task, context, live))

    def _start(self, work: Any) -> None:
        # anyio has no detached tasks: a task group would tie the shadow run to the tool call's cancel scope.
        task = asyncio.get_running_loop().create_task(work, name="shadow")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self) -> None:
        """Wait for every shadow run in flight (tests, benchmarks and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _skip(self, candidate: Candidate, why: str, cost_usd: float | None = None) -> None:
        await self._store(self._book.skipped, candidate.key, why, cost_usd)

    async def _shadow(
        self,
        candidate: Candidate,
        spec: Specialist,
        messages: list[dict[str, str]],
        task: str,
        context: str,
        live: DelegateResult,
    ) -> None:
        try:
            one = replace(spec, chain=(candidate.ref,), cascade=None)
            granted, hold = await self._reserve(self._worst_case(one, messages, task, context))
            if not granted:
                await self._skip(candidate, "budget")
                return
            spent: list[float | None] = []
            try:
                verdict = await self._judged(one, messages, task, context, live, spent)
            finally:
                await self._settle(hold, total_cost(*spent))
            if verdict is None:
                await self._skip(candidate, "failed", total_cost(*spent))
                return
            await self._store(self._book.keep, candidate.key, verdict, task, self._include_task)
        except Exception:
            logger.exception("a shadow run of %s failed unexpectedly", candidate.key)
        finally:
            self._running -= 1

    async def _judged(
        self,
        one: Specialist,
        messages: list[dict[str, str]],
        task: str,
        context: str,
        live: DelegateResult,
        spent: list[float | None],
    ) -> dict[str, Any] | None:
        """The candidate's answer judged against the live one; None when either failed (what they cost is in
        `spent`)."""
        assert self._judge is not None
        try:
            answer = await self._chain.run(one, messages, Deadline(SHADOW_DEADLINE_S))
        except DelegateError as exc:
            logger.info("shadow candidate %s failed: %s", one.chain[0].model, exc)
            return None
        got = answer.completion
        spent.append(got.cost_usd)
        try:
            found = await judge_pair(self._chain, self._judge, task, context, got.text, live.output, SHADOW_DEADLINE_S)
        except JudgeFailed as exc:
            spent.append(exc.cost_usd)
            return None
        spent.append(found.cost_usd)
        verified = live.usage.cascade.verifier.cost_usd if live.usage.cascade else None
        live_cost = total_cost(live.usage.specialist.cost_usd, verified)
        return {
            "specialist": one.name,
            "live_model": live.model,
            "model": one.chain[0].label,
            "outcome": found.outcome,
            "reason": found.reason,
            "orders": list(found.orders),
            "live_cost_usd": live_cost,
            "candidate_cost_usd": got.cost_usd,
            "judge_cost_usd": found.cost_usd,
        }

    def _worst_case(self, one: Specialist, messages: list[dict[str, str]], task: str, context: str) -> float:
        """The candidate's answer at its cap, and the judge (both orders) reading two answers at that cap."""
        if self._budget is None or self._judge is None:
            return 0.0
        answer = "x" * int(one.max_output_tokens * CHARS_PER_TOKEN)
        judged = self._chain.worst_case_usd(self._judge, judge_messages(task, context, answer, answer))
        return self._chain.worst_case_usd(one, messages) + 2 * judged

    async def _reserve(self, worst_usd: float) -> tuple[bool, Reservation | None]:
        """Whether the run may go, and the daily budget's reservation (keeping BUDGET_KEPT_FOR_LIVE for live calls)."""
        budget = self._budget
        if budget is None:
            return True, None
        keep = budget.limit_usd * BUDGET_KEPT_FOR_LIVE
        try:
            return True, await anyio.to_thread.run_sync(lambda: budget.reserve(worst_usd, keep_usd=keep))
        except (BudgetExceededError, StoreError):
            return False, None

    async def _settle(self, hold: Reservation | None, cost_usd: float | None) -> None:
        if self._budget is None or hold is None:
            return
        hold.spent_usd = cost_usd or 0.0
        with anyio.CancelScope(shield=True):
            await self._store(self._budget.settle, hold)

    @staticmethod
    async def _store(method: Callable[..., Any], *args: Any) -> None:
        """A store write off the event loop; a store that fails loses one verdict, logged, never more."""
        try:
            await anyio.to_thread.run_sync(lambda: method(*args))
        except StoreError as exc:
            logger.warning("cannot keep a shadow verdict: %s", exc)


def build_shadow(
    text: str | None,
    catalog: Catalog,
    chain: ChainRunner,
    judge: tuple[ModelRef, ...],
    book: ShadowBook,
    budget: DailyBudget | None,
    concurrency: int,
    include_task: bool,
) -> ShadowRunner | None:
    """The shadow runner DELEGATE_SHADOW asks for, or None (off, the default)."""
    candidates = parse_shadow(text, catalog)
    if not candidates:
        return None
    return ShadowRunner(candidates, chain, judge, book, budget, concurrency, include_task)

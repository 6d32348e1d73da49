"""The budget stage: the most a call could cost is reserved before any provider is called, and what it paid is
settled afterwards, even when the call fails or is cancelled (an answer already paid for is never thrown away)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import anyio

from server import tracing
from server.calling.chain import CHARS_PER_TOKEN, ChainRunner
from server.catalog import Catalog, Specialist
from server.errors import StoreError
from server.panel import judge_messages
from server.pipeline.cascade import CascadeStage
from server.pipeline.messages import fit_history, material, specialist_messages
from server.results import DelegateResult, PanelAnswer
from server.routing.router import Router
from server.store.budget import DailyBudget
from server.threads import Turn

logger = logging.getLogger(__name__)


@dataclass
class Paid:
    """What one call has paid so far, for settling its budget reservation."""

    cost_usd: float | None = None
    result: DelegateResult | None = None


class Budget:
    """Prices a call's worst case and holds its reservation; with no daily budget set, nothing is reserved."""

    def __init__(
        self,
        budget: DailyBudget | None,
        catalog: Catalog,
        usable: Sequence[Specialist],
        chain: ChainRunner,
        router: Router,
        max_output_tokens: int,
        cascade: CascadeStage | None = None,
    ) -> None:
        self._budget = budget
        self._cascade = cascade
        self._catalog = catalog
        self._usable = list(usable)
        self._chain = chain
        self._router = router
        self._max_output_tokens = max_output_tokens

    def worst_case(
        self, task: str, context: str, files_text: str, turns: list[Turn], specs: list[Specialist], *, routed: bool
    ) -> float:
        """The most this call could cost: the router's worst case (when it routes) plus the priciest answer."""
        if self._budget is None:
            return 0.0
        router = 0.0
        if routed and self._usable:
            names = [s.name for s in self._usable]
            default = self._catalog.default.name if self._catalog.default.name in names else names[0]
            router = self._router.worst_case_usd(task, material(context, files_text), self._usable, default)
        answers = []
        for spec in specs:  # the thread's history as the answer stage will send it: trimmed to the window
            window = self._chain.largest_window(spec)
            history, _ = fit_history(window, spec, task, context, files_text, turns)
            messages = specialist_messages(spec, task, context, files_text, history)
            if spec.cascade is not None and self._cascade is not None:  # every step and every verification
                answers.append(self._cascade.worst_case_usd(spec, messages, task, material(context, files_text)))
            else:
                answers.append(self._chain.worst_case_usd(spec, messages))
        return router + max(answers, default=0.0)

    def panel_worst_case(self, task: str, given: str, members: list[Specialist], judge: Specialist | None) -> float:
        """The most a panel could cost: each member's priciest answer, and the judge reading answers at their caps."""
        if self._budget is None:
            return 0.0
        total = sum(self.worst_case(task, given, "", [], [m], routed=False) for m in members)
        if judge is not None and len(members) > 1:
            caps = [min(m.max_output_tokens, self._max_output_tokens) for m in members]
            longest = [PanelAnswer(specialist="", output="x" * int(c * CHARS_PER_TOKEN), ok=True) for c in caps]
            total += self._chain.worst_case_usd(judge, judge_messages(task, longest)[0])
        return total

    async def held(self, worst_case_usd: float) -> tuple[Paid, AsyncExitStack]:
        """A reservation that outlives the stage that takes it: closing the stack settles it (the call's answer may
        end in a job, after the tool call has returned)."""
        settle = AsyncExitStack()
        paid = await settle.enter_async_context(self.reserved(worst_case_usd))
        return paid, settle

    @asynccontextmanager
    async def reserved(self, worst_case_usd: float) -> AsyncIterator[Paid]:
        """Reserve the worst case before any provider call; afterwards settle what was paid, never losing an answer."""
        paid = Paid()
        if self._budget is None:
            yield paid
            return
        budget = self._budget
        with tracing.stage(
            "store", {"delegate.store.write": "budget.reserve", "delegate.worst_case_usd": worst_case_usd}
        ):
            hold = await anyio.to_thread.run_sync(budget.reserve, worst_case_usd)  # BudgetExceededError: nothing called
        try:
            yield paid
        finally:
            if paid.result is not None:
                paid.cost_usd = paid.result.usage.total_cost_usd
            hold.spent_usd = paid.cost_usd or 0.0
            with anyio.CancelScope(shield=True):  # money already spent is recorded even if the call is cancelled
                try:
                    with tracing.stage("store", {"delegate.store.write": "budget.settle"}):
                        await anyio.to_thread.run_sync(budget.settle, hold)
                except StoreError as exc:
                    warning = f"This call's cost (${hold.spent_usd:.6f}) could not be added to today's budget: {exc}"
                    logger.warning("%s", warning)
                    if paid.result is not None:
                        paid.result.warnings.append(warning)

"""Money for a bake-off: --max-cost-usd kept like the daily budget, by reserving each call's worst case before
the call and settling its real cost after, so concurrent calls can never spend past the cap together."""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from server.errors import BudgetExceededError
from server.store.budget import DailyBudget, Reservation


@dataclass
class Hold:
    """Money set aside for one call: its worst case under the run's cap, and the daily budget's reservation."""

    amount_usd: float
    daily: Reservation | None = None


class SpendCap:
    """The run's hard cap (None: no cap) and the daily budget (None: none set). Reserve and settle from one event
    loop: the cap's check and its addition happen with no await between them, so they are atomic."""

    def __init__(self, limit_usd: float | None, daily: DailyBudget | None = None) -> None:
        self.limit_usd = limit_usd
        self._daily = daily
        self.reserved_usd = 0.0
        """Held for calls in flight."""
        self.spent_usd = 0.0
        """Known costs of the calls that ended."""
        self.refused = 0
        """Calls not made because their worst case did not fit."""

    async def reserve(self, worst_case_usd: float) -> Hold | None:
        """Set aside a call's worst case; None (the call must not be made) when it does not fit."""
        amount = max(0.0, worst_case_usd)
        if self.limit_usd is not None and self.spent_usd + self.reserved_usd + amount > self.limit_usd:
            self.refused += 1
            return None
        self.reserved_usd += amount
        hold = Hold(amount)
        if self._daily is not None:
            try:
                hold.daily = await anyio.to_thread.run_sync(self._daily.reserve, amount)
            except BudgetExceededError:
                self.reserved_usd -= amount
                self.refused += 1
                return None
        return hold

    async def settle(self, hold: Hold, cost_usd: float | None) -> None:
        """Replace the hold by the call's known cost (an unknown cost adds nothing, as in the daily budget)."""
        self.reserved_usd = max(0.0, self.reserved_usd - hold.amount_usd)
        self.spent_usd += cost_usd or 0.0
        if self._daily is not None and hold.daily is not None:
            hold.daily.spent_usd = cost_usd or 0.0
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._daily.settle, hold.daily)

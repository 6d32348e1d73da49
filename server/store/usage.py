"""Usage since the server started: calls, tokens and cost per specialist, and the saving against premium."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

from server.results import DelegateResult


class UsageTally:
    """Running totals for the delegate://usage resource; safe to update from any task or thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls = 0
        self._errors = 0
        self._per_specialist: dict[str, dict[str, float]] = defaultdict(
            lambda: {"calls": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
        )
        self._priced_actual = 0.0
        self._priced_premium = 0.0

    def record(self, result: DelegateResult | None, premium_cost_usd: float | None) -> None:
        """Count one call: a result, or None for a call that failed."""
        with self._lock:
            self._calls += 1
            if result is None:
                self._errors += 1
                return
            usage = result.usage
            entry = self._per_specialist[result.specialist]
            entry["calls"] += 1
            entry["input_tokens"] += usage.router.input_tokens + usage.specialist.input_tokens
            entry["output_tokens"] += usage.router.output_tokens + usage.specialist.output_tokens
            entry["cost_usd"] += usage.total_cost_usd or 0.0
            if premium_cost_usd is not None and usage.total_cost_usd is not None:
                self._priced_actual += usage.total_cost_usd
                self._priced_premium += premium_cost_usd

    def snapshot(self) -> dict[str, Any]:
        """The totals as JSON-ready data."""
        with self._lock:
            per = {
                name: {k: round(v, 8) if k == "cost_usd" else int(v) for k, v in figures.items()}
                for name, figures in sorted(self._per_specialist.items())
            }
            saving = self._priced_premium - self._priced_actual
            return {
                "calls": self._calls,
                "errors": self._errors,
                "input_tokens": sum(p["input_tokens"] for p in per.values()),
                "output_tokens": sum(p["output_tokens"] for p in per.values()),
                "cost_usd": round(sum(p["cost_usd"] for p in per.values()), 8),
                "per_specialist": per,
                "always_premium_usd": round(self._priced_premium, 8),
                "saving_usd": round(saving, 8),
                "saving": round(saving / self._priced_premium, 4) if self._priced_premium else None,
                "note": "always_premium_usd prices each priced call's specialist tokens on the priciest "
                "specialist's first usable model; unpriced calls are left out of the saving.",
            }

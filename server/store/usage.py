"""Usage since the server started: calls, tokens and cost per specialist, and the saving against premium."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

from server.results import CallUsage, DelegateResult

NOTE = (
    "cost_usd adds up the known costs; calls_cost_unknown counts calls whose model has no price (their cost is "
    "unknown, not zero), and a cost_usd of null means no call there had a known cost. unanswered is the router "
    "spend of calls that failed or were cancelled after routing. always_premium_usd prices each priced call's "
    "specialist tokens on the priciest specialist's first usable model; unpriced calls are left out of the saving."
)


def _bucket() -> dict[str, Any]:
    return {"calls": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "priced": 0, "calls_cost_unknown": 0}


def _add(entry: dict[str, Any], usages: list[CallUsage], cost_usd: float | None) -> None:
    """Count one call's tokens, and its cost when known (unknown costs are counted, never added as zero)."""
    entry["calls"] += 1
    entry["input_tokens"] += sum(u.input_tokens for u in usages)
    entry["output_tokens"] += sum(u.output_tokens for u in usages)
    if cost_usd is None:
        entry["calls_cost_unknown"] += 1
    else:
        entry["cost_usd"] += cost_usd
        entry["priced"] += 1


def _shown(entry: dict[str, Any]) -> dict[str, Any]:
    """A bucket as JSON: its cost is null when none of its calls had a known cost."""
    cost = round(entry["cost_usd"], 8) if entry["priced"] or not entry["calls_cost_unknown"] else None
    return {
        "calls": entry["calls"],
        "input_tokens": entry["input_tokens"],
        "output_tokens": entry["output_tokens"],
        "cost_usd": cost,
        "calls_cost_unknown": entry["calls_cost_unknown"],
    }


class UsageTally:
    """Running totals for the delegate://usage resource; safe to update from any task or thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls = 0
        self._errors = 0
        self._cancelled = 0
        self._per_specialist: dict[str, dict[str, Any]] = defaultdict(_bucket)
        self._unanswered = _bucket()
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
            _add(self._per_specialist[result.specialist], [usage.router, usage.specialist], usage.total_cost_usd)
            if premium_cost_usd is not None and usage.total_cost_usd is not None:
                self._priced_actual += usage.total_cost_usd
                self._priced_premium += premium_cost_usd

    def record_cancelled(self) -> None:
        """Count a call the client cancelled before it had an answer."""
        with self._lock:
            self._calls += 1
            self._cancelled += 1

    def record_unanswered(self, router: CallUsage) -> None:
        """Add what routing cost a call that then got no answer (every model failed, or it was cancelled)."""
        if router.input_tokens or router.output_tokens or router.cost_usd:
            with self._lock:
                _add(self._unanswered, [router], router.cost_usd)

    def snapshot(self) -> dict[str, Any]:
        """The totals as JSON-ready data."""
        with self._lock:
            buckets = [*self._per_specialist.values(), self._unanswered]
            total = _bucket()
            for entry in buckets:
                for field in ("input_tokens", "output_tokens", "cost_usd", "priced", "calls_cost_unknown"):
                    total[field] += entry[field]
            saving = self._priced_premium - self._priced_actual
            return {
                "calls": self._calls,
                "errors": self._errors,
                "cancelled": self._cancelled,
                "input_tokens": total["input_tokens"],
                "output_tokens": total["output_tokens"],
                "cost_usd": _shown(total)["cost_usd"],
                "calls_cost_unknown": total["calls_cost_unknown"],
                "per_specialist": {name: _shown(entry) for name, entry in sorted(self._per_specialist.items())},
                "unanswered": _shown(self._unanswered),
                "always_premium_usd": round(self._priced_premium, 8),
                "saving_usd": round(saving, 8),
                "saving": round(saving / self._priced_premium, 4) if self._priced_premium else None,
                "note": NOTE,
            }

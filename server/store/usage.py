"""Usage totals kept in the store (so they survive restarts and add up across a fleet): calls, tokens and cost per
specialist, and the saving against premium."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from server.results import CallUsage, DelegateResult
from server.store.base import Store

KIND, KEY = "usage", "totals"
BUCKET_FIELDS = ("calls", "input_tokens", "output_tokens", "cost_usd", "priced", "calls_cost_unknown")

NOTE = (
    "cost_usd adds up the known costs; calls_cost_unknown counts calls whose model has no price (their cost is "
    "unknown, not zero), and a cost_usd of null means no call there had a known cost. unanswered is the router "
    "spend of calls that failed or were cancelled after routing. always_premium_usd prices each priced call's "
    "specialist tokens on the priciest specialist's first usable model; unpriced calls are left out of the saving. "
    "cascade (null until a specialist with escalate: true answers) compares its calls with always using each "
    "cascade's last model, verifications included."
)


def _bucket() -> dict[str, Any]:
    return {"calls": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "priced": 0, "calls_cost_unknown": 0}


def _add(prefix: str, usages: list[CallUsage], cost_usd: float | None) -> dict[str, float]:
    """The counter increments for one call: its tokens, and its cost when known (unknown is counted, not zero)."""
    counts = {
        f"{prefix}calls": 1,
        f"{prefix}input_tokens": sum(u.input_tokens for u in usages),
        f"{prefix}output_tokens": sum(u.output_tokens for u in usages),
    }
    if cost_usd is None:
        counts[f"{prefix}calls_cost_unknown"] = 1
    else:
        counts[f"{prefix}cost_usd"] = cost_usd
        counts[f"{prefix}priced"] = 1
    return counts


def _read_bucket(counters: dict[str, float], prefix: str) -> dict[str, Any]:
    entry = _bucket()
    for field in BUCKET_FIELDS:
        value = counters.get(prefix + field, 0.0)
        entry[field] = value if field == "cost_usd" else round(value)
    return entry


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
    """Totals for the delegate://usage resource, as counters in the store; every method blocks (store I/O)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def start(self) -> None:
        """Note when counting began (once per store); call at start-up."""
        if self._store.get(KIND, "since") is None:
            self._store.put(KIND, "since", {"time": datetime.now(UTC).isoformat(timespec="seconds")})

    def _add(self, counts: dict[str, float], owner: str | None) -> None:
        """Add to the totals, and to the caller's own on a server with named callers."""
        self._store.add_counts(KIND, KEY, counts)
        if owner is not None:
            self._store.add_counts(KIND, f"{KEY}@{owner}", counts)

    def record(self, result: DelegateResult | None, premium_cost_usd: float | None, owner: str | None = None) -> None:
        """Count one call (of `owner`, on a server with named callers): a result, or None for a call that failed."""
        if result is None:
            self._add({"calls": 1, "errors": 1}, owner)
            return
        usage = result.usage
        counts = {
            "calls": 1.0,
            **_add(f"specialist/{result.specialist}/", [usage.router, usage.specialist], usage.total_cost_usd),
        }
        if premium_cost_usd is not None and usage.total_cost_usd is not None:
            counts.update(priced_actual=usage.total_cost_usd, priced_premium=premium_cost_usd)
        counts.update(_cascade_counts(result))
        self._add(counts, owner)

    def record_cancelled(self, owner: str | None = None) -> None:
        """Count a call the client cancelled before it had an answer."""
        self._add({"calls": 1, "cancelled": 1}, owner)

    def record_unanswered(self, router: CallUsage, owner: str | None = None) -> None:
        """Add what routing cost a call that then got no answer (every model failed, or it was cancelled)."""
        if router.input_tokens or router.output_tokens or router.cost_usd:
            self._add(_add("unanswered/", [router], router.cost_usd), owner)

    def snapshot(self, owner: str | None = None) -> dict[str, Any]:
        """The totals as JSON-ready data: everyone's, or (given an owner) that caller's own."""
        counters = self._store.counts(KIND, KEY if owner is None else f"{KEY}@{owner}")
        since = (self._store.get(KIND, "since") or {}).get("time")
        names = sorted({field.split("/")[1] for field in counters if field.startswith("specialist/")})
        per_specialist = {name: _read_bucket(counters, f"specialist/{name}/") for name in names}
        unanswered = _read_bucket(counters, "unanswered/")
        total = _bucket()
        for entry in [*per_specialist.values(), unanswered]:
            for field in ("input_tokens", "output_tokens", "cost_usd", "priced", "calls_cost_unknown"):
                total[field] += entry[field]
        premium = counters.get("priced_premium", 0.0)
        saving = premium - counters.get("priced_actual", 0.0)
        return {
            "since": since,
            "calls": round(counters.get("calls", 0)),
            "errors": round(counters.get("errors", 0)),
            "cancelled": round(counters.get("cancelled", 0)),
            "input_tokens": total["input_tokens"],
            "output_tokens": total["output_tokens"],
            "cost_usd": _shown(total)["cost_usd"],
            "calls_cost_unknown": total["calls_cost_unknown"],
            "per_specialist": {name: _shown(entry) for name, entry in per_specialist.items()},
            "unanswered": _shown(unanswered),
            "always_premium_usd": round(premium, 8),
            "saving_usd": round(saving, 8),
            "saving": round(saving / premium, 4) if premium else None,
            "cascade": _cascade_totals(counters),
            "note": NOTE,
            **({"caller": owner} if owner is not None else {}),
        }


def _cascade_counts(result: DelegateResult) -> dict[str, float]:
    """A cascade's counters: calls, escalated calls, verifier spend, and the saving against its last model."""
    cascade = result.usage.cascade
    if cascade is None:
        return {}
    counts = {"cascade/calls": 1.0, "cascade/escalated": 1.0 if result.escalations else 0.0}
    counts["cascade/verifier_usd"] = cascade.verifier.cost_usd or 0.0
    if cascade.always_last_usd is not None and cascade.saving_usd is not None:
        counts.update({"cascade/always_last_usd": cascade.always_last_usd, "cascade/saving_usd": cascade.saving_usd})
    return counts


def _cascade_totals(counters: dict[str, float]) -> dict[str, Any] | None:
    """delegate://usage's cascade figures; None when no cascade has answered."""
    calls = round(counters.get("cascade/calls", 0))
    if not calls:
        return None
    always, saving = counters.get("cascade/always_last_usd", 0.0), counters.get("cascade/saving_usd", 0.0)
    return {
        "calls": calls,
        "escalated": round(counters.get("cascade/escalated", 0)),
        "verifier_cost_usd": round(counters.get("cascade/verifier_usd", 0.0), 8),
        "always_last_usd": round(always, 8),
        "saving_usd": round(saving, 8),
        "saving": round(saving / always, 4) if always else None,
    }

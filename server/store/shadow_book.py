"""Shadow verdicts kept in the store: counters per candidate (so every server on one Redis pools them, and a
restart loses none) and one document per verdict (the task's text only when DELEGATE_LOG_TASKS allows it)."""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

from server.store.base import JSON, Store

KIND, INDEX = "shadow", "candidates"
VERDICTS = "shadow-verdict"
TTL_DAYS = 90
"""How long one verdict's document is kept; the counters are kept for good."""


def candidate_key(specialist: str, model: str) -> str:
    """The counters' key for one candidate of one specialist."""
    return f"{specialist}={model}"


class ShadowBook:
    """Shadow verdicts and skips; every method blocks (store I/O): call from a worker thread in async code."""

    def __init__(self, store: Store, ttl_days: float = TTL_DAYS) -> None:
        self._store = store
        self._ttl_s = ttl_days * 86_400

    def keep(self, key: str, verdict: JSON, task: str, include_task: bool) -> None:
        """Count one verdict for its candidate and keep its document."""
        counts: dict[str, float] = {"samples": 1, verdict["outcome"]: 1}
        judge = verdict.get("judge_cost_usd")
        counts["judge_cost_usd"] = judge or 0.0
        live, candidate = verdict.get("live_cost_usd"), verdict.get("candidate_cost_usd")
        if live is not None and candidate is not None:
            counts.update(priced=1, live_cost_usd=live, candidate_cost_usd=candidate)
        self._count(key, counts)
        document = {**verdict, "candidate": key, "at": time.time()}
        document["task_sha256"] = hashlib.sha256(task.encode()).hexdigest()
        if include_task:
            document["task"] = task
        self._store.put(VERDICTS, uuid.uuid4().hex, document, ttl_s=self._ttl_s)

    def skipped(self, key: str, why: str, cost_usd: float | None = None) -> None:
        """Count a sampled call that was not judged: busy, budget, or failed (what it cost is still counted)."""
        self._count(key, {f"skipped_{why}": 1, "judge_cost_usd": cost_usd or 0.0})

    def _count(self, key: str, counts: dict[str, float]) -> None:
        self._store.add_counts(KIND, key, counts)
        self._store.add_counts(KIND, INDEX, {key: 1})

    def totals(self) -> dict[str, dict[str, float]]:
        """Every candidate's counters, by key."""
        return {key: self._store.counts(KIND, key) for key in sorted(self._store.counts(KIND, INDEX))}

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest verdict documents, newest first (damaged ones left out)."""
        return [document for _, document in self._store.recent(VERDICTS, limit) if document is not None]

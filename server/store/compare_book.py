"""The answers and verdicts of `compare` runs, kept in the store (SQLite or Redis) so a rerun after a crash, a
Ctrl-C or a new candidate pays only for what is missing. Each is keyed by a hash of what produced it."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from server.store.base import JSON, Store

ANSWERS, VERDICTS = "compare-answer", "compare-verdict"
TTL_DAYS = 90
"""How long a kept answer or verdict is reused; afterwards it is asked again."""
KEY_VERSION = 1
"""Raised when what goes into a key changes meaning, so older entries are not mistaken for current ones."""


def content_key(parts: dict[str, Any]) -> str:
    """A stable key for everything that decides an answer or a verdict (SHA-256 of its canonical JSON)."""
    text = json.dumps({"v": KEY_VERSION, **parts}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class CompareBook:
    """Kept answers and verdicts; every method blocks (store I/O): call from a worker thread in async code."""

    def __init__(self, store: Store, ttl_days: float = TTL_DAYS) -> None:
        self._store = store
        self._ttl_s = ttl_days * 86_400

    def answer(self, key: str) -> JSON | None:
        """A kept answer: text, input_tokens, output_tokens, cost_usd, latency_ms, model."""
        return self._store.get(ANSWERS, key)

    def keep_answer(self, key: str, answer: JSON) -> None:
        """Keep an answer that was paid for."""
        self._store.put(ANSWERS, key, answer, ttl_s=self._ttl_s)

    def verdict(self, key: str) -> JSON | None:
        """A kept verdict: outcome, reason, orders, cost_usd."""
        return self._store.get(VERDICTS, key)

    def keep_verdict(self, key: str, verdict: JSON) -> None:
        """Keep a verdict that was paid for."""
        self._store.put(VERDICTS, key, verdict, ttl_s=self._ttl_s)

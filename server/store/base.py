"""The Store protocol: the one interface to shared state (threads, jobs, feedback, budget, usage, cooldowns)."""

from __future__ import annotations

import json
from typing import Any, Protocol

from server.errors import StoreError

JSON = dict[str, Any]


class Store(Protocol):
    """Documents with optional expiry, atomic money ledgers and counters; SQLite or Redis behind it.

    Every method may raise StoreError. Methods are blocking: call them from a worker thread in async code.
    """

    location: str
    """Where the state lives, safe to print (a path, or a Redis URL without its password)."""

    def get(self, kind: str, key: str) -> JSON | None:
        """The document stored under (kind, key), or None when missing or expired."""
        ...

    def put(self, kind: str, key: str, value: JSON, ttl_s: float | None = None) -> None:
        """Store a document, replacing any earlier one; it expires after ttl_s seconds when given."""
        ...

    def delete(self, kind: str, key: str) -> bool:
        """Remove a document; True when it existed."""
        ...

    def recent(self, kind: str, limit: int = 50) -> list[tuple[str, JSON]]:
        """Up to `limit` live documents of a kind, the most recently written first."""
        ...

    def reserve(self, ledger: str, amount: float, limit: float) -> float | None:
        """Atomically add `amount` to a ledger if the total stays within `limit`; the new total, or None."""
        ...

    def settle(self, ledger: str, delta: float) -> float:
        """Atomically add `delta` (negative to release a reservation) to a ledger; the new total."""
        ...

    def total(self, ledger: str) -> float:
        """A ledger's total (0 when it has none)."""
        ...

    def add_counts(self, kind: str, key: str, counts: dict[str, float]) -> None:
        """Atomically add to named counters (usage totals)."""
        ...

    def counts(self, kind: str, key: str) -> dict[str, float]:
        """The counters under (kind, key)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def decode_document(raw: str, location: str, fix: str) -> JSON:
    """A stored document from its JSON text; StoreError naming the store (and how to fix it) when it is damaged."""
    try:
        value = json.loads(raw)
    except ValueError:
        raise StoreError(f"{location}: a stored document is not valid JSON. {fix}") from None
    if not isinstance(value, dict):
        raise StoreError(f"{location}: a stored document is not a JSON object. {fix}")
    return value

"""The Store protocol: the one interface to shared state (threads, jobs, feedback, budget, usage, cooldowns)."""

from __future__ import annotations

import json
from typing import Any, Protocol

from server.errors import DamagedDocumentError

JSON = dict[str, Any]


class Store(Protocol):
    """Documents with optional expiry, atomic money ledgers and counters; SQLite or Redis behind it.

    Every method may raise StoreError. Methods are blocking: call them from a worker thread in async code.
    """

    location: str
    """Where the state lives, safe to print (a path, or a Redis URL without its password)."""

    def get(self, kind: str, key: str, owner: str | None = None) -> JSON | None:
        """The document stored under (kind, key), or None when missing or expired; given an owner, also None when
        the document is not that owner's (so another caller's document looks exactly like a missing one)."""
        ...

    def put(self, kind: str, key: str, value: JSON, ttl_s: float | None = None, owner: str | None = None) -> None:
        """Store a document, replacing any earlier one; it expires after ttl_s seconds when given. `owner` is the
        caller it belongs to on a server with named callers (None: no owner, as on a server with one caller)."""
        ...

    def delete(self, kind: str, key: str) -> bool:
        """Remove a document; True when it existed."""
        ...

    def recent(self, kind: str, limit: int = 50, owner: str | None = None) -> list[tuple[str, JSON | None]]:
        """Up to `limit` live documents of a kind, the most recently written first (given an owner, only that
        owner's); None for a damaged one (its key is still listed, so it can be named and deleted)."""
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


def decode_document(raw: str, location: str, kind: str, key: str) -> JSON:
    """A stored document from its JSON text; DamagedDocumentError naming it when it is not a JSON object."""
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise DamagedDocumentError(location, kind, key)
    return value


def decode_or_none(raw: str, location: str, kind: str, key: str) -> JSON | None:
    """As decode_document, but None for a damaged document: one bad row never fails a listing."""
    try:
        return decode_document(raw, location, kind, key)
    except DamagedDocumentError:
        return None

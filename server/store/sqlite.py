"""The default store: one SQLite file in the data directory, private to the user, safe across processes."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from server.errors import StoreError
from server.store.base import JSON, decode_document, decode_or_none
from server.store.lock_owner import describe_holder

STORE_NAME = "state.sqlite3"
OPEN_WAIT_S = 2.0
"""How long opening waits for a lock: another delegate-mcp holds one for milliseconds; longer means something else
holds it (an open `BEGIN EXCLUSIVE` in the sqlite3 shell), and start-up says so instead of hanging."""
BUSY_WAIT_S = 30.0
"""How long a write waits for another process's transaction once serving."""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    kind TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, updated REAL NOT NULL, expires REAL, owner TEXT,
    PRIMARY KEY (kind, key)
);
CREATE INDEX IF NOT EXISTS documents_recent ON documents (kind, updated);
CREATE TABLE IF NOT EXISTS ledgers (name TEXT PRIMARY KEY, amount REAL NOT NULL);
CREATE TABLE IF NOT EXISTS counters (
    kind TEXT NOT NULL, key TEXT NOT NULL, field TEXT NOT NULL, amount REAL NOT NULL,
    PRIMARY KEY (kind, key, field)
);
"""


class SQLiteStore:
    """A Store on one SQLite file (WAL mode; each write is one transaction, so processes can share it)."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.location = str(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._connection = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Created private before SQLite opens it: threads hold users' tasks and answers. An existing file is not
            # opened here: closing any descriptor of it would drop every POSIX lock this process holds on it.
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
            os.chmod(self.path, 0o600)
            connection = sqlite3.connect(self.path, timeout=OPEN_WAIT_S, check_same_thread=False, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL syncs at checkpoints, not on every commit: the file stays consistent after a
            # crash, and a call's several small writes stop paying one fsync each (0.2 ms here, ms on laptops).
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.executescript(_SCHEMA)
            _add_owners(connection)
            problems = [row[0] for row in connection.execute("PRAGMA quick_check")]
            bad = connection.execute("SELECT name, amount FROM ledgers").fetchall()
            connection.execute("BEGIN IMMEDIATE")  # can it be written? (a write lock someone keeps would stall calls)
            connection.execute("ROLLBACK")
            connection.execute(f"PRAGMA busy_timeout = {int(BUSY_WAIT_S * 1000)}")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc):
                raise self._locked() from None
            raise StoreError(f"{self.path}: cannot open the state store ({_reason(exc)}). {_FIX}") from None
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.path}: cannot open the state store ({_reason(exc)}). {_FIX}") from None
        if problems != ["ok"]:
            raise StoreError(f"{self.path}: the state store is damaged ({problems[0]}). {_FIX}")
        damaged = [name for name, amount in bad if not _is_amount(amount)]
        if damaged:
            raise StoreError(f"{self.path}: ledger {damaged[0]!r} holds an impossible amount. {_FIX}")
        return connection

    def _locked(self) -> StoreError:
        return StoreError(
            f"{self.path}: the state store is locked for writing by {describe_holder(self.path)}, and stayed locked "
            f"for {OPEN_WAIT_S:g} s. End that process's transaction (or stop it), or point DELEGATE_STORE "
            "elsewhere, then start again. Nothing was changed."
        )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: the write lock is taken up front, so read-modify-write is atomic."""
        with self._lock:
            try:
                self._connection.execute("BEGIN IMMEDIATE")
                try:
                    yield self._connection
                except BaseException:
                    self._connection.execute("ROLLBACK")
                    raise
                self._connection.execute("COMMIT")
            except sqlite3.Error as exc:
                held = f"; it is locked by {describe_holder(self.path)}" if "locked" in str(exc) else ""
                raise StoreError(f"{self.path}: cannot write the state store ({_reason(exc)}{held}).") from None

    def _now(self) -> float:
        return self._clock()

    def get(self, kind: str, key: str, owner: str | None = None) -> JSON | None:
        """The document stored under (kind, key), or None when missing or expired (or, with `owner`, not theirs)."""
        mine, args = _owned(owner)
        with self._transaction() as db:
            row = db.execute(
                f"SELECT value FROM documents WHERE kind = ? AND key = ? AND (expires IS NULL OR expires > ?){mine}",
                (kind, key, self._now(), *args),
            ).fetchone()
        return decode_document(row[0], self.location, kind, key) if row else None

    def put(self, kind: str, key: str, value: JSON, ttl_s: float | None = None, owner: str | None = None) -> None:
        """Store a document, replacing any earlier one; it expires after ttl_s seconds when given; `owner` is the
        caller it belongs to (get and recent given an owner see only that owner's documents)."""
        now = self._now()
        expires = now + ttl_s if ttl_s is not None else None
        with self._transaction() as db:
            db.execute("DELETE FROM documents WHERE expires IS NOT NULL AND expires <= ?", (now,))
            db.execute(
                "INSERT OR REPLACE INTO documents (kind, key, value, updated, expires, owner) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (kind, key, json.dumps(value, ensure_ascii=False), now, expires, owner),
            )

    def delete(self, kind: str, key: str) -> bool:
        """Remove a document; True when it existed."""
        with self._transaction() as db:
            return db.execute("DELETE FROM documents WHERE kind = ? AND key = ?", (kind, key)).rowcount > 0

    def recent(self, kind: str, limit: int = 50, owner: str | None = None) -> list[tuple[str, JSON | None]]:
        """Up to `limit` live documents of a kind (only `owner`'s when given), the most recently written first; None
        for a damaged one."""
        mine, args = _owned(owner)
        with self._transaction() as db:
            rows = db.execute(
                f"SELECT key, value FROM documents WHERE kind = ? AND (expires IS NULL OR expires > ?){mine} "
                "ORDER BY updated DESC LIMIT ?",
                (kind, self._now(), *args, limit),
            ).fetchall()
        return [(key, decode_or_none(value, self.location, kind, key)) for key, value in rows]

    def reserve(self, ledger: str, amount: float, limit: float) -> float | None:
        """Atomically add `amount` to a ledger if the total stays within `limit`; the new total, or None."""
        with self._transaction() as db:
            total = _ledger(db, ledger) + amount
            if total > limit:
                return None
            db.execute("INSERT OR REPLACE INTO ledgers (name, amount) VALUES (?, ?)", (ledger, total))
        return total

    def settle(self, ledger: str, delta: float) -> float:
        """Atomically add `delta` (negative to release a reservation) to a ledger; the new total."""
        with self._transaction() as db:
            total = max(0.0, _ledger(db, ledger) + delta)
            db.execute("INSERT OR REPLACE INTO ledgers (name, amount) VALUES (?, ?)", (ledger, total))
        return total

    def total(self, ledger: str) -> float:
        """A ledger's total (0 when it has none)."""
        with self._transaction() as db:
            return _ledger(db, ledger)

    def add_counts(self, kind: str, key: str, counts: dict[str, float]) -> None:
        """Atomically add to named counters (usage totals)."""
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO counters (kind, key, field, amount) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (kind, key, field) DO UPDATE SET amount = amount + excluded.amount",
                [(kind, key, field, float(amount)) for field, amount in counts.items()],
            )

    def counts(self, kind: str, key: str) -> dict[str, float]:
        """The counters under (kind, key)."""
        with self._transaction() as db:
            rows = db.execute("SELECT field, amount FROM counters WHERE kind = ? AND key = ?", (kind, key))
            return {field: amount for field, amount in rows.fetchall()}

    def close(self) -> None:
        """Release the connection."""
        with self._lock:
            self._connection.close()


_FIX = "Move the file aside (nothing was changed) or point DELEGATE_STORE elsewhere, then start again."


def _add_owners(connection: sqlite3.Connection) -> None:
    """Give a store made before callers had owners its owner column (its documents stay the only caller's)."""
    columns = {row[1] for row in connection.execute("PRAGMA table_info(documents)")}
    if "owner" not in columns:
        connection.execute("ALTER TABLE documents ADD COLUMN owner TEXT")
    connection.execute("CREATE INDEX IF NOT EXISTS documents_owned ON documents (kind, owner, updated)")


def _owned(owner: str | None) -> tuple[str, tuple[str, ...]]:
    """The SQL condition (and its argument) keeping only an owner's documents; none when owner is None."""
    return ("", ()) if owner is None else (" AND owner = ?", (owner,))


def _reason(exc: Exception) -> str:
    return str(exc) or exc.__class__.__name__


def _is_amount(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value < 1e9


def _ledger(db: sqlite3.Connection, name: str) -> float:
    row = db.execute("SELECT amount FROM ledgers WHERE name = ?", (name,)).fetchone()
    return float(row[0]) if row else 0.0

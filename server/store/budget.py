"""The daily spend budget: a small ledger file, locked so restarts and parallel servers share it."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from server.errors import BudgetExceededError

LEDGER_NAME = "spend.json"


def default_data_dir(environ: Mapping[str, str]) -> Path:
    """The user's data directory for delegate-mcp, per platform convention."""
    home = Path(environ.get("HOME") or Path.home())
    if sys.platform == "win32":
        return Path(environ.get("LOCALAPPDATA") or home / "AppData" / "Local") / "delegate-mcp"
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "delegate-mcp"
    return Path(environ.get("XDG_DATA_HOME") or home / ".local" / "share") / "delegate-mcp"


def today() -> str:
    """The budget day: the UTC date, so every process agrees when it resets."""
    return datetime.now(UTC).date().isoformat()


@contextmanager
def _locked(path: Path) -> Iterator[IO[str]]:
    """Open the ledger with an exclusive lock held for the whole read-modify-write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as handle:
        if sys.platform == "win32":
            import msvcrt

            msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        handle.seek(0)
        yield handle


def _read(handle: IO[str]) -> float:
    """Today's spend from an open ledger; a missing, corrupt or old ledger counts as nothing spent."""
    try:
        data = json.loads(handle.read() or "{}")
    except ValueError:
        return 0.0
    if not isinstance(data, dict) or data.get("day") != today():
        return 0.0
    spent = data.get("spent_usd")
    return float(spent) if isinstance(spent, (int, float)) else 0.0


class DailyBudget:
    """A USD limit per UTC day; check() before a call, add() after it."""

    def __init__(self, limit_usd: float, data_dir: Path) -> None:
        self.limit_usd = limit_usd
        self.path = data_dir / LEDGER_NAME

    def spent(self) -> float:
        """What has been spent today, in USD."""
        with _locked(self.path) as handle:
            return _read(handle)

    def check(self) -> None:
        """Raise when today's spend has reached the limit."""
        spent = self.spent()
        if spent >= self.limit_usd:
            raise BudgetExceededError(
                f"The daily budget is spent: ${spent:.4f} of ${self.limit_usd:.2f} today (UTC). No provider was "
                "called. Raise DELEGATE_DAILY_BUDGET_USD or wait for 00:00 UTC."
            )

    def add(self, cost_usd: float) -> float:
        """Record a call's cost; returns today's new total."""
        with _locked(self.path) as handle:
            total = _read(handle) + cost_usd
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"day": today(), "spent_usd": round(total, 8)}))
            handle.flush()
            os.fsync(handle.fileno())
        return total

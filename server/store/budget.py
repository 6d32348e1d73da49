"""The daily spend budget: a ledger per UTC day in the store; each call reserves its worst case, then settles."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from server.errors import BudgetExceededError, StoreError
from server.store.base import Store

LEGACY_LEDGER = "spend.json"
"""The JSON ledger of earlier versions; today's spend in it is carried into the store once."""
CARRIED_SUFFIX = ".carried-over"
MAX_AMOUNT_USD = 1e9


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


def ledger_name(day: str) -> str:
    """The store ledger holding one UTC day's spend."""
    return f"budget:{day}"


@dataclass
class Reservation:
    """Money set aside for one call before any provider is called; settled with the real cost afterwards."""

    ledger: str
    amount_usd: float
    spent_usd: float = 0.0
    """The call's known cost so far (router and specialist), added as each is paid."""


class DailyBudget:
    """A USD limit per UTC day, shared by every process using the same store."""

    def __init__(self, limit_usd: float, store: Store, legacy_dir: Path | None = None) -> None:
        self.limit_usd = limit_usd
        self.store = store
        if legacy_dir is not None:
            carry_over(store, legacy_dir / LEGACY_LEDGER)

    def spent(self) -> float:
        """What has been spent (or is reserved by calls in flight) today, in USD."""
        return self.store.total(ledger_name(today()))

    def reserve(self, worst_case_usd: float, keep_usd: float = 0.0) -> Reservation:
        """Set aside a call's worst-case cost atomically; refuse the call when it does not fit today's budget
        (less `keep_usd`, which shadow runs leave to live calls)."""
        ledger = ledger_name(today())
        amount = max(0.0, worst_case_usd)
        spent = self.store.total(ledger)
        limit = self.limit_usd - keep_usd
        granted = self.store.reserve(ledger, amount, limit) if spent < limit else None
        if granted is None:
            spent = self.store.total(ledger)
            left = max(0.0, self.limit_usd - spent)
            raise BudgetExceededError(
                f"The daily budget cannot cover this call: ${spent:.4f} of {_limit(self.limit_usd)} is spent or "
                f"reserved today (UTC), ${left:.4f} is left, and this call could cost up to ${amount:.4f} (its "
                "input and output cap at the priciest model it may use). No provider was called. Send less context, "
                "lower max_output_tokens, raise DELEGATE_DAILY_BUDGET_USD or wait for 00:00 UTC."
            )
        return Reservation(ledger, amount)

    def settle(self, reservation: Reservation) -> float:
        """Replace the reservation by the call's real cost (releasing the difference); today's new total."""
        return self.store.settle(reservation.ledger, reservation.spent_usd - reservation.amount_usd)


def _limit(usd: float) -> str:
    """A limit as people wrote it: $5.00, $0.50, but $0.001 rather than $0.00."""
    return f"${usd:.2f}" if round(usd, 2) == usd else f"${usd:.4f}"


def carry_over(store: Store, path: Path) -> None:
    """Move today's spend from an old JSON ledger into the store, once; the old file is renamed, never deleted."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path}: cannot read the old spend ledger ({exc.__class__.__name__}). {_FIX}") from None
    day, spent = _parse_legacy(raw, path)
    carried = spent if day == today() else 0.0
    if carried:
        store.settle(ledger_name(today()), carried)
    try:
        # Of several processes starting together, only the one whose rename wins keeps its carry-over.
        os.rename(path, path.with_name(path.name + CARRIED_SUFFIX))
    except FileNotFoundError:
        if carried:
            store.settle(ledger_name(today()), -carried)
    except OSError as exc:
        raise StoreError(f"{path}: cannot rename the old spend ledger ({exc.__class__.__name__}). {_FIX}") from None


def _parse_legacy(raw: str, path: Path) -> tuple[str | None, float]:
    try:
        data = json.loads(raw or "{}")
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise StoreError(f"{path}: the old spend ledger is not a JSON object. {_FIX}")
    if not data:
        return None, 0.0
    day, spent = data.get("day"), data.get("spent_usd")
    if (
        not isinstance(day, str)
        or isinstance(spent, bool)
        or not isinstance(spent, (int, float))
        or not math.isfinite(spent)
        or not 0 <= spent < MAX_AMOUNT_USD
    ):
        raise StoreError(f"{path}: the old spend ledger holds an impossible day or amount. {_FIX}")
    return day, float(spent)


_FIX = "Fix or move the file aside (nothing was changed), then start again."

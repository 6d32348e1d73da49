"""The state store: documents with expiry, atomic ledgers, counters, privacy and damage checks (real SQLite)."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from server.errors import StoreError
from server.store.sqlite import SQLiteStore
from tests.test_console_script import run_cli


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_documents_round_trip_and_expire(tmp_path: Path) -> None:
    clock = FakeClock()
    store = SQLiteStore(tmp_path / "state.sqlite3", clock=clock)
    store.put("thread", "a", {"title": "first"}, ttl_s=60)
    store.put("thread", "b", {"title": "second"})
    assert store.get("thread", "a") == {"title": "first"}
    assert [key for key, _ in store.recent("thread")] == ["b", "a"]
    clock.now += 61
    assert store.get("thread", "a") is None
    assert [key for key, _ in store.recent("thread")] == ["b"]
    assert store.delete("thread", "b") and not store.delete("thread", "b")


def test_state_survives_reopening_and_the_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "data" / "state.sqlite3"
    SQLiteStore(path).put("thread", "a", {"turns": [1, 2]})
    assert SQLiteStore(path).get("thread", "a") == {"turns": [1, 2]}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_concurrent_reservations_never_pass_the_limit(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.sqlite3")
    granted: list[float] = []

    def reserve() -> None:
        if store.reserve("budget:today", 0.0003, 0.001) is not None:
            granted.append(0.0003)

    threads = [threading.Thread(target=reserve) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == 3
    assert store.total("budget:today") == pytest.approx(0.0009)
    assert store.settle("budget:today", -0.0002) == pytest.approx(0.0007)


def test_counters_add_up(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.sqlite3")
    store.add_counts("usage", "coder", {"calls": 1, "cost_usd": 0.5})
    store.add_counts("usage", "coder", {"calls": 1, "cost_usd": 0.25})
    assert store.counts("usage", "coder") == {"calls": 2, "cost_usd": 0.75}


def test_a_damaged_file_is_reported_with_its_path_not_reset(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=str(path)):
        SQLiteStore(path)
    assert path.read_bytes().startswith(b"this is not a database")


def test_the_delegator_owns_one_store_in_its_data_dir(make_delegator: Callable[..., Any], tmp_path: Path) -> None:
    delegator = make_delegator(data_dir=tmp_path / "mine")
    delegator.store.put("note", "k", {"v": 1})
    assert delegator.store.location == str(tmp_path / "mine" / "state.sqlite3")
    assert SQLiteStore(tmp_path / "mine" / "state.sqlite3").get("note", "k") == {"v": 1}


def test_the_server_refuses_to_start_on_a_damaged_store(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    path.write_bytes(b"garbage" * 1000)
    completed = run_cli("specialists", env={**os.environ, "DELEGATE_DATA_DIR": str(tmp_path)})
    assert completed.returncode == 2
    assert f"{path}: " in completed.stderr and "Traceback" not in completed.stderr

"""The state store: documents with expiry, atomic ledgers, counters, privacy and damage checks (real SQLite)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from server.errors import StoreError
from server.store.base import Store
from server.store.redis_store import RedisStore, safe_location
from server.store.sqlite import SQLiteStore
from tests.simulator import ProviderSimulator
from tests.test_console_script import run_cli


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each shared behaviour is checked on both stores: a real SQLite file and a real redis-server."""
    opened: Store = (
        SQLiteStore(tmp_path / "state.sqlite3")
        if request.param == "sqlite"
        else RedisStore(request.getfixturevalue("redis_url"))
    )
    yield opened
    opened.close()


def test_documents_round_trip_and_expire_with_a_fake_clock(tmp_path: Path) -> None:
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


def test_documents_round_trip_list_newest_first_and_expire(store: Store) -> None:
    store.put("thread", "a", {"title": "first", "text": "héllo"}, ttl_s=0.5)
    store.put("thread", "b", {"title": "second"})
    store.put("job", "x", {"status": "running"})
    assert store.get("thread", "a") == {"title": "first", "text": "héllo"}
    assert store.get("thread", "missing") is None
    assert [key for key, _ in store.recent("thread")] == ["b", "a"]
    assert store.recent("thread", limit=1) == [("b", {"title": "second"})]
    give_up = time.monotonic() + 15
    while store.get("thread", "a") is not None and time.monotonic() < give_up:
        time.sleep(0.1)
    assert store.get("thread", "a") is None
    assert [key for key, _ in store.recent("thread")] == ["b"]
    store.put("thread", "b", {"title": "replaced"})
    assert store.get("thread", "b") == {"title": "replaced"}
    assert store.delete("thread", "b") and not store.delete("thread", "b")
    assert store.recent("thread") == [] and store.recent("job") == [("x", {"status": "running"})]


def test_recent_skips_expired_documents_and_still_fills_the_limit(store: Store) -> None:
    for number in range(5):
        store.put("thread", f"old{number}", {"n": number})
    for number in range(3):
        store.put("thread", f"short{number}", {"n": number}, ttl_s=0.3)
    time.sleep(0.6)
    assert [key for key, _ in store.recent("thread", limit=4)] == ["old4", "old3", "old2", "old1"]


def test_state_survives_reopening_and_the_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "data" / "state.sqlite3"
    SQLiteStore(path).put("thread", "a", {"turns": [1, 2]})
    assert SQLiteStore(path).get("thread", "a") == {"turns": [1, 2]}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_concurrent_reservations_never_pass_the_limit(store: Store) -> None:
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


def test_counters_add_up(store: Store) -> None:
    assert store.counts("usage", "coder") == {}
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


def test_a_ledger_reservation_settles_and_never_goes_below_zero(store: Store) -> None:
    assert store.total("budget:day") == 0
    assert store.reserve("budget:day", 0.4, 1.0) == pytest.approx(0.4)
    assert store.reserve("budget:day", 0.7, 1.0) is None
    assert store.settle("budget:day", -0.1) == pytest.approx(0.3)
    assert store.settle("budget:day", -5) == 0
    assert store.total("budget:other") == 0


def test_redis_location_never_shows_the_password() -> None:
    assert safe_location("redis://:s3cret@cache.internal:6380/2") == "redis://cache.internal:6380/2"
    assert safe_location("rediss://app:s3cret@[::1]:6380/0") == "rediss://app@[::1]:6380/0"
    assert safe_location("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_an_unreachable_redis_stops_start_up_naming_the_url_without_password(tmp_path: Path) -> None:
    from tests.conftest import free_port

    url = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/3"
    completed = run_cli("specialists", env={**os.environ, "DELEGATE_STORE": url})
    assert completed.returncode == 2
    assert f"redis://127.0.0.1:{url.rsplit(':', 1)[1]}" in completed.stderr
    assert "hunter2" not in completed.stderr + completed.stdout and "Traceback" not in completed.stderr


def test_a_redis_ledger_with_garbage_stops_start_up(redis_url: str) -> None:
    import redis

    for garbage in ("garbage", "nan", "1e308", "-3"):
        with redis.Redis.from_url(redis_url) as client:
            client.set("delegate:ledger:budget:2026-01-01", garbage)
        with pytest.raises(StoreError, match="impossible amount"):
            RedisStore(redis_url)
    completed = run_cli("specialists", env={**os.environ, "DELEGATE_STORE": redis_url})
    assert completed.returncode == 2 and "impossible amount" in completed.stderr and redis_url in completed.stderr
    with redis.Redis.from_url(redis_url) as client:
        assert client.get("delegate:ledger:budget:2026-01-01") == b"-3"  # left as it was, never reset


def test_a_thread_written_by_one_redis_client_is_read_by_another(redis_url: str) -> None:
    RedisStore(redis_url).put("thread", "t1", {"turns": 2}, ttl_s=60)
    assert RedisStore(redis_url).get("thread", "t1") == {"turns": 2}


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_usage_totals_survive_a_restart_and_add_up_across_servers(
    make_delegator: Callable[..., Any], request: pytest.FixtureRequest, tmp_path: Path, kind: str
) -> None:
    where = str(tmp_path / "shared.sqlite3") if kind == "sqlite" else request.getfixturevalue("redis_url")
    first = make_delegator(store=where)
    await first.ask("coder", "one")
    first.close()
    second, third = make_delegator(store=where), make_delegator(store=where)  # a restart, and a second server
    await second.ask("writer", "two")
    await third.ask("coder", "three")
    usage = third.usage.snapshot()
    assert usage["calls"] == 3 and usage["errors"] == 0 and usage["since"]
    assert {name: entry["calls"] for name, entry in usage["per_specialist"].items()} == {"coder": 2, "writer": 1}
    assert usage["input_tokens"] > 0 and second.usage.snapshot()["calls"] == 3


async def test_a_dead_model_found_by_one_server_is_skipped_by_every_server_on_redis(
    make_delegator: Callable[..., Any], sim: ProviderSimulator, redis_url: str
) -> None:
    sim.enqueue("sim-coder", hang=True)
    finder = make_delegator(store=redis_url, cooldown_s=30, first_token_timeout_s=0.5)
    other = make_delegator(store=redis_url, cooldown_s=30, first_token_timeout_s=0.5)
    found = await finder.ask("coder", "a")
    assert found.model == "openai/sim-backup" and (found.attempts[0].error or "").startswith("timed out")
    result = await other.ask("coder", "b")
    assert (result.attempts[0].error or "").startswith("skipped: cooling down")
    assert result.model == "openai/sim-backup" and sim.count("sim-coder") == 1


async def test_without_redis_cooldowns_stay_in_each_process(
    make_delegator: Callable[..., Any], sim: ProviderSimulator, tmp_path: Path
) -> None:
    sim.enqueue("sim-coder", hang=True)
    where = str(tmp_path / "shared.sqlite3")
    finder = make_delegator(store=where, cooldown_s=30, first_token_timeout_s=0.5)
    other = make_delegator(store=where, cooldown_s=30, first_token_timeout_s=0.5)
    await finder.ask("coder", "a")
    assert (await other.ask("coder", "b")).model == "openai/sim-coder"
    assert sim.count("sim-coder") == 2


LOCK_HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
"""


@contextmanager
def write_lock_held(path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process keeping the store locked for writing, as an open `BEGIN EXCLUSIVE` in the sqlite3 shell."""
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("existing", [True, False], ids=["existing store", "new store"])
def test_a_locked_store_fails_fast_naming_the_path_and_who_holds_it(tmp_path: Path, existing: bool) -> None:
    path = tmp_path / "state.sqlite3"
    if existing:
        SQLiteStore(path).close()
    with write_lock_held(path) as holder, pytest.raises(StoreError) as locked:
        SQLiteStore(path)
    message = str(locked.value)
    assert message.startswith(f"{path}: ") and "locked for writing" in message and "DELEGATE_STORE" in message
    if Path("/proc/locks").exists():
        assert f"process {holder.pid} (" in message, message


@pytest.mark.subprocess
def test_the_server_stops_at_once_on_a_locked_store(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    SQLiteStore(path).close()
    with write_lock_held(path):
        completed = run_cli("threads", env={**os.environ, "DELEGATE_DATA_DIR": str(tmp_path)})
    assert completed.returncode == 2, completed.stderr
    assert str(path) in completed.stderr and "locked for writing" in completed.stderr
    assert "Traceback" not in completed.stderr

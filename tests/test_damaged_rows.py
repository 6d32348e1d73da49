"""One damaged row in the store is skipped and named; it never fails a listing or becomes an "internal error"."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from server.app import build_server
from server.delegation import Delegator
from server.errors import StoreError
from server.jobs import KIND as JOB_KIND
from server.store.base import Store
from server.store.redis_store import RedisStore
from server.store.sqlite import STORE_NAME, SQLiteStore
from server.threads import KIND as THREAD_KIND
from server.threads import ThreadBook, Turn
from tests.test_console_script import run_cli

HEALTHY, DAMAGED = "th_0000000000000001", "th_0000000000000002"


def damage(store: Store, kind: str, key: str, raw: str) -> None:
    """Overwrite one stored document with raw text, as a bad disk or a hand edit would."""
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path) as db:
            db.execute("UPDATE documents SET value = ? WHERE kind = ? AND key = ?", (raw, kind, key))
    else:
        import redis

        with redis.Redis.from_url(store_url(store)) as client:
            client.set(f"delegate:doc:{kind}:{key}", raw)


def store_url(store: Store) -> str:
    return store.location  # the test Redis has no password, so its location is its URL


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened: Store = (
        SQLiteStore(tmp_path / STORE_NAME)
        if request.param == "sqlite"
        else RedisStore(request.getfixturevalue("redis_url"))
    )
    yield opened
    opened.close()


def two_threads(store: Store) -> ThreadBook:
    book = ThreadBook(store, ttl_days=30, max_chars=100_000)
    for thread_id in (HEALTHY, DAMAGED):
        book.append(thread_id, Turn(task=f"task of {thread_id}", answer="ok", specialist="coder", model="m", at=1.0))
    return book


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", json.dumps({"id": DAMAGED, "turns": "no"})])
def test_a_damaged_thread_is_named_in_the_listing_and_the_rest_are_listed(store: Store, raw: str) -> None:
    book = two_threads(store)
    damage(store, THREAD_KIND, DAMAGED, raw)
    listed = {thread.id: thread for thread in book.recent()}
    assert set(listed) == {HEALTHY, DAMAGED}
    assert listed[HEALTHY].title == f"task of {HEALTHY}" and not listed[HEALTHY].damaged
    summary = listed[DAMAGED].summary()
    assert summary["damaged"] is True and f"delegate-mcp threads delete {DAMAGED}" in summary["title"]
    with pytest.raises(StoreError, match=f"threads delete {DAMAGED}") as opened:
        book.load(DAMAGED)
    assert "aside" not in str(opened.value), "the advice names the one thread, not the whole store"
    assert book.delete(DAMAGED)
    assert [thread.id for thread in book.recent()] == [HEALTHY]


def test_the_threads_command_lists_around_a_damaged_thread(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / STORE_NAME)
    two_threads(store)
    damage(store, THREAD_KIND, DAMAGED, "{not json")
    env = {**os.environ, "DELEGATE_DATA_DIR": str(tmp_path)}
    listed = run_cli("threads", env=env)
    assert listed.returncode == 0, listed.stderr
    assert HEALTHY in listed.stdout and f"delegate-mcp threads delete {DAMAGED}" in listed.stdout
    as_json = run_cli("threads", "--json", env=env)
    assert as_json.returncode == 0 and {t["thread_id"] for t in json.loads(as_json.stdout)} == {HEALTHY, DAMAGED}
    assert "Traceback" not in listed.stderr + as_json.stderr


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_threads_resource_lists_around_a_damaged_thread(
    make_delegator: Callable[..., Delegator], anyio_backend: str
) -> None:
    delegator = make_delegator()
    two_threads(delegator.store)
    damage(delegator.store, THREAD_KIND, DAMAGED, "{not json")
    async with Client(build_server(delegator)) as session:
        listed = json.loads((await session.read_resource("delegate://threads")).contents[0].text)
    assert {t["thread_id"]: t.get("damaged", False) for t in listed} == {HEALTHY: False, DAMAGED: True}


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize(
    "record",
    [
        {"status": "running", "instance": "elsewhere", "heartbeat": "yesterday", "result": {}},
        {"status": "done", "instance": "elsewhere", "heartbeat": 1.0, "result": {"output": 5}},
        "{not json",
    ],
)
async def test_a_damaged_job_record_is_a_clear_error_not_an_internal_one(
    make_delegator: Callable[..., Delegator], anyio_backend: str, record: Any
) -> None:
    delegator = make_delegator()
    job_id = "job-00000000000000aa"
    delegator.store.put(JOB_KIND, job_id, {"status": "running"})
    damage(delegator.store, JOB_KIND, job_id, record if isinstance(record, str) else json.dumps(record))
    async with Client(build_server(delegator)) as session:
        result = await session.call_tool("delegate_result", {"job_id": job_id})
    text = result.content[0].text
    assert result.is_error and "internal error" not in text
    assert f"job {job_id}'s record" in text and "damaged" in text and "start the task again" in text

"""Callers on a shared HTTP server: named tokens, each caller seeing only its own threads, jobs, remembered calls and
usage, feedback only from callers allowed to give it; one token (or stdio) keeps the one all-seeing caller."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from server.callers import ONLY, Caller, FeedbackNotAllowedError, UnknownCallerError, caller_for, named_tokens
from server.callers import serving as serving_as
from server.delegation import Delegator
from server.errors import ConfigError, UnknownJobError, UnknownThreadError
from server.settings import Settings
from server.store.base import Store
from server.store.redis_store import RedisStore
from server.store.sqlite import SQLiteStore
from tests.conftest import route_to
from tests.simulator import ProviderSimulator
from tests.test_console_script import script, server_env
from tests.test_http import free_port

pytestmark = pytest.mark.anyio
ALICE, BOB = Caller("alice", feedback=True), Caller("bob", feedback=False)
ALICE_TOKEN, BOB_TOKEN = "alice-token-0123456789", "bob-token-0123456789ab"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened: Store = (
        SQLiteStore(tmp_path / "state.sqlite3")
        if request.param == "sqlite"
        else RedisStore(request.getfixturevalue("redis_url"))
    )
    yield opened
    opened.close()


def test_a_store_keeps_each_owners_documents_apart_and_the_unowned_view_sees_all(store: Store) -> None:
    store.put("thread", "t-old", {"n": 0})  # from before callers, or the one caller of a single-token server
    store.put("thread", "t-a", {"n": 1}, owner="alice")
    store.put("thread", "t-b", {"n": 2}, owner="bob")
    assert store.get("thread", "t-a", "alice") == {"n": 1}
    assert store.get("thread", "t-a", "bob") is None and store.get("thread", "t-old", "bob") is None
    assert store.get("thread", "t-a") == {"n": 1}  # the one caller (stdio, the CLI) sees every document
    assert [key for key, _ in store.recent("thread", 10, "alice")] == ["t-a"]
    assert [key for key, _ in store.recent("thread", 10, "bob")] == ["t-b"]
    assert [key for key, _ in store.recent("thread", 10)] == ["t-b", "t-a", "t-old"]
    store.put("thread", "t-a", {"n": 3}, owner="bob")  # rewritten under another owner: alice no longer sees it
    assert store.recent("thread", 10, "alice") == [] and store.get("thread", "t-a", "alice") is None
    assert store.delete("thread", "t-b") and [key for key, _ in store.recent("thread", 10, "bob")] == ["t-a"]


def test_a_sqlite_store_from_before_callers_gains_owners_and_keeps_its_documents(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    with sqlite3.connect(path) as old:
        old.execute(
            "CREATE TABLE documents (kind TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, "
            "updated REAL NOT NULL, expires REAL, PRIMARY KEY (kind, key))"
        )
        old.execute("INSERT INTO documents VALUES ('thread', 'th_old', '{\"n\": 1}', 1.0, NULL)")
    store = SQLiteStore(path)
    assert store.get("thread", "th_old") == {"n": 1} and store.get("thread", "th_old", "alice") is None
    store.put("thread", "th_new", {"n": 2}, owner="alice")
    assert [key for key, _ in store.recent("thread", 10, "alice")] == ["th_new"]
    store.close()


def test_named_tokens_are_read_from_the_setting_and_the_file_and_never_echoed(tmp_path: Path) -> None:
    file = tmp_path / "tokens"
    file.write_text(f"# callers\nalice: {ALICE_TOKEN} feedback\n\ncarol: carol-token-0123456789\n")
    settings = Settings(http_tokens=f"bob={BOB_TOKEN}", http_tokens_file=file, feedback_callers="carol")
    tokens = named_tokens(settings)
    assert tokens is not None and tokens.names == ["bob", "alice", "carol"]
    assert tokens.identify(ALICE_TOKEN.encode()) == Caller("alice", True)
    assert tokens.identify(BOB_TOKEN.encode()) == Caller("bob", False)
    assert tokens.identify(b"carol-token-0123456789") == Caller("carol", True)
    assert tokens.identify(ALICE_TOKEN[:-1].encode()) is None and tokens.identify(b"") is None
    assert named_tokens(Settings(http_token="x" * 16)) is None  # one token: the one caller, as before
    bad = [
        Settings(http_tokens=f"bob={BOB_TOKEN}", http_token="y" * 16),
        Settings(http_tokens="bob=short-secret"),
        Settings(http_tokens=f"bob={BOB_TOKEN},robert={BOB_TOKEN}"),
        Settings(http_tokens=BOB_TOKEN),
        Settings(http_tokens=f"bob={BOB_TOKEN}", feedback_callers="dave"),
    ]
    for settings in bad:
        with pytest.raises(ConfigError) as refused:
            named_tokens(settings)
        assert BOB_TOKEN not in str(refused.value) and "short-secret" not in str(refused.value)
    file.write_text(f"alice {ALICE_TOKEN}\n")
    with pytest.raises(ConfigError, match="line 1: expected `name: token`") as refused:
        named_tokens(Settings(http_tokens_file=file))
    assert ALICE_TOKEN not in str(refused.value)


@pytest.fixture
async def shared(
    make_delegator: Callable[..., Delegator], request: pytest.FixtureRequest, sim: ProviderSimulator
) -> AsyncIterator[Delegator]:
    """A server's Delegator (SQLite, or Redis when parametrized so), feedback on, the router choosing writer."""
    sim.set_default("sim-router", route_to("writer", 0.6))
    overrides: dict[str, Any] = {"feedback": True, "deadline_s": 30}
    if getattr(request, "param", "sqlite") == "redis":
        overrides["store"] = request.getfixturevalue("redis_url")
    delegator = make_delegator(**overrides)
    yield delegator
    await delegator.jobs.aclose()
    delegator.close()


@pytest.mark.parametrize("shared", ["sqlite", "redis"], indirect=True)
async def test_a_caller_cannot_see_or_continue_another_callers_thread(shared: Delegator) -> None:
    mine = await shared.delegate("Draft a note about the offsite, password hunter2", caller=ALICE)
    assert mine.thread_id
    with pytest.raises(UnknownThreadError) as theirs:
        await shared.delegate("Go on", thread_id=mine.thread_id, caller=BOB)
    with pytest.raises(UnknownThreadError) as none:
        await shared.delegate("Go on", thread_id="th_00000000000000ff", caller=BOB)
    assert str(theirs.value).replace(mine.thread_id, "ID") == str(none.value).replace("th_00000000000000ff", "ID")
    assert shared.threads is not None
    assert [t.id for t in shared.threads.recent(50, BOB.owner)] == []
    assert [t.id for t in shared.threads.recent(50, ALICE.owner)] == [mine.thread_id]
    with pytest.raises(UnknownThreadError):
        shared.threads.load(mine.thread_id, BOB.owner)
    follow = await shared.delegate("Go on", thread_id=mine.thread_id, caller=ALICE)
    assert follow.thread_id == mine.thread_id
    assert [t.id for t in shared.threads.recent(50)] == [mine.thread_id]  # the one caller's view: everything


@pytest.mark.parametrize("shared", ["sqlite", "redis"], indirect=True)
async def test_another_callers_job_is_an_unknown_job_and_cannot_be_cancelled(
    shared: Delegator, sim: ProviderSimulator
) -> None:
    sim.enqueue("sim-writer", "".join(f"part {i:02d} " for i in range(10)), chunk_delay=0.2)
    job_id = (await shared.ask("writer", "An essay", background=True, caller=ALICE)).job_id
    assert job_id
    with pytest.raises(UnknownJobError) as theirs:
        await shared.job_result(job_id, cancel=True, caller=BOB)
    with pytest.raises(UnknownJobError) as none:
        await shared.job_result("job-00000000000000ff", caller=BOB)
    assert str(theirs.value).replace(job_id, "ID") == str(none.value).replace("job-00000000000000ff", "ID")
    assert shared.store.get("job-cancel", job_id) is None  # bob's cancel wrote nothing
    done = await shared.job_result(job_id, wait_s=20, caller=ALICE)
    assert done.status == "done" and done.output.startswith("part 00")
    with pytest.raises(UnknownJobError):  # finished and read from the store: still alice's only
        await shared.jobs.result(job_id, owner=BOB.owner)


async def test_a_cached_routing_decision_never_tells_one_caller_what_another_sent(
    shared: Delegator, sim: ProviderSimulator
) -> None:
    task = "Something about the quarterly numbers"
    first = await shared.delegate(task, caller=ALICE)
    bobs = await shared.delegate(task, caller=BOB)
    again = await shared.delegate(task, caller=ALICE)
    assert not first.routing.reason.startswith("cached") and not bobs.routing.reason.startswith("cached")
    assert again.routing.reason.startswith("cached") and sim.count("sim-router") == 2


async def test_usage_counts_each_callers_own_calls_and_the_totals_count_all(shared: Delegator) -> None:
    await shared.delegate("Write a haiku about rain", caller=ALICE)
    await shared.delegate("Write a haiku about snow", caller=ALICE)
    await shared.delegate("Write a haiku about wind", caller=BOB)
    alice, bob, everyone = (shared.usage.snapshot(owner) for owner in ("alice", "bob", None))
    assert (alice["calls"], bob["calls"], everyone["calls"]) == (2, 1, 3)
    assert alice["caller"] == "alice" and "caller" not in everyone
    assert alice["per_specialist"]["writer"]["calls"] == 2


async def test_feedback_comes_only_from_callers_allowed_to_give_it_and_on_their_own_calls(shared: Delegator) -> None:
    bobs = await shared.delegate("Something about the quarterly numbers", caller=BOB)
    with pytest.raises(FeedbackNotAllowedError, match="DELEGATE_FEEDBACK_CALLERS"):
        await shared.give_feedback(call_id=bobs.call_id, good=False, should_be="coder", caller=BOB)
    from server.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="is remembered"):  # alice may correct, but not bob's calls
        await shared.give_feedback(call_id=bobs.call_id, good=False, should_be="coder", caller=ALICE)
    alices = await shared.delegate("Something about the yearly numbers", caller=ALICE)
    correction = await shared.give_feedback(call_id=alices.call_id, good=False, should_be="coder", caller=ALICE)
    assert correction.caller == "alice" and shared.corrections() == [correction]
    by_thread = await shared.give_feedback(thread_id=alices.thread_id, turn=1, good=True, caller=ONLY)
    assert by_thread.should_be == "writer"  # the one caller (stdio, the CLI) may correct any call


def serving(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """delegate-mcp --transport http on a free port with this environment; the process and its /mcp URL."""
    port = free_port()
    process = subprocess.Popen(
        [script(), "--transport", "http", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    return process, f"http://127.0.0.1:{port}/mcp"


async def as_caller(url: str, token: str, steps: Callable[[Client], Awaitable[Any]]) -> Any:
    """Run `steps` in an MCP session that sends this bearer token."""
    http = httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=60)
    async with Client(streamable_http_client(url, http_client=http), mode="legacy") as session:
        return await steps(session)


def text_of(result: Any) -> str:
    return result.contents[0].text


@pytest.mark.subprocess
def test_over_http_each_named_caller_sees_only_its_own_threads_usage_and_feedback_rights(
    sim: ProviderSimulator, specialists_dir: Path, tmp_path: Path
) -> None:
    tokens = tmp_path / "callers"
    tokens.write_text(f"alice: {ALICE_TOKEN} feedback\nbob: {BOB_TOKEN}\n")
    env = server_env(sim, specialists_dir, DELEGATE_HTTP_TOKENS_FILE=str(tokens), DELEGATE_FEEDBACK="on")
    sim.set_default("sim-router", route_to("writer", 0.6))
    process, url = serving(env)
    try:

        async def alice_starts(session: Client) -> dict[str, Any]:
            result = await session.call_tool("delegate", {"task": "Draft a note about the offsite, password hunter2"})
            return result.structured_content

        mine = anyio.run(as_caller, url, ALICE_TOKEN, alice_starts)

        async def bob_looks(session: Client) -> dict[str, Any]:
            listing = json.loads(text_of(await session.read_resource("delegate://threads")))
            follow = await session.call_tool("delegate", {"task": "Go on", "thread_id": mine["thread_id"]})
            try:
                await session.read_resource(f"delegate://threads/{mine['thread_id']}")
                transcript = "read"
            except MCPError as exc:
                transcript = str(exc)
            feedback = await session.call_tool("feedback", {"call_id": mine["call_id"], "good": True})
            usage = json.loads(text_of(await session.read_resource("delegate://usage")))
            return {
                "listing": listing,
                "follow": follow,
                "transcript": transcript,
                "feedback": feedback,
                "usage": usage,
            }

        bob = anyio.run(as_caller, url, BOB_TOKEN, bob_looks)

        async def alice_looks(session: Client) -> dict[str, Any]:
            listing = json.loads(text_of(await session.read_resource("delegate://threads")))
            transcript = json.loads(text_of(await session.read_resource(f"delegate://threads/{mine['thread_id']}")))
            feedback = await session.call_tool("feedback", {"call_id": mine["call_id"], "good": True})
            usage = json.loads(text_of(await session.read_resource("delegate://usage")))
            return {"listing": listing, "transcript": transcript, "feedback": feedback, "usage": usage}

        alice = anyio.run(as_caller, url, ALICE_TOKEN, alice_looks)
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
    assert bob["listing"] == [] and "hunter2" not in json.dumps(bob["listing"])
    assert bob["follow"].is_error and "Unknown thread_id" in bob["follow"].content[0].text
    assert "hunter2" not in bob["transcript"] and "Unknown thread_id" in bob["transcript"]
    assert bob["feedback"].is_error and "may not correct routing" in bob["feedback"].content[0].text
    assert bob["usage"]["calls"] == 1 and bob["usage"]["caller"] == "bob"  # its refused follow-up
    assert [t["thread_id"] for t in alice["listing"]] == [mine["thread_id"]]
    assert "hunter2" in alice["transcript"]["turns"][0]["task"]
    assert not alice["feedback"].is_error, alice["feedback"].content[0].text
    assert alice["usage"]["calls"] == 1 and alice["usage"]["caller"] == "alice"
    assert process.stderr is not None and ALICE_TOKEN.encode() not in process.stderr.read()


def test_a_request_without_a_caller_is_refused_on_a_server_with_named_callers_and_is_the_one_caller_elsewhere() -> None:
    named = Settings(transport="http", http_tokens=f"bob={BOB_TOKEN}")
    with pytest.raises(UnknownCallerError, match="send your bearer token"):
        caller_for(named)  # fail closed: never the all-seeing one caller
    with serving_as(BOB):
        assert caller_for(named) == BOB
    assert caller_for(Settings(transport="http", http_token="x" * 16)) == ONLY
    assert caller_for(Settings(http_tokens=f"bob={BOB_TOKEN}")) == ONLY  # stdio is one caller


async def test_the_operators_decision_log_names_each_lines_caller(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, tmp_path: Path
) -> None:
    sim.set_default("sim-router", route_to("writer", 0.6))
    delegator = make_delegator(decision_log=tmp_path / "decisions.jsonl")
    await delegator.delegate("Write a haiku about rain", caller=ALICE)
    await delegator.delegate("Write a haiku about snow")
    lines = [json.loads(line) for line in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    assert [line.get("caller") for line in lines] == ["alice", None]

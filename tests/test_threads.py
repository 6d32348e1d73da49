"""Conversations: follow-ups see earlier turns, threads move between specialists, trim to fit, persist and expire."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from server.app import build_server
from server.delegation import Delegator
from server.store.sqlite import SQLiteStore
from server.threads import Thread, ThreadBook, Turn, bound_thread, trim_history
from tests.conftest import route_to
from tests.simulator import ProviderSimulator
from tests.test_console_script import run_cli, script, server_env
from tests.test_http import TOKEN, http_url  # noqa: F401  (a fixture)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def call(delegator: Delegator, tool: str, arguments: dict[str, Any]) -> Any:
    async with Client(build_server(delegator)) as session:
        return await session.call_tool(tool, arguments)


def turn(task: str, answer: str = "ok", context: str = "", **extra: Any) -> Turn:
    return Turn(task=task, context=context, answer=answer, specialist="coder", model="m", at=0.0, **extra)


async def test_a_follow_up_sees_the_first_turn_as_earlier_messages(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    delegator = make_delegator()
    sim.enqueue("sim-coder", "def add(a, b): return a + b")
    first = await call(delegator, "ask_coder", {"task": "Write add()", "context": "style: terse"})
    thread_id = first.structured_content["thread_id"]
    assert thread_id and thread_id.startswith("th_")
    assert first.content[0].text.endswith(f"· thread {thread_id}"), "the summary line names the thread"
    sim.enqueue("sim-coder", "def test_add(): assert add(1, 2) == 3")
    second = await call(delegator, "ask_coder", {"task": "Now add tests", "thread_id": thread_id})
    assert not second.is_error
    assert second.structured_content["thread_id"] == thread_id
    assert second.structured_content["thread_trimmed"] is False
    assert sim.calls("sim-coder")[1]["messages"] == [
        {"role": "system", "content": "You are the coder."},
        {"role": "user", "content": "<context>\nstyle: terse\n</context>\n\nWrite add()"},
        {"role": "assistant", "content": "def add(a, b): return a + b"},
        {"role": "user", "content": "Now add tests"},
    ]


async def test_a_follow_up_sees_the_files_of_earlier_turns_as_they_were_read(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "app.py").write_text("print('v1')\n")
    delegator = make_delegator({"DELEGATE_FILE_ROOTS": str(project)})
    sim.enqueue("sim-coder", "It prints v1.")
    first = (await call(delegator, "ask_coder", {"task": "Explain", "files": ["app.py"]})).structured_content
    (project / "app.py").write_text("print('v2')\n")  # changed since: the thread keeps what the specialist saw
    sim.enqueue("sim-coder", "Use logging.")
    await call(delegator, "ask_coder", {"task": "Improve it", "thread_id": first["thread_id"]})
    earlier = sim.calls("sim-coder")[1]["messages"][1]["content"]
    assert "app.py" in earlier and "print('v1')" in earlier and "v2" not in earlier
    assert delegator.threads is not None
    saved = delegator.threads.load(first["thread_id"]).turns[0]
    assert [(f.path, f.chars) for f in saved.files] == [(read["path"], read["chars"]) for read in first["files"]]


async def test_each_turn_is_routed_afresh_and_the_new_specialist_gets_the_history(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    delegator = make_delegator()
    sim.enqueue("sim-router", route_to("coder"))
    sim.enqueue("sim-coder", "def slugify(s): ...")
    first = (await call(delegator, "delegate", {"task": "Implement slugify in Python"})).structured_content
    sim.enqueue("sim-router", route_to("writer"))
    sim.enqueue("sim-writer", "Slugify turns titles into URL-safe names.")
    second = await call(delegator, "delegate", {"task": "Write release notes for it", "thread_id": first["thread_id"]})
    data = second.structured_content
    assert (first["specialist"], data["specialist"]) == ("coder", "writer")
    assert data["thread_id"] == first["thread_id"]
    router_prompt = json.dumps(sim.calls("sim-router")[1]["messages"])
    assert "Write release notes" in router_prompt and "def slugify" not in router_prompt, "the router sees the new task"
    writer_messages = sim.calls("sim-writer")[0]["messages"]
    assert [m["role"] for m in writer_messages] == ["system", "user", "assistant", "user"]
    assert writer_messages[0]["content"] == "You are the writer."
    assert writer_messages[1:3] == [
        {"role": "user", "content": "Implement slugify in Python"},
        {"role": "assistant", "content": "def slugify(s): ..."},
    ]


async def test_history_too_big_for_the_window_drops_old_context_first(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, specialists_dir: Path
) -> None:
    coder = specialists_dir / "coder.md"
    text = coder.read_text().replace("openai/sim-coder", "openai/gpt-4").replace("sim-backup", "gpt-4-0613")
    coder.write_text(text)  # both models have 8,192-token windows
    delegator = make_delegator()
    old_log = "old log line\n" * 1_500  # about 19,500 characters, 5,600 tokens
    sim.enqueue("gpt-4", "The crash comes from the parser.")
    first = (await call(delegator, "ask_coder", {"task": "Why does it crash?", "context": old_log})).structured_content
    assert first["thread_trimmed"] is False
    new_log = "new log line\n" * 1_000
    sim.enqueue("gpt-4", "Now it is the lexer.")
    second = await call(
        delegator, "ask_coder", {"task": "And now?", "context": new_log, "thread_id": first["thread_id"]}
    )
    assert second.structured_content["thread_trimmed"] is True
    assert second.content[0].text.endswith("(older material left out)")
    messages = sim.calls("gpt-4")[1]["messages"]
    assert len(messages) == 4, "the earlier task and answer stay; only its context went"
    assert "old log line" not in messages[1]["content"] and "Why does it crash?" in messages[1]["content"]
    assert "left out to save space" in messages[1]["content"]
    assert messages[2]["content"] == "The crash comes from the parser."
    assert "new log line" in messages[3]["content"], "this turn's own context is never dropped"


async def test_the_history_counts_toward_the_window_aware_model_choice(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, specialists_dir: Path
) -> None:
    coder = specialists_dir / "coder.md"
    text = coder.read_text().replace("openai/sim-coder", "openai/gpt-4").replace("sim-backup", "gpt-3.5-turbo")
    coder.write_text(text)  # an 8,192-token primary, a 16,385-token fallback
    delegator = make_delegator()
    sim.enqueue("gpt-4", "Parser.")
    first = await call(delegator, "ask_coder", {"task": "Why?", "context": "old log line\n" * 1_500})
    sim.enqueue("gpt-3.5-turbo", "Lexer.")
    second = await call(
        delegator,
        "ask_coder",
        {"task": "And now?", "context": "new log line\n" * 1_000, "thread_id": first.structured_content["thread_id"]},
    )
    data = second.structured_content
    assert (data["model"], data["thread_trimmed"]) == ("openai/gpt-3.5-turbo", False)
    assert data["attempts"][0]["error"].startswith("skipped: input is about"), "the history overflows gpt-4"
    assert "old log line" in sim.calls("gpt-3.5-turbo")[0]["messages"][1]["content"]


async def test_an_unknown_thread_is_an_error_naming_it_with_no_provider_call(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    delegator = make_delegator()
    for tool in ("delegate", "ask_writer"):
        result = await call(delegator, tool, {"task": "continue", "thread_id": "th_0123456789abcdef"})
        assert result.is_error
        assert "Unknown thread_id 'th_0123456789abcdef'" in result.content[0].text
    bad = await call(delegator, "delegate", {"task": "continue", "thread_id": "../../etc/passwd"})
    assert bad.is_error and "is not a thread id" in bad.content[0].text
    wrong_type = await call(delegator, "delegate", {"task": "continue", "thread_id": 7})
    assert wrong_type.is_error and "'thread_id' must be a string" in wrong_type.content[0].text
    assert sim.history == []


async def test_a_thread_survives_a_new_server_on_the_same_data_dir(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.enqueue("sim-writer", "Draft one.")
    first = (await call(make_delegator(), "ask_writer", {"task": "Draft a haiku"})).structured_content
    sim.enqueue("sim-writer", "Draft two.")
    restarted = make_delegator()
    second = await call(restarted, "ask_writer", {"task": "Shorter", "thread_id": first["thread_id"]})
    assert not second.is_error
    assert sim.calls("sim-writer")[1]["messages"][2] == {"role": "assistant", "content": "Draft one."}


async def test_an_expired_thread_is_unknown(make_delegator: Callable[..., Delegator], sim: ProviderSimulator) -> None:
    delegator = make_delegator(thread_ttl_days=1.5 / 86_400)  # 1.5 seconds
    sim.enqueue("sim-writer", "Draft one.")
    first = (await call(delegator, "ask_writer", {"task": "Draft a haiku"})).structured_content
    await anyio.sleep(2)
    result = await call(delegator, "ask_writer", {"task": "Shorter", "thread_id": first["thread_id"]})
    assert result.is_error and "expired" in result.content[0].text
    assert sim.count("sim-writer") == 1


async def test_threads_off_stores_nothing_and_returns_no_thread_id(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    delegator = make_delegator({"DELEGATE_THREADS": "off"})
    sim.enqueue("sim-writer", "Draft one.")
    result = await call(delegator, "ask_writer", {"task": "Draft a haiku"})
    assert result.structured_content["thread_id"] is None
    assert "thread" not in result.content[0].text.splitlines()[-1]
    assert delegator.store.recent("thread") == []
    refused = await call(delegator, "ask_writer", {"task": "Shorter", "thread_id": "th_0123456789abcdef"})
    assert refused.is_error and "DELEGATE_THREADS=off" in refused.content[0].text
    assert sim.count("sim-writer") == 1


async def test_concurrent_turns_on_one_thread_are_all_kept(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    delegator = make_delegator()
    sim.set_default("sim-coder", "fine")
    first = await delegator.ask("coder", "Start")
    assert first.thread_id is not None

    async def follow_up(number: int) -> None:
        await delegator.ask("coder", f"Follow-up {number}", thread_id=first.thread_id)

    async with anyio.create_task_group() as group:
        for number in range(8):
            group.start_soon(follow_up, number)
    assert delegator.threads is not None
    thread = delegator.threads.load(first.thread_id)
    assert sorted(t.task for t in thread.turns) == sorted(["Start", *(f"Follow-up {n}" for n in range(8))])


async def test_threads_resources_list_recent_threads_and_serve_transcripts(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    delegator = make_delegator()
    sim.enqueue("sim-coder", "code")
    sim.enqueue("sim-writer", "prose")
    async with Client(build_server(delegator)) as session:
        first = (await session.call_tool("ask_coder", {"task": "Write  a\nparser"})).structured_content
        await session.call_tool("ask_writer", {"task": "Document it", "thread_id": first["thread_id"]})
        uris = {str(r.uri) for r in (await session.list_resources()).resources}
        templates = {t.uri_template for t in (await session.list_resource_templates()).resource_templates}
        listing = json.loads((await session.read_resource("delegate://threads")).contents[0].text)
        transcript = json.loads(
            (await session.read_resource(f"delegate://threads/{first['thread_id']}")).contents[0].text
        )
        with pytest.raises(Exception, match="Unknown thread_id"):
            await session.read_resource("delegate://threads/th_0000000000000000")
    assert "delegate://threads" in uris and "delegate://threads/{thread_id}" in templates
    assert listing == [
        {
            "thread_id": first["thread_id"],
            "title": "Write a parser",
            "turns": 2,
            "specialists": ["coder", "writer"],
            "created": listing[0]["created"],
            "updated": listing[0]["updated"],
        }
    ]
    assert [(t["task"], t["answer"], t["specialist"]) for t in transcript["turns"]] == [
        ("Write  a\nparser", "code", "coder"),
        ("Document it", "prose", "writer"),
    ]


async def test_a_store_that_cannot_be_written_keeps_the_answer_with_a_warning(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, tmp_path: Path
) -> None:
    delegator = make_delegator()
    delegator.store.close()  # every later write fails, as on a full disk or a revoked permission
    sim.enqueue("sim-writer", "Paid-for answer.")
    result = await call(delegator, "ask_writer", {"task": "Draft a haiku"})
    assert not result.is_error
    data = result.structured_content
    assert data["output"] == "Paid-for answer." and data["thread_id"] is None
    assert data["warnings"] and "not saved" in data["warnings"][0]


def test_trimming_drops_material_oldest_first_then_whole_turns() -> None:
    turns = [turn("t1", context="a" * 50), turn("t2", context="b" * 50), turn("t3")]
    size = lambda kept: sum(t.chars() for t in kept)  # noqa: E731
    kept, trimmed = trim_history(turns, lambda kept: size(kept) <= 70)
    assert trimmed and [t.context for t in kept] == ["", "b" * 50, ""] and kept[0].material_dropped
    kept, trimmed = trim_history(turns, lambda kept: size(kept) <= 10)
    assert trimmed and [t.task for t in kept] == ["t2", "t3"] and not kept[0].context
    assert trim_history(turns, lambda kept: True) == (turns, False)


def test_a_thread_is_bounded_by_its_max_chars_keeping_the_newest_turn() -> None:
    thread = Thread(id="th_x", created=0, updated=0, turns=[turn(f"t{n}", answer="x" * 100) for n in range(5)])
    bounded = bound_thread(thread, 350)
    assert [t.task for t in bounded.turns] == ["t2", "t3", "t4"] and bounded.dropped_turns == 2
    assert bounded.summary()["turns"] == 5
    huge = Thread(id="th_x", created=0, updated=0, turns=[turn("only", context="c" * 1000)])
    assert bound_thread(huge, 100).turns[0].context == "", "an oversized newest turn keeps its task and answer"


def test_thread_book_append_applies_the_bound_and_the_ttl(tmp_path: Path) -> None:
    now = [1000.0]
    store = SQLiteStore(tmp_path / "state.sqlite3", clock=lambda: now[0])
    book = ThreadBook(store, ttl_days=1, max_chars=250, clock=lambda: now[0])
    for number in range(4):
        book.append("th_a", turn(f"t{number}", answer="y" * 100))
    assert [t.task for t in book.load("th_a").turns] == ["t2", "t3"]
    now[0] += 86_401
    assert book.get("th_a") is None
    assert (tmp_path / "state.sqlite3").stat().st_mode & 0o777 == 0o600


def thread_of(stderr: str) -> str:
    found = re.search(r"· thread (th_[0-9a-f]+)", stderr)
    assert found, stderr
    return found.group(1)


@pytest.mark.subprocess
def test_the_command_line_continues_lists_shows_and_deletes_threads(
    sim: ProviderSimulator, specialists_dir: Path
) -> None:
    env = server_env(sim, specialists_dir)
    sim.enqueue("sim-writer", "Autumn wind / a fox / crosses the road")
    first = run_cli("ask", "--specialist", "writer", "Write a haiku about a fox", env=env)
    assert first.returncode == 0, first.stderr
    thread_id = thread_of(first.stderr)
    sim.enqueue("sim-writer", "Fox / road")
    second = run_cli("ask", "--specialist", "writer", "--thread", thread_id, "Shorter", env=env)
    assert (second.returncode, second.stdout.strip(), thread_of(second.stderr)) == (0, "Fox / road", thread_id)
    assert sim.calls("sim-writer")[1]["messages"][2]["content"] == "Autumn wind / a fox / crosses the road"

    listing = run_cli("threads", env=env)
    assert listing.returncode == 0 and thread_id in listing.stdout and "Write a haiku about a fox" in listing.stdout
    shown = run_cli("threads", "show", thread_id, env=env)
    assert shown.returncode == 0 and "Turn 2 · writer" in shown.stdout and "Fox / road" in shown.stdout
    as_json = json.loads(run_cli("threads", "show", thread_id, "--json", env=env).stdout)
    assert [t["task"] for t in as_json["turns"]] == ["Write a haiku about a fox", "Shorter"]
    assert run_cli("threads", "delete", thread_id, env=env).returncode == 0
    gone = run_cli("threads", "show", thread_id, env=env)
    assert gone.returncode == 1 and f"Unknown thread_id '{thread_id}'" in gone.stderr
    refused = run_cli("ask", "--thread", thread_id, "Again", env=env)
    assert refused.returncode == 1 and "Unknown thread_id" in refused.stderr
    assert sim.count("sim-writer") == 2 and sim.count("sim-router") == 0
    assert json.loads(run_cli("threads", "--json", env=env).stdout) == []


@pytest.mark.subprocess
async def test_a_thread_started_over_stdio_continues_in_a_new_server_process(
    sim: ProviderSimulator, specialists_dir: Path
) -> None:
    params = StdioServerParameters(command=script(), env=server_env(sim, specialists_dir))
    sim.enqueue("sim-coder", "v1")
    async with Client(params, mode="legacy") as session:
        first = (await session.call_tool("ask_coder", {"task": "Write v1"})).structured_content
    sim.enqueue("sim-coder", "v2")
    async with Client(params) as session:  # a restarted server, on the newer protocol
        second = await session.call_tool("ask_coder", {"task": "Now v2", "thread_id": first["thread_id"]})
    assert not second.is_error and second.structured_content["thread_id"] == first["thread_id"]
    assert [m["content"] for m in sim.calls("sim-coder")[1]["messages"][1:]] == ["Write v1", "v1", "Now v2"]


@pytest.mark.subprocess
def test_a_follow_up_over_http(http_url: str, sim: ProviderSimulator) -> None:  # noqa: F811
    async def conversation() -> list[Any]:
        client = httpx2.AsyncClient(headers={"authorization": f"Bearer {TOKEN}"}, timeout=30)
        async with Client(streamable_http_client(http_url, http_client=client)) as session:
            first = await session.call_tool("ask_writer", {"task": "Name a colour"})
            thread_id = first.structured_content["thread_id"]
            second = await session.call_tool("ask_writer", {"task": "Another", "thread_id": thread_id})
            listing = await session.read_resource("delegate://threads")
        return [first.structured_content, second.structured_content, json.loads(listing.contents[0].text)]

    sim.enqueue("sim-writer", "Teal")
    sim.enqueue("sim-writer", "Ochre")
    first, second, listing = anyio.run(conversation)
    assert second["thread_id"] == first["thread_id"] and second["output"] == "Ochre"
    assert sim.calls("sim-writer")[1]["messages"][2] == {"role": "assistant", "content": "Teal"}
    assert listing[0]["thread_id"] == first["thread_id"] and listing[0]["turns"] == 2


@pytest.mark.subprocess
def test_a_thread_started_on_one_process_continues_on_another_sharing_redis(
    sim: ProviderSimulator, specialists_dir: Path, redis_url: str, tmp_path: Path
) -> None:
    one = server_env(sim, specialists_dir, DELEGATE_STORE=redis_url, DELEGATE_DATA_DIR=str(tmp_path / "one"))
    two = server_env(sim, specialists_dir, DELEGATE_STORE=redis_url, DELEGATE_DATA_DIR=str(tmp_path / "two"))
    sim.enqueue("sim-writer", "A fox.")
    first = run_cli("ask", "--specialist", "writer", "Name an animal", env=one)
    assert first.returncode == 0, first.stderr
    thread_id = thread_of(first.stderr)
    sim.enqueue("sim-writer", "A heron.")
    second = run_cli("ask", "--specialist", "writer", "--thread", thread_id, "Another", env=two)
    assert second.returncode == 0, second.stderr
    assert sim.calls("sim-writer")[1]["messages"][2] == {"role": "assistant", "content": "A fox."}
    assert thread_id in run_cli("threads", env=one).stdout

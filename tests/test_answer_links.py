"""Big answers by link, and job polls that carry only what is new (through a real MCP client session)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import Implementation

from server.app import build_server
from server.delegation import Delegator
from tests.simulator import ProviderSimulator

pytestmark = pytest.mark.anyio

# A long code answer: 120 functions, with newlines and quotes that JSON escapes (about 9,000 characters).
CODE = "\n".join(f'def f{i}(x):\n    """Step {i}."""\n    return x + {i}  # "{i}"\n' for i in range(120))
SMALL_LIMIT = {"client_max_tokens": 2000}  # 40 % of it is 800 tokens: about 1,600 characters of answer
SLOW = {"chunk_delay": 0.2}
STEPS = "".join(f"part {i:02d} " for i in range(30))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the answers are kept: a SQLite file, or the session's Redis server."""
    return request.getfixturevalue("redis_url") if request.param == "redis" else str(tmp_path / "state.sqlite3")


@pytest.fixture
async def delegators() -> AsyncIterator[list[Delegator]]:
    """Delegators a test builds; their jobs are stopped at the end."""
    made: list[Delegator] = []
    yield made
    for delegator in made:
        await delegator.jobs.aclose()


async def read(session: Client, uri: str) -> str:
    return (await session.read_resource(uri)).contents[0].text  # type: ignore[union-attr]


async def test_a_big_answer_goes_by_link_and_reads_back_whole(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, store: str
) -> None:
    sim.enqueue("sim-coder", CODE)
    delegator = make_delegator(store=store, **SMALL_LIMIT)
    async with Client(build_server(delegator)) as session:
        result = await session.call_tool("ask_coder", {"task": "Write 120 small functions"})
        data = result.structured_content
        uri = data["answer_uri"]
        whole = await read(session, uri)
        part = await read(session, f"{uri}?offset=100&length=50")
        rest = await read(session, f"{uri}?offset={len(CODE) - 10}")
        transcript = json.loads(await read(session, f"delegate://threads/{data['thread_id']}"))
    assert uri == f"delegate://answers/{data['call_id']}" and data["answer_chars"] == len(CODE)
    head, note = data["output"].split("\n\n[... characters 0 to ", 1)
    assert CODE.startswith(head) and 0 < len(head) <= 800 and head.endswith("\n"), "the head ends at a line"
    assert uri in note and "resources/read" in note and f"offset={len(head)}" in note
    assert result.content[0].text.startswith(head), "the text a model reads is the answer's head itself"
    link = result.content[1]
    assert (link.type, str(link.uri), link.size, link.mime_type) == ("resource_link", uri, len(CODE), "text/plain")
    assert len(result.content[0].text) + len(json.dumps(data)) < 8_000, "the result stays small"
    assert whole == CODE and part == CODE[100:150] and rest == CODE[-10:]
    assert transcript["turns"][0]["answer"] == CODE, "the thread keeps the whole answer"
    assert not data["truncated"]


async def test_an_answer_within_the_limit_comes_whole(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.enqueue("sim-coder", CODE)
    async with Client(build_server(make_delegator())) as session:
        data = (await session.call_tool("ask_coder", {"task": "Write 120 small functions"})).structured_content
    assert data["output"] == CODE and data["answer_uri"] is None


async def test_with_links_off_a_long_answer_is_cut_as_before(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.enqueue("sim-coder", CODE)
    delegator = make_delegator(link_share=0, max_output_chars=1000)
    async with Client(build_server(delegator)) as session:
        data = (await session.call_tool("ask_coder", {"task": "Write 120 small functions"})).structured_content
    assert data["output"].startswith(CODE[:1000]) and "DELEGATE_MAX_OUTPUT_CHARS" in data["output"]
    assert data["truncated"] and data["answer_uri"] is None


async def test_an_answer_not_kept_is_a_clear_not_found(make_delegator: Callable[..., Delegator]) -> None:
    async with Client(build_server(make_delegator())) as session:
        with pytest.raises(MCPError, match="DELEGATE_ANSWER_TTL_S"):
            await session.read_resource("delegate://answers/0123456789abcdef")


async def test_job_polls_carry_only_new_text_and_the_finished_job_names_its_call(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, delegators: list[Delegator]
) -> None:
    sim.enqueue("sim-writer", STEPS, **SLOW)
    delegator = make_delegator(deadline_s=3)
    delegators.append(delegator)
    received = ""
    async with Client(build_server(delegator)) as session:
        first: Any = (await session.call_tool("ask_writer", {"task": "Write", "background": True})).structured_content
        job_id, offset = first["job_id"], first["next_offset"]
        received = first["output"][:offset]
        for _ in range(40):
            poll = (
                await session.call_tool("delegate_result", {"job_id": job_id, "offset": offset, "wait_s": 1})
            ).structured_content
            new = poll["output"] if poll["status"] == "done" else poll["output"][: poll["next_offset"] - offset]
            assert STEPS[offset:].startswith(new), "a poll carries only the text after the offset"
            received, offset = received + new, poll["next_offset"]
            if poll["status"] == "done":
                break
        whole = (await session.call_tool("delegate_result", {"job_id": job_id})).structured_content
    assert poll["status"] == "done" and received == STEPS
    assert whole["output"] == STEPS, "offset 0 (the default) returns the whole answer"
    assert whole["call_id"] == first["call_id"] and whole["call_id"] is not None


CLAUDE_CODE = Implementation(name="claude-code", version="2.1.197")


@pytest.mark.parametrize("form", [None, "both", "text"])
async def test_claude_code_gets_the_answer_as_text_not_json(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, form: str | None
) -> None:
    """Claude Code shows its model only a result's structured content, even with no outputSchema; so by default
    (auto) it gets the text alone, and its model reads the answer as text, not JSON-escaped."""
    sim.set_default("sim-coder", CODE[:500])
    delegator = make_delegator(**({"result_form": form} if form else {}))
    async with Client(build_server(delegator), mode="legacy", client_info=CLAUDE_CODE) as session:
        claude = await session.call_tool("ask_coder", {"task": "Write functions"})
    async with Client(build_server(delegator), mode="legacy") as session:
        other = await session.call_tool("ask_coder", {"task": "Write functions"})
    assert claude.content[0].text.startswith(CODE[:500] + "\n\n---\ncoder via openai/sim-coder")
    if form == "both":
        assert claude.structured_content is not None and claude.structured_content["output"] == CODE[:500]
    else:
        assert claude.structured_content is None, "Claude Code's model would read the answer JSON-escaped"
    if form == "text":
        assert other.structured_content is None
    else:
        assert other.structured_content is not None and other.structured_content["output"] == CODE[:500]


async def test_a_panel_too_big_for_the_client_goes_by_link(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    for model in ("sim-coder", "sim-writer"):
        sim.enqueue(model, CODE)
    sim.enqueue("sim-general", "A and B agree.")
    delegator = make_delegator(**SMALL_LIMIT)
    async with Client(build_server(delegator)) as session:
        result = await session.call_tool("panel", {"task": "Write functions", "specialists": ["coder", "writer"]})
        data = result.structured_content
        whole = await read(session, data["answer_uri"])
    assert data["answer_uri"] == f"delegate://answers/{data['call_id']}" and data["answer_chars"] == len(whole)
    assert all(len(a["output"]) < 800 and data["answer_uri"] in a["output"] for a in data["answers"])
    assert data["synthesis"] == "A and B agree.", "the synthesis stays whole"
    assert whole.count(CODE) == 2 and "A and B agree." in whole, "the link serves every answer whole"
    assert result.content[1].type == "resource_link" and str(result.content[1].uri) == data["answer_uri"]


async def test_a_kept_answer_is_listed_and_the_client_is_told_the_list_changed(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    """Clients such as Gemini CLI (2025 protocols) read only resources that resources/list names, and refresh it
    when told."""
    told: list[str] = []

    async def on_message(message: Any) -> None:
        method = getattr(getattr(message, "root", message), "method", None)
        if method:
            told.append(method)

    sim.enqueue("sim-coder", CODE)
    delegator = make_delegator(**SMALL_LIMIT)
    async with Client(build_server(delegator), mode="legacy", message_handler=on_message) as session:
        before = [str(r.uri) for r in (await session.list_resources()).resources]
        data = (await session.call_tool("ask_coder", {"task": "Write 120 small functions"})).structured_content
        after = {str(r.uri): r for r in (await session.list_resources()).resources}
    assert not any(uri.startswith("delegate://answers/") for uri in before)
    listed = after[data["answer_uri"]]
    assert (listed.size, listed.mime_type) == (len(CODE), "text/plain")
    assert "notifications/resources/list_changed" in told, told

"""Prompts as slash commands, completion of their arguments, and log messages for clients that ask for them (through
a real MCP client session)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import PromptReference, ResourceTemplateReference

from server.app import build_server
from server.delegation import Delegator
from tests.conftest import route_to
from tests.simulator import ProviderSimulator

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def asked_call(text: str) -> tuple[str, dict[str, Any]]:
    """The tool name and arguments a prompt's message asks the model to call."""
    tool = text.split("`")[1]
    return tool, json.loads(text[text.index("{") :])


async def test_the_prompts_are_listed_with_described_arguments(make_delegator: Callable[..., Delegator]) -> None:
    async with Client(build_server(make_delegator()), mode="legacy") as session:
        prompts = {prompt.name: prompt for prompt in (await session.list_prompts()).prompts}
        assert session.server_capabilities is not None and session.server_capabilities.prompts is not None
    assert set(prompts) == {"delegate", "second-opinion", "review-files", "continue-thread"}
    arguments = {name: {a.name: a for a in prompt.arguments or []} for name, prompt in prompts.items()}
    assert set(arguments["delegate"]) == {"task", "specialist"}
    assert arguments["delegate"]["task"].required and not arguments["delegate"]["specialist"].required
    assert set(arguments["review-files"]) == {"files", "question"}
    assert set(arguments["continue-thread"]) == {"thread_id", "follow_up"}
    assert all(a.description for args in arguments.values() for a in args.values())
    assert "coder" in (prompts["delegate"].description or "")


async def test_each_prompt_asks_for_its_tool_call(make_delegator: Callable[..., Delegator]) -> None:
    async with Client(build_server(make_delegator())) as session:
        direct = await session.get_prompt("delegate", {"task": "Write a haiku", "specialist": "writer"})
        routed = await session.get_prompt("delegate", {"task": "Sort a list"})
        panel = await session.get_prompt("second-opinion", {"task": "Redis or SQLite?", "specialists": "coder, writer"})
        files = await session.get_prompt("review-files", {"files": "src/*.py, README.md", "question": "Any bugs?"})
        thread = await session.get_prompt("continue-thread", {"thread_id": "th_abc", "follow_up": "shorter"})
    text = [p.messages[0].content.text for p in (direct, routed, panel, files, thread)]  # type: ignore[union-attr]
    assert asked_call(text[0]) == ("ask_writer", {"task": "Write a haiku"})
    assert asked_call(text[1]) == ("delegate", {"task": "Sort a list"})
    assert asked_call(text[2]) == ("panel", {"task": "Redis or SQLite?", "specialists": ["coder", "writer"]})
    assert asked_call(text[3]) == ("delegate", {"task": "Any bugs?", "files": ["src/*.py", "README.md"]})
    assert asked_call(text[4]) == ("delegate", {"task": "shorter", "thread_id": "th_abc"})


async def test_a_prompt_naming_an_unknown_specialist_is_refused(make_delegator: Callable[..., Delegator]) -> None:
    async with Client(build_server(make_delegator())) as session:
        with pytest.raises(MCPError, match="Known specialists: coder, generalist, writer"):
            await session.get_prompt("delegate", {"task": "x", "specialist": "poet"})
        with pytest.raises(MCPError, match="Unknown specialist: 'poet'"):
            await session.get_prompt("second-opinion", {"task": "x", "specialists": "coder, poet"})


async def test_specialist_names_and_thread_ids_complete(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.enqueue("sim-writer", "A haiku.")
    async with Client(build_server(make_delegator())) as session:
        thread_id = (await session.call_tool("ask_writer", {"task": "Write a haiku"})).structured_content["thread_id"]
        prompt = PromptReference(type="ref/prompt", name="delegate")
        names = await session.complete(prompt, {"name": "specialist", "value": "wr"})
        listed = await session.complete(
            PromptReference(type="ref/prompt", name="second-opinion"), {"name": "specialists", "value": "coder, w"}
        )
        threads = await session.complete(
            PromptReference(type="ref/prompt", name="continue-thread"), {"name": "thread_id", "value": thread_id[:4]}
        )
        template = ResourceTemplateReference(type="ref/resource", uri="delegate://threads/{thread_id}")
        from_template = await session.complete(template, {"name": "thread_id", "value": ""})
        other = await session.complete(PromptReference(type="ref/prompt", name="nope"), {"name": "x", "value": ""})
    assert names.completion.values == ["writer"]
    assert listed.completion.values == ["coder, writer"]
    assert threads.completion.values == [thread_id]
    assert from_template.completion.values == [thread_id]
    assert other.completion.values == []


async def test_log_messages_reach_only_a_client_that_set_a_level(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    got: list[tuple[str, str]] = []

    async def on_log(params: Any) -> None:
        got.append((params.level, str(params.data)))

    sim.enqueue("sim-router", route_to("coder"))
    sim.enqueue("sim-coder", status=400)
    sim.enqueue("sim-backup", "fixed")
    sim.enqueue("sim-writer", "A haiku.")
    async with Client(build_server(make_delegator()), mode="legacy", logging_callback=on_log) as session:
        await session.call_tool("ask_writer", {"task": "Write a haiku"})
        assert got == [], "a client that never asked for a level gets no log messages"
        assert await session.set_logging_level("warning") is not None
        await session.call_tool("delegate", {"task": "Fix the bug"})
    assert [level for level, _ in got] == ["warning"], got
    assert "a fallback answered" in got[0][1] and "sim-coder" in got[0][1]

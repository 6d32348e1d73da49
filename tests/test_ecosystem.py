"""Tool list control, the specialists and usage resources, and `delegate-mcp doctor`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from mcp import Client

from server.app import build_server
from server.delegation import Delegator
from tests.conftest import cloud_only_builtins, route_to
from tests.simulator import ProviderSimulator
from tests.test_console_script import run_cli, server_env

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_delegate_tools_exposes_only_the_named_tools(make_delegator: Callable[..., Delegator]) -> None:
    async with Client(build_server(make_delegator(tools="delegate, ask_writer"))) as session:
        names = [tool.name for tool in (await session.list_tools()).tools]
    assert names == ["delegate", "ask_writer"]


@pytest.mark.subprocess
def test_an_unknown_tool_name_stops_start_up(sim: ProviderSimulator, specialists_dir: Path) -> None:
    completed = run_cli("--tools", "delegate,ask_poet", env=server_env(sim, specialists_dir))
    assert completed.returncode == 2 and completed.stdout == ""
    known = "delegate, ask_coder, ask_generalist, ask_writer, delegate_result, panel"
    assert f"unknown tool 'ask_poet'. Known tools: {known}." in completed.stderr


async def test_usage_and_specialists_resources(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.enqueue("sim-router", route_to("coder"))
    sim.enqueue("sim-general", status=400)
    sim.enqueue("sim-backup", status=400)
    async with Client(build_server(make_delegator()), mode="legacy") as session:
        await session.call_tool("delegate", {"task": "Fix the bug"})
        await session.call_tool("ask_generalist", {"task": "Hi"})
        uris = sorted(str(r.uri) for r in (await session.list_resources()).resources)
        usage = json.loads((await session.read_resource("delegate://usage")).contents[0].text)
        catalog = json.loads((await session.read_resource("delegate://specialists")).contents[0].text)
    assert uris == [
        "delegate://schemas",
        "delegate://shadow",
        "delegate://specialists",
        "delegate://threads",
        "delegate://usage",
    ]
    assert (usage["calls"], usage["errors"]) == (2, 1)
    assert usage["per_specialist"]["coder"]["calls"] == 1 and usage["input_tokens"] > 0
    assert [s["name"] for s in catalog["specialists"]] == ["coder", "generalist", "writer"]
    assert catalog["specialists"][0]["models"][0] == {
        "model": "openai/sim-coder",
        "usable": True,
        "reason": "custom endpoint (api_base)",
        "enable_with": [],
        "custom_endpoint": True,
        "set_by": None,
    }


@pytest.mark.subprocess
def test_doctor_pings_every_usable_model(sim: ProviderSimulator, specialists_dir: Path) -> None:
    sim.set_default("sim-writer", status=401, error_text="Incorrect API key provided")
    env = server_env(sim, specialists_dir)
    completed = run_cli("doctor", "--ping", "--json", env=env)
    assert completed.returncode == 1, completed.stderr
    rows = {row["model"]: row for row in json.loads(completed.stdout)}
    assert rows["openai/sim-coder"]["ping"]["ok"] is True
    assert rows["openai/sim-writer"]["ping"] == {
        "ok": False,
        "reason": "API key rejected (401): check OPENAI_API_KEY",
        "latency_ms": rows["openai/sim-writer"]["ping"]["latency_ms"],
    }
    assert rows["openai/sim-router"]["used_by"] == ["router"]
    assert rows["anthropic/claude-haiku-4-5"]["usable"] is False and rows["anthropic/claude-haiku-4-5"]["ping"] is None
    assert sim.count("sim-coder") == 1 and sim.calls("sim-coder")[0]["max_tokens"] == 1
    table = run_cli("doctor", "--ping", env=env)
    assert "FAILED: API key rejected (401)" in table.stdout and "OK " in table.stdout


@pytest.mark.subprocess
def test_doctor_without_ping_checks_keys_only(sim: ProviderSimulator, tmp_path: Path) -> None:
    env = server_env(sim, cloud_only_builtins(tmp_path / "cloud"))
    for name in ("ROUTER_MODEL", "ROUTER_API_BASE"):
        env.pop(name)
    completed = run_cli("doctor", env=env)
    assert completed.returncode == 1, "no specialist can answer: a failure"
    assert "missing: ANTHROPIC_API_KEY not set" in completed.stdout
    assert sim.history == []


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_progress_goes_routed_then_streaming_then_done(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, mode: str
) -> None:
    sim.enqueue("sim-router", route_to("coder"))
    sim.enqueue("sim-coder", "".join(f"line {i:03d}\n" for i in range(40)), chunk_delay=0.02)  # 40 chunks, ~0.8 s
    events: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        events.append((progress, message))

    async with Client(build_server(make_delegator()), mode=mode) as session:
        result = await session.call_tool("delegate", {"task": "Write it"}, progress_callback=on_progress)
    assert not result.is_error
    values = [value for value, _ in events]
    assert values == sorted(set(values)), "progress strictly increases"
    messages = [message or "" for _, message in events]
    assert messages[0] == "routed to coder (router)" and messages[1] == "coder: asking openai/sim-coder"
    streaming = [m for m in messages if m.startswith("answering: ")]
    assert 1 <= len(streaming) <= 5, "streaming updates are rate-limited to 4 a second"
    assert messages[-1] == "done: coder answered with openai/sim-coder"


async def test_no_progress_is_sent_when_the_client_did_not_ask(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.enqueue("sim-router", route_to("coder"))
    async with Client(build_server(make_delegator()), mode="legacy") as session:
        result = await session.call_tool("delegate", {"task": "x"})
    assert not result.is_error and result.structured_content["specialist"] == "coder"

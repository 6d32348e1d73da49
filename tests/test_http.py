"""Streamable HTTP: bearer token, Host checks, concurrent clients; and a LiteLLM proxy in front of the models."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import route_to, specialist_file
from tests.simulator import ProviderSimulator
from tests.test_console_script import script, server_env

TOKEN = "test-token-0123456789abcdef"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def http_url(sim: ProviderSimulator, specialists_dir: Path) -> Iterator[str]:
    """delegate-mcp --transport http on a free port, with a bearer token."""
    port = free_port()
    env = server_env(sim, specialists_dir, DELEGATE_HTTP_TOKEN=TOKEN)
    process = subprocess.Popen(
        [script(), "--transport", "http", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        assert process.wait(timeout=5) == 0
        assert process.stdout is not None and process.stdout.read() == b""


pytestmark = pytest.mark.subprocess


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}"])
def test_requests_without_the_token_are_refused(http_url: str, authorization: str | None) -> None:
    headers = {**HEADERS, **({"authorization": authorization} if authorization else {})}
    response = httpx2.post(http_url, json=INITIALIZE, headers=headers)
    assert response.status_code == 401 and "DELEGATE_HTTP_TOKEN" in response.text


def test_a_foreign_host_header_is_refused(http_url: str) -> None:
    headers = {**HEADERS, "authorization": f"Bearer {TOKEN}", "host": "attacker.example"}
    assert httpx2.post(http_url, json=INITIALIZE, headers=headers).status_code == 421


def test_two_clients_with_the_token_work_at_once(http_url: str, sim: ProviderSimulator) -> None:
    results: dict[str, Any] = {}

    async def client(name: str) -> None:
        transport = streamable_http_client(
            http_url, http_client=httpx2.AsyncClient(headers={"authorization": f"Bearer {TOKEN}"}, timeout=30)
        )
        async with Client(transport, mode="legacy") as session:
            tools = [tool.name for tool in (await session.list_tools()).tools]
            result = await session.call_tool("delegate", {"task": f"task from {name}"})
            results[name] = (tools, result.structured_content["output"])

    async def both() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(client, "alice")
            group.start_soon(client, "bob")

    sim.set_default("sim-router", route_to("coder"))
    anyio.run(client, "warm-up")  # the first call waits for litellm's import
    sim.set_default("sim-router", route_to("coder"), delay=2.0)
    asked = len(sim.requests("sim-router"))
    anyio.run(both)
    arrived = sorted(request["time"] for request in sim.requests("sim-router")[asked:])
    assert results["alice"][1] == "[sim-coder] task from alice" and results["bob"][1] == "[sim-coder] task from bob"
    assert "delegate" in results["alice"][0]
    # One after the other they would take 4 s or more; the margin is for a busy machine, not a speed goal.
    # At once: the second router request reached the provider while the first was still waiting its 2 s.
    assert len(arrived) == 2 and arrived[1] - arrived[0] < 2.0, f"router requests {arrived}: they did not run at once"


def test_models_behind_a_litellm_proxy_get_the_proxy_key(sim: ProviderSimulator, tmp_path: Path) -> None:
    """A LiteLLM proxy is an OpenAI-compatible endpoint with its own key: api_base plus api_key_env."""
    folder = tmp_path / "proxied"
    folder.mkdir()
    text = specialist_file("general", "openai/team-model", sim.base_url, default=True)
    (folder / "general.md").write_text(text.replace("default: true", "default: true\napi_key_env: PROXY_KEY"))
    env = server_env(sim, folder, PROXY_KEY="sk-proxy-virtual-key-123456")
    completed = subprocess.run(
        [script(), "ask", "hello", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    assert sim.history[-1]["model"] == "team-model"
    assert sim.history[-1]["headers"]["authorization"] == "Bearer sk-proxy-virtual-key-123456"
    assert "sk-proxy-virtual-key" not in completed.stdout + completed.stderr


@pytest.mark.parametrize("token", [TOKEN, None], ids=["token", "no-token"])
def test_serving_prints_one_line_with_the_url_and_whether_a_token_is_required(
    sim: ProviderSimulator, specialists_dir: Path, token: str | None
) -> None:
    port = free_port()
    env = server_env(sim, specialists_dir, **({"DELEGATE_HTTP_TOKEN": token} if token else {}))
    process = subprocess.Popen(
        [script(), "--transport", "http", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline().decode()
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) == 0  # printed once the port is really listening
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert f"http://127.0.0.1:{port}/mcp" in line  # the server's own address is not redacted away
    assert ("bearer token required" in line) == bool(token)
    assert ("no token required" in line) != bool(token)
    assert token is None or token not in line


def test_a_port_in_use_exits_2_with_a_sentence(sim: ProviderSimulator, specialists_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [script(), "--transport", "http", "--port", str(port)],
            env=server_env(sim, specialists_dir),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in done.stderr
    assert "DELEGATE_HTTP_PORT" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""

"""The installed delegate-mcp console script: stdio serving with a real MCP client, the CLI, start-up errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from tests.conftest import ROUTER, route_to
from tests.simulator import ProviderSimulator

pytestmark = pytest.mark.subprocess
LEAKED_KEY = "sk-proj-LEAKEDLEAKEDLEAKED9876"


def script() -> str:
    """The console script installed next to this interpreter."""
    found = shutil.which("delegate-mcp", path=str(Path(sys.executable).parent))
    assert found, "delegate-mcp is not installed in this environment (pip install -e .)"
    return found


def server_env(sim: ProviderSimulator, specialists_dir: Path, **extra: str) -> dict[str, str]:
    """A clean environment: no provider keys, models on the simulator."""
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_API_BASE", "_BASE_URL"))}
    env.update(
        {
            "DELEGATE_SPECIALISTS_DIR": str(specialists_dir),
            "ROUTER_MODEL": ROUTER,
            "DELEGATE_CLASSIFIER": "off",
            "ROUTER_API_BASE": sim.base_url,
            **extra,
        }
    )
    return env


HANDSHAKE: list[dict[str, Any]] = [
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    },
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
]


def spawn(env: dict[str, str]) -> subprocess.Popen[str]:
    """Start the server as an MCP client would, with pipes for stdin, stdout and stderr."""
    return subprocess.Popen(
        [script()], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def run_cli(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([script(), *args], env=env, input=stdin, capture_output=True, text=True, timeout=60)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_real_client_lists_tools_and_delegates_over_stdio(
    sim: ProviderSimulator, specialists_dir: Path, anyio_backend: str
) -> None:
    sim.enqueue("sim-router", route_to("coder", 0.88, "code task"))
    sim.enqueue("sim-coder", "fn main() {}")
    params = StdioServerParameters(command=script(), env=server_env(sim, specialists_dir))
    async with Client(params, mode="legacy") as session:
        names = sorted(tool.name for tool in (await session.list_tools()).tools)
        result = await session.call_tool("delegate", {"task": "Write a Rust hello world"})
    assert names == ["ask_coder", "ask_generalist", "ask_writer", "delegate", "delegate_result", "panel"]
    assert not result.is_error
    assert result.structured_content["output"] == "fn main() {}"
    assert result.structured_content["routing"]["decided_by"] == "router"


@pytest.mark.faults
def test_every_stdout_line_is_json_rpc_while_providers_fail(sim: ProviderSimulator, specialists_dir: Path) -> None:
    sim.set_default("sim-router", malformed=True)
    sim.set_default("sim-general", status=401, error_text=f"Incorrect API key provided: {LEAKED_KEY}")
    sim.set_default("sim-backup", status=500, error_text=f"upstream {LEAKED_KEY} exploded")
    sim.set_default("sim-coder", status=429, headers={"Retry-After": "0"})
    calls = [("delegate", {"task": "x"}), ("ask_coder", {"task": "y"}), ("delegate", {"tsk": "z"}), ("ask_nobody", {})]
    requests: list[dict[str, Any]] = [*HANDSHAKE, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}] + [
        {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
        for i, (name, arguments) in enumerate(calls, start=3)
    ]
    process = spawn(server_env(sim, specialists_dir, DELEGATE_LOG_LEVEL="DEBUG", OPENAI_API_KEY=LEAKED_KEY))
    assert process.stdin and process.stdout
    lines, answered = [], set()
    for request in requests:
        process.stdin.write(json.dumps(request) + "\n")
        process.stdin.flush()
        while "id" in request and request["id"] not in answered:
            line = process.stdout.readline()
            assert line, "the server closed stdout early"
            lines.append(line)
            answered.add(json.loads(line).get("id"))
    process.stdin.close()
    process.wait(timeout=10)
    rest, stderr = process.stdout.read(), process.stderr.read() if process.stderr else ""
    lines += rest.splitlines()
    assert process.returncode == 0
    messages = [json.loads(line) for line in lines if line.strip()]
    assert all(message["jsonrpc"] == "2.0" for message in messages)
    results = {m["id"]: m.get("result") for m in messages if "id" in m}
    assert results[3]["isError"] and "Every model of specialist 'generalist' failed" in results[3]["content"][0]["text"]
    assert "API key rejected (401)" in results[3]["content"][0]["text"]
    assert results[4]["isError"] and "openai/sim-coder: rate limited (429)" in results[4]["content"][0]["text"]
    assert results[5]["isError"] and "tsk" in results[5]["content"][0]["text"]
    assert LEAKED_KEY not in "".join(lines) + stderr


def test_env_overrides_reach_an_openai_compatible_server(sim: ProviderSimulator) -> None:
    env = server_env(sim, Path("unused"), OPENAI_API_BASE=sim.base_url, CODE_MODEL="openai/local-coder")
    env.pop("DELEGATE_SPECIALISTS_DIR")
    sim.enqueue("local-coder", "local answer")
    completed = run_cli("ask", "Refactor this", "--specialist", "coder", "--json", env=env)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert (result["output"], result["model"]) == ("local answer", "openai/local-coder")


def test_config_error_stops_start_up_naming_file_and_field(tmp_path: Path, sim: ProviderSimulator) -> None:
    (tmp_path / "coder.md").write_text("---\nname: coder\ndescription: writes code\n---\nYou code.\n")
    completed = run_cli(env=server_env(sim, tmp_path))
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert f"{tmp_path / 'coder.md'}: field 'model': Field required" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_ask_prints_the_answer_and_a_routing_summary(sim: ProviderSimulator, specialists_dir: Path) -> None:
    sim.enqueue("sim-router", route_to("writer", 0.7, "prose"))
    sim.enqueue("sim-writer", "A poem.")
    completed = run_cli("ask", "Write a poem", env=server_env(sim, specialists_dir))
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "A poem.\n"
    assert "writer via openai/sim-writer (router 0.70: prose)" in completed.stderr


def test_ask_json_with_context_file_and_forced_specialist(
    sim: ProviderSimulator, specialists_dir: Path, tmp_path: Path
) -> None:
    context = tmp_path / "notes.txt"
    context.write_text("meeting notes")
    completed = run_cli(
        "ask",
        "Summarise",
        "--context-file",
        str(context),
        "--specialist",
        "writer",
        "--json",
        env=server_env(sim, specialists_dir),
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert result["specialist"] == "writer" and result["routing"]["decided_by"] == "direct"
    assert "meeting notes" in sim.calls("sim-writer")[0]["messages"][1]["content"]


def test_ask_takes_checks_and_refuses_bad_ones_before_any_call(sim: ProviderSimulator, specialists_dir: Path) -> None:
    sim.enqueue("sim-writer", "A poem about the sea.")
    env = server_env(sim, specialists_dir)
    asked = ("ask", "Write a poem", "--specialist", "writer", "--check", '{"contains": "sea"}', "--json")
    passed = run_cli(*asked, env=env)
    assert passed.returncode == 0, passed.stderr
    assert json.loads(passed.stdout)["warnings"] == []
    sim.enqueue("sim-writer", "A poem about hills.")
    failed = run_cli(*asked, env=env)
    assert any("sea" in warning for warning in json.loads(failed.stdout)["warnings"]), failed.stdout
    calls = sim.count("sim-writer")
    not_json = run_cli("ask", "x", "--specialist", "writer", "--check", "{contains: sea}", env=env)
    unknown = run_cli("ask", "x", "--specialist", "writer", "--check", '{"smells_like": "sea"}', env=env)
    assert not_json.returncode == 2 and "--check: not JSON" in not_json.stderr
    assert unknown.returncode == 2 and "'checks'" in unknown.stderr and "No provider was called" in unknown.stderr
    assert sim.count("sim-writer") == calls, "a bad check costs no provider call"


def test_ask_reports_failures_with_exit_codes(sim: ProviderSimulator, specialists_dir: Path) -> None:
    env = server_env(sim, specialists_dir)
    unknown = run_cli("ask", "x", "--specialist", "poet", env=env)
    assert unknown.returncode == 2 and "Known specialists: coder, generalist, writer" in unknown.stderr
    sim.set_default("sim-coder", status=500)
    sim.set_default("sim-backup", status=500)
    failed = run_cli("ask", "x", "--specialist", "coder", env=env)
    assert failed.returncode == 1 and failed.stdout == ""
    assert "Every model of specialist 'coder' failed" in failed.stderr and "Traceback" not in failed.stderr


def test_specialists_command_shows_chains_and_what_to_set(sim: ProviderSimulator, tmp_path: Path) -> None:
    env = server_env(sim, tmp_path, OPENAI_API_KEY="sk-test-0000000000")
    env.pop("DELEGATE_SPECIALISTS_DIR")
    completed = run_cli("specialists", env=env)
    assert completed.returncode == 0
    assert "openai/gpt-5.2" in completed.stdout and "key from OPENAI_API_KEY" in completed.stdout
    assert "ANTHROPIC_API_KEY not set" in completed.stdout and "override with CODE_MODEL" in completed.stdout
    assert "3 of 3 specialists usable now with their own models." in completed.stdout
    report = json.loads(run_cli("specialists", "--json", env=env).stdout)
    coder = next(s for s in report["specialists"] if s["name"] == "coder")
    assert [m["usable"] for m in coder["models"]][:3] == [False, True, False]
    assert coder["models"][3]["model"] == "embedded/smollm2", "the offline model is the last fallback"
    assert "sk-test-0000000000" not in completed.stdout


def children_of(pid: int) -> list[int]:
    """Child process ids of `pid`, from /proc (Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.faults
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc to find child processes")
@pytest.mark.parametrize("stop", ["stdin EOF", "SIGTERM", "SIGINT"])
@pytest.mark.parametrize("busy", [False, True], ids=["idle", "mid-call"])
def test_the_server_exits_promptly_and_cleanly(
    sim: ProviderSimulator, specialists_dir: Path, stop: str, busy: bool
) -> None:
    sim.set_default("sim-coder", hang=True)
    process = spawn(server_env(sim, specialists_dir))
    assert process.stdin and process.stdout
    handshake = list(HANDSHAKE)
    if busy:
        handshake.append(
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "ask_coder", "arguments": {"task": "x"}},
            }
        )
    process.stdin.write("".join(json.dumps(m) + "\n" for m in handshake))
    process.stdin.flush()
    assert json.loads(process.stdout.readline())["id"] == 1
    deadline = time.monotonic() + 30  # litellm loads in the background: slow on a busy machine
    while busy and not sim.count("sim-coder") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim.count("sim-coder") == int(busy)
    assert children_of(process.pid) == []
    started = time.monotonic()
    if stop.startswith("SIG"):
        process.send_signal(getattr(signal, stop))
    else:
        process.stdin.close()
    try:
        assert process.wait(timeout=5) == 0
    finally:
        process.kill()
    assert time.monotonic() - started < 2.0
    assert "Traceback" not in (process.stderr.read() if process.stderr else "")

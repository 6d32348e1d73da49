"""The first seconds of a stdio server, while litellm still loads in the background: a first call's deadline and
latency_ms count the wait for it, and the server still stops at once."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.simulator import ProviderSimulator
from tests.test_console_script import HANDSHAKE, server_env, spawn

pytestmark = pytest.mark.subprocess
FIRST_CALL = {
    "jsonrpc": "2.0",
    "id": 2,
    "method": "tools/call",
    "params": {"name": "ask_coder", "arguments": {"task": "hello"}},
}


def start_with_a_first_call(env: dict[str, str]) -> tuple[subprocess.Popen[str], float]:
    """Spawn the server, shake hands, send a first call at once; return the process and when the call was sent."""
    process = spawn(env)
    assert process.stdin and process.stdout
    process.stdin.write("".join(json.dumps(m) + "\n" for m in HANDSHAKE))
    process.stdin.flush()
    assert json.loads(process.stdout.readline())["id"] == 1
    process.stdin.write(json.dumps(FIRST_CALL) + "\n")  # at once: the background import starts with this call
    process.stdin.flush()
    return process, time.monotonic()


def read_reply(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout
    return json.loads(process.stdout.readline())


def stop(process: subprocess.Popen[str]) -> None:
    process.kill()
    process.wait(timeout=10)


def test_the_first_calls_latency_includes_the_wait_for_warm_up(sim: ProviderSimulator, specialists_dir: Path) -> None:
    process, sent = start_with_a_first_call(server_env(sim, specialists_dir))
    try:
        reply = read_reply(process)
        seen_s = time.monotonic() - sent
    finally:
        stop(process)
    result = reply["result"]["structuredContent"]
    assert result["output"] == "[sim-coder] hello"
    reported_s = result["latency_ms"] / 1000
    # Everything between the client's write and the tool starting is pipes and JSON: well under half a second.
    assert reported_s >= seen_s - 0.5 - 0.1 * seen_s, (
        f"the client waited {seen_s:.2f} s, latency_ms says {reported_s:.2f} s"
    )


def test_the_first_call_reports_its_wait_for_start_up_apart(sim: ProviderSimulator, specialists_dir: Path) -> None:
    process, _ = start_with_a_first_call(server_env(sim, specialists_dir))
    try:
        first = read_reply(process)["result"]["structuredContent"]
    finally:
        stop(process)
    # The call arrived while litellm was still loading in the background: it waited, and says how long.
    assert first["startup_wait_ms"] is not None and 0 < first["startup_wait_ms"] <= first["latency_ms"]


def test_the_first_calls_deadline_includes_the_wait_for_warm_up(sim: ProviderSimulator, specialists_dir: Path) -> None:
    sim.set_default("sim-coder", hang=True)
    sim.set_default("sim-backup", hang=True)
    deadline_s = 4.0
    # Jobs off: with jobs on, a model still silent at the deadline is handed off as a job instead of failing.
    env = server_env(sim, specialists_dir, DELEGATE_DEADLINE_S=str(deadline_s), DELEGATE_JOBS="off")
    process, sent = start_with_a_first_call(env)
    try:
        reply = read_reply(process)
        seen_s = time.monotonic() - sent
    finally:
        stop(process)
    assert reply["result"]["isError"]
    assert seen_s < deadline_s + 2.0, f"a {deadline_s:g} s deadline, and the first call took {seen_s:.2f} s"


@pytest.mark.parametrize("how", ["stdin EOF", "SIGINT"])
def test_the_server_stops_at_once_while_a_first_call_waits_for_warm_up(
    sim: ProviderSimulator, specialists_dir: Path, how: str
) -> None:
    process, _ = start_with_a_first_call(server_env(sim, specialists_dir))
    assert process.stdin
    try:
        assert sim.count("sim-coder") == 0, "the call should still be waiting for litellm"
        started = time.monotonic()
        if how == "SIGINT":
            process.send_signal(signal.SIGINT)
        else:
            process.stdin.close()
        assert process.wait(timeout=10) == 0
        assert time.monotonic() - started < 2.0
    finally:
        stop(process)
    assert "Traceback" not in (process.stderr.read() if process.stderr else "")

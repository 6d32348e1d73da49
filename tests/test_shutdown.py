"""Stopping the server with calls in flight: SIGTERM and Ctrl-C settle and record them as closing stdin does."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx2
import pytest

from server.store.budget import ledger_name, today
from server.store.sqlite import STORE_NAME, SQLiteStore
from tests.simulator import ProviderSimulator
from tests.test_budget import priced_folder
from tests.test_console_script import HANDSHAKE, script, spawn
from tests.test_http import HEADERS, free_port
from tests.test_http_flood import wait_for_port

pytestmark = [pytest.mark.subprocess, pytest.mark.faults]


def ask(request_id: int, background: bool) -> dict[str, object]:
    arguments = {"task": f"task {request_id}", "background": background}
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": "ask_only", "arguments": arguments},
    }


@pytest.mark.parametrize("stop", ["stdin EOF", "SIGTERM", "SIGINT"])
def test_stopping_releases_the_budget_of_calls_in_flight_and_marks_their_jobs_lost(
    sim: ProviderSimulator, tmp_path: Path, stop: str
) -> None:
    sim.set_default("gpt-4.1-mini", hang=True)
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_API_BASE", "_BASE_URL"))}
    env.update(
        DELEGATE_SPECIALISTS_DIR=str(priced_folder(tmp_path, sim)),
        DELEGATE_DAILY_BUDGET_USD="1",
        DELEGATE_CLASSIFIER="off",
        OPENAI_API_KEY="sk-sim-0000000000",
        DELEGATE_DATA_DIR=str(data),
        DELEGATE_DEADLINE_S="300",  # the first call waits for the model library to load: slow on a busy machine
    )
    process = spawn(env)
    assert process.stdin and process.stdout
    process.stdin.write("".join(json.dumps(m) + "\n" for m in [*HANDSHAKE, ask(2, True), ask(3, False)]))
    process.stdin.flush()
    try:
        replies = {}
        while 2 not in replies:  # the background call answers at once with its job; call 3 is still waiting
            reply = json.loads(process.stdout.readline())
            replies[reply["id"]] = reply
        assert "structuredContent" in replies[2]["result"], replies[2]
        job_id = replies[2]["result"]["structuredContent"]["job_id"]
        give_up = time.monotonic() + 60
        while sim.count("gpt-4.1-mini") < 2 and time.monotonic() < give_up:
            time.sleep(0.05)
        store = SQLiteStore(data / STORE_NAME)
        assert store.total(ledger_name(today())) > 0, "both calls hold a reservation"
        if stop == "stdin EOF":
            process.stdin.close()
        else:
            process.send_signal(getattr(signal, stop))
        assert process.wait(timeout=15) == 0
    finally:
        process.kill()
    assert store.total(ledger_name(today())) == 0, "a reservation was left held for the rest of the day"
    record = store.get("job", job_id)
    assert record is not None and record["status"] == "lost", record


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT"])
def test_stopping_an_http_server_releases_the_budget_of_its_jobs_and_marks_them_lost(
    sim: ProviderSimulator, tmp_path: Path, stop: str
) -> None:
    sim.set_default("gpt-4.1-mini", hang=True)
    data, port = tmp_path / "data", free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_API_BASE", "_BASE_URL"))}
    env.update(
        DELEGATE_SPECIALISTS_DIR=str(priced_folder(tmp_path, sim)),
        DELEGATE_DAILY_BUDGET_USD="1",
        DELEGATE_CLASSIFIER="off",
        OPENAI_API_KEY="sk-sim-0000000000",
        DELEGATE_DATA_DIR=str(data),
        DELEGATE_DEADLINE_S="300",
    )
    process = subprocess.Popen(
        [script(), "--transport", "http", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_for_port(port, process)
        headers = {**HEADERS, "mcp-protocol-version": "2025-11-25"}
        started = httpx2.post(f"http://127.0.0.1:{port}/mcp", json=ask(2, True), headers=headers, timeout=300)
        job_id = re.search(r'"job_id":"(job-[0-9a-f]+)"', started.text)
        assert job_id, started.text[:500]
        give_up = time.monotonic() + 60
        while sim.count("gpt-4.1-mini") < 1 and time.monotonic() < give_up:
            time.sleep(0.05)
        store = SQLiteStore(data / STORE_NAME)
        assert store.total(ledger_name(today())) > 0, "the job holds a reservation"
        process.send_signal(getattr(signal, stop))
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
    assert store.total(ledger_name(today())) == 0, "the job's reservation was left held for the rest of the day"
    record = store.get("job", job_id.group(1))
    assert record is not None and record["status"] == "lost", record

"""The terminal in the first hour: what `ask` says while it waits, `panel` and `result`, and the words people read
(the installed console script, against the provider simulator)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from mcp import Client

from server.app import build_server
from server.catalog import load_catalog
from server.delegation import Delegator
from server.settings import Settings
from tests.conftest import ROUTER
from tests.simulator import ProviderSimulator
from tests.test_console_script import run_cli, script, server_env

pytestmark = pytest.mark.subprocess


def test_ask_says_it_waits_for_the_whole_answer_and_shows_progress(
    sim: ProviderSimulator, specialists_dir: Path
) -> None:
    sim.enqueue("sim-writer", "A poem, line by line.", chunk_delay=0.05)
    completed = run_cli("ask", "Write a poem", "--specialist", "writer", env=server_env(sim, specialists_dir))
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "A poem, line by line.\n"
    lines = completed.stderr.splitlines()
    assert lines[0].startswith("[waiting for the whole answer") and "DELEGATE_JOB_MAX_S" in lines[0]
    assert "[writer: asking openai/sim-writer]" in lines and "[answering: " in completed.stderr, completed.stderr
    assert "asked directly (--specialist writer)" in completed.stderr
    assert "ask_writer" not in completed.stderr, "a terminal user never typed a tool name"


def test_panel_prints_each_answer_and_the_synthesis(sim: ProviderSimulator, specialists_dir: Path) -> None:
    sim.enqueue("sim-coder", "Use SQLite.")
    sim.enqueue("sim-writer", "Use Redis.")
    sim.enqueue("sim-general", "A prefers SQLite, B prefers Redis; SQLite is enough for one machine.")
    env = server_env(sim, specialists_dir)
    completed = run_cli("panel", "SQLite or Redis for one machine?", "--members", "coder,writer", env=env)
    assert completed.returncode == 0, completed.stderr
    assert "## coder (openai/sim-coder)\n\nUse SQLite." in completed.stdout
    assert "## writer (openai/sim-writer)\n\nUse Redis." in completed.stdout
    assert "## Synthesis (by generalist" in completed.stdout and "SQLite is enough" in completed.stdout
    assert "panel of 2: 2 answered" in completed.stderr
    unknown = run_cli("panel", "x", "--members", "coder,poet", env=env)
    assert unknown.returncode == 2 and "Known specialists" in unknown.stderr


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def server_delegator(sim: ProviderSimulator, specialists_dir: Path, tmp_path: Path) -> AsyncIterator[Delegator]:
    """A server's Delegator on a SQLite store that the console script reads too."""
    env = {"ROUTER_MODEL": ROUTER, "ROUTER_API_BASE": sim.base_url}
    store = str(tmp_path / "state.sqlite3")
    settings = Settings.from_env(env, specialists_dir=specialists_dir, store=store, classifier=False, deadline_s=3)
    delegator = Delegator(settings, load_catalog(env, specialists_dir), env)
    yield delegator
    await delegator.jobs.aclose()


@pytest.mark.anyio
async def test_result_reads_a_job_a_server_handed_off(
    sim: ProviderSimulator, specialists_dir: Path, server_delegator: Delegator
) -> None:
    steps = "".join(f"step {i:02d} " for i in range(20))
    sim.enqueue("sim-writer", steps, chunk_delay=0.2)
    async with Client(build_server(server_delegator)) as session:
        started = await session.call_tool("ask_writer", {"task": "Write", "background": True})
        job_id = started.structured_content["job_id"]
        env = server_env(sim, specialists_dir, DELEGATE_STORE=server_delegator.store.location)
        # The server's loop keeps running the job while the terminal waits for it in another process.
        done = await anyio.run_process([script(), "result", job_id, "--wait", "30", "--json"], env=env, check=False)
        rest = await anyio.run_process([script(), "result", job_id, "--offset", "40"], env=env, check=False)
    assert done.returncode == 0, done.stderr.decode()
    result = json.loads(done.stdout)
    assert (result["status"], result["output"], result["job_id"]) == ("done", steps, job_id)
    assert result["call_id"] == started.structured_content["call_id"], "the finished job names its call"
    assert rest.stdout.decode() == steps[40:] + "\n"


def test_feedback_list_counts_one_correction_in_the_singular(sim: ProviderSimulator, specialists_dir: Path) -> None:
    env = server_env(sim, specialists_dir)
    recorded = run_cli("feedback", "--task", "Write a limerick", "--should-be", "writer", env=env)
    assert recorded.returncode == 0, recorded.stderr
    listed = run_cli("feedback", "--list", env=env)
    assert listed.stderr.strip().endswith("1 correction"), listed.stderr


def test_specialists_without_a_key_do_not_claim_to_be_usable(sim: ProviderSimulator, tmp_path: Path) -> None:
    env = server_env(sim, tmp_path)
    env.pop("DELEGATE_SPECIALISTS_DIR")
    completed = run_cli("specialists", env=env)
    assert completed.returncode == 0, completed.stderr
    assert "0 of 3 specialists usable now with their own models." in completed.stdout
    assert "3 of 3" not in completed.stdout

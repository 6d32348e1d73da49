"""Nothing but a command's own output ever reaches stdout, whatever the log level (litellm logs to stdout)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import route_to
from tests.simulator import ProviderSimulator
from tests.test_console_script import run_cli, server_env

pytestmark = pytest.mark.subprocess


@pytest.mark.parametrize("level", ["DEBUG", "INFO"])
def test_ask_json_prints_only_the_json_at_any_log_level(
    sim: ProviderSimulator, specialists_dir: Path, level: str
) -> None:
    sim.enqueue("sim-router", route_to("coder"))
    sim.enqueue("sim-coder", "the answer")
    sim.enqueue("sim-backup", status=500)  # never reached; the failures below are what log the most
    env = server_env(sim, specialists_dir, DELEGATE_LOG_LEVEL=level)
    done = run_cli("ask", "--json", "write code", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["output"] == "the answer", "stdout is exactly one JSON document"


def test_failing_calls_at_debug_log_nothing_to_stdout(sim: ProviderSimulator, specialists_dir: Path) -> None:
    for model in ("sim-router", "sim-general", "sim-backup"):
        sim.set_default(model, status=500)
    env = server_env(sim, specialists_dir, DELEGATE_LOG_LEVEL="DEBUG", LITELLM_LOG="DEBUG")
    done = run_cli("ask", "--json", "anything", env=env)
    assert done.returncode == 1 and done.stdout == ""


def test_specialists_json_at_debug_is_only_json(sim: ProviderSimulator, specialists_dir: Path) -> None:
    env = server_env(sim, specialists_dir, DELEGATE_LOG_LEVEL="DEBUG", LITELLM_LOG="DEBUG")
    done = run_cli("specialists", "--json", env=env)
    assert done.returncode == 0, done.stderr
    json.loads(done.stdout)


def test_ask_shows_an_answer_the_provider_cut(sim: ProviderSimulator, specialists_dir: Path) -> None:
    sim.set_default("sim-router", route_to("coder"))
    sim.set_default("sim-coder", "the start of an answer", finish="length")
    env = server_env(sim, specialists_dir)
    done = run_cli("ask", "write code", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("the start of an answer\n\n[... answer cut by the provider")
    assert " · answer truncated" in done.stderr, "the summary line on stderr says so"
    as_json = json.loads(run_cli("ask", "--json", "write code", env=env).stdout)
    assert as_json["truncated"] is True

"""`delegate-mcp route`: the decision, its runner-up, how it was made and its cost, with no specialist called."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import route_to
from tests.simulator import ProviderSimulator
from tests.test_console_script import script

pytestmark = pytest.mark.subprocess


def builtin_env(sim: ProviderSimulator, **extra: str) -> dict[str, str]:
    """The built-in specialists, every model (router included) on the simulator; the primaries carry their list
    prices, which a custom base URL would otherwise make unknown."""
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_API_BASE", "_BASE_URL"))}
    env.update(
        {
            "OPENAI_API_BASE": sim.base_url,
            "OPENAI_API_KEY": "sk-sim-0000000000",
            "ROUTER_MODEL": "openai/sim-router",
            "CODE_MODEL": "openai/gpt-5.2@1.75/14",
            "GENERAL_MODEL": "openai/gpt-5-mini@0.25/2",
            "LONG_CONTEXT_MODEL": "openai/gpt-4.1@2/8",
            **extra,
        }
    )
    return env


def route(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([script(), "route", *args], env=env, capture_output=True, text=True, timeout=120)


def test_a_confident_task_is_explained_by_the_classifier_and_priced(sim: ProviderSimulator) -> None:
    task = "My Go service panics with 'assignment to entry in nil map', how do I fix it?"
    done = route(builtin_env(sim), task, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["specialist"], report["decided_by"]) == ("coder", "classifier")
    assert report["runner_up"] in {"writer", "generalist"} and report["confidence"] >= 0.75
    assert report["classifier"]["top_words"] and "weighed most" in report["how"]
    cost = report["cost_estimate"]
    assert cost["model"] == "openai/gpt-5.2" and cost["input_tokens"] > 0 and cost["total_usd"] > 0
    assert sim.count("sim-router") == 0 and sim.count("gpt-5.2") == 0  # no model was called


def test_an_unsure_task_shows_the_routers_reason_and_the_context_counts_in_the_cost(
    sim: ProviderSimulator, tmp_path: Path
) -> None:
    sim.enqueue("sim-router", route_to("writer", 0.7, "it asks for prose about the data"))
    context = tmp_path / "notes.txt"
    context.write_text("quarterly numbers " * 2000, encoding="utf-8")
    env = builtin_env(sim)
    done = route(env, "Something about the quarterly numbers", "--context-file", str(context))
    assert done.returncode == 0, done.stderr
    assert "Specialist: writer" in done.stdout
    assert "router: it asks for prose about the data" in done.stdout
    assert "Classifier: guessed" in done.stdout and "abstained" in done.stdout
    short = json.loads(route(env, "Something about the quarterly numbers!", "--json").stdout)
    assert sim.count("sim-router") == 2 and sim.count("gpt-4.1") == 0
    assert "~9," in done.stdout or "~10," in done.stdout  # 36,000 characters of context, about 9,000 tokens
    assert short["cost_estimate"]["input_tokens"] < 1000


def test_an_empty_task_is_a_usage_error_with_no_call(sim: ProviderSimulator) -> None:
    done = route(builtin_env(sim), "   ")
    assert done.returncode == 2 and done.stdout == "" and "'task' is empty" in done.stderr
    assert sim.count("sim-router") == 0

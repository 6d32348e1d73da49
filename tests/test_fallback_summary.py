"""When a fallback answers, the summary line says why the better models failed: a mistyped key must show."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from mcp import Client

from server.app import build_server
from server.calling import embedded
from server.delegation import Delegator
from server.results import Attempt, fallback_reasons
from tests.simulator import ProviderSimulator
from tests.test_console_script import script


def ask_coder_text(delegator: Delegator) -> str:
    async def ask() -> str:
        async with Client(build_server(delegator)) as session:
            result = await session.call_tool("ask_coder", {"task": "hello"})
            assert not result.is_error
            return result.content[0].text

    return anyio.run(ask)


def test_the_summary_names_the_rejected_key_on_this_call_and_while_it_cools(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, specialists_dir: Path
) -> None:
    coder = specialists_dir / "coder.md"  # the backup has its own key, so the rejected one does not rule it out
    coder.write_text(
        coder.read_text().replace(
            "api_base: '" + sim.base_url + "'}", f"api_base: '{sim.base_url}', api_key_env: BACKUP_KEY}}"
        )
    )
    delegator = make_delegator({"BACKUP_KEY": "backup-key-0123456789"}, cooldown_s=60)
    sim.set_default("sim-coder", status=401, error_text="Incorrect API key provided")
    first = ask_coder_text(delegator)
    summary = first.rsplit("\n", 1)[1]
    assert "via openai/sim-backup" in summary
    assert "fallback, because openai/sim-coder: API key rejected (401): check OPENAI_API_KEY" in summary
    second = ask_coder_text(delegator).rsplit("\n", 1)[1]
    assert sim.count("sim-coder") == 1, "the rejected model cools down"
    assert "openai/sim-coder: cooling down" in second and "last: API key rejected (401)" in second


def test_configuration_skips_are_not_reported_as_failures() -> None:
    attempts = [
        Attempt(model="anthropic/a", ok=False, error="skipped: ANTHROPIC_API_KEY not set"),
        Attempt(model="openai/b", ok=False, error="rate limited (429)"),
        Attempt(model="openai/b", ok=False, error="provider server error (500)"),
        Attempt(model="openai/c", ok=True),
    ]
    assert fallback_reasons(attempts) == "openai/b: provider server error (500)"


@pytest.mark.subprocess
@pytest.mark.skipif(not embedded.available(), reason="the embedded model extra is not installed")
def test_a_mistyped_key_is_named_when_the_embedded_model_answers(sim: ProviderSimulator) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_API_BASE", "_BASE_URL"))}
    env.update(
        OPENAI_API_KEY="sk-mistyped-0000000000",
        OPENAI_API_BASE=sim.base_url,
        DELEGATE_RETRIES="0",
        DELEGATE_MAX_OUTPUT_TOKENS="16",
    )
    sim.set_default("gpt-5-mini", status=401, error_text="Incorrect API key provided")
    completed = subprocess.run(
        [script(), "ask", "Name a primary colour.", "--specialist", "generalist"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "via embedded/smollm2" in completed.stderr
    assert "openai/gpt-5-mini: API key rejected (401): check OPENAI_API_KEY" in completed.stderr
    assert "set OPENAI_API_KEY" not in completed.stderr, "do not tell them to set a key they already set"

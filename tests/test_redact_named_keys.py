"""A key named by a specialist's api_key_env is a secret whatever its name: redacted in results and on stderr."""

from __future__ import annotations

import subprocess
from pathlib import Path

import anyio
from mcp import Client

from server.app import build_server
from server.catalog import load_catalog
from server.delegation import Delegator
from server.settings import Settings
from tests.conftest import specialist_file
from tests.simulator import ProviderSimulator
from tests.test_console_script import script, server_env

TEAM_KEY = "team-pass-4f9a8b7c6d5e"  # no sk- prefix, and its env var does not end in _KEY


def team_folder(tmp_path: Path, sim: ProviderSimulator) -> Path:
    """One specialist whose models take the key in TEAM_LLM_PASS, with a fallback on the same key."""
    folder = tmp_path / "team"
    folder.mkdir()
    text = specialist_file("general", "openai/team-model", sim.base_url, fallbacks=["openai/team-backup"], default=True)
    text = text.replace("default: true", "default: true\napi_key_env: TEAM_LLM_PASS")
    base = f"api_base: '{sim.base_url}'"
    text = text.replace(base + "}", base + ", api_key_env: TEAM_LLM_PASS}")
    (folder / "general.md").write_text(text)
    return folder


def test_an_echoed_named_key_is_redacted_in_the_tool_result(sim: ProviderSimulator, tmp_path: Path) -> None:
    folder = team_folder(tmp_path, sim)
    env = {"TEAM_LLM_PASS": TEAM_KEY}
    settings = Settings.from_env(env, specialists_dir=folder, classifier=False, retries=0, cooldown_s=0)
    delegator = Delegator(settings, load_catalog(env, folder), env)
    sim.set_default("team-model", status=400, error_text=f"bad request for credential {TEAM_KEY}")
    sim.set_default("team-backup", "fallback answer")

    async def ask() -> object:
        async with Client(build_server(delegator)) as session:
            return await session.call_tool("ask_general", {"task": "hello"})

    result = anyio.run(ask)
    assert sim.history[0]["headers"]["authorization"] == f"Bearer {TEAM_KEY}"
    text = result.content[0].text + str(result.structured_content)
    assert result.structured_content["output"] == "fallback answer"
    assert "bad request for credential [redacted]" in result.structured_content["attempts"][0]["error"]
    assert TEAM_KEY not in text


def test_an_echoed_named_key_is_redacted_on_stderr(sim: ProviderSimulator, tmp_path: Path) -> None:
    env = server_env(sim, team_folder(tmp_path, sim), TEAM_LLM_PASS=TEAM_KEY, DELEGATE_LOG_LEVEL="DEBUG")
    sim.set_default("team-model", status=400, error_text=f"bad request for credential {TEAM_KEY}")
    sim.set_default("team-backup", status=400, error_text=f"still no: {TEAM_KEY}")
    completed = subprocess.run([script(), "ask", "hello"], env=env, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 1
    assert "bad request for credential [redacted]" in completed.stderr
    assert TEAM_KEY not in completed.stderr + completed.stdout

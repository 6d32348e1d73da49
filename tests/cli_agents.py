"""The real coding-agent CLIs (installed from npm) pointed at the provider simulator, and the specialists using them.

Install them where the tests look: `npm install --prefix .cli-agents @anthropic-ai/claude-code @openai/codex
@google/gemini-cli opencode-ai` (.ci/run does), or name another folder of executables in DELEGATE_TEST_CLI_BIN."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from server.catalog import load_catalog
from server.delegation import Delegator
from server.settings import Settings
from tests.simulator import ProviderSimulator

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {
    "claude": "@anthropic-ai/claude-code",
    "codex": "@openai/codex",
    "gemini": "@google/gemini-cli",
    "opencode": "opencode-ai",
}
NAMES = tuple(PACKAGES)
SIM_MODEL = {"claude": "sim-claude", "codex": "sim-codex", "gemini": "sim-gemini", "opencode": "sim-oc"}
"""The model each CLI asks the simulator for (its requests are scripted under this name)."""
PLANTED = {"OPENAI_API_KEY": "sk-planted-openai-0123456789", "DELEGATE_HTTP_TOKEN": "planted-delegate-token-0123"}
"""Secrets in the server's environment that no CLI may receive."""
# What a read of notes.txt and a write over it look like in each CLI's own tools.
READ_TOOL = {
    "claude": ("Read", lambda root: {"file_path": str(root / "notes.txt")}),
    "codex": ("exec_command", lambda root: {"cmd": "cat notes.txt"}),
    "gemini": ("read_file", lambda root: {"file_path": "notes.txt"}),
    "opencode": ("read", lambda root: {"filePath": str(root / "notes.txt")}),
}
WRITE_TOOL = {
    "claude": ("Write", lambda root: {"file_path": str(root / "notes.txt"), "content": "overwritten"}),
    "codex": ("exec_command", lambda root: {"cmd": "echo overwritten > notes.txt"}),
    "gemini": ("write_file", lambda root: {"file_path": "notes.txt", "content": "overwritten"}),
    "opencode": ("write", lambda root: {"filePath": str(root / "notes.txt"), "content": "overwritten"}),
}


def bin_dir() -> Path:
    """Where the installed CLIs' executables are."""
    return Path(os.environ.get("DELEGATE_TEST_CLI_BIN") or ROOT / ".cli-agents" / "node_modules" / ".bin")


def cli_path(name: str) -> Path:
    """The installed CLI, or a skip that says how to install it."""
    path = bin_dir() / name
    if not path.exists() or shutil.which("node") is None:
        pytest.skip(
            f"{name} is not installed in {bin_dir()}: run `npm install --prefix .cli-agents {PACKAGES[name]}` "
            "(.ci/run does), or set DELEGATE_TEST_CLI_BIN"
        )
    return path


def entry(name: str, sim: ProviderSimulator, *, key: bool = True, **extra: Any) -> dict[str, Any]:
    """A chain entry running the real CLI against the simulator (its own wire format: Responses API for Codex)."""
    bases = {"claude": sim.url, "codex": sim.base_url, "gemini": sim.url, "opencode": sim.base_url}
    model = f"anthropic/{SIM_MODEL[name]}" if name == "opencode" else SIM_MODEL[name]
    found: dict[str, Any] = {"model": f"cli/{name}", "cli_model": model, "api_base": bases[name]}
    if key:
        found["api_key_env"] = "SIM_KEY"
    return {**found, **extra}


def home(folder: Path, name: str, *, logged_in: bool = True) -> Path:
    """A user's home folder with this CLI set up as its user would have it (few retries: the tests script failures)."""
    folder.mkdir(parents=True, exist_ok=True)
    if name == "gemini":
        settings: dict[str, Any] = {
            "general": {"disableAutoUpdate": True, "disableUpdateNag": True, "maxAttempts": 2},
            "privacy": {"usageStatisticsEnabled": False},
            "telemetry": {"enabled": False},
        }
        if logged_in:
            settings["security"] = {"auth": {"selectedType": "gemini-api-key"}}
        (folder / ".gemini").mkdir(exist_ok=True)
        (folder / ".gemini" / "settings.json").write_text(json.dumps(settings))
    if name == "claude":
        (folder / ".claude").mkdir(exist_ok=True)
        (folder / ".claude" / "settings.json").write_text(json.dumps({"env": {"CLAUDE_CODE_MAX_RETRIES": "1"}}))
    if name == "codex":
        (folder / ".codex").mkdir(exist_ok=True)
    return folder


def specialists(folder: Path, chain: list[dict[str, Any]], *, extra: str = "") -> Path:
    """A folder with one specialist, `investigator`, whose chain is `chain` (CLI and API entries alike)."""
    folder.mkdir(parents=True, exist_ok=True)
    first, *rest = chain
    lines = [f"{key}: {json.dumps(value)}" for key, value in first.items()]
    text = (
        "---\nname: investigator\ndescription: Reads a codebase to answer questions about it.\n"
        + "\n".join(lines)
        + f"\nfallbacks: {json.dumps(rest)}\ndefault: true\n{extra}---\nYou investigate code. Answer briefly.\n"
    )
    (folder / "investigator.md").write_text(text)
    return folder


def environment(name: str, home_dir: Path, **more: str) -> dict[str, str]:
    """The server's environment: PATH, the user's home, the simulator's key, where the CLI is, planted secrets."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home_dir), "SIM_KEY": "sk-sim-key-for-the-cli"}
    env[f"DELEGATE_CLI_{name.upper()}"] = str(cli_path(name))
    return {**env, **PLANTED, **more}


def delegator(tmp: Path, env: Mapping[str, str], folder: Path, root: Path, **overrides: Any) -> Delegator:
    """A Delegator whose file root (the CLIs' working directory) is `root`."""
    overrides.setdefault("retries", 0)
    overrides.setdefault("cooldown_s", 0)
    overrides.setdefault("classifier", False)
    overrides.setdefault("deadline_s", 240)
    overrides.setdefault("attempt_timeout_s", 240)
    settings = Settings.from_env(env, specialists_dir=folder, data_dir=tmp / "data", file_roots=str(root), **overrides)
    return Delegator(settings, load_catalog(env, folder), env)


def project(folder: Path) -> Path:
    """The folder a CLI works in: a small project with one file to read."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("the secret word is marmalade\n")
    return folder

"""One preset per coding-agent CLI: how to run it headless and read-only, what it may be told, how to log it in.

Pure data and pure functions (no processes here): the catalogue checks specialist files against it."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "cli/"
CUSTOM = "custom"
PROMPT_PLACEHOLDER = "{prompt}"
MODEL_PLACEHOLDER = "{model}"
# The child's environment is built from nothing: these are what any program needs to run and reach the network
# the user set up (proxies, certificates), plus the locale. Keys are never in this list.
BASE_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_STATE_HOME",
    "XDG_CACHE_HOME",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "https_proxy",
    "http_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
)


@dataclass(frozen=True)
class Call:
    """What one run of a CLI is asked to do (the preset turns it into a command line and an environment)."""

    cli_model: str | None = None
    """The CLI's own model name (its --model), or None for the CLI's default."""
    flags: tuple[str, ...] = ()
    """Extra flags from the specialist file, already checked against the preset's allow-list."""
    allow_edits: bool = False
    """The specialist file's allow_edits: the CLI may change files in its working directory."""
    resume: str | None = None
    """The CLI's own session id to continue (a thread's follow-up)."""
    api_base: str | None = None
    """A provider endpoint the CLI should talk to instead of its vendor's (a gateway, a proxy, a simulator)."""
    has_key: bool = False
    """Whether the entry gives the CLI an API key (api_key_env); it then goes in the preset's key variable."""
    command: tuple[str, ...] = ()
    """cli/custom only: the command template."""


@dataclass(frozen=True)
class Preset:
    """How delegate-mcp runs one CLI."""

    name: str
    binary: str
    install: str
    """The command that installs the CLI (shown when it is missing)."""
    login: str
    """What logs it in (shown when it is not)."""
    key_env: str | None
    """Where an entry's api_key_env value goes in the child's environment (None: the CLI takes no key by env)."""
    config_env: tuple[str, ...]
    """Non-secret variables of the CLI's own (its config folder) passed through when set."""
    allowed_flags: frozenset[str]
    """Extra flags a specialist file may add; anything else is refused when the file loads."""
    argv: Callable[[Call], list[str]]
    """The arguments after the binary; the prompt goes on stdin."""
    fixed_env: Mapping[str, str] = field(default_factory=dict)
    """Set for every run: no update checks, no telemetry, no interactive trust questions."""
    resumable: bool = True


def is_cli(model: str) -> bool:
    """Whether a chain entry names a coding-agent CLI rather than an API model."""
    return model.startswith(PREFIX)


def cli_name(model: str) -> str:
    """cli/claude -> claude."""
    return model.removeprefix(PREFIX)


def _claude(call: Call) -> list[str]:
    mode = "acceptEdits" if call.allow_edits else "plan"
    argv = [
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--include-partial-messages",
        "--permission-mode",
        mode,
    ]
    argv += ["--disallowedTools", "WebFetch,WebSearch"]  # no network tools; plan mode already blocks the rest
    if call.cli_model:
        argv += ["--model", call.cli_model]
    if call.resume:
        argv += ["--resume", call.resume]
    return [*argv, *call.flags]


CODEX_PROVIDER = "delegate_endpoint"
CODEX_PROVIDER_KEY = "CODEX_ENDPOINT_KEY"


def _codex(call: Call) -> list[str]:
    argv = [
        "exec",
        "--json",
        "--skip-git-repo-check",
        "--sandbox",
        "workspace-write" if call.allow_edits else "read-only",
    ]
    if call.cli_model:
        argv += ["--model", call.cli_model]
    if call.api_base:
        provider = {
            "name": "delegate",
            "base_url": call.api_base,
            "env_key": CODEX_PROVIDER_KEY,
            "wire_api": "responses",
        }
        table = ",".join(f"{key}={json.dumps(value)}" for key, value in provider.items())
        argv += [
            "--config",
            f"model_providers.{CODEX_PROVIDER}={{{table}}}",
            "--config",
            f"model_provider={CODEX_PROVIDER}",
        ]
    argv += list(call.flags)
    if call.resume:
        return [*argv, "resume", call.resume, "-"]
    return [*argv, "-"]  # "-": the prompt is read from stdin


def _gemini(call: Call) -> list[str]:
    argv = ["--output-format", "stream-json", "--approval-mode", "auto_edit" if call.allow_edits else "plan"]
    argv.append("--skip-trust")  # headless: the folder is the call's file root, which the user chose to share
    if call.cli_model:
        argv += ["--model", call.cli_model]
    if call.resume:
        argv += ["--resume", call.resume]
    return [*argv, *call.flags]


def opencode_config(call: Call) -> str:
    """opencode's configuration for one run (OPENCODE_CONFIG_CONTENT): permissions, and the endpoint if any."""
    deny = "allow" if call.allow_edits else "deny"
    config: dict[str, object] = {"permission": {"edit": deny, "bash": "deny", "webfetch": "deny"}, "share": "disabled"}
    if call.api_base and call.cli_model and "/" in call.cli_model:
        provider, model = call.cli_model.split("/", 1)
        config["provider"] = {provider: {"options": {"baseURL": call.api_base}, "models": {model: {}}}}
    return json.dumps(config)


def _opencode(call: Call) -> list[str]:
    argv = ["run", "--format", "json"]
    if not call.allow_edits:
        argv += ["--agent", "plan"]
    if call.cli_model:
        argv += ["--model", call.cli_model]
    if call.resume:
        argv += ["--session", call.resume]
    return [*argv, *call.flags]


def _custom(call: Call) -> list[str]:
    return [(call.cli_model or "") if part == MODEL_PLACEHOLDER else part for part in call.command[1:]]


PRESETS: dict[str, Preset] = {
    "claude": Preset(
        name="claude",
        binary="claude",
        install="npm install -g @anthropic-ai/claude-code",
        login="run `claude` once and log in with /login (or give it a key with api_key_env)",
        key_env="ANTHROPIC_API_KEY",
        config_env=("CLAUDE_CONFIG_DIR",),
        allowed_flags=frozenset({"--effort", "--fallback-model", "--max-budget-usd"}),
        argv=_claude,
        fixed_env={"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"},
    ),
    "codex": Preset(
        name="codex",
        binary="codex",
        install="npm install -g @openai/codex",
        login="run `codex login` (or give it a key with api_key_env)",
        key_env="CODEX_API_KEY",
        config_env=("CODEX_HOME",),
        allowed_flags=frozenset({"--oss", "--local-provider", "--ephemeral"}),
        argv=_codex,
    ),
    "gemini": Preset(
        name="gemini",
        binary="gemini",
        install="npm install -g @google/gemini-cli",
        login="run `gemini` once and choose a sign-in method (or give it a key with api_key_env)",
        key_env="GEMINI_API_KEY",
        config_env=("GEMINI_CLI_HOME", "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION"),
        allowed_flags=frozenset({"--extensions"}),
        argv=_gemini,
        # The CLI restarts itself once to raise Node's heap: that doubles its start-up for no gain in -p mode.
        fixed_env={"GEMINI_CLI_NO_RELAUNCH": "true"},
    ),
    "opencode": Preset(
        name="opencode",
        binary="opencode",
        install="npm install -g opencode-ai",
        login="run `opencode auth login` (or give it a key with api_key_env)",
        key_env=None,  # which variable depends on the provider of cli_model (provider_key_env)
        config_env=("OPENCODE_CONFIG_DIR",),
        allowed_flags=frozenset({"--variant", "--pure"}),
        argv=_opencode,
        fixed_env={"OPENCODE_DISABLE_AUTOUPDATE": "true"},
    ),
    CUSTOM: Preset(
        name=CUSTOM,
        binary="",
        install="install the program your specialist file's `command` names",
        login="log the program in as its documentation says",
        key_env=None,
        config_env=(),
        allowed_flags=frozenset(),
        argv=_custom,
        resumable=False,
    ),
}
# opencode reaches many providers: an entry's key goes in the variable of its cli_model's provider.
OPENCODE_KEY_ENVS = {
    "anthropic": "ANTHROPIC_API_KEY",
    "openai": "OPENAI_API_KEY",
    "google": "GOOGLE_GENERATIVE_AI_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "groq": "GROQ_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "xai": "XAI_API_KEY",
}


def preset_for(model: str) -> Preset | None:
    """The preset of a cli/ id, or None when there is none."""
    return PRESETS.get(cli_name(model)) if is_cli(model) else None


def key_env_for(preset: Preset, call: Call) -> str | None:
    """The child variable that carries an entry's API key."""
    if preset.name == "opencode":
        provider = (call.cli_model or "").split("/", 1)[0]
        return OPENCODE_KEY_ENVS.get(provider)
    return preset.key_env


def path_env_name(name: str) -> str:
    """DELEGATE_CLI_CLAUDE and so on: where a CLI installed off PATH is named."""
    return f"DELEGATE_CLI_{name.upper()}"


def flag_problem(name: str, flags: tuple[str, ...]) -> str:
    """Why these extra flags are refused for this CLI ('' when all are on its allow-list)."""
    preset = PRESETS.get(name)
    if preset is None:
        return ""
    allowed = preset.allowed_flags
    for flag in flags:
        if not flag.startswith("-"):
            continue  # the value of the flag before it
        if flag.split("=", 1)[0] not in allowed:
            listed = ", ".join(sorted(allowed)) or "none"
            return f"flag {flag.split('=', 1)[0]!r} is not allowed for cli/{name} (allowed: {listed})"
    if flags and not flags[0].startswith("-"):
        return f"flags must start with a flag, not {flags[0]!r}"
    return ""


def cli_entry_problem(model: str, cli_model: str | None, flags: tuple[str, ...], command: tuple[str, ...]) -> str:
    """Why a chain entry's CLI settings do not fit it ('' when they do): they belong to cli/ entries only, the CLI
    must be a known one, cli/custom needs a command and only it takes one, and flags come from the allow-list."""
    if not is_cli(model):
        extra = [name for name, value in (("cli_model", cli_model), ("flags", flags), ("command", command)) if value]
        return f"{', '.join(extra)} only apply to cli/ models, not {model!r}" if extra else ""
    name = cli_name(model)
    if name not in PRESETS:
        return f"unknown CLI {model!r}; known: {', '.join(PREFIX + n for n in PRESETS)}"
    if name == CUSTOM and not command:
        return "cli/custom needs a command: the program and its arguments, e.g. [mycli, --json]"
    if name != CUSTOM and command:
        return f"command only applies to cli/custom; {model} runs its own preset"
    return flag_problem(name, flags)


def base_environment(environ: Mapping[str, str], preset: Preset) -> dict[str, str]:
    """What every run of this CLI gets: the base variables and the CLI's own config variables that are set."""
    names = (*BASE_ENV, *preset.config_env)
    child = {name: environ[name] for name in names if environ.get(name)}
    child.update(preset.fixed_env)
    return child


def installed(environ: Mapping[str, str]) -> list[str]:
    """The preset CLIs this environment has: on PATH, or named by DELEGATE_CLI_<NAME>."""
    found = []
    for name, preset in PRESETS.items():
        named = environ.get(path_env_name(name), "").strip()
        if name != CUSTOM and (
            (named and os.access(named, os.X_OK)) or shutil.which(preset.binary, path=environ.get("PATH"))
        ):
            found.append(name)
    return found


def looks_logged_in(name: str, environ: Mapping[str, str]) -> bool | None:
    """A cheap, local look for the CLI's stored login: True, False, or None where it cannot tell (a keychain)."""
    home = Path(environ.get("HOME") or os.path.expanduser("~"))
    data = Path(environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    if name == "claude":
        folder = Path(environ["CLAUDE_CONFIG_DIR"]) if environ.get("CLAUDE_CONFIG_DIR") else home / ".claude"
        settings = _json(folder / "settings.json")
        if (folder / ".credentials.json").is_file() or settings.get("apiKeyHelper"):
            return True
        return None  # macOS keeps the login in the keychain, which we do not read
    if name == "codex":
        folder = Path(environ["CODEX_HOME"]) if environ.get("CODEX_HOME") else home / ".codex"
        return (folder / "auth.json").is_file()
    if name == "gemini":
        folder = Path(environ["GEMINI_CLI_HOME"]) / ".gemini" if environ.get("GEMINI_CLI_HOME") else home / ".gemini"
        auth = _json(folder / "settings.json").get("security", {})
        return bool(isinstance(auth, dict) and isinstance(auth.get("auth"), dict) and auth["auth"].get("selectedType"))
    if name == "opencode":
        return True if (data / "opencode" / "auth.json").is_file() else None  # it has free models without a login
    return None


def _json(path: Path) -> dict[str, object]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}

"""Coding-agent CLIs as models of a chain: found, limited, run read-only in the call's file root, their answers
and failures turned into what the chain knows (a Completion, or a ProviderError that carries a sentence)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio

from server.calling import llm
from server.calling.cli import events, process
from server.calling.cli.presets import (
    CODEX_PROVIDER_KEY,
    CUSTOM,
    PRESETS,
    Call,
    Preset,
    base_environment,
    cli_name,
    key_env_for,
    looks_logged_in,
    opencode_config,
    path_env_name,
)
from server.calling.providers import Availability
from server.catalog import ModelRef
from server.files import configured_roots, resolved_roots
from server.progress import NO_PROGRESS, Progress
from server.redact import redact
from server.settings import Settings

VERSION_TIMEOUT_S = 15.0
MAX_SESSIONS = 512  # thread follow-ups that can resume a CLI session (older ones send the history instead)
FAILURE_KINDS = {  # our kinds of failure -> the chain's (so retries and cooldowns treat them like an API's)
    "not_logged_in": "auth",
    "auth": "auth",
    "rate_limited": "rate_limited",
    "server_error": "server_error",
}


class Steps:
    """Progress of one CLI run: what the agent does (milestones) and how much it has written."""

    def __init__(self, progress: Progress = NO_PROGRESS, label: str = "") -> None:
        self._progress = progress
        self._label = label

    async def step(self, message: str) -> None:
        """The agent did something worth saying (read a file, ran a command, is retrying)."""
        await self._progress.milestone(f"{self._label}: {message}" if self._label else message)

    async def text(self, characters: int) -> None:
        """The agent's answer has this many characters so far."""
        await self._progress.streamed(characters)


@dataclass(frozen=True)
class Found:
    """Where a CLI is, or why it cannot be used."""

    path: str | None
    reason: str


def find(ref: ModelRef, environ: Mapping[str, str]) -> Found:
    """The CLI's executable: DELEGATE_CLI_<NAME>, else on PATH (custom: the command's program)."""
    name = cli_name(ref.model)
    preset = PRESETS.get(name)
    if preset is None:
        return Found(None, f"unknown CLI {ref.model!r} (known: {', '.join('cli/' + n for n in PRESETS)})")
    program = ref.command[0] if name == CUSTOM and ref.command else preset.binary
    named = environ.get(path_env_name(name), "").strip() if name != CUSTOM else ""
    if named:
        if os.path.isfile(named) and os.access(named, os.X_OK):
            return Found(named, f"{path_env_name(name)}={named}")
        return Found(None, f"{path_env_name(name)} names {named}, which is not an executable file")
    path = shutil.which(program, path=environ.get("PATH"))
    if path is None:
        return Found(None, f"not installed: `{program}` is not on PATH; install it with `{preset.install}`")
    return Found(path, f"found at {path}")


def cli_availability(ref: ModelRef, environ: Mapping[str, str]) -> Availability:
    """Whether a CLI entry can run: its executable is there (the login is found out when it runs)."""
    found = find(ref, environ)
    if found.path is None:
        return Availability(False, found.reason, (path_env_name(cli_name(ref.model)),))
    return Availability(True, f"{ref.model}: {found.reason}")


def cli_root(settings: Settings, environ: Mapping[str, str]) -> tuple[Path | None, str]:
    """The folder CLIs work in by default, and why there is none: DELEGATE_FILE_ROOTS' first folder; over stdio
    else the working directory (unless it is / or home); over HTTP only DELEGATE_FILE_ROOTS."""
    if settings.transport == "http" and not settings.file_roots:
        return None, "over HTTP a CLI works only in a folder DELEGATE_FILE_ROOTS names"
    home = Path(environ.get("HOME") or Path.home())
    paths, why = configured_roots(settings.file_roots, Path.cwd(), home)
    roots = resolved_roots(paths)
    if not roots:
        return None, why or "DELEGATE_FILE_ROOTS names no existing folder"
    return roots[0], ""


def version_of(path: str, environ: Mapping[str, str]) -> str:
    """The CLI's own --version line (run once per binary by CliAgents), or 'version unknown'."""
    env = {k: v for k, v in environ.items() if k in ("PATH", "HOME", "USER", "LANG", "TMPDIR")}
    try:
        done = subprocess.run(
            [path, "--version"],
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT_S,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return "version unknown"
    lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    return lines[-1][:80] if done.returncode == 0 and lines else "version unknown"


def prompt_text(messages: list[dict[str, str]], resumed: bool) -> str:
    """What the CLI reads on stdin: the specialist's instructions and the thread's earlier turns as text, then
    the task (a resumed session already has the rest)."""
    if resumed:
        return messages[-1]["content"]
    parts = []
    for message in messages[:-1]:
        tag = {"system": "instructions", "user": "earlier-task", "assistant": "your-earlier-answer"}[message["role"]]
        parts.append(f"<{tag}>\n{message['content']}\n</{tag}>")
    return "\n\n".join([*parts, messages[-1]["content"]])


def conversation_key(messages: list[dict[str, str]]) -> str:
    """A thread's state: the hash of its messages (a follow-up's messages minus its last are a key stored after the
    turn before)."""
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()


class CliAgents:
    """Runs chain entries that name a CLI; one per server, so the per-CLI limits and sessions are shared."""

    def __init__(self, environ: Mapping[str, str], secrets: list[str], max_concurrency: int) -> None:
        self._environ = environ
        self._secrets = secrets
        self._limiters: dict[str, anyio.CapacityLimiter] = {}
        self._max = max_concurrency
        self._versions: dict[str, str] = {}
        self._sessions: OrderedDict[str, tuple[str, str, Path]] = OrderedDict()  # key -> (model, session, root)

    def _limiter(self, name: str) -> anyio.CapacityLimiter:
        if name not in self._limiters:
            self._limiters[name] = anyio.CapacityLimiter(self._max)
        return self._limiters[name]

    async def version(self, path: str) -> str:
        """The CLI's version, asked once (on a worker thread)."""
        if path not in self._versions:
            self._versions[path] = await anyio.to_thread.run_sync(version_of, path, self._environ)
        return self._versions[path]

    def _call(self, ref: ModelRef, allow_edits: bool, resume: str | None) -> Call:
        return Call(
            cli_model=ref.cli_model,
            flags=ref.flags,
            allow_edits=allow_edits,
            resume=resume,
            api_base=ref.api_base,
            has_key=bool(ref.api_key_env and self._environ.get(ref.api_key_env)),
            command=ref.command,
        )

    def environment(self, ref: ModelRef, preset: Preset, call: Call) -> dict[str, str]:
        """The child's whole environment: base variables, the CLI's own settings, and the key the entry names."""
        env = base_environment(self._environ, preset)
        key_var = key_env_for(preset, call)
        if preset.name == "codex" and call.api_base:
            key_var = CODEX_PROVIDER_KEY  # the endpoint's own provider reads it; OpenAI's login is not used
        if call.has_key and ref.api_key_env and key_var:
            env[key_var] = self._environ[ref.api_key_env]
        if preset.name == "claude" and call.api_base:
            env["ANTHROPIC_BASE_URL"] = call.api_base
        if preset.name == "gemini" and call.api_base:
            env["GOOGLE_GEMINI_BASE_URL"] = call.api_base
        if preset.name == "opencode":
            env["OPENCODE_CONFIG_CONTENT"] = opencode_config(call)
        return env

    def argv(self, path: str, ref: ModelRef, preset: Preset, call: Call) -> list[str]:
        """The whole command line (the prompt is not on it: it goes on stdin)."""
        return [path, *preset.argv(call)]

    async def complete(
        self,
        ref: ModelRef,
        messages: list[dict[str, str]],
        root: Path,
        timeout_s: float,
        allow_edits: bool,
        steps: Steps,
        sink: list[str] | None = None,
    ) -> llm.Completion:
        """Run the CLI on the conversation within timeout_s; the answer, or a ProviderError whose detail is the
        sentence to show. Text arrives in `sink` as the agent writes it."""
        found = find(ref, self._environ)
        if found.path is None:
            raise llm.ProviderError("not_installed", detail=found.reason)
        name = cli_name(ref.model)
        preset = PRESETS[name]
        stored = self._sessions.get(conversation_key(messages[:-1])) if preset.resumable else None
        resume = stored[1] if stored and stored[0] == ref.model and stored[2] == root else None
        call = self._call(ref, allow_edits, resume)
        if name == "codex" and not call.has_key and not call.api_base and looks_logged_in(name, self._environ) is False:
            raise llm.ProviderError("auth", detail=f"not logged in: {preset.login}")
        with anyio.move_on_after(timeout_s) as waiting:
            await self._limiter(name).acquire()
        if waiting.cancelled_caught:
            raise llm.ProviderError("no_slot", detail=self._no_slot(name))
        started = time.monotonic()
        transcript = events.Transcript()
        try:
            exit = await self._run(found.path, ref, preset, call, messages, root, timeout_s, steps, transcript, sink)
        finally:
            self._limiter(name).release()
        text = transcript.text.strip()
        if exit.code == 0 and transcript.failure is None and text:
            if transcript.session and preset.resumable:
                self._remember(messages, transcript.text, ref.model, transcript.session, root)
            cost = transcript.cost_usd
            return llm.Completion(transcript.text, transcript.input_tokens or 0, transcript.output_tokens or 0, cost)
        raise await self._failure(found.path, preset, exit, transcript, time.monotonic() - started)

    def _no_slot(self, name: str) -> str:
        limit = "DELEGATE_CLI_MAX_CONCURRENCY"
        return f"all {self._max} runs of cli/{name} allowed at once were busy until the deadline ({limit})"

    async def _run(
        self,
        path: str,
        ref: ModelRef,
        preset: Preset,
        call: Call,
        messages: list[dict[str, str]],
        root: Path,
        timeout_s: float,
        steps: Steps,
        transcript: events.Transcript,
        sink: list[str] | None,
    ) -> process.Exit:
        async def on_line(line: str) -> None:
            before = len(transcript.pieces)
            for message in events.feed(preset.name, line, transcript):
                await steps.step(message)
            if len(transcript.pieces) > before:
                if sink is not None:
                    sink.extend(transcript.pieces[before:])
                await steps.text(sum(len(piece) for piece in transcript.pieces))

        argv = self.argv(path, ref, preset, call)
        env = self.environment(ref, preset, call)
        return await process.run(argv, env, root, prompt_text(messages, call.resume is not None), timeout_s, on_line)

    def _remember(self, messages: list[dict[str, str]], answer: str, model: str, session: str, root: Path) -> None:
        key = conversation_key([*messages, {"role": "assistant", "content": answer}])
        self._sessions[key] = (model, session, root)
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)

    async def _failure(
        self, path: str, preset: Preset, exit: process.Exit, transcript: events.Transcript, took_s: float
    ) -> llm.ProviderError:
        """The sentence for a run that gave no answer, and the chain's kind of failure for it."""
        name = f"cli/{preset.name}"
        if exit.timed_out:
            last = f"; its last step: {self._clean(transcript.last_step)}" if transcript.last_step else ""
            return llm.ProviderError(
                "killed",
                detail=f"killed at the deadline after {took_s:.0f} s, still working{last} (its whole process group "
                "was stopped; DELEGATE_ATTEMPT_TIMEOUT_S, or DELEGATE_JOB_MAX_S for a job)",
            )
        failure = transcript.failure
        if failure is None and preset.name == "gemini" and exit.code == 41:
            failure = events.Failure("not_logged_in", exit.stderr)
        if failure is not None:
            return self._reported(preset, failure)
        if exit.overflowed:
            return llm.ProviderError(
                "cli_failed", detail=f"wrote more than {process.MAX_STDOUT_BYTES:,} bytes and was stopped"
            )
        version = transcript.version or await self.version(path)
        if exit.code == 0 or transcript.unreadable:
            seen = f": {self._clean(transcript.unreadable)}" if transcript.unreadable else ": no answer in it"
            return llm.ProviderError(
                "unparseable",
                detail=f"its output could not be read ({name} {version}){seen}. This version may not be supported: "
                "see docs/cli-agents.md for the versions checked",
            )
        last = self._clean(exit.stderr.strip().splitlines()[-1]) if exit.stderr.strip() else "no error message"
        guess = events.classify(last)
        if guess.kind != "other":
            return self._reported(preset, guess)
        return llm.ProviderError("cli_failed", detail=f"exited with status {exit.code} ({version}): {last}")

    def _reported(self, preset: Preset, failure: events.Failure) -> llm.ProviderError:
        message = self._clean(failure.message)
        status = f" ({failure.status})" if failure.status else ""
        sentences = {
            "not_logged_in": f"not logged in: {preset.login}",
            "auth": f"its credentials were rejected{status}: {preset.login}",
            "rate_limited": f"rate limited or out of quota{status}: {message}",
            "server_error": f"its provider failed{status}: {message}",
        }
        detail = sentences.get(failure.kind, f"failed: {message}")
        return llm.ProviderError(FAILURE_KINDS.get(failure.kind, "cli_failed"), failure.status, detail)

    def _clean(self, text: str) -> str:
        return redact(" ".join(text.split()), self._secrets)[:200]

"""Reading each CLI's machine output (JSON lines) into one transcript: text, session, tokens, cost, failure."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

MAX_TEXT_CHARS = 2_000_000  # a custom CLI's answer is its output: this much is kept (answers are cut far sooner)
MAX_STEP_CHARS = 120  # a progress message names the tool and the start of its input, no more


@dataclass
class Failure:
    """A failure the CLI reported in its own output."""

    kind: str
    """auth | not_logged_in | rate_limited | server_error | other."""
    message: str
    status: int | None = None


@dataclass
class Transcript:
    """What one run said so far; filled line by line while the CLI works."""

    pieces: list[str] = field(default_factory=list)
    """Answer text as it arrived (for the partial answer and progress)."""
    final: str | None = None
    """The answer the CLI gave as its result, when it gives one apart from the stream."""
    session: str | None = None
    version: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    failure: Failure | None = None
    streamed: bool = False
    """Text arrived as deltas (whole messages that repeat it are then not added again)."""
    finished: bool = False
    """The CLI said it was done (a result or a completed turn)."""
    kept_chars: int = 0
    """Characters of a custom CLI's output kept as its answer so far."""
    last_step: str | None = None
    """The last thing the agent was seen doing (said when it is killed at the deadline)."""
    unreadable: str | None = None
    """The first line that was not the JSON this CLI should print."""

    @property
    def text(self) -> str:
        """The answer: the CLI's result when it gave one, else what streamed."""
        return self.final if self.final is not None else "".join(self.pieces)

    def add_tokens(self, given: int | None, taken: int | None) -> None:
        """Add one step's token counts (a CLI that reports per step)."""
        if isinstance(given, int):
            self.input_tokens = (self.input_tokens or 0) + given
        if isinstance(taken, int):
            self.output_tokens = (self.output_tokens or 0) + taken


def step(name: str, detail: Any = None) -> str:
    """A short progress message for one agent action, e.g. 'Read server/app.py'."""
    if isinstance(detail, dict):
        detail = next((v for v in detail.values() if isinstance(v, str)), "")
    text = f"{name} {detail}".strip() if detail else name
    text = " ".join(text.split())
    return text if len(text) <= MAX_STEP_CHARS else text[: MAX_STEP_CHARS - 1] + "…"


_STATUS = re.compile(r"\b(401|403|429|500|502|503|504|529)\b")


def classify(message: str, status: int | None = None) -> Failure:
    """A failure from the words and status a CLI used (each phrases them its own way)."""
    lowered = message.lower()
    if status is None and (found := _STATUS.search(message)):
        status = int(found.group(1))
    # Quota first: Gemini CLI's quota message ends by suggesting "another /auth method".
    if status == 429 or any(w in lowered for w in ("rate limit", "quota", "usage limit", "too many requests")):
        return Failure("rate_limited", message, status)
    if status in (401, 403) or any(w in lowered for w in ("unauthorized", "invalid api key", "api key not valid")):
        return Failure("auth", message, status)
    if any(w in lowered for w in ("not logged in", "/login", "auth method", "missing environment variable")):
        return Failure("not_logged_in", message, status)
    if (status is not None and status >= 500) or any(
        w in lowered for w in ("overloaded", "server error", "high demand")
    ):
        return Failure("server_error", message, status)
    return Failure("other", message, status)


def read_claude(line: dict[str, Any], into: Transcript) -> list[str]:
    """Claude Code --output-format stream-json: init, assistant/user messages, retries, the result."""
    kind, steps = line.get("type"), []
    if kind == "system" and line.get("subtype") == "init":
        into.session = line.get("session_id") or into.session
        into.version = line.get("claude_code_version") or into.version
    elif kind == "system" and line.get("subtype") == "api_retry":
        steps.append(f"retrying after {line.get('error_status') or line.get('error')}")
    elif kind == "stream_event":
        event = line.get("event") or {}
        delta = event.get("delta") or {}
        if event.get("type") == "content_block_delta" and delta.get("type") == "text_delta":
            into.streamed = True
            into.pieces.append(str(delta.get("text") or ""))
        elif event.get("type") == "message_start" and into.pieces:
            into.pieces.append("\n\n")
    elif kind == "assistant":
        message = line.get("message") or {}
        for block in message.get("content") or []:
            if block.get("type") == "text" and block.get("text") and not line.get("error") and not into.streamed:
                into.pieces.append(("\n\n" if into.pieces else "") + block["text"])
            elif block.get("type") == "tool_use":
                steps.append(step(str(block.get("name")), block.get("input")))
    elif kind == "result":
        into.finished = True
        into.session = line.get("session_id") or into.session
        usage = line.get("usage") or {}
        given = sum(
            usage.get(k) or 0 for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        )
        into.add_tokens(given, usage.get("output_tokens"))
        cost = line.get("total_cost_usd")
        into.cost_usd = float(cost) if isinstance(cost, (int, float)) and cost > 0 else None
        if line.get("is_error"):
            into.failure = classify(str(line.get("result") or line.get("subtype")), line.get("api_error_status"))
        else:
            into.final = str(line.get("result") or "")
    return steps


def read_codex(line: dict[str, Any], into: Transcript) -> list[str]:
    """codex exec --json: thread.started, items (messages, commands), turn.completed / turn.failed, errors."""
    kind, steps = line.get("type"), []
    item = line.get("item") or {}
    if kind == "thread.started":
        into.session = line.get("thread_id") or into.session
    elif kind == "item.started" and item.get("type") == "command_execution":
        steps.append(step("runs", item.get("command")))
    elif kind == "item.completed" and item.get("type") == "agent_message":
        into.final = str(item.get("text") or "")  # the last agent message is the answer
        into.pieces.append(("\n\n" if into.pieces else "") + into.final)
    elif kind == "turn.completed":
        into.finished = True
        usage = line.get("usage") or {}
        into.add_tokens(usage.get("input_tokens"), usage.get("output_tokens"))
    elif kind == "turn.failed":
        into.failure = classify(str((line.get("error") or {}).get("message") or "the turn failed"))
    elif kind == "error":
        message = str(line.get("message") or "")
        if message.startswith("Reconnecting"):
            steps.append(step("retrying:", message))
        else:
            into.failure = classify(message)
    return steps


def read_gemini(line: dict[str, Any], into: Transcript) -> list[str]:
    """Gemini CLI --output-format stream-json: init, message deltas, tool_use / tool_result, error, result."""
    kind, steps = line.get("type"), []
    if kind == "init":
        into.session = line.get("session_id") or into.session
    elif kind == "message" and line.get("role") == "assistant":
        into.pieces.append(str(line.get("content") or ""))
    elif kind == "tool_use":
        steps.append(step(str(line.get("tool_name")), line.get("parameters")))
    elif kind == "error":
        into.failure = classify(str(line.get("message") or line.get("error") or "error"))
    elif kind == "result":
        into.finished = True
        stats = line.get("stats") or {}
        into.add_tokens(stats.get("input_tokens"), stats.get("output_tokens"))
        if line.get("status") != "success":
            error = line.get("error") or {}
            message = error.get("message") if isinstance(error, dict) else str(error)
            into.failure = classify(str(message or "the run failed"))
    return steps


def read_opencode(line: dict[str, Any], into: Transcript) -> list[str]:
    """opencode run --format json: step_start / text / tool_use / step_finish / error events with a sessionID."""
    kind, steps = line.get("type"), []
    into.session = line.get("sessionID") or into.session
    part = line.get("part") or {}
    if kind == "text" and part.get("text"):
        into.pieces.append(("\n\n" if into.pieces else "") + str(part["text"]))
    elif kind == "tool_use":
        state = part.get("state") or {}
        steps.append(step(str(part.get("tool")), state.get("input")))
    elif kind == "step_finish":
        tokens = part.get("tokens") or {}
        into.add_tokens(tokens.get("input"), tokens.get("output"))
        cost = part.get("cost")
        if isinstance(cost, (int, float)) and cost > 0:
            into.cost_usd = (into.cost_usd or 0.0) + float(cost)
        into.finished = into.finished or part.get("reason") == "stop"
    elif kind == "error":
        error = line.get("error") or {}
        data = error.get("data") or {}
        message = str(data.get("message") or error.get("name") or "error")
        if error.get("name") == "ProviderAuthError":
            into.failure = Failure("not_logged_in", message)
        else:
            into.failure = classify(message, data.get("statusCode"))
    return steps


READERS = {"claude": read_claude, "codex": read_codex, "gemini": read_gemini, "opencode": read_opencode}


def feed(name: str, raw: str, into: Transcript) -> list[str]:
    """Read one line of a CLI's output; the progress steps it shows. A custom CLI's output is the answer itself."""
    reader = READERS.get(name)
    if reader is None:
        if into.kept_chars < MAX_TEXT_CHARS:
            into.pieces.append(raw + "\n")
            into.kept_chars += len(raw) + 1
        return []
    stripped = raw.strip()
    if not stripped:
        return []
    try:
        line = json.loads(stripped)
    except ValueError:
        line = None
    if not isinstance(line, dict):
        if into.unreadable is None:
            into.unreadable = stripped[:200]
        return []
    steps = reader(line, into)
    if steps:
        into.last_step = steps[-1]
    return steps

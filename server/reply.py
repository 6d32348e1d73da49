"""What a finished call sends back besides its answer: a big answer by link, and log messages for the client
(logging/setLevel: the level each connection asked for, and what a call reports).

Logging is deprecated in the 2026-07-28 protocol, where a request opts in through its own _meta instead; on older
connections nothing is sent to a client that never asked for a level (the server's own log goes to stderr)."""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from server.answers import SHARED_CALLER, AnswerShelf
from server.progress import Progress
from server.results import DelegateResult, fallback_reasons, summary_line

LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")


READS_STRUCTURED = frozenset({"claude-code"})
"""Clients (by the name they give in initialize) that show their model only a result's structured content, even for
a tool with no outputSchema (Claude Code 2.1.197, checked)."""


def client_name(ctx: object) -> str | None:
    """The name the client gave in its initialize request (clientInfo.name), if any."""
    session = getattr(getattr(ctx, "request_context", None), "session", None)
    info = getattr(getattr(session, "client_params", None), "client_info", None)
    return getattr(info, "name", None)


def connection_of(session: object) -> object:
    """The client's connection behind a request's session: the MCP SDK makes a session per request and has no public
    name for the connection, which lasts as long as the client stays connected (over stdio, the whole run)."""
    return getattr(session, "_connection", session)


class ClientLogLevels:
    """The minimum level each client connection asked for (forgotten with the connection)."""

    def __init__(self) -> None:
        self._levels: WeakKeyDictionary[object, str] = WeakKeyDictionary()

    def set(self, connection: object, level: str) -> None:
        """Remember the level a connection asked for."""
        self._levels[connection] = level

    def allows(self, connection: object, level: str) -> bool:
        """Whether a message at `level` goes to this connection: it asked for this level or a lower one."""
        asked = self._levels.get(connection)
        return asked is not None and LEVELS.index(level) >= LEVELS.index(asked)


def call_messages(result: DelegateResult) -> list[tuple[str, str]]:
    """What a finished call reports as (level, message): its summary line, and each problem that did not stop it."""
    messages = [("info", summary_line(result))]
    reasons = fallback_reasons(result.attempts)
    if reasons:
        messages.append(("warning", f"a fallback answered, because {reasons}"))
    messages += [("warning", warning) for warning in result.warnings]
    return messages


@dataclass(frozen=True)
class LogChannel:
    """Where one call's log messages go: the client's connection, and how to send on it."""

    connection: object
    modern: bool
    """A 2026-07-28 connection: each request opts in itself, and the SDK applies its level."""
    send: Callable[[str, str], Awaitable[None]]


def log_channel(ctx: Any, modern: bool) -> LogChannel | None:
    """Where a call's log messages go, given the SDK's Context (logging is deprecated in 2026-07-28; older clients
    still use it)."""
    if ctx is None:
        return None

    async def send(level: str, message: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the SDK's deprecation warning for logging is a UserWarning
            await ctx.log(level, message, logger_name="delegate-mcp")

    return LogChannel(connection_of(ctx.request_context.session), modern, send)


class Reply:
    """Finishes a call for the client: a big answer goes by link, and its log messages to clients that asked."""

    def __init__(
        self, shelf: AnswerShelf, levels: ClientLogLevels, form: str = "auto", owner: Callable[[], str | None] = str
    ) -> None:
        self.shelf = shelf
        self.levels = levels
        self._form = form
        self._owner = owner

    def caller(self) -> str:
        """Whose answers a call keeps and reads: the named caller of a shared HTTP server, else the shared one."""
        return self._owner() or SHARED_CALLER

    def text_only(self, ctx: object) -> bool:
        """Whether to leave the structured content out: DELEGATE_RESULT_FORM=text, or (auto) a client that shows its
        model the structured content instead of the text, which makes the model read the answer JSON-escaped."""
        return self._form == "text" or (self._form == "auto" and client_name(ctx) in READS_STRUCTURED)

    async def finish(
        self,
        result: DelegateResult,
        progress: Progress,
        offset: int = 0,
        channel: LogChannel | None = None,
        caller: str | None = None,
    ) -> DelegateResult:
        """The result the client gets (from `offset` on, for a job's poll), its last progress and messages sent; a big
        answer is kept as the caller's (`caller`, else this call's)."""
        if result.status == "running":
            await progress.milestone(f"still answering: handed back as job {result.job_id}")
        else:
            await progress.milestone(f"{result.status}: {result.specialist} answered with {result.model}")
        result = await self.shelf.linked(result, offset, caller or self.caller())
        if channel is not None:
            await self.log(channel, call_messages(result))
        return result

    async def log(self, channel: LogChannel, messages: list[tuple[str, str]]) -> None:
        """Send the messages at the levels the client asked for."""
        for level, message in messages:
            if channel.modern or self.levels.allows(channel.connection, level):
                await channel.send(level, message)

"""Malformed JSON-RPC on stdio gets an answer. The MCP SDK drops a line it cannot parse (and reads a request whose id
is an object as a notification), so a client waiting on that id waits for ever; JSON-RPC 2.0 wants -32700 / -32600.

The stdin side of the stdio transport: lines are read here, checked, and only well-formed messages reach the SDK.
Replies go through a callback that writes on the SDK's own output stream, so they never interleave with its writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, BinaryIO

import anyio

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
Reply = Callable[[dict[str, Any]], Awaitable[None]]
_NO_ID = object()


def _error(code: int, message: str, request_id: object = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def _valid_id(value: object) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _message_problem(message: dict[str, Any]) -> str | None:
    """What makes one JSON object no JSON-RPC 2.0 message an MCP peer accepts; None when it is one."""
    if message.get("jsonrpc") != "2.0":
        return 'Invalid Request: "jsonrpc" must be "2.0".'
    request_id = message.get("id", _NO_ID)
    if request_id is not _NO_ID and not _valid_id(request_id):
        return 'Invalid Request: "id" must be a string or an integer.'
    if "method" in message:
        if not isinstance(message["method"], str):
            return 'Invalid Request: "method" must be a string.'
        if message.get("params") is not None and not isinstance(message["params"], dict):
            return 'Invalid Request: "params" must be an object.'
        return None
    if request_id is not _NO_ID and ("result" in message or "error" in message):
        return None  # a response to one of our requests: the SDK matches it, and a response is never answered
    return 'Invalid Request: a message needs "method" (a request or notification) or "result" / "error".'


def line_replies(line: str) -> list[dict[str, Any]] | None:
    """The error replies a line of the protocol stream deserves; None when it is a message for the SDK.

    A blank line is framing noise: no message, no reply ([]).
    """
    if not line.strip():
        return []
    try:
        message = json.loads(line)
    except ValueError:
        return [_error(PARSE_ERROR, "Parse error: the line is not JSON. Send one JSON-RPC 2.0 message per line.")]
    if isinstance(message, list):  # JSON-RPC batches: MCP removed them (2025-06-18); answer every id in one
        why = "Invalid Request: MCP takes one message per line, not a batch (a JSON array)."
        ids = [m["id"] for m in message if isinstance(m, dict) and "method" in m and _valid_id(m.get("id"))]
        return [_error(INVALID_REQUEST, why, request_id) for request_id in ids] or [_error(INVALID_REQUEST, why)]
    if not isinstance(message, dict):
        return [_error(INVALID_REQUEST, "Invalid Request: a message must be a JSON object.")]
    problem = _message_problem(message)
    if problem is None:
        return None
    request_id = message.get("id")
    return [_error(INVALID_REQUEST, problem, request_id if _valid_id(request_id) else None)]


class CheckedLines:
    """The protocol stream's lines as the SDK reads them (`async for line in ...`); malformed lines are answered
    through `reply` instead of passed on. Reading can be abandoned on cancel, so a stop signal is not held up by
    a thread blocked in read()."""

    def __init__(self, wire: BinaryIO) -> None:
        self._wire = wire
        self.reply: Reply | None = None
        """Writes one reply on the protocol stream; set once the SDK's output stream exists."""

    async def __aiter__(self) -> AsyncIterator[str]:
        """Every well-formed line, in order, until end of input."""
        while True:
            raw = await anyio.to_thread.run_sync(self._wire.readline, abandon_on_cancel=True)
            if not raw:
                return
            line = raw.decode("utf-8", errors="replace")
            replies = line_replies(line)
            if replies is None:
                yield line
                continue
            for reply in replies:
                if self.reply is not None:
                    await self.reply(reply)


@contextlib.contextmanager
def claimed_stdin() -> Iterator[BinaryIO]:
    """The protocol's input, read from a private duplicate of fd 0 while fd 0 itself points at the null device (as
    the SDK arranges when it opens stdin itself), so nothing else in the process reads protocol bytes."""
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        fd = -1
    if fd != 0:
        yield sys.stdin.buffer
        return
    private = os.dup(0) if sys.platform == "win32" else _dup_above_std(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    try:
        # never closed: a reader thread abandoned on cancel may still block on it, and a reused number would
        # hand it someone else's bytes
        yield os.fdopen(private, "rb", closefd=False)
    finally:
        with contextlib.suppress(OSError):
            os.dup2(private, 0)


def _dup_above_std(fd: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)

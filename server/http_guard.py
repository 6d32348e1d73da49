"""Connection limits for the HTTP transport: a deadline for each request head and body, and a cap on connections.

uvicorn has neither a request-header timeout nor a cap that acts before a request is parsed, so a client that opens
connections and sends half a header holds a file descriptor each, for ever. This guard wraps uvicorn's HTTP/1.1
protocol and the listening socket: a connection must deliver each request head within the header timeout (and its
body without pausing longer than that); at the cap, the connection that has waited longest for a head is closed
before another is accepted, so a caller with a real request always gets in and descriptors never run out.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

REFUSE_SLACK = 32
"""Connections accepted past the cap, when every open one is busy answering, only to be refused with a 503."""
FD_RESERVE = 256 + REFUSE_SLACK
"""File descriptors kept for everything but client connections: the store, provider connections, logs, imports."""
EVICT_AT_ONCE = 64
"""Connections waiting for a head closed together when the cap is reached (a flood is met in batches)."""
SWEEP_EVERY_S = 0.5
REPORT_EVERY_S = 60.0
_UNKNOWN = object()
_CLOSED_SLOW = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
_REFUSED_FULL = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"


def _response(head: bytes, error: str) -> bytes:
    body = b'{"error": "' + error.encode() + b'"}'
    return head + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body


class ConnectionGuard:
    """The connections of one HTTP server: who owes a request head or body, since when, and who must go."""

    def __init__(self, max_connections: int, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_connections = max_connections
        self.timeout_s = timeout_s
        self.clock = clock
        self._open: dict[GuardedConnection, None] = {}  # insertion order: the oldest connection first
        self._accepted = 0
        """Accepted by the listener, not yet seen by the protocol (each holds a descriptor)."""
        self._last_accept = 0.0
        self._closing = 0
        self._sweep: asyncio.TimerHandle | None = None
        self._closed_slow = 0
        self._refused = 0
        self._reported = clock()

    def __len__(self) -> int:
        return len(self._open) + self._accepted

    def may_accept(self) -> bool:
        """Whether the listener may accept one more connection now. At the cap it first closes the connections that
        have waited longest for a request head, and accepts again once their descriptors are free."""
        if len(self) < self.max_connections:
            return True
        if self._closing:
            return False  # room is being made: their descriptors are freed within a turn of the event loop
        now = self.clock()
        waiting = sorted((c for c in self._open if not c.closing and c.owes(now) == "head"), key=lambda c: c.since)
        for connection in waiting[:EVICT_AT_ONCE]:
            self._close_slow(connection)
        if waiting:
            return False
        return len(self) < self.max_connections + REFUSE_SLACK  # all busy: accept only to answer 503

    def accepted(self) -> None:
        """The listener accepted a connection."""
        self._accepted += 1
        self._last_accept = self.clock()

    def admit(self, connection: GuardedConnection) -> bool:
        """Take a new connection; False when it came past the cap (every open connection is busy): refuse it."""
        self._accepted = max(0, self._accepted - 1)
        admitted = len(self._open) < self.max_connections
        self._open[connection] = None
        if not admitted:
            self._refused += 1
            self._mark_closing(connection)
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(SWEEP_EVERY_S, self.sweep)
        return admitted

    def forget(self, connection: GuardedConnection) -> None:
        """A connection ended."""
        if self._open.pop(connection, _UNKNOWN) is not _UNKNOWN and connection.closing:
            self._closing -= 1

    def sweep(self) -> None:
        """Close every connection that has owed a request head, or the rest of a body, for too long."""
        now = self.clock()
        for connection in list(self._open):
            if not connection.closing and connection.owes(now) and now - connection.since > self.timeout_s:
                self._close_slow(connection)
        if self._accepted and now - self._last_accept > 1.0:
            self._accepted = 0  # an accepted socket whose transport failed never reached the protocol
        self._report(now)
        self._sweep = asyncio.get_running_loop().call_later(SWEEP_EVERY_S, self.sweep) if self._open else None

    def _mark_closing(self, connection: GuardedConnection) -> None:
        connection.closing = True
        self._closing += 1

    def _close_slow(self, connection: GuardedConnection) -> None:
        self._mark_closing(connection)
        self._closed_slow += 1
        connection.close_slow()

    def _report(self, now: float) -> None:
        """One log line a minute at most, however many connections were closed or refused (never one per client)."""
        if (self._closed_slow or self._refused) and now - self._reported >= REPORT_EVERY_S:
            logger.warning(
                "HTTP: closed %d connections that sent no complete request within %g s "
                "(DELEGATE_HTTP_HEADER_TIMEOUT_S) and refused %d with %d open (DELEGATE_HTTP_MAX_CONNECTIONS)",
                self._closed_slow,
                self.timeout_s,
                self._refused,
                len(self._open),
            )
            self._closed_slow = self._refused = 0
            self._reported = now


class GuardedConnection(asyncio.Protocol):
    """One connection: uvicorn's protocol inside, watched by the guard."""

    def __init__(self, inner: Any, guard: ConnectionGuard) -> None:
        self._inner = inner
        self._guard = guard
        self._transport: asyncio.Transport | None = None
        self._admitted = False
        self._phase: str | None = "head"
        self._got_bytes = False
        self.closing = False
        self.since = guard.clock()
        """When the current wait for the client began (a head), or when its last bytes came (a body)."""

    def owes(self, now: float) -> str | None:
        """What the client owes now: "head", "body" or None (the server is answering); tracks when that began."""
        cycle = getattr(self._inner, "cycle", _UNKNOWN)
        if cycle is _UNKNOWN:  # not the uvicorn protocol this was written for: only the cap applies
            return None
        phase = "head" if cycle is None or cycle.response_complete else "body" if cycle.more_body else None
        if phase != self._phase:
            self._phase, self.since, self._got_bytes = phase, now, False
        return phase

    def close_slow(self) -> None:
        """Close the connection: with a 408 when the client had started a request, silently when it was idle."""
        if self._transport is None or self._transport.is_closing():
            return
        if self._got_bytes:
            error = f"request not received within {self._guard.timeout_s:g} s; send the whole request at once"
            self._transport.write(_response(_CLOSED_SLOW, error))
        # abort, not close: close() waits for the client to read what is buffered, which a slow client never does
        self._transport.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Admit the connection (or refuse it with a 503) and hand it to uvicorn."""
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._admitted = self._guard.admit(self)
        if not self._admitted:
            error = f"{self._guard.max_connections} connections are open, each busy; try again in a moment"
            transport.write(_response(_REFUSED_FULL, error))
            transport.abort()
            return
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        """Pass bytes on; bytes of a body restart its pause timer."""
        if not self._admitted:
            return
        now = self._guard.clock()
        if self.owes(now) == "body":
            self.since = now  # a body may take long in all, but must not pause for longer than the timeout
        self._got_bytes = True
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        """The client closed its side."""
        return self._inner.eof_received() if self._admitted else None

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection ended."""
        self._guard.forget(self)
        if self._admitted:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        """Flow control, passed on."""
        if self._admitted:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        """Flow control, passed on."""
        if self._admitted:
            self._inner.resume_writing()


def guarded_protocol(guard: ConnectionGuard) -> type[asyncio.Protocol]:
    """A protocol class for uvicorn.Config(http=...): uvicorn's HTTP/1.1 protocol behind the guard."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Guarded(GuardedConnection):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(H11Protocol(**kwargs), guard)

    return Guarded


class GuardedListener(socket.socket):
    """The listening socket; it accepts a connection only when the guard has room (asyncio's event loop calls
    accept() in bursts, so counting at the protocol would be too late to save descriptors)."""

    def __init__(self, sock: socket.socket, guard: ConnectionGuard) -> None:
        super().__init__(sock.family, sock.type, sock.proto, fileno=sock.detach())
        self._guard = guard

    def accept(self) -> tuple[socket.socket, Any]:
        """Accept one connection, or report none waiting while the guard makes room."""
        if not self._guard.may_accept():
            raise BlockingIOError(errno.EAGAIN, "connection cap reached")
        conn, address = super().accept()
        self._guard.accepted()
        return conn, address


def connection_cap(wanted: int) -> int:
    """The connection cap that fits this process's file descriptors, raising the soft limit when the hard one
    allows (a server's usual 1,024 is too few for a busy team); warns when it must lower the cap."""
    if sys.platform == "win32":
        return wanted
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < needed:
        cap = max(1, soft - FD_RESERVE)
        logger.warning(
            "HTTP: this process may open %d files (ulimit -n), too few for DELEGATE_HTTP_MAX_CONNECTIONS=%d; serving "
            "at most %d connections at once. Raise the limit (ulimit -n %d) to allow more.",
            soft,
            wanted,
            cap,
            needed,
        )
        return cap
    return wanted


class QuietAcceptErrors(logging.Filter):
    """asyncio logs a full traceback for every failed accept(); out of descriptors, that is thousands a second.
    Keep one line (no traceback) every REPORT_EVERY_S."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._last = -REPORT_EVERY_S

    def filter(self, record: logging.LogRecord) -> bool:
        """Let through everything but repeated accept failures, which lose their traceback."""
        if "socket.accept() out of system resource" not in str(record.msg):
            return True
        now = self._clock()
        if now - self._last < REPORT_EVERY_S:
            return False
        self._last = now
        reason = record.exc_info[1] if record.exc_info else None
        record.msg = f"HTTP: cannot accept connections ({reason or 'out of system resources'}); retrying"
        record.args, record.exc_info, record.exc_text = None, None, None
        return True

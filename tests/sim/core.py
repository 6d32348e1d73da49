"""The simulator's HTTP server: scripts per model, served in the wire format each request arrives in."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import select
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any

from tests.sim import wire_anthropic, wire_gemini, wire_openai, wire_responses
from tests.sim.script import Behaviour, Turn

CHUNK_CHARS = 8
WIRES: tuple[ModuleType, ...] = (wire_openai, wire_anthropic, wire_gemini, wire_responses)
# The formats litellm's chat calls use (the fault suite runs over each); the Responses API is served too (Codex
# speaks only it) and has its own tests.
WIRE_NAMES = tuple(w.NAME for w in WIRES if w is not wire_responses)


class _Server(ThreadingHTTPServer):
    """HTTP server that never waits for its handler threads."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    simulator: ProviderSimulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore client disconnects; report anything else."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Serves every wire format's endpoint according to the simulator's script."""

    protocol_version = "HTTP/1.1"
    server: _Server
    record: dict[str, Any]

    def log_message(self, format: str, *args: Any) -> None:
        """Stay silent."""

    def setup(self) -> None:
        """Register the connection so stop() can cut it."""
        super().setup()
        self.server.simulator._track(self.connection, add=True)

    def finish(self) -> None:
        """Unregister the connection."""
        self.server.simulator._track(self.connection, add=False)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        """Every GET is unknown."""
        self._guard(lambda: self._not_found())

    def do_POST(self) -> None:
        """Dispatch a POST request."""
        self._guard(self._post)

    def _guard(self, action: Callable[[], None]) -> None:
        try:
            if self.server.simulator._stopped.is_set():
                self.close_connection = True
                return
            action()
        except OSError:  # client went away (BrokenPipe, ConnectionReset) or stop() cut the socket
            self.close_connection = True

    def _not_found(self) -> None:
        self._json(404, {"error": {"message": f"unknown path {self.path}", "code": "unknown_url"}})

    def _post(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        wire = next((w for w in WIRES if w.matches(self.path)), None)
        if wire is None:
            self._not_found()
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._json(400, {"error": {"message": "request body is not a JSON object"}})
            return
        sim = self.server.simulator
        model = wire.model(self.path, body)
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.record, beh = sim._record_and_pick(wire.NAME, self.path, model, body, headers)
        if callable(beh.tool_call):
            beh = dataclasses.replace(beh, tool_call=beh.tool_call(body))
        if (beh.hang and not sim._wait(None, self)) or (beh.delay and not sim._wait(beh.delay, self)):
            self.close_connection = True
            return
        if beh.status != 200:
            status, payload, headers_out = wire.error(beh.status, beh.error_text, beh)
            self._json(status, payload, {**headers_out, **(beh.headers or {})})
            return
        reply = beh.responder(body) if beh.responder else beh.reply
        if reply is None:
            reply = f"[{model}] " + wire.user_text(body)[:200]
        usage = beh.usage or {}
        turn = Turn(
            model=model,
            reply=reply,
            input_tokens=usage.get("prompt_tokens", max(1, wire.prompt_chars(body) // 4)),
            output_tokens=usage.get("completion_tokens", max(1, len(reply) // 4)),
            behaviour=beh,
            request=body,
        )
        if wire.streaming(self.path, body):
            self._stream(wire, turn)
        elif beh.malformed:
            self._send(200, b'{"choices": [', "application/json", beh.headers)
        else:
            self._json(200, wire.answer(turn), beh.headers)

    def _stream(self, wire: ModuleType, turn: Turn) -> None:
        beh = turn.behaviour
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        for key, value in (beh.headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if beh.malformed:
            self._write([wire.malformed_stream()])
            return
        self._write(wire.stream_open(turn))
        reply = turn.reply
        pieces = [reply[i : i + CHUNK_CHARS] for i in range(0, len(reply), CHUNK_CHARS)] or [""]
        if beh.tool_call:
            pieces = [""]  # a tool call is one piece: its arguments
        for sent, piece in enumerate(pieces):
            if beh.stream_error is not None and sent >= beh.stream_error_after:
                self._write(wire.stream_error(beh.stream_error, beh.error_text, beh))
                return
            if beh.stream_stall_after is not None and sent >= beh.stream_stall_after:
                self.server.simulator._wait(None, self)
                return
            if sent and beh.chunk_delay and not self.server.simulator._wait(beh.chunk_delay, self):
                return
            self._write(wire.stream_piece(turn, piece, sent))
        self._write(wire.stream_close(turn))

    def _write(self, frames: list[str]) -> None:
        for frame in frames:
            self.wfile.write(frame.encode())
        self.wfile.flush()

    def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _send(self, status: int, data: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


def _client_gone(conn: socket.socket) -> bool:
    """Whether the client closed its side of the connection."""
    try:
        readable, _, _ = select.select([conn], [], [], 0)
        return bool(readable) and conn.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


class ProviderSimulator:
    """A provider on 127.0.0.1 speaking OpenAI, Anthropic and Gemini wire formats, its answers scripted per model.

    A model's script is the same whichever format asks: `enqueue("m", status=429, retry_after=2)` becomes a
    Retry-After header for OpenAI and Anthropic and a RetryInfo retryDelay for Gemini.
    """

    def __init__(self) -> None:
        """Prepare an idle simulator; call start() or use it as a context manager."""
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._queues: dict[str, deque[Behaviour]] = {}
        self._defaults: dict[str, Behaviour] = {}
        self._conns: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.history: list[dict[str, Any]] = []
        """One record per request: model, body, headers (lower-case), time, aborted, format, path."""

    @property
    def url(self) -> str:
        """The server's root URL."""
        if self._server is None:
            raise RuntimeError("simulator is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def base_url(self) -> str:
        """The api_base for OpenAI-compatible models."""
        return self.url + "/v1"

    def api_base(self, wire: str) -> str:
        """The api_base litellm needs for a wire format (it appends /v1/messages, or /models/<m>:… itself)."""
        bases = {
            "openai": self.base_url,
            "anthropic": self.url,
            "gemini": self.url + "/v1beta",
            "responses": self.base_url,
        }
        return bases[wire]

    def start(self) -> ProviderSimulator:
        """Bind an ephemeral port and serve in a daemon thread."""
        self._stopped.clear()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.simulator = self
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake hanging handlers and cut open connections."""
        self._stopped.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._server = self._thread = None

    def __enter__(self) -> ProviderSimulator:
        """Start on entry."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Stop on exit."""
        self.stop()

    def enqueue(self, model: str, reply: str | None = None, **kwargs: Any) -> None:
        """Script the next answer for a model (keywords: the fields of Behaviour); consumed in FIFO order."""
        beh = Behaviour(reply=reply, **kwargs)
        with self._lock:
            self._queues.setdefault(model, deque()).append(beh)

    def set_default(self, model: str, reply: str | None = None, **kwargs: Any) -> None:
        """Set the persistent behaviour used when a model's queue is empty (same keywords as enqueue)."""
        beh = Behaviour(reply=reply, **kwargs)
        with self._lock:
            self._defaults[model] = beh

    def reset(self) -> None:
        """Clear queues, defaults and history."""
        with self._lock:
            self._queues.clear()
            self._defaults.clear()
            self.history.clear()

    def requests(self, model: str) -> list[dict[str, Any]]:
        """Full request records for one model, in order."""
        with self._lock:
            return [r for r in self.history if r["model"] == model]

    def calls(self, model: str) -> list[dict[str, Any]]:
        """Request bodies received for one model, in order."""
        return [r["body"] for r in self.requests(model)]

    def count(self, model: str) -> int:
        """How many requests one model received."""
        return len(self.requests(model))

    def aborted(self, model: str) -> int:
        """How many of a model's requests the client abandoned (closed the connection) while waiting."""
        return sum(1 for r in self.requests(model) if r.get("aborted"))

    def _record_and_pick(
        self, wire: str, path: str, model: str, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[dict[str, Any], Behaviour]:
        record = {
            "model": model,
            "body": body,
            "headers": headers,
            "time": time.monotonic(),
            "aborted": False,
            "format": wire,
            "path": path,
        }
        with self._lock:
            self.history.append(record)
            queue = self._queues.get(model)
            if queue:
                return record, queue.popleft()
            return record, self._defaults.get(model, Behaviour())

    def _wait(self, seconds: float | None, handler: _Handler | None = None) -> bool:
        """Sleep in small steps; False if stop() interrupted or the client went away (always False for None)."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while not self._stopped.is_set():
            if handler is not None and _client_gone(handler.connection):
                handler.record["aborted"] = True
                return False
            left = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if left <= 0:
                return True
            self._stopped.wait(left)
        return False

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

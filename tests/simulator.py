"""A scriptable OpenAI-compatible chat completions provider for tests (stdlib only)."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHUNK_CHARS = 8
ERROR_KINDS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("not_found_error", "model_not_found"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


@dataclass(frozen=True)
class Behaviour:
    """How the simulator answers one request for a model."""

    reply: str | None = None
    status: int = 200
    delay: float = 0.0
    hang: bool = False
    malformed: bool = False
    error_text: str | None = None
    headers: dict[str, str] | None = None
    usage: dict[str, int] | None = None
    stream_stall_after: int | None = None
    responder: Callable[[dict[str, Any]], str] | None = None
    chunk_delay: float = 0.0


def _text(content: Any) -> str:
    """Flatten a message content (string or list of parts) to plain text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


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
    """Serves /v1/chat/completions according to the simulator's script."""

    protocol_version = "HTTP/1.1"
    server: _Server

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
        self._guard(lambda: self._json(404, _error_body(404, f"unknown path {self.path}", "unknown_url")))

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

    def _post(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.split("?")[0].rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._json(404, _error_body(404, f"unknown path {self.path}", "unknown_url"))
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._json(400, _error_body(400, "request body is not a JSON object"))
            return
        sim = self.server.simulator
        model = str(body.get("model", ""))
        headers = {k.lower(): v for k, v in self.headers.items()}
        record, beh = sim._record_and_pick(model, body, headers)
        self.record = record
        if (beh.hang and not sim._wait(None, self)) or (beh.delay and not sim._wait(beh.delay, self)):
            self.close_connection = True
            return
        if beh.status != 200:
            self._json(beh.status, _error_body(beh.status, beh.error_text), beh.headers)
            return
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        reply = beh.responder(body) if beh.responder else beh.reply
        if reply is None:
            users = [m for m in messages if m.get("role") == "user"]
            reply = f"[{model}] " + (_text(users[-1].get("content"))[:200] if users else "")
        usage = dict(beh.usage) if beh.usage else {}
        usage.setdefault("prompt_tokens", max(1, sum(len(_text(m.get("content"))) for m in messages) // 4))
        usage.setdefault("completion_tokens", max(1, len(reply) // 4))
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if body.get("stream"):
            self._stream(body, model, reply, usage, beh)
        elif beh.malformed:
            self._send(200, b'{"choices": [', "application/json", beh.headers)
        else:
            message = {"role": "assistant", "content": reply}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            self._json(200, {**_envelope(model, "chat.completion"), "choices": [choice], "usage": usage}, beh.headers)

    def _stream(self, body: dict[str, Any], model: str, reply: str, usage: dict[str, int], beh: Behaviour) -> None:
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        for key, value in (beh.headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if beh.malformed:
            self._event('{"choices": [')
            return
        base = _envelope(model, "chat.completion.chunk")
        pieces = [reply[i : i + CHUNK_CHARS] for i in range(0, len(reply), CHUNK_CHARS)] or [""]
        for sent, piece in enumerate(pieces):
            if beh.stream_stall_after is not None and sent >= beh.stream_stall_after:
                self.server.simulator._wait(None, self)
                return
            if sent and beh.chunk_delay and not self.server.simulator._wait(beh.chunk_delay, self):
                return
            delta = {"role": "assistant", "content": piece} if sent == 0 else {"content": piece}
            self._event(json.dumps({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}))
        self._event(json.dumps({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
        if (body.get("stream_options") or {}).get("include_usage"):
            self._event(json.dumps({**base, "choices": [], "usage": usage}))
        self._event("[DONE]")

    def _event(self, data: str) -> None:
        self.wfile.write(f"data: {data}\n\n".encode())
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


def _envelope(model: str, kind: str) -> dict[str, Any]:
    """Common id/object/created/model fields of a completion or chunk."""
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": kind, "created": int(time.time()), "model": model}


def _error_body(status: int, text: str | None, code: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error payload for a status code."""
    fallback = ("server_error" if status >= 500 else "invalid_request_error", str(status))
    kind, default_code = ERROR_KINDS.get(status, fallback)
    return {"error": {"message": text or "simulated error", "type": kind, "param": None, "code": code or default_code}}


class ProviderSimulator:
    """An OpenAI-compatible provider on 127.0.0.1 whose answers are scripted per model."""

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

    @property
    def base_url(self) -> str:
        """The api_base to hand to litellm."""
        if self._server is None:
            raise RuntimeError("simulator is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

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

    def enqueue(
        self,
        model: str,
        reply: str | None = None,
        *,
        status: int = 200,
        delay: float = 0.0,
        hang: bool = False,
        malformed: bool = False,
        error_text: str | None = None,
        headers: dict[str, str] | None = None,
        usage: dict[str, int] | None = None,
        stream_stall_after: int | None = None,
        chunk_delay: float = 0.0,
    ) -> None:
        """Script the next answer for a model; answers are consumed in FIFO order."""
        beh = Behaviour(
            reply,
            status,
            delay,
            hang,
            malformed,
            error_text,
            headers,
            usage,
            stream_stall_after,
            chunk_delay=chunk_delay,
        )
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

    def calls(self, model: str) -> list[dict[str, Any]]:
        """Request bodies received for one model, in order."""
        with self._lock:
            return [r["body"] for r in self.history if r["model"] == model]

    def count(self, model: str) -> int:
        """How many requests one model received."""
        return len(self.calls(model))

    def aborted(self, model: str) -> int:
        """How many of a model's requests the client abandoned (closed the connection) while waiting."""
        with self._lock:
            return sum(1 for r in self.history if r["model"] == model and r.get("aborted"))

    def _record_and_pick(
        self, model: str, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[dict[str, Any], Behaviour]:
        record = {"model": model, "body": body, "headers": headers, "time": time.monotonic(), "aborted": False}
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

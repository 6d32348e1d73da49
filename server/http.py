"""Streamable HTTP transport: stateless, Host/Origin checked, with an optional bearer token."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

from server.callers import ONLY, Caller, Tokens, named_tokens, serving
from server.errors import ConfigError
from server.settings import Settings

logger = logging.getLogger(__name__)
ASGIApp = Any  # starlette's (scope, receive, send) callable
BYTES_PER_CHAR = 6  # a client that escapes every character as \uXXXX sends 6 bytes for each
BODY_OVERHEAD_BYTES = 64 * 1024  # the JSON-RPC envelope, argument names, and room for small arguments


def _split(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def is_loopback(host: str) -> bool:
    """Whether a host name or address (IPv6 possibly in brackets) means this machine only."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # a dual-stack socket shows 127.0.0.1 as ::ffff:127.0.0.1
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def exposure_problem(settings: Settings) -> str | None:
    """Why serving HTTP with these settings would be unsafe, in one sentence; None when it is fine."""
    tokens = settings.http_token or settings.http_tokens or settings.http_tokens_file
    if tokens or settings.http_allow_no_token or is_loopback(settings.http_host):
        return None
    return (
        f"refusing to serve HTTP on {settings.http_host} without DELEGATE_HTTP_TOKEN, because anyone who can reach "
        "that address could spend your provider keys: set DELEGATE_HTTP_TOKEN (16 characters or more), serve on "
        "127.0.0.1, or set DELEGATE_HTTP_ALLOW_NO_TOKEN=1 if a proxy in front of it checks who calls."
    )


def max_body_bytes(settings: Settings) -> int:
    """The largest request body accepted: a task and a context at their character limits, fully escaped."""
    return (settings.max_task_chars + settings.max_context_chars) * BYTES_PER_CHAR + BODY_OVERHEAD_BYTES


def security(settings: Settings) -> TransportSecuritySettings:
    """DNS-rebinding protection: only the listed Host and Origin headers are accepted."""
    hosts = _split(settings.http_allowed_hosts) or [
        "127.0.0.1:*",
        "localhost:*",
        "[::1]:*",
        f"{settings.http_host}:{settings.http_port}",
    ]
    origins = _split(settings.http_allowed_origins) or ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


async def _send_json(send: Any, status: int, payload: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), *headers]}
    )
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


class BearerToken:
    """ASGI middleware: every HTTP request must carry `Authorization: Bearer <token>` (scheme in any case); the
    token names the caller, who is then the caller of everything the request does."""

    def __init__(self, app: ASGIApp, tokens: Tokens, hint: str) -> None:
        self._app = app
        self._tokens = tokens
        self._hint = hint

    def _caller(self, header: bytes) -> Caller | None:
        scheme, _, given = header.strip().partition(b" ")
        caller = self._tokens.identify(given.strip())  # constant time: no timing oracle on any token
        return caller if scheme.lower() == b"bearer" else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Pass authorised requests (and lifespan events) through as their caller; answer the rest with 401."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        caller = self._caller(dict(scope.get("headers") or []).get(b"authorization", b""))
        if caller is None:
            error = {"error": f"unauthorized: {self._hint}"}
            await _send_json(send, 401, error, [(b"www-authenticate", b"Bearer")])
            return
        with serving(caller):
            await self._app(scope, receive, send)


class LoopbackHostGuard:
    """ASGI middleware: a Host header naming this machine (localhost, 127.x, ::1) must come from this machine.
    A remote caller that claims a loopback Host is forging it to pass the Host allow-list."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Refuse forged loopback Host headers with 421, as the SDK refuses foreign ones."""
        if scope["type"] == "http":
            host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            peer = (scope.get("client") or ("",))[0]
            if is_loopback(name) and not is_loopback(str(peer)):
                await _send_json(send, 421, {"error": "Invalid Host header"}, [])
                return
        await self._app(scope, receive, send)


class BodyLimitMessage:
    """ASGI middleware: the SDK's bare 413 becomes a JSON-RPC error that names the limit and what sets it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self._app = app
        self._limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Pass everything through, replacing only a 413 response."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        replaced = False

        async def relay(message: dict[str, Any]) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] == 413:
                replaced = True
                error = {
                    "code": -32600,
                    "message": f"request body too large: the limit is {self._limit:,} bytes, sized from "
                    "DELEGATE_MAX_TASK_CHARS and DELEGATE_MAX_CONTEXT_CHARS (6 bytes per character, the worst case "
                    "of JSON escaping). Send less context.",
                }
                await _send_json(send, 413, {"jsonrpc": "2.0", "id": None, "error": error}, [])
            elif not replaced:
                await send(message)

        await self._app(scope, receive, relay)


def http_app(server: MCPServer, settings: Settings) -> ASGIApp:
    """The ASGI app: stateless streamable HTTP at /mcp, so any number of instances can sit behind a balancer."""
    limit = max_body_bytes(settings)
    app = server.streamable_http_app(
        stateless_http=True,
        transport_security=security(settings),
        host=settings.http_host,
        max_request_body_size=limit,
    )
    app = LoopbackHostGuard(BodyLimitMessage(app, limit))
    named = named_tokens(settings)
    if named is not None:
        return BearerToken(app, named, "send your own caller token as a bearer token (DELEGATE_HTTP_TOKENS)")
    if settings.http_token:
        only = Tokens(((settings.http_token.encode(), ONLY),))
        return BearerToken(app, only, "send the DELEGATE_HTTP_TOKEN value as a bearer token")
    return app


def listening_socket(host: str, port: int) -> socket.socket:
    """Bind and listen on host:port now, so a port in use is a clear error before anything is served."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((host, port), family=family, backlog=2048)
    except socket.gaierror:
        raise ConfigError(
            f"cannot serve HTTP on {host!r}: no such address; check --host or DELEGATE_HTTP_HOST."
        ) from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is already in use, probably by another server (another delegate-mcp?). "
                "Stop it, or choose another port with --port or DELEGATE_HTTP_PORT."
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}. Check --host and --port.") from None
    sock.set_inheritable(True)
    return sock


def start_line(settings: Settings, sock: socket.socket) -> str:
    """The one line printed when serving: where, and whether callers need the token."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    named = named_tokens(settings)
    if named is not None:
        access = f"a bearer token per caller required ({len(named.names)} named callers, DELEGATE_HTTP_TOKENS)"
    elif settings.http_token:
        access = "bearer token required (DELEGATE_HTTP_TOKEN)"
    else:
        access = (
            "no token required: anyone who can reach this address can use it (set DELEGATE_HTTP_TOKEN to require one)"
        )
    return f"delegate-mcp: serving MCP over HTTP at http://{shown}:{port}/mcp; {access}. Ctrl-C stops it."


def run_http(server: MCPServer, settings: Settings, announce: Callable[[str], None]) -> None:
    """Serve until interrupted; `announce` gets the start line once the port is ours; no access log."""
    import uvicorn

    if not (settings.http_token or named_tokens(settings)) and not is_loopback(settings.http_host):
        logger.warning(
            "serving on %s without DELEGATE_HTTP_TOKEN (DELEGATE_HTTP_ALLOW_NO_TOKEN=1): whoever reaches it can "
            "spend your keys unless a proxy in front checks callers",
            settings.http_host,
        )
    from server.http_guard import ConnectionGuard, GuardedListener, QuietAcceptErrors, connection_cap, guarded_protocol

    guard = ConnectionGuard(connection_cap(settings.http_max_connections), settings.http_header_timeout_s)
    sock = GuardedListener(listening_socket(settings.http_host, settings.http_port), guard)
    logging.getLogger("asyncio").addFilter(QuietAcceptErrors())
    config = uvicorn.Config(
        http_app(server, settings),
        log_config=None,
        access_log=False,
        lifespan="on",
        http=guarded_protocol(guard),
        loop="asyncio",  # the guard counts connections in socket.accept(), which uvloop would bypass
        timeout_keep_alive=max(1, round(settings.http_header_timeout_s)),
    )
    announce(start_line(settings, sock))
    with absorbed_stop_signals():
        uvicorn.Server(config).run(sockets=[sock])


@contextlib.contextmanager
def absorbed_stop_signals() -> Iterator[None]:
    """uvicorn shuts down gracefully on SIGTERM and SIGINT, then raises the signal again for the handler it found.
    Absorbing that one lets the event loop close as it does after any shutdown, which cancels the jobs still
    running, so they settle their budget and record themselves as lost (an exiting handler would leave first)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {stop: signal.signal(stop, lambda *_: None) for stop in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for stop, handler in before.items():
            signal.signal(stop, handler)

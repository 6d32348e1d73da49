"""Streamable HTTP transport: stateless, Host/Origin checked, with an optional bearer token."""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

from server.settings import Settings

logger = logging.getLogger(__name__)
ASGIApp = Any  # starlette's (scope, receive, send) callable


def _split(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


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


class BearerToken:
    """ASGI middleware: every HTTP request must carry `Authorization: Bearer <token>`."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Pass authorised requests (and lifespan events) through; answer the rest with 401."""
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):  # constant time: no timing oracle on the token
                body = json.dumps({"error": "unauthorized: send the DELEGATE_HTTP_TOKEN value as a bearer token"})
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
                    }
                )
                await send({"type": "http.response.body", "body": body.encode()})
                return
        await self._app(scope, receive, send)


def http_app(server: MCPServer, settings: Settings) -> ASGIApp:
    """The ASGI app: stateless streamable HTTP at /mcp, so any number of instances can sit behind a balancer."""
    app = server.streamable_http_app(
        stateless_http=True, transport_security=security(settings), host=settings.http_host
    )
    return BearerToken(app, settings.http_token) if settings.http_token else app


def run_http(server: MCPServer, settings: Settings) -> None:
    """Serve until interrupted; logs go to stderr through our logging, no access log."""
    import uvicorn

    if not settings.http_token and settings.http_host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning(
            "serving on %s without DELEGATE_HTTP_TOKEN: anyone who can reach it can spend your keys", settings.http_host
        )
    uvicorn.run(
        http_app(server, settings),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )

"""When the MCP handshake is over: the moment heavy background work may start without slowing `initialize`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class AfterHandshake:
    """Middleware that runs a callback once the handshake is over: after the first request that follows it has
    been answered (usually tools/list), before a tools/call, or a moment after `initialized` if nothing follows.
    Heavy background work started then (litellm's import) no longer competes with `initialize` for the GIL."""

    def __init__(self, callback: Callable[[], Any], idle_s: float = 0.5) -> None:
        self._callback = callback
        self._idle_s = idle_s
        self._done = threading.Event()

    def fire(self) -> None:
        """Run the callback, once."""
        if not self._done.is_set():
            self._done.set()
            self._callback()

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        """Pass every message through; fire at the right moment."""
        method = ctx.method
        if method == "notifications/initialized":
            timer = threading.Timer(self._idle_s, self.fire)
            timer.daemon = True
            timer.start()
            return await call_next(ctx)
        if method == "initialize":
            return await call_next(ctx)
        if method == "tools/call":
            self.fire()
        try:
            return await call_next(ctx)
        finally:
            self.fire()

"""A minimal JSON-RPC-over-stdio MCP client for benchmarks: no SDK overhead on the measuring side."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

INITIALIZE = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}


class RawClient:
    """Spawns a server and talks to it with newline-delimited JSON-RPC (the stdio transport)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self._next_id = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def spawn(cls, command: list[str], env: dict[str, str]) -> tuple[RawClient, float]:
        """Start the server; returns the client and the spawn time (monotonic)."""
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            *command,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            limit=2**24,
        )
        return cls(process), started

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            message = json.loads(line)
            future = self._waiting.pop(message.get("id"), None) if "id" in message else None
            if future is not None and not future.done():
                future.set_result(message)

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a request and wait for its response."""
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[self._next_id] = future
        self._send({"jsonrpc": "2.0", "id": self._next_id, "method": method, **({"params": params} if params else {})})
        return await future

    def notify(self, method: str) -> None:
        """Send a notification."""
        self._send({"jsonrpc": "2.0", "method": method})

    def _send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(message) + "\n").encode())

    async def handshake(self) -> None:
        """initialize, then the initialized notification."""
        await self.request("initialize", INITIALIZE)
        self.notify("notifications/initialized")

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """tools/call; raises when the result is an error."""
        response = await self.request("tools/call", {"name": tool, "arguments": arguments})
        result = response.get("result") or {}
        if result.get("isError") or "error" in response:
            raise RuntimeError(f"{tool} failed: {json.dumps(response)[:300]}")
        return result

    def rss_kib(self) -> int:
        """The server's resident memory, from /proc (Linux)."""
        with open(f"/proc/{self.process.pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

    async def close(self) -> None:
        """Close stdin and wait for the server to exit."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
        self._reader.cancel()


def server_env(sim_base: str, **extra: str) -> dict[str, str]:
    """The built-in specialists with every model on the simulator (OpenAI-compatible), no real keys."""
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_API_BASE", "_BASE_URL"))}
    env.update(
        {
            "OPENAI_API_BASE": sim_base,
            "OPENAI_API_KEY": "sk-bench-000000000000",
            "ROUTER_MODEL": "openai/bench-router",
            "CODE_MODEL": "openai/bench-coder",
            "LONG_CONTEXT_MODEL": "openai/bench-writer",
            "GENERAL_MODEL": "openai/bench-general",
            **extra,
        }
    )
    return env

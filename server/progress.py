"""Progress notifications: routed → answer streaming (characters so far) → done; increasing and rate-limited."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

Send = Callable[[float, str], Awaitable[None]]
MIN_INTERVAL_S = 0.25  # streaming updates at most four times a second; milestones always go out


class Progress:
    """Turns events of one call into progress notifications whose value always increases."""

    def __init__(self, send: Send | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._send = send
        self._clock = clock
        self._value = 0.0
        self._last_sent = float("-inf")

    async def milestone(self, message: str) -> None:
        """A step worth reporting at once (routed, answering, done)."""
        await self._emit(message)

    async def streamed(self, characters: int) -> None:
        """Answer text arriving; reported at most every MIN_INTERVAL_S."""
        if self._clock() - self._last_sent >= MIN_INTERVAL_S:
            await self._emit(f"answering: {characters:,} characters so far")

    async def _emit(self, message: str) -> None:
        if self._send is None:
            return
        self._value += 1
        self._last_sent = self._clock()
        try:
            await self._send(self._value, message)
        except Exception:
            self._send = None  # a client that cannot take progress must not break the call


NO_PROGRESS = Progress(None)


def progress_for(ctx: Any) -> Progress:
    """Progress notifications for a tool call, given the SDK's Context (sent only when the client asked for them)."""
    if ctx is None:
        return NO_PROGRESS
    return Progress(lambda value, message: ctx.report_progress(value, None, message))

"""Stopping the stdio server on SIGTERM or Ctrl-C the way closing stdin stops it: every call in flight is cancelled,
so it settles its budget reservation, and every handed-off job is recorded as lost; all within a grace period."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Awaitable, Callable
from types import FrameType

import anyio

GRACE_S = 5.0
"""Longest a stop signal waits for calls to unwind (each writes a row or two to the store) before leaving anyway."""


def run_until_stopped(
    serve: Callable[[], Awaitable[None]], leave: Callable[[], object], grace_s: float = GRACE_S
) -> None:
    """Run `serve` on an event loop until it ends or a stop signal comes. SIGTERM and SIGINT cancel it, as a closed
    stdin ends it: calls unwind, settle and record themselves, then the loop's leftover tasks (jobs) are cancelled
    and mark themselves lost. `leave` exits the process if that takes longer than `grace_s`, or on a second signal.
    """
    stopping = threading.Event()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with anyio.CancelScope() as scope:

            def stop(_signum: int, _frame: FrameType | None) -> None:
                if stopping.is_set():
                    leave()
                    return
                stopping.set()
                watchdog = threading.Timer(grace_s, leave)
                watchdog.daemon = True
                watchdog.start()
                try:
                    # a signal handler runs between two bytecodes of the loop: cancel from the loop's own turn
                    loop.call_soon_threadsafe(scope.cancel)
                except RuntimeError:  # the loop has already closed: nothing left to unwind
                    leave()

            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, stop)
            await serve()

    anyio.run(main)

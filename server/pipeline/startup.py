"""Start-up work each process does once: litellm imported and primed, the corrections read, the classifier trained.

The server does it in the background (warm_up) before the first call; a call that arrives first waits for what it
needs (wait), inside its own deadline.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import anyio

from server.calling import llm
from server.clock import Deadline, ms_since
from server.errors import AllModelsFailedError
from server.routing.lifecycle import ClassifierLifecycle

logger = logging.getLogger(__name__)


class StartUp:
    """Counts the calls under way, so background warm-up stays out of their way, and waits for start-up work."""

    def __init__(self, lifecycle: ClassifierLifecycle, deadline_s: float) -> None:
        self._lifecycle = lifecycle
        self._deadline_s = deadline_s
        self.calls_started = 0
        self.in_flight = 0

    @contextmanager
    def counted(self) -> Iterator[None]:
        """Count one call while it runs."""
        self.calls_started += 1
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    def warm_up(self) -> None:
        """Import and prime litellm, then train the classifier, so the first call pays for none of it (on a thread)."""
        try:
            llm.warm_up_in_background().join()
            if not self.calls_started:  # a call already under way primes litellm itself; do not compete with it
                llm.prime()
            self._lifecycle.warm_up(lambda: self.in_flight > 0)
        except Exception:  # warm-up only saves time; a call that needs the failing part reports it properly
            logger.warning("background warm-up failed; the first call will do the work", exc_info=True)
        _freeze_once()

    async def wait(self, deadline: Deadline) -> float | None:
        """Wait, within the call's deadline, for the start-up work a call needs (normally done by warm_up before the
        first call arrives), on worker threads so the event loop keeps serving; the milliseconds waited, or None
        when nothing was left to wait for."""
        if llm.loaded() and self._lifecycle.corrections_read and not self._lifecycle.needs_training:
            return None
        started = time.monotonic()
        with anyio.move_on_after(deadline.remaining()) as waiting:
            await llm.ready()
            if not self._lifecycle.corrections_read:
                await anyio.to_thread.run_sync(self._lifecycle.corrections)
            if self._lifecycle.needs_training:
                await anyio.to_thread.run_sync(lambda: self._lifecycle.classifier)
        if waiting.cancelled_caught:
            raise AllModelsFailedError(
                f"The call's deadline ({self._deadline_s:g} s, DELEGATE_DEADLINE_S) ran out while the server "
                "was still starting up (loading its model library); no provider was called. Try again: later calls "
                "do not wait for it.",
                [],
            )
        return ms_since(started)


_frozen = False


def _freeze_once() -> None:
    """Move what start-up built (litellm alone is several hundred thousand objects, kept for the process's life)
    out of the collector's full passes, which otherwise rescan all of it and stall every call under way."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.freeze()

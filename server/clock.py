"""A per-call deadline and millisecond timing, on the monotonic clock."""

from __future__ import annotations

import time


class Deadline:
    """The time left for one tool call."""

    def __init__(self, seconds: float, started: float | None = None) -> None:
        now = time.monotonic()
        self.started = now if started is None else started
        """When the call began (elapsed time counts from here)."""
        self.expires = now + seconds

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.expires - time.monotonic())

    def elapsed_ms(self) -> float:
        """Milliseconds since the call started."""
        return ms_since(self.started)


def ms_since(start: float) -> float:
    """Milliseconds from a time.monotonic() reading to now, rounded to 0.1 ms."""
    return round((time.monotonic() - start) * 1000, 1)

"""Cooldowns: a model that keeps failing is skipped for a while by every call (a circuit breaker)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# A dead endpoint (hang, refused connection, rejected key) is skipped after one failure, so it costs one
# timeout, not one per call; flaky answers (429, 5xx) only after a few in a row.
OPEN_AT_ONCE = frozenset({"timeout", "connection", "auth"})
FAILURES_BEFORE_COOLDOWN = 3
MAX_RETRY_AFTER_COOLDOWN_S = 300.0


@dataclass
class _State:
    failures: int = 0
    until: float = 0.0


class Cooldowns:
    """Per-model failure counts and cooldown ends, shared by all calls of one server."""

    def __init__(self, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._states: dict[str, _State] = {}

    def remaining(self, model: str) -> float:
        """Seconds until the model may be tried again; 0 when it is available."""
        state = self._states.get(model)
        return max(0.0, state.until - self._clock()) if state else 0.0

    def failed(self, model: str, kind: str, retry_after_s: float | None = None) -> None:
        """Count a failure; start the cooldown when the model looks dead or the provider asked us to wait."""
        if self._cooldown_s <= 0:
            return
        state = self._states.setdefault(model, _State())
        state.failures += 1
        wait = 0.0
        if kind in OPEN_AT_ONCE or state.failures >= FAILURES_BEFORE_COOLDOWN:
            wait = self._cooldown_s
        if retry_after_s:  # a Retry-After header or a retryDelay in the body, on a 429, 503 or 529 alike
            wait = max(wait, min(retry_after_s, MAX_RETRY_AFTER_COOLDOWN_S))
        if wait:
            state.until = self._clock() + wait

    def succeeded(self, model: str) -> None:
        """A success closes the breaker: the model is healthy again."""
        self._states.pop(model, None)

"""Cooldowns: a model that keeps failing is skipped for a while by every call (a circuit breaker)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

# A dead endpoint (hang, refused connection, rejected key) is skipped after one failure, so it costs one
# timeout, not one per call; flaky answers (429, 5xx) only after a few in a row.
OPEN_AT_ONCE = frozenset({"timeout", "connection", "auth"})
FAILURES_BEFORE_COOLDOWN = 3
MAX_RETRY_AFTER_COOLDOWN_S = 300.0


class SharedCooldowns(Protocol):
    """Cooldown ends shared by several servers (the Redis store provides one); times are Unix seconds."""

    def until(self, model: str) -> float:
        """When the model's shared cooldown ends (0 when there is none)."""
        ...

    def start(self, model: str, until: float) -> None:
        """Tell every server the model is cooling down until `until`."""
        ...

    def clear(self, model: str) -> None:
        """The model answered: end its shared cooldown."""
        ...


@dataclass
class _State:
    failures: int = 0
    until: float = 0.0


class Cooldowns:
    """Per-model failure counts and cooldown ends, shared by all calls of one server (and, given `shared`, the
    cooldown ends by every server on the same store: a dead model found by one is skipped by all)."""

    def __init__(
        self, cooldown_s: float, clock: Callable[[], float] | None = None, shared: SharedCooldowns | None = None
    ) -> None:
        self._cooldown_s = cooldown_s
        # Shared ends must mean the same moment on every machine: wall-clock time then, else monotonic.
        self._clock = clock or (time.time if shared is not None else time.monotonic)
        self._shared = shared
        self._states: dict[str, _State] = {}

    def remaining(self, model: str) -> float:
        """Seconds until the model may be tried again; 0 when it is available."""
        state = self._states.get(model)
        until = state.until if state else 0.0
        if self._shared is not None and self._cooldown_s > 0:
            until = max(until, self._shared.until(model))
        return max(0.0, until - self._clock()) if until else 0.0

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
            if self._shared is not None:
                self._shared.start(model, state.until)

    def succeeded(self, model: str) -> None:
        """A success closes the breaker: the model is healthy again."""
        self._states.pop(model, None)
        if self._shared is not None:
            self._shared.clear(model)

"""Model cooldowns shared through Redis: a dead model found by one server is skipped by every server."""

from __future__ import annotations

import logging
import time

import redis

logger = logging.getLogger(__name__)
REFRESH_S = 1.0
"""How long a server trusts what it last read for a model; other servers' news reaches it within this time."""


class RedisCooldowns:
    """Cooldown ends as Redis keys that expire with the cooldown; Redis trouble never fails a call (no cooldown)."""

    def __init__(self, client: redis.Redis, location: str, prefix: str) -> None:
        self._client = client
        self._location = location
        self._prefix = prefix  # the store's key prefix: the cooldowns live beside its other keys
        self._seen: dict[str, tuple[float, float]] = {}  # model -> (cooldown end, monotonic time read)

    def until(self, model: str) -> float:
        """When the model's shared cooldown ends (Unix seconds; 0 when there is none)."""
        seen = self._seen.get(model)
        if seen is not None and time.monotonic() - seen[1] < REFRESH_S:
            return seen[0]
        try:
            raw = self._client.get(self._key(model))
            until = float(raw) if raw else 0.0
        except (redis.RedisError, ValueError) as exc:
            logger.warning("%s: cannot read the shared cooldown of %s (%s)", self._location, model, type(exc).__name__)
            until = 0.0
        self._seen[model] = (until, time.monotonic())
        return until

    def start(self, model: str, until: float) -> None:
        """Tell every server the model is cooling down until `until` (the key expires then)."""
        self._seen[model] = (until, time.monotonic())
        try:
            self._client.set(self._key(model), repr(until), px=max(1, int((until - time.time()) * 1000)))
        except redis.RedisError as exc:
            logger.warning("%s: cannot share the cooldown of %s (%s)", self._location, model, type(exc).__name__)

    def clear(self, model: str) -> None:
        """The model answered: end its shared cooldown (a write only when one is known to be running)."""
        if self.until(model) <= 0:
            return
        self._seen[model] = (0.0, time.monotonic())
        try:
            self._client.delete(self._key(model))
        except redis.RedisError as exc:
            logger.warning("%s: cannot clear the cooldown of %s (%s)", self._location, model, type(exc).__name__)

    def _key(self, model: str) -> str:
        return f"{self._prefix}cooldown:{model}"

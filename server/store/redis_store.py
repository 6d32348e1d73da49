"""The fleet store: Redis, shared by every instance behind a load balancer (threads, budget, usage, cooldowns)."""

from __future__ import annotations

import json
import math
import time
from urllib.parse import urlsplit, urlunsplit

import redis

from server.errors import StoreError
from server.store.base import JSON, decode_document, decode_or_none
from server.store.redis_cooldowns import RedisCooldowns

PREFIX = "delegate:"
_TIMEOUT_S = 5.0
# Reads and writes the ledger in one step inside Redis: no other client can slip in between.
_RESERVE = """
local raw = redis.call('GET', KEYS[1])
local current = 0
if raw then
    current = tonumber(raw)
    if current == nil or current ~= current or current < 0 or current >= 1e9 then
        return redis.error_reply('DAMAGED ledger holds an impossible amount')
    end
end
local total = current + tonumber(ARGV[1])
if ARGV[2] ~= '' and total > tonumber(ARGV[2]) then return false end
if total < 0 then total = 0 end
redis.call('SET', KEYS[1], string.format('%.17g', total))
return string.format('%.17g', total)
"""


def safe_location(url: str) -> str:
    """The URL with any password removed, fit for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}@" if parts.username else ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{user}{host}{port}", parts.path, parts.query, parts.fragment))


class RedisStore:
    """A Store on a Redis server: documents as JSON strings with a TTL, a sorted set per kind for recent()."""

    def __init__(self, url: str) -> None:
        self.location = safe_location(url)
        self._password = urlsplit(url).password or ""
        try:
            self._redis = redis.Redis.from_url(
                url, decode_responses=True, socket_timeout=_TIMEOUT_S, socket_connect_timeout=_TIMEOUT_S
            )
            self._redis.ping()
            self._reserve = self._redis.register_script(_RESERVE)
            damaged = [key for key in self._redis.scan_iter(f"{PREFIX}ledger:*") if not _is_amount(self._get(key))]
        except redis.RedisError as exc:
            raise StoreError(
                f"{self.location}: cannot reach the Redis state store ({self._reason(exc)}). Check that Redis is "
                "running and DELEGATE_STORE names it (redis://[:password@]host:port/db)."
            ) from None
        except ValueError as exc:  # a malformed URL
            raise StoreError(f"{self.location}: not a usable Redis URL ({self._reason(exc)}).") from None
        if damaged:
            name = damaged[0].removeprefix(f"{PREFIX}ledger:")
            raise StoreError(f"{self.location}: ledger {name!r} holds an impossible amount. {_FIX}")

    def _get(self, key: str) -> str | None:
        value = self._redis.get(key)
        return value if isinstance(value, str) else None

    def _reason(self, exc: Exception) -> str:
        text = str(exc) or exc.__class__.__name__
        return text.replace(self._password, "***") if self._password else text

    def _failed(self, exc: Exception) -> StoreError:
        if "DAMAGED" in str(exc):
            return StoreError(f"{self.location}: a ledger holds an impossible amount. {_FIX}")
        return StoreError(f"{self.location}: cannot use the Redis state store ({self._reason(exc)}).")

    def get(self, kind: str, key: str, owner: str | None = None) -> JSON | None:
        """The document stored under (kind, key), or None when missing or expired (or, with `owner`, not theirs)."""
        try:
            raw, stored_owner = self._redis.mget([_doc(kind, key), _owner(kind, key)])
        except redis.RedisError as exc:
            raise self._failed(exc) from None
        if raw is None or (owner is not None and stored_owner != owner):
            return None
        return decode_document(raw, self.location, kind, key)

    def put(self, kind: str, key: str, value: JSON, ttl_s: float | None = None, owner: str | None = None) -> None:
        """Store a document, replacing any earlier one; it expires after ttl_s seconds when given; `owner` is the
        caller it belongs to (its own index lists it; get and recent given an owner see only theirs)."""
        text = json.dumps(value, ensure_ascii=False)
        expiry = max(1, int(ttl_s * 1000)) if ttl_s is not None else None
        try:
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(_doc(kind, key), text, px=expiry)
                if owner is None:
                    pipe.delete(_owner(kind, key))
                else:
                    pipe.set(_owner(kind, key), owner, px=expiry)
                    pipe.zadd(_index(kind, owner), {key: time.time()})
                pipe.zadd(_index(kind), {key: time.time()})
                pipe.execute()
        except redis.RedisError as exc:
            raise self._failed(exc) from None

    def delete(self, kind: str, key: str) -> bool:
        """Remove a document; True when it existed."""
        try:
            owner = self._get(_owner(kind, key))
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(_doc(kind, key), _owner(kind, key))
                pipe.zrem(_index(kind), key)
                if owner is not None:
                    pipe.zrem(_index(kind, owner), key)
                removed = pipe.execute()[0]
        except redis.RedisError as exc:
            raise self._failed(exc) from None
        return bool(removed)

    def recent(self, kind: str, limit: int = 50, owner: str | None = None) -> list[tuple[str, JSON | None]]:
        """Up to `limit` live documents of a kind (only `owner`'s when given), the most recently written first; None
        for a damaged one."""
        found: list[tuple[str, JSON | None]] = []
        index, start = _index(kind, owner), 0
        try:
            while len(found) < limit:
                keys = self._redis.zrevrange(index, start, start + limit - 1)
                if not keys:
                    break
                start += len(keys)
                values = self._redis.mget([_doc(kind, key) for key in keys])
                owners = self._redis.mget([_owner(kind, key) for key in keys]) if owner else [owner] * len(keys)
                gone = [key for key, raw, who in zip(keys, values, owners, strict=True) if raw is None or who != owner]
                if gone:  # expired (or handed to another owner) documents leave their index entry; tidy it here
                    self._redis.zrem(index, *gone)
                    start -= len(gone)
                pairs = [(key, raw) for key, raw in zip(keys, values, strict=True) if key not in gone]
                found += [(key, decode_or_none(raw, self.location, kind, key)) for key, raw in pairs]
        except redis.RedisError as exc:
            raise self._failed(exc) from None
        return found[:limit]

    def reserve(self, ledger: str, amount: float, limit: float) -> float | None:
        """Atomically add `amount` to a ledger if the total stays within `limit`; the new total, or None."""
        try:
            total = self._reserve(keys=[_ledger(ledger)], args=[repr(float(amount)), repr(float(limit))])
        except redis.RedisError as exc:
            raise self._failed(exc) from None
        return None if total is None else float(total)

    def settle(self, ledger: str, delta: float) -> float:
        """Atomically add `delta` (negative to release a reservation) to a ledger; the new total."""
        try:
            return float(self._reserve(keys=[_ledger(ledger)], args=[repr(float(delta)), ""]))
        except redis.RedisError as exc:
            raise self._failed(exc) from None

    def total(self, ledger: str) -> float:
        """A ledger's total (0 when it has none)."""
        try:
            raw = self._get(_ledger(ledger))
        except redis.RedisError as exc:
            raise self._failed(exc) from None
        if raw is None:
            return 0.0
        if not _is_amount(raw):
            raise StoreError(f"{self.location}: ledger {ledger!r} holds an impossible amount. {_FIX}")
        return float(raw)

    def add_counts(self, kind: str, key: str, counts: dict[str, float]) -> None:
        """Atomically add to named counters (usage totals)."""
        try:
            with self._redis.pipeline(transaction=True) as pipe:
                for field, amount in counts.items():
                    pipe.hincrbyfloat(_counts(kind, key), field, float(amount))
                pipe.execute()
        except redis.RedisError as exc:
            raise self._failed(exc) from None

    def counts(self, kind: str, key: str) -> dict[str, float]:
        """The counters under (kind, key)."""
        try:
            raw = self._redis.hgetall(_counts(kind, key))
        except redis.RedisError as exc:
            raise self._failed(exc) from None
        try:
            return {field: float(amount) for field, amount in raw.items()}
        except ValueError:
            raise StoreError(f"{self.location}: counters {kind}:{key} hold a non-number. {_FIX}") from None

    def close(self) -> None:
        """Release the connection pool."""
        self._redis.close()

    def shared_cooldowns(self) -> RedisCooldowns:
        """Model cooldowns every server on this Redis shares."""
        return RedisCooldowns(self._redis, self.location, PREFIX)


_FIX = "Fix or delete the key (nothing was changed), or point DELEGATE_STORE elsewhere, then start again."


def _doc(kind: str, key: str) -> str:
    return f"{PREFIX}doc:{kind}:{key}"


def _index(kind: str, owner: str | None = None) -> str:
    return f"{PREFIX}recent:{kind}" if owner is None else f"{PREFIX}recent-of:{owner}:{kind}"


def _owner(kind: str, key: str) -> str:
    return f"{PREFIX}owner:{kind}:{key}"


def _ledger(name: str) -> str:
    return f"{PREFIX}ledger:{name}"


def _counts(kind: str, key: str) -> str:
    return f"{PREFIX}counts:{kind}:{key}"


def _is_amount(raw: str | None) -> bool:
    try:
        value = float(raw or "")
    except ValueError:
        return False
    return math.isfinite(value) and 0 <= value < 1e9

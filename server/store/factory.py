"""open_store(): the store the settings name — SQLite by default, Redis for a fleet."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from server.errors import ConfigError
from server.settings import Settings
from server.store.base import Store
from server.store.budget import default_data_dir
from server.store.sqlite import STORE_NAME, SQLiteStore


def open_store(settings: Settings, environ: Mapping[str, str]) -> Store:
    """Open (and check) the configured store; a damaged or unreachable one raises StoreError."""
    where = settings.store or ""
    if where.startswith(("redis://", "rediss://", "unix://")):
        from server.store.redis_store import RedisStore  # imported only for a fleet: start-up stays light

        return RedisStore(where)
    if "://" in where:
        raise ConfigError(f"DELEGATE_STORE: expected a file path or a redis:// URL, got a {where.split(':')[0]} URL.")
    path = Path(where).expanduser() if where else (settings.data_dir or default_data_dir(environ)) / STORE_NAME
    return SQLiteStore(path)

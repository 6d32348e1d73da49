"""Removes secrets and endpoints from any text that may reach a user, a client or a log."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping

_SECRET_PATTERNS = [
    re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"sk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"AIza[0-9A-Za-z_\-]{20,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-~+/=]{8,}"),
    re.compile(r"(?i)((?:api[_-]?)?key=)[^&\s\"']+"),
    re.compile(r"(?i)(x-api-key[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"),
]
_URL = re.compile(r"https?://[^\s\"'<>)]+")
_SECRET_ENV_SUFFIXES = ("_KEY", "_TOKEN", "_SECRET", "_PASSWORD", "_CREDENTIALS")
_MIN_SECRET_LEN = 8


def secret_values(environ: Mapping[str, str], key_names: Iterable[str] = ()) -> list[str]:
    """The values of env vars whose names mark them as secrets, or that are named as keys (a specialist's
    api_key_env may be called anything), longest first."""
    named = set(key_names)
    values = {
        v
        for k, v in environ.items()
        if (k in named or k.upper().endswith(_SECRET_ENV_SUFFIXES)) and len(v) >= _MIN_SECRET_LEN
    }
    return sorted(values, key=len, reverse=True)


def redact(text: str, secrets: list[str] | None = None) -> str:
    """Replace API keys, bearer tokens, key= values, known secret values and URLs with placeholders."""
    for value in secrets or ():
        text = text.replace(value, "[redacted]")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "[redacted]", text)
    # URLs can carry an api_base, a proxy address or a query-string key; none of them belongs in output.
    return _URL.sub("[url]", text)


class RedactingFormatter(logging.Formatter):
    """A log formatter that redacts every record, tracebacks included, before it reaches stderr."""

    def __init__(self, fmt: str, secrets: list[str]) -> None:
        super().__init__(fmt)
        self._secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        """Format as usual, then redact."""
        return redact(super().format(record), self._secrets)

"""Ids a client sends back (thread_id, job_id, call_id): checked before any store or provider is touched, and any
value a client sent shown cut short in messages, however long it was."""

from __future__ import annotations

import re

from server.errors import InvalidInputError, shown

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""Every id the server hands out fits this (th_…, job-…, 16 hex digits), with room for older formats."""


def check_id(name: str, value: object, what: str) -> str:
    """The id when it has the shape of one the server hands out; InvalidInputError (naming `what` to pass) when not.
    A full match: "th_x\\n" is no id."""
    if isinstance(value, str) and ID_PATTERN.fullmatch(value):
        return value
    raise InvalidInputError(
        f"{name} {shown(value)} is not a {name.removesuffix('_id')} id (letters, digits, '_' and '-', up to 64): "
        f"pass {what}."
    )

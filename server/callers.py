"""Who is calling. A shared HTTP server with named tokens has callers, each seeing only its own threads, jobs, answers
and usage; stdio, and HTTP with one token or none, have one caller, who sees everything in the store (as before).

Tokens come from DELEGATE_HTTP_TOKENS ("name=token,...") and DELEGATE_HTTP_TOKENS_FILE (a `name: token` line each,
`feedback` after the token to let that caller correct routing); DELEGATE_FEEDBACK_CALLERS names more such callers.
A token is compared in constant time against every known token, and is never logged nor shown in a message.
"""

from __future__ import annotations

import contextlib
import hmac
import re
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from server.errors import ConfigError, DelegateError
from server.settings import Settings

MIN_TOKEN_CHARS = 16
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")
_TOKEN = re.compile(r"[^\s,]+")


@dataclass(frozen=True)
class Caller:
    """One caller of the server: its name on a shared server (None: the server's only caller), and whether it may
    give routing feedback."""

    name: str | None
    feedback: bool = True

    @property
    def owner(self) -> str | None:
        """The owner its threads, jobs, remembered calls and answers are stored under (None: no owner, seen by all)."""
        return self.name


ONLY = Caller(None)
"""The server's one caller: stdio, or HTTP with one token (DELEGATE_HTTP_TOKEN) or none."""


class UnknownCallerError(DelegateError):
    """A request on a server with named callers reached a tool without a caller (never expected; refused)."""


class FeedbackNotAllowedError(DelegateError):
    """A caller not allowed to correct routing gave feedback."""


@dataclass(frozen=True)
class Tokens:
    """The named tokens of a shared HTTP server."""

    entries: tuple[tuple[bytes, Caller], ...]

    def identify(self, given: bytes) -> Caller | None:
        """The caller whose token this is, or None; every token is compared, in constant time, whatever matches."""
        found = None
        for token, caller in self.entries:
            if hmac.compare_digest(given, token):
                found = caller
        return found

    @property
    def names(self) -> list[str]:
        """The callers' names, in the order given."""
        return [caller.name for _, caller in self.entries if caller.name]


def named_tokens(settings: Settings) -> Tokens | None:
    """The named tokens from DELEGATE_HTTP_TOKENS and DELEGATE_HTTP_TOKENS_FILE (None when neither is set);
    ConfigError naming the setting and line (never the token) when they are malformed."""
    if not (settings.http_tokens or settings.http_tokens_file):
        return None
    if settings.http_token:
        raise ConfigError(
            "set DELEGATE_HTTP_TOKEN (one caller) or DELEGATE_HTTP_TOKENS / DELEGATE_HTTP_TOKENS_FILE (named "
            "callers), not both."
        )
    found: list[tuple[str, str, bool, str]] = []
    if settings.http_tokens:
        for number, item in enumerate(settings.http_tokens.split(","), start=1):
            if item.strip():
                name, _, token = item.strip().partition("=")
                found.append((name.strip(), token.strip(), False, f"DELEGATE_HTTP_TOKENS, entry {number}"))
    if settings.http_tokens_file:
        found += _file_entries(settings.http_tokens_file)
    allowed = {name.strip() for name in (settings.feedback_callers or "").split(",") if name.strip()}
    return _checked(found, allowed)


def _file_entries(path: Path) -> list[tuple[str, str, bool, str]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"DELEGATE_HTTP_TOKENS_FILE: cannot read {path} ({exc.__class__.__name__}).") from None
    found = []
    for number, line in enumerate(lines, start=1):
        text = "" if line.lstrip().startswith("#") else line.strip()
        if not text:
            continue
        name, _, rest = text.partition(":")
        words = rest.split()
        where = f"DELEGATE_HTTP_TOKENS_FILE {path}, line {number}"
        if len(words) not in (1, 2) or (len(words) == 2 and words[1] != "feedback"):
            raise ConfigError(f"{where}: expected `name: token` or `name: token feedback`.")
        found.append((name.strip(), words[0], len(words) == 2, where))
    return found


def _checked(found: list[tuple[str, str, bool, str]], allowed: set[str]) -> Tokens:
    names: set[str] = set()
    tokens: set[str] = set()
    entries = []
    for name, token, feedback, where in found:
        if not _NAME.fullmatch(name):
            raise ConfigError(f"{where}: a caller's name is 1 to 40 letters, digits, '_', '.' or '-'.")
        if len(token) < MIN_TOKEN_CHARS or not _TOKEN.fullmatch(token):
            raise ConfigError(
                f"{where}: expected name=token (or `name: token`), the token {MIN_TOKEN_CHARS} characters or more, "
                "with no spaces or commas."
            )
        if name in names or token in tokens:
            raise ConfigError(f"{where}: a name or token given twice; each caller needs its own name and token.")
        names.add(name)
        tokens.add(token)
        entries.append((token.encode(), Caller(name, feedback or name in allowed)))
    unknown = sorted(allowed - names)
    if unknown:
        raise ConfigError(
            f"DELEGATE_FEEDBACK_CALLERS names {unknown[0]!r}, which has no token; the callers are {sorted(names)}."
        )
    if not entries:
        raise ConfigError("DELEGATE_HTTP_TOKENS / DELEGATE_HTTP_TOKENS_FILE name no caller: give `name: token` lines.")
    return Tokens(tuple(entries))


# The caller of the request being served: set by the HTTP layer around each request (its tasks inherit it), read when
# a call starts. A context variable, because static MCP resources are handed no request context.
_current: ContextVar[Caller | None] = ContextVar("delegate_caller", default=None)


@contextlib.contextmanager
def serving(caller: Caller) -> Iterator[None]:
    """Make `caller` the caller of everything the current request does."""
    token = _current.set(caller)
    try:
        yield
    finally:
        _current.reset(token)


def current(named: bool) -> Caller:
    """The caller of the request being served. On a server with named callers a request with none is refused
    (fail closed: never the all-seeing only caller); otherwise the only caller."""
    caller = _current.get()
    if caller is not None:
        return caller
    if named:
        raise UnknownCallerError(
            "this server has named callers, and this request carried none: send your bearer token."
        )
    return ONLY


def check_feedback(caller: Caller) -> None:
    """Refuse routing feedback from a caller not allowed to give it."""
    if not caller.feedback:
        raise FeedbackNotAllowedError(
            f"caller {caller.name!r} may not correct routing on this shared server (feedback changes routing for "
            "every caller). Ask its operator to add you to DELEGATE_FEEDBACK_CALLERS; nothing was recorded."
        )


def has_named_callers(settings: Settings) -> bool:
    """Whether this server serves named callers: HTTP with DELEGATE_HTTP_TOKENS or DELEGATE_HTTP_TOKENS_FILE."""
    return settings.transport == "http" and bool(settings.http_tokens or settings.http_tokens_file)


def caller_for(settings: Settings) -> Caller:
    """The caller of the request being served by a server with these settings."""
    return current(has_named_callers(settings))

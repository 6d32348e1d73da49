"""A failed model call, classified from the exception's text and attributes: retry, wait, or fall back.

Works on whatever litellm raised without importing it: llm.py passes the litellm module in, for its classes."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ProviderError(Exception):
    """A failed model call, classified so the chain knows whether to retry or fall back."""

    kind: str  # rate_limited | overloaded | timeout | connection | server_error | auth | bad_request | ...
    status: int | None = None
    detail: str = field(default="")
    retry_after_s: float | None = None

    def __str__(self) -> str:
        return f"{self.kind} ({self.status})" if self.status else self.kind


def classify(exc: Exception, litellm: Any) -> ProviderError:
    """Map a litellm (or transport) exception to a ProviderError kind; `litellm` is the module, for its classes."""
    original = getattr(exc, "original_exception", None)
    if isinstance(original, Exception) and original is not exc:
        return classify(original, litellm)  # MidStreamFallbackError wraps the failure that matters
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    raw = str(getattr(exc, "message", None) or exc)
    detail = _LITELLM_HINT.sub("", _LITELLM_PREFIX.sub("", raw)).strip().removesuffix(")")
    retry_after = _retry_after(exc)
    text = raw.lower()  # the whole text: error type names ("overloaded_error") and litellm's provider names included
    overloaded = _overloaded(status, text)
    detail = _provider_message(detail)
    # litellm reports a refused or reset connection as a 500 (Anthropic, OpenAI) or an APIConnectionError with
    # status 500 (Gemini); only the text tells it apart from a provider's own server error.
    if any(hint in text for hint in _CONNECTION_HINTS) and (status is None or status >= 500):
        return ProviderError("connection", None, detail)
    if overloaded:
        return ProviderError("overloaded", overloaded, detail, retry_after)
    ordered = [
        ("context_window", "ContextWindowExceededError"),
        ("content_policy", "ContentPolicyViolationError"),
        ("timeout", "Timeout"),
        ("rate_limited", "RateLimitError"),
        ("auth", "AuthenticationError"),
        ("auth", "PermissionDeniedError"),
        ("not_found", "NotFoundError"),
        ("bad_request", "BadRequestError"),
        ("bad_request", "UnprocessableEntityError"),
    ]
    for kind, class_name in ordered:
        cls = getattr(litellm, class_name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return ProviderError(_refine(kind, detail), status, detail, retry_after)
    by_status = {401: "auth", 403: "auth", 404: "not_found", 408: "timeout", 429: "rate_limited"}
    if status in by_status:
        return ProviderError(by_status[status], status, detail, retry_after)
    if status in (400, 422):
        return ProviderError(_refine("bad_request", detail), status, detail, retry_after)
    if "rate_limit_error" in text or "rate limit" in text:  # e.g. Anthropic's error event inside a stream: a 500
        return ProviderError("rate_limited", 429, detail, retry_after)
    if status is not None and status >= 500:
        # litellm also raises APIConnectionError (status 500) for an answer it could not parse: no connection hint
        # above means the provider answered, badly
        return ProviderError("server_error", status, detail, retry_after)
    if isinstance(exc, (ConnectionError, OSError)):
        return ProviderError("connection", None, detail)
    return ProviderError("provider_error", status, detail)


def _provider_message(detail: str) -> str:
    """The provider's own message when litellm passes its JSON error body through (Anthropic, Gemini do)."""
    start, end = detail.find("{"), detail.rfind("}")
    if start < 0 or end <= start:
        return detail
    raw = detail[start : end + 1]
    try:
        body = json.loads(raw)
    except ValueError:
        try:  # a streamed call's body arrives as the repr of bytes, quotes escaped
            body = json.loads(raw.replace("\\'", "'"))
        except ValueError:
            return detail
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message.strip() if isinstance(message, str) and message.strip() else detail


_CONNECTION_HINTS = (
    "connection error",
    "cannot connect to host",
    "connect call failed",
    "connection refused",
    "connection reset",
    "server disconnected",
    "remote end closed",
    "name or service not known",
    "nodename nor servname",
)


def _overloaded(status: int | None, text: str) -> int | None:
    """The status to report when the provider says it is overloaded: Anthropic's 529 overloaded_error (which
    litellm reports as a 500) or a 503 (Gemini's UNAVAILABLE, OpenAI's "engine overloaded"); None otherwise."""
    if status == 529 or "overloaded_error" in text:
        return 529
    if status == 503:
        return 503
    if status in (None, 500) and "overloaded" in text:  # an error event inside a stream loses its type on the way
        return 529 if "anthropic" in text else 503
    return None


# litellm prefixes messages with its class names ("litellm.BadRequestError: OpenAIException - ...").
_LITELLM_HINT = re.compile(r"\.?\s*Handle with `litellm\.\w+`\.?")
_LITELLM_PREFIX = re.compile(r"(litellm\.\w+:\s*|\b\w*(Exception|Error)\s*-\s*|\bAPIError:\s*)")
_CONTEXT_WINDOW_HINTS = (
    "context_length_exceeded",
    "maximum context length",
    "prompt is too long",  # Anthropic
    "too many tokens",
    "exceeds the maximum number of tokens",  # Gemini: "The input token count (…) exceeds the maximum number of…"
)
_CONTENT_POLICY_HINTS = ("content_policy", "content policy", "safety system", "content management policy")


def _refine(kind: str, detail: str) -> str:
    """litellm does not map every provider's wording; a generic 400 may still be a window or policy refusal."""
    if kind != "bad_request":
        return kind
    text = detail.lower()
    if any(hint in text for hint in _CONTEXT_WINDOW_HINTS):
        return "context_window"
    if any(hint in text for hint in _CONTENT_POLICY_HINTS):
        return "content_policy"
    return kind


def _retry_after(exc: Exception) -> float | None:
    """Seconds the provider asked us to wait: a Retry-After header (seconds or an HTTP date), else the same said
    in the body, as Gemini does (google.rpc.RetryInfo "retryDelay": "22s") and some messages do ("retry in 2s")."""
    headers = getattr(exc, "litellm_response_headers", None) or getattr(getattr(exc, "response", None), "headers", None)
    value = headers.get("retry-after") if headers is not None and hasattr(headers, "get") else None
    if not value:
        return _retry_after_in_body(exc)
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    import email.utils  # only for the rare Retry-After given as a date; keeps start-up lean

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


_RETRY_DELAY = re.compile(r'"retryDelay"\s*:\s*"(\d+(?:\.\d+)?)s"')
_RETRY_IN = re.compile(r"\b(?:retry|try again) (?:in|after) (\d+(?:\.\d+)?) ?(ms|s|sec|secs|seconds?)\b", re.IGNORECASE)


def _retry_after_in_body(exc: Exception) -> float | None:
    """A wait named in the error body or message, in seconds."""
    response = getattr(exc, "response", None)
    body = getattr(response, "text", None) if response is not None else None
    for text in (body if isinstance(body, str) else "", str(exc)):
        found = _RETRY_DELAY.search(text)
        if found:
            return float(found[1])
        found = _RETRY_IN.search(text)
        if found:
            return float(found[1]) / (1000 if found[2].lower() == "ms" else 1)
    return None

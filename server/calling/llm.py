"""The only module that imports litellm: one completion call, its usage and cost, errors mapped to ours."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import lru_cache
from types import ModuleType
from typing import Any

import anyio

from server.calling import embedded
from server.calling.providers import provider_of

_import_lock = threading.Lock()
OnText = Callable[[int], Awaitable[None]]  # called with the answer's length so far, while it streams
HTTP_CLIENT_TIMEOUT_S = 600.0
_module: ModuleType | None = None
_handler: Any = None  # litellm's AsyncHTTPHandler over the coalescing transport, built on first use
# Providers litellm calls through its own HTTP handler (a `client=` it accepts); OpenAI-format models use the SDK.
HTTP_HANDLER_PROVIDERS = frozenset({"anthropic", "gemini"})
LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "LiteLLM Proxy.stdout", "litellm", "httpx", "openai")


@dataclass(frozen=True)
class CompletionRequest:
    """Everything one model call needs; the catalogue, never the caller, chose model and endpoint."""

    model: str
    messages: list[dict[str, str]]
    max_output_tokens: int
    timeout_s: float
    temperature: float | None = None
    api_base: str | None = None
    api_key: str | None = None
    response_format: dict[str, Any] | None = None
    first_token_timeout_s: float | None = None
    """When set, stream the answer: fail if nothing arrives within this time..."""
    stall_timeout_s: float | None = None
    """...or if the stream then goes silent for this long."""
    thinking_budget_tokens: int | None = None
    """For reasoning models: bound thinking to about this many tokens, given on top of max_output_tokens so
    thinking cannot eat the answer's share. None leaves the provider's default."""


@dataclass(frozen=True)
class Completion:
    """The text a model produced, with its usage and cost."""

    text: str
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    cut: str | None = None
    """Why the provider stopped early: "length" (the output cap) or "content_filter"; None when it finished."""


@dataclass
class ProviderError(Exception):
    """A failed model call, classified so the chain knows whether to retry or fall back."""

    kind: str  # rate_limited | overloaded | timeout | connection | server_error | auth | bad_request | ...
    status: int | None = None
    detail: str = field(default="")
    retry_after_s: float | None = None

    def __str__(self) -> str:
        return f"{self.kind} ({self.status})" if self.status else self.kind


def _load() -> ModuleType:
    """Import litellm once, offline-safe and quiet; later calls return the same module."""
    global _module
    if _module is not None:
        return _module
    with _import_lock:
        if _module is None:
            # Both must be set before the import: no price-map fetch, no tokenizer download, no network at all.
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
            # litellm's default DEV mode loads a .env file from the working directory into os.environ: a server
            # must not pick up keys or settings from wherever a client happened to start it.
            os.environ.setdefault("LITELLM_MODE", "PRODUCTION")
            _quiet(LITELLM_LOGGERS)  # before the import: litellm logs while importing, too
            import litellm

            _to_stderr(LITELLM_LOGGERS)

            litellm.suppress_debug_info = True  # otherwise provider errors print help text to stdout
            if embedded.available():
                litellm.custom_provider_map = [
                    {"provider": embedded.PROVIDER, "custom_handler": embedded.make_provider(litellm)}
                ]
            litellm.drop_params = True
            # Streamed answers: merge the provider's many small chunks before litellm parses them (coalesce.py).
            # OpenAI-format models go through the OpenAI SDK, whose HTTP client litellm takes from here.
            litellm.aclient_session = _coalescing_client()
            _module = litellm
    return _module


def _quiet(names: tuple[str, ...]) -> None:
    """Per-call INFO and DEBUG chatter from litellm and its HTTP stack is noise, at any level we log at."""
    for name in names:
        logging.getLogger(name).setLevel(logging.WARNING)


def _to_stderr(names: tuple[str, ...]) -> None:
    """litellm's own handler writes records below WARNING to stdout, which is our protocol: remove it, and let its
    records reach our (stderr, redacting) handlers like everyone else's."""
    for name in names:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True


def warm_up_in_background() -> threading.Thread:
    """Start importing litellm on a daemon thread so the first call does not pay for it."""
    thread = threading.Thread(target=_load, name="litellm-import", daemon=True)
    thread.start()
    return thread


def prime() -> None:
    """Run one mocked streamed call and one mocked JSON call (no network), so the lazy imports litellm does on
    its first real call (~300 ms here) happen now, in the background, and not inside a user's first call."""
    litellm = _load()
    messages = [{"role": "user", "content": "warm-up"}]
    try:
        stream = litellm.completion(
            model="openai/warm-up",
            messages=messages,
            mock_response="ok",
            stream=True,
            stream_options={"include_usage": True},
        )
        for _ in stream:
            pass
        schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
        litellm.completion(
            model="openai/warm-up",
            messages=messages,
            mock_response='{"a": "b"}',
            response_format={"type": "json_schema", "json_schema": {"name": "w", "schema": schema}},
        )
    except Exception:
        logging.getLogger(__name__).debug("litellm warm-up call failed; the first real call will be slower")


def _coalescing_client() -> Any:
    """An httpx client whose event-stream answers have their text deltas merged."""
    import httpx

    from server.calling.coalesce import CoalescingTransport

    return httpx.AsyncClient(transport=CoalescingTransport(), timeout=HTTP_CLIENT_TIMEOUT_S)


def _coalescing_handler(litellm: ModuleType) -> Any:
    """litellm's HTTP handler over the coalescing client, for providers litellm calls with its own handler."""
    global _handler
    if _handler is None:
        from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler

        _handler = AsyncHTTPHandler(timeout=HTTP_CLIENT_TIMEOUT_S)
        _handler.client = _coalescing_client()
    return _handler


def loaded() -> bool:
    """Whether litellm is imported and set up, so a call need not wait for it."""
    return _module is not None


async def ready() -> ModuleType:
    """litellm, imported on a worker thread if it is not loaded yet (the event loop keeps serving meanwhile).
    Cancellable: a caller whose deadline runs out stops waiting, and the import goes on in the background."""
    return _module if _module is not None else await anyio.to_thread.run_sync(_load, abandon_on_cancel=True)


async def complete(
    request: CompletionRequest, on_text: OnText | None = None, sink: list[str] | None = None
) -> Completion:
    """Make one completion (streamed when first_token_timeout_s is set); raise ProviderError for any failure.

    A streamed answer's pieces are appended to `sink` as they arrive, so a caller can read the text so far."""
    litellm = await ready()
    kwargs = _arguments(request, litellm)
    if request.first_token_timeout_s is not None and provider_of(request.model) in HTTP_HANDLER_PROVIDERS:
        kwargs["client"] = _coalescing_handler(litellm)
    try:
        with anyio.fail_after(request.timeout_s):
            if request.first_token_timeout_s is not None:
                return await _stream(litellm, kwargs, request, on_text, sink)
            response = await litellm.acompletion(**kwargs)
    except TimeoutError:
        raise ProviderError("timeout", detail=f"no complete answer within {request.timeout_s:.1f} s") from None
    except ProviderError:
        raise
    except Exception as exc:
        raise _classify(exc, litellm) from exc
    return _to_completion(response, litellm)


def _arguments(request: CompletionRequest, litellm: ModuleType) -> dict[str, Any]:
    """litellm's keyword arguments for a request: temperature inside the provider's range, thinking bounded."""
    kwargs: dict[str, Any] = {
        "model": request.model,
        "messages": request.messages,
        "max_tokens": request.max_output_tokens,
        # litellm caches its HTTP clients by their settings, timeout included: a per-call remaining time would
        # build a new client (and connection pool) on every call. Our own fail_after enforces the real limit.
        # The embedded model has no client: it gets the call's time, to finish its answer within it.
        "timeout": request.timeout_s if request.model.startswith(f"{embedded.PROVIDER}/") else HTTP_CLIENT_TIMEOUT_S,
        "num_retries": 0,
        "max_retries": 0,
    }
    optional = {
        "temperature": None if request.temperature is None else clamp_temperature(request.model, request.temperature),
        "api_base": request.api_base,
        "api_key": request.api_key,
        "response_format": request.response_format,
    }
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    if request.thinking_budget_tokens is not None and _reasons(request.model):
        kwargs.update(thinking_arguments(request.model, request.max_output_tokens, request.thinking_budget_tokens))
    return kwargs


def clamp_temperature(model: str, temperature: float) -> float:
    """A temperature inside the provider's range: Claude takes 0 to 1 (anywhere it is served), the rest 0 to 2."""
    top = 1.0 if provider_of(model) == "anthropic" or "claude" in model.lower() else 2.0
    return min(max(temperature, 0.0), top)


GEMINI_PRO_MIN_THINKING = 128  # Gemini 2.5 Pro cannot switch thinking off; Flash and Flash-Lite take 0
OPENAI_MIN_HEADROOM = 1024  # "low" effort is no token bound: even a no-thinking budget keeps this much room


def thinking_arguments(model: str, answer_tokens: int, budget: int) -> dict[str, Any]:
    """How to bound thinking per provider, and an output cap that leaves the answer its own share.

    Gemini 2.5 and OpenAI reasoning models count thinking against the output cap, so the cap grows by the budget.
    Gemini takes a token budget (thinkingBudget); OpenAI only an effort, so "low" (the lowest every OpenAI
    reasoning model accepts) stands for a small budget, with at least OPENAI_MIN_HEADROOM tokens of room.
    Claude thinks only when asked for it, and we never ask, so its calls need nothing.
    """
    provider = provider_of(model)
    if provider in ("gemini", "vertex_ai"):
        if "pro" in model.lower():
            budget = max(budget, GEMINI_PRO_MIN_THINKING)
        return {"thinking": {"type": "enabled", "budget_tokens": budget}, "max_tokens": answer_tokens + budget}
    if provider in ("openai", "azure"):
        return {"reasoning_effort": "low", "max_tokens": answer_tokens + max(budget, OPENAI_MIN_HEADROOM)}
    return {}


@lru_cache(maxsize=512)
def _reasons(model: str) -> bool:
    """Whether litellm knows the model as a reasoning (thinking) model."""
    try:
        return bool(_load().supports_reasoning(model=model))
    except Exception:
        return False  # unknown to litellm: send nothing it might refuse


async def _stream(
    litellm: ModuleType,
    kwargs: dict[str, Any],
    request: CompletionRequest,
    on_text: OnText | None,
    sink: list[str] | None = None,
) -> Completion:
    """Stream the answer so a silent model is caught early."""
    assert request.first_token_timeout_s is not None and request.stall_timeout_s is not None
    first_by = anyio.current_time() + request.first_token_timeout_s
    with anyio.move_on_after(request.first_token_timeout_s) as opening:
        stream = await litellm.acompletion(**kwargs, stream=True, stream_options={"include_usage": True})
    if opening.cancelled_caught:
        raise ProviderError("timeout", detail=f"no first token within {request.first_token_timeout_s:.3g} s")
    pieces: list[str] = sink if sink is not None else []  # the caller's list: readable while the answer streams
    received = 0  # characters of answer or visible reasoning: a sign of life that switches to the stall limit
    answer_chars = 0
    usage: Any = None
    cut: str | None = None
    try:
        iterator = stream.__aiter__()
        while True:
            limit = request.stall_timeout_s if received else max(0.0, first_by - anyio.current_time())
            with anyio.move_on_after(limit) as waiting:
                try:
                    chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    break
            if waiting.cancelled_caught:
                if received:
                    raise ProviderError("timeout", detail=f"stream stalled for {limit:g} s after {received} characters")
                raise ProviderError("timeout", detail=f"no first token within {request.first_token_timeout_s:.3g} s")
            text, reasoning = _chunk_text(chunk)
            cut = _cut(chunk) or cut
            pieces.append(text)
            received += len(text) + reasoning
            answer_chars += len(text)
            if on_text is not None and text:
                await on_text(answer_chars)
            usage = getattr(chunk, "usage", None) or usage
    finally:
        await _close(stream)
    # Joining the deltas ourselves is several times cheaper than litellm.stream_chunk_builder.
    return _streamed_completion("".join(pieces), usage, request.model, cut)


def _cut(response: Any) -> str | None:
    """ "length" or "content_filter" when a response or chunk says the provider stopped the answer early."""
    choices = getattr(response, "choices", None) or []
    reason = getattr(choices[0], "finish_reason", None) if choices else None
    return reason if reason in CUT_REASONS else None


CUT_REASONS = frozenset({"length", "content_filter"})


def _streamed_completion(text: str, usage: Any, model: str, cut: str | None = None) -> Completion:
    """A Completion from streamed text and the final usage chunk; litellm puts the call's cost on that usage."""
    input_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
    output_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
    cost = getattr(usage, "cost", None)
    if cost is None and usage is not None:
        rates = price(model)
        cost = input_tokens * rates[0] + output_tokens * rates[1] if rates else None
    return Completion(
        text=text,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=round(float(cost), 10) if cost is not None else None,
        cut=cut,
    )


def _chunk_text(chunk: Any) -> tuple[str, int]:
    """The answer text a stream chunk carries, and how many characters of visible reasoning (not answer)."""
    choices = getattr(chunk, "choices", None) or []
    delta = getattr(choices[0], "delta", None) if choices else None
    return getattr(delta, "content", None) or "", len(getattr(delta, "reasoning_content", None) or "")


async def _close(stream: Any) -> None:
    """Abort the upstream HTTP response so an abandoned stream stops (and stops billing) at once."""
    for target in (stream, getattr(stream, "completion_stream", None), getattr(stream, "response", None)):
        close = getattr(target, "aclose", None)
        if close is not None:
            # Shielded so a cancelled call still closes; bounded so a broken peer cannot hold us; errors ignored
            # because closing a broken stream may fail too, and the connection is gone either way.
            with anyio.CancelScope(shield=True), anyio.move_on_after(1), contextlib.suppress(Exception):
                await close()


@lru_cache(maxsize=512)
def _model_info(model: str) -> dict[str, Any]:
    try:
        return dict(_load().get_model_info(model))
    except Exception:
        return {}  # a model litellm does not know: local, custom, or new


def max_input_tokens(model: str) -> int | None:
    """The model's input window from litellm's model info, or None when litellm does not know the model."""
    info = _model_info(model)
    window = info.get("max_input_tokens") or info.get("max_tokens")
    return int(window) if window else None


def price(model: str) -> tuple[float, float] | None:
    """USD per input token and per output token from litellm's price map, or None when it is not priced."""
    if model.startswith(f"{embedded.PROVIDER}/"):
        return 0.0, 0.0  # runs on this machine: free
    info = _model_info(model)
    per_input, per_output = info.get("input_cost_per_token"), info.get("output_cost_per_token")
    if per_input is None or per_output is None:
        return None
    return float(per_input), float(per_output)


def _to_completion(response: Any, litellm: ModuleType) -> Completion:
    choices = getattr(response, "choices", None) or []
    text = (choices[0].message.content or "") if choices else ""
    usage = getattr(response, "usage", None)
    cost = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
    if cost is None:
        try:
            cost = litellm.completion_cost(completion_response=response)
        except Exception:
            cost = None  # a model missing from the price map has no cost, which is not an error
    return Completion(
        text=text,
        input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        cost_usd=round(float(cost), 10) if cost is not None else None,
        cut=_cut(response),
    )


def _classify(exc: Exception, litellm: ModuleType) -> ProviderError:
    """Map a litellm (or transport) exception to a ProviderError kind."""
    original = getattr(exc, "original_exception", None)
    if isinstance(original, Exception) and original is not exc:
        return _classify(original, litellm)  # MidStreamFallbackError wraps the failure that matters
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

"""The only module that imports litellm: one completion call, its usage and cost, errors mapped to ours.

What needs no litellm lives beside it and is used as llm.X: the request and completion types (completion.py), the
error classification (provider_errors.py), and reading a streamed answer (streaming.py)."""

from __future__ import annotations

import logging
import os
import threading
from functools import lru_cache, partial
from types import ModuleType
from typing import Any

import anyio

from server.calling import embedded
from server.calling.completion import Completion, CompletionRequest, OnText
from server.calling.provider_errors import ProviderError, classify
from server.calling.providers import provider_of
from server.calling.streaming import cut_reason, stream_answer

_import_lock = threading.Lock()
HTTP_CLIENT_TIMEOUT_S = 600.0
_module: ModuleType | None = None
_handler: Any = None  # litellm's AsyncHTTPHandler over the coalescing transport, built on first use
# Providers litellm calls through its own HTTP handler (a `client=` it accepts); OpenAI-format models use the SDK.
HTTP_HANDLER_PROVIDERS = frozenset({"anthropic", "gemini"})
LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "LiteLLM Proxy.stdout", "litellm", "httpx", "openai")


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
                opening = partial(litellm.acompletion, **kwargs, stream=True, stream_options={"include_usage": True})
                return await stream_answer(opening, request, on_text, sink, price)
            response = await litellm.acompletion(**kwargs)
    except TimeoutError:
        raise ProviderError("timeout", detail=f"no complete answer within {request.timeout_s:.1f} s") from None
    except ProviderError:
        raise
    except Exception as exc:
        raise classify(exc, litellm) from exc
    return _to_completion(response, litellm, request.model)


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


def _to_completion(response: Any, litellm: ModuleType, model: str) -> Completion:
    choices = getattr(response, "choices", None) or []
    text = (choices[0].message.content or "") if choices else ""
    usage = getattr(response, "usage", None)
    cost = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
    # litellm priced the response already; asking again only helps a model its price map knows, and for one it
    # does not, the failing lookup costs more than the rest of the call's own work (milliseconds per call).
    if cost is None and price(model) is not None:
        try:
            cost = litellm.completion_cost(completion_response=response)
        except Exception:
            cost = None  # a model missing from the price map has no cost, which is not an error
    return Completion(
        text=text,
        input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        cost_usd=round(float(cost), 10) if cost is not None else None,
        cut=cut_reason(response),
    )

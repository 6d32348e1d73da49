"""Spans and metrics for the stages of a call, through the OpenTelemetry API alone.

The MCP SDK already opens a span for every `tools/call`; each stage that costs time opens a child of it here. With
no SDK installed (or none configured) the API hands back non-recording spans and instruments that do nothing, and
no attribute is computed (`is_recording()` is checked first). No task text, answer or key goes into an attribute:
only the task, and only when DELEGATE_LOG_TASKS allows it (`call_attributes(..., task=...)`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from server.calling.providers import provider_of
from server.results import CallUsage, DelegateResult, Routing, fallback_reasons

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Histogram

PREFIX = "delegate."
MAX_TASK_CHARS = 1000
"""Longest task text an attribute carries when DELEGATE_LOG_TASKS allows one (backends truncate anyway)."""

# The provider names of the GenAI conventions, for the litellm prefixes that differ from them.
_PROVIDER_NAMES = {
    "gemini": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "azure": "azure.ai.openai",
    "mistral": "mistral_ai",
    "xai": "x_ai",
    "watsonx": "ibm.watsonx.ai",
}

_tracer = trace.get_tracer("delegate-mcp")


class Instruments(NamedTuple):
    """The metric instruments: the GenAI conventions' two, then ours under delegate.*."""

    token_usage: Histogram
    duration: Histogram
    calls: Counter
    fallbacks: Counter
    spend: Counter


@cache
def instruments() -> Instruments:
    """Made on first use: importing the metrics API costs start-up time that `initialize` should not wait for. The
    API proxies them until (and unless) a MeterProvider is installed."""
    from opentelemetry import metrics

    meter = metrics.get_meter("delegate-mcp")
    return Instruments(
        token_usage=meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Tokens used per model call, input and output separately.",
            explicit_bucket_boundaries_advisory=[1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576],
        ),
        duration=meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="Duration of each model call (router or specialist), failed ones included.",
            explicit_bucket_boundaries_advisory=[
                0.01,
                0.02,
                0.04,
                0.08,
                0.16,
                0.32,
                0.64,
                1.28,
                2.56,
                5.12,
                10.24,
                20.48,
            ],
        ),
        calls=meter.create_counter(
            "delegate.calls", unit="{call}", description="Calls ended, by how they were routed."
        ),
        fallbacks=meter.create_counter(
            "delegate.fallbacks",
            unit="{call}",
            description="Calls a fallback model answered after a better one failed.",
        ),
        spend=meter.create_counter(
            "delegate.spend", unit="USD", description="Known model spend (router and specialist)."
        ),
    )


def provider_name(model: str) -> str:
    """The gen_ai.provider.name of a litellm model id ('openai', 'anthropic', 'gcp.gemini', ...)."""
    prefix = provider_of(model)
    return _PROVIDER_NAMES.get(prefix, prefix)


def model_of(attributes: Mapping[str, Any]) -> str:
    """The requested model among a model call's attributes."""
    return str(attributes["gen_ai.request.model"])


def _set(span: Span, attributes: Mapping[str, Any]) -> None:
    """Set the attributes that have a value (OpenTelemetry takes no None)."""
    span.set_attributes({k: v for k, v in attributes.items() if v is not None})


def _failed(span: Span, error_type: str) -> None:
    """Mark a span failed with a low-cardinality type and no message (messages may carry input or paths)."""
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR))


def exporting() -> bool:
    """Whether a TracerProvider is installed (an SDK): until then no span of ours is even started."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


@contextmanager
def stage(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Span]:
    """A child span for one stage of a call, `delegate.<name>` (route, files, store, verify, escalate, ...).

    An exception marks it failed with the exception's class name as error.type, never its message."""
    opened: AbstractContextManager[Span] = (
        _tracer.start_as_current_span(PREFIX + name, record_exception=False, set_status_on_exception=False)
        if exporting()
        else nullcontext(trace.INVALID_SPAN)  # without an SDK even the API's no-op span costs a context switch
    )
    with opened as span:
        if attributes and span.is_recording():
            _set(span, attributes)
        try:
            yield span
        except BaseException as exc:
            if span.is_recording():
                _failed(span, type(exc).__qualname__)
            raise


def annotate(span: Span, attributes: Mapping[str, Any]) -> None:
    """Add attributes to a span when it records (a stage's outcome, known only at its end)."""
    if span.is_recording():
        _set(span, attributes)


class ModelCall:
    """One model attempt as a GenAI client span; `done` and `failed` also feed the GenAI metrics."""

    def __init__(self, span: Span, operation: str, model: str, role: str) -> None:
        self.span = span
        self.ended = False
        """done() or failed() was called."""
        self._started = time.monotonic()
        self._metric_attrs: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": provider_name(model),
            "gen_ai.request.model": model,
            "delegate.role": role,
        }

    def done(self, input_tokens: int, output_tokens: int, cost_usd: float | None, response_model: str) -> None:
        """The model answered: its tokens, cost and the model that wrote the answer."""
        self.ended = True
        attrs = {**self._metric_attrs, "gen_ai.response.model": response_model}
        instruments().duration.record(time.monotonic() - self._started, attrs)
        instruments().token_usage.record(input_tokens, {**attrs, "gen_ai.token.type": "input"})
        instruments().token_usage.record(output_tokens, {**attrs, "gen_ai.token.type": "output"})
        if cost_usd:
            instruments().spend.add(
                cost_usd, {"delegate.role": attrs["delegate.role"], "gen_ai.request.model": model_of(attrs)}
            )
        annotate(
            self.span,
            {
                "gen_ai.response.model": response_model,
                "gen_ai.usage.input_tokens": input_tokens,
                "gen_ai.usage.output_tokens": output_tokens,
                "delegate.cost_usd": cost_usd,
            },
        )

    def failed(self, error_type: str) -> None:
        """The attempt failed: why, as a short kind (rate_limited, timeout, auth, ...)."""
        self.ended = True
        instruments().duration.record(
            time.monotonic() - self._started, {**self._metric_attrs, "error.type": error_type}
        )
        if self.span.is_recording():
            _failed(self.span, error_type)


@contextmanager
def model_call(model: str, *, role: str, operation: str = "chat", attempt: int = 1) -> Iterator[ModelCall]:
    """A `gen_ai` client span around one try of one model; role is router, specialist, judge or verifier.

    Call `done()` on what it yields when the model answered; an exception that escapes marks it failed by its
    `kind` (a provider error) or its class name."""
    # Without an SDK even the API's no-op span costs a context switch: skip it; the metrics still count (no-ops
    # too until a MeterProvider is installed).
    opened: AbstractContextManager[Span] = (
        _tracer.start_as_current_span(
            f"{operation} {model}", kind=SpanKind.CLIENT, record_exception=False, set_status_on_exception=False
        )
        if exporting()
        else nullcontext(trace.INVALID_SPAN)
    )
    with opened as span:
        call = ModelCall(span, operation, model, role)
        if span.is_recording():
            span.set_attributes({**call._metric_attrs, "delegate.attempt": attempt})
        try:
            yield call
        except BaseException as exc:
            if not call.ended:  # a provider error names its kind (rate_limited, timeout, auth, ...)
                kind = getattr(exc, "kind", None)
                call.failed(kind if isinstance(kind, str) else type(exc).__qualname__)
            raise


def routing_attributes(specialist: str, routing: Routing, usage: CallUsage) -> dict[str, Any]:
    """The route stage's decision (never the router's reason: it paraphrases the task)."""
    return {
        "delegate.specialist": specialist,
        "delegate.decided_by": routing.decided_by,
        "delegate.confidence": routing.confidence,
        "delegate.router_model": routing.router_model,
        "delegate.cost_usd": usage.cost_usd,
        "delegate.routing_latency_ms": routing.latency_ms,
    }


def verdict_attributes(passed: bool, verdict: str, cost_usd: float | None) -> dict[str, Any]:
    """A cascade verifier's outcome: passed, else the verdict that escalates (fail, verifier_error)."""
    return {"delegate.passed": passed, "delegate.verdict": verdict or None, "delegate.cost_usd": cost_usd}


def call_attributes(result: DelegateResult, task: str | None = None) -> dict[str, Any]:
    """The delegate.* attributes of a finished call: who answered, how it was routed, what it cost; the task only
    when given (DELEGATE_LOG_TASKS)."""
    failed_first = fallback_reasons(result.attempts)
    attrs: dict[str, Any] = {
        "delegate.specialist": result.specialist,
        "delegate.model": result.model,
        "delegate.decided_by": result.routing.decided_by,
        "delegate.confidence": result.routing.confidence,
        "delegate.router_model": result.routing.router_model,
        "delegate.attempts": len(result.attempts),
        "delegate.fallback": bool(failed_first),
        # Our own error sentences, already free of keys; never the answer or the task.
        "delegate.fallback_reason": failed_first or None,
        "delegate.cost_usd": result.usage.total_cost_usd,
        "delegate.status": result.status,
        "delegate.truncated": result.truncated,
        "delegate.files": len(result.files),
        "delegate.escalations": len(result.escalations),
        "delegate.call_id": result.call_id,
        "delegate.thread_id": result.thread_id,
        "delegate.job_id": result.job_id,
    }
    if task is not None:
        attrs["delegate.task"] = task[:MAX_TASK_CHARS]
    return {k: v for k, v in attrs.items() if v is not None}


def count_call(tool: str, result: DelegateResult | None, error_type: str | None = None) -> None:
    """Count a call that ended (result None: it failed with `error_type`) in the delegate.* metrics."""
    if result is None:
        instruments().calls.add(1, {"delegate.tool": tool, "error.type": error_type or "error"})
        return
    instruments().calls.add(
        1,
        {
            "delegate.tool": tool,
            "delegate.decided_by": result.routing.decided_by,
            "delegate.specialist": result.specialist,
        },
    )
    if fallback_reasons(result.attempts):
        instruments().fallbacks.add(1, {"delegate.specialist": result.specialist, "delegate.model": result.model})


def describe_call(
    tool: str, result: DelegateResult | None, error_type: str | None = None, task: str | None = None
) -> None:
    """Describe the call on the current span (the SDK's tools/call span, when it records)."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    if result is None:
        _set(span, {"delegate.tool": tool, "delegate.error": error_type})
        return
    _set(span, {"delegate.tool": tool, **call_attributes(result, task)})

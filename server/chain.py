"""Calling a specialist: its model chain in order, skipping unusable models, falling back on failure."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from server import llm
from server.catalog import ModelRef, Specialist
from server.clock import Deadline, ms_since
from server.errors import AllModelsFailedError, NoUsableModelError
from server.providers import PROVIDER_KEYS, availability, needs_placeholder_key, provider_of
from server.redact import redact
from server.results import Attempt

MIN_ATTEMPT_S = 1.0  # below this much time left, another try cannot answer; stop and report instead
PLACEHOLDER_KEY = "not-needed"


@dataclass(frozen=True)
class ChainAnswer:
    """The completion that answered, the model that produced it, and every attempt made."""

    completion: llm.Completion
    model: str
    attempts: list[Attempt]


def usable_models(spec: Specialist, environ: Mapping[str, str]) -> list[ModelRef]:
    """The models of a specialist's chain that can be called with this environment."""
    return [ref for ref in spec.chain if availability(ref.model, environ, ref.api_base, ref.api_key_env).usable]


def enable_hint(spec: Specialist, environ: Mapping[str, str]) -> str:
    """Which env vars would make a specialist callable, e.g. 'ANTHROPIC_API_KEY (for anthropic/...)'."""
    hints = []
    for ref in spec.chain:
        found = availability(ref.model, environ, ref.api_base, ref.api_key_env)
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
    status = f" ({error.status})" if error.status else ""
    detail = redact(" ".join(error.detail.split()), secrets)[:200]
    if error.kind == "auth":
        keys = (ref.api_key_env,) if ref.api_key_env else PROVIDER_KEYS.get(provider_of(ref.model), ())
        which = f": check {' / '.join(keys)}" if keys else ""
        return f"API key rejected{status}{which}"
    messages = {
        "rate_limited": f"rate limited{status}",
        "timeout": f"timed out: {detail}" if detail else "timed out",
        "connection": "could not connect to the provider",
        "server_error": f"provider server error{status}",
        "context_window": "input too long for this model's context window",
        "content_policy": "refused by the provider's content policy",
        "not_found": f"model not found{status}: check the model id",
        "bad_request": f"request rejected{status}: {detail}",
        "empty": "returned an empty answer",
    }
    return messages.get(error.kind, f"provider error{status}: {detail}")


async def run_chain(
    spec: Specialist,
    messages: list[dict[str, str]],
    environ: Mapping[str, str],
    deadline: Deadline,
    attempt_timeout_s: float,
    secrets: list[str],
) -> ChainAnswer:
    """Try each model of the chain until one answers; raise when none is usable or all fail."""
    attempts: list[Attempt] = []
    if not usable_models(spec, environ):
        raise NoUsableModelError(
            f"Specialist '{spec.name}' has no usable model. Set {enable_hint(spec, environ)}, "
            "or point it at a local server with api_base in its file."
        )
    for ref in spec.chain:
        found = availability(ref.model, environ, ref.api_base, ref.api_key_env)
        if not found.usable:
            attempts.append(Attempt(model=ref.model, ok=False, error=f"skipped: {found.reason}"))
            continue
        remaining = deadline.remaining()
        if remaining < MIN_ATTEMPT_S:
            attempts.append(Attempt(model=ref.model, ok=False, error="skipped: the call's deadline was reached"))
            break
        request = llm.CompletionRequest(
            model=ref.model,
            messages=messages,
            max_output_tokens=spec.max_output_tokens,
            timeout_s=min(attempt_timeout_s, remaining),
            temperature=spec.temperature,
            api_base=ref.api_base,
            api_key=api_key_for(ref, environ),
        )
        started = time.monotonic()
        try:
            completion = await llm.complete(request)
            if not completion.text.strip():
                raise llm.ProviderError("empty")
        except llm.ProviderError as error:
            attempts.append(
                Attempt(
                    model=ref.model, ok=False, error=describe_failure(error, ref, secrets), latency_ms=ms_since(started)
                )
            )
            continue
        attempts.append(Attempt(model=ref.model, ok=True, latency_ms=ms_since(started)))
        return ChainAnswer(completion, ref.model, attempts)
    tried = "; ".join(f"{a.model}: {a.error}" for a in attempts)
    raise AllModelsFailedError(f"Every model of specialist '{spec.name}' failed. {tried}", attempts)

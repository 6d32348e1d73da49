"""What one model call takes and gives back: the request the catalogue built, and the completion."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

OnText = Callable[[int], Awaitable[None]]  # called with the answer's length so far, while it streams


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

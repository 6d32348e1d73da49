"""What one simulated answer looks like, independent of the wire format that carries it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

FINISHES = ("stop", "length", "safety")


@dataclass(frozen=True)
class Behaviour:
    """How the simulator answers one request for a model, in whichever wire format the request used."""

    reply: str | None = None
    status: int = 200
    delay: float = 0.0
    hang: bool = False
    malformed: bool = False
    error_text: str | None = None
    headers: dict[str, str] | None = None
    usage: dict[str, int] | None = None
    """prompt_tokens / completion_tokens (OpenAI names, used for every format)."""
    stream_stall_after: int | None = None
    stream_error: int | None = None
    """Send this status's error as an event inside the stream (after stream_error_after pieces), then stop."""
    stream_error_after: int = 1
    responder: Callable[[dict[str, Any]], str] | None = None
    chunk_delay: float = 0.0
    finish: str = "stop"
    """stop | length (the output cap cut the answer) | safety (a safety filter cut it)."""
    retry_after: float | None = None
    """Seconds to wait, sent the provider's way: a Retry-After header, or Gemini's RetryInfo retryDelay in the body."""
    thinking_tokens: int = 0
    """Reasoning tokens the model spent, reported in usage and billed as output."""
    tool_call: dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any] | None] | None = None
    """{"name": ..., "arguments": {...}}: answer with a call of the client's own tool instead of text (an agent
    then runs the tool and asks again with its result). A function of the request body decides per request
    (from the tool results so far, say); when it returns None the answer is text."""

    def __post_init__(self) -> None:
        if self.finish not in FINISHES:
            raise ValueError(f"finish must be one of {FINISHES}, not {self.finish!r}")


@dataclass(frozen=True)
class Turn:
    """One answer being served: the model, the text, and the token counts to report."""

    model: str
    reply: str
    input_tokens: int
    output_tokens: int
    behaviour: Behaviour
    request: dict[str, Any]

    @property
    def thinking_tokens(self) -> int:
        """Reasoning tokens (part of the billed output)."""
        return self.behaviour.thinking_tokens

    @property
    def stream_usage(self) -> bool:
        """Whether an OpenAI-style client asked for the usage chunk."""
        return bool((self.request.get("stream_options") or {}).get("include_usage"))


def sse(data: str, event: str | None = None) -> str:
    """One server-sent event frame."""
    return (f"event: {event}\n" if event else "") + f"data: {data}\n\n"

"""Reading a streamed answer: the first-token and stall limits, the text so far, and closing the stream at once."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from server.calling.completion import Completion, CompletionRequest, OnText
from server.calling.provider_errors import ProviderError

Prices = Callable[[str], tuple[float, float] | None]
"""USD per input and per output token of a model, or None when it is not priced."""


async def stream_answer(
    open_stream: Callable[[], Awaitable[Any]],
    request: CompletionRequest,
    on_text: OnText | None,
    sink: list[str] | None,
    price: Prices,
) -> Completion:
    """Stream the answer so a silent model is caught early. `open_stream` starts the provider's stream (litellm,
    in llm.py); `price` prices the usage when the provider's last chunk carries no cost."""
    assert request.first_token_timeout_s is not None and request.stall_timeout_s is not None
    first_by = anyio.current_time() + request.first_token_timeout_s
    with anyio.move_on_after(request.first_token_timeout_s) as opening:
        stream = await open_stream()
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
            cut = cut_reason(chunk) or cut
            pieces.append(text)
            received += len(text) + reasoning
            answer_chars += len(text)
            if on_text is not None and text:
                await on_text(answer_chars)
            usage = getattr(chunk, "usage", None) or usage
    finally:
        await _close(stream)
    # Joining the deltas ourselves is several times cheaper than litellm.stream_chunk_builder.
    return _streamed_completion("".join(pieces), usage, request.model, price, cut)


def cut_reason(response: Any) -> str | None:
    """ "length" or "content_filter" when a response or chunk says the provider stopped the answer early."""
    choices = getattr(response, "choices", None) or []
    reason = getattr(choices[0], "finish_reason", None) if choices else None
    return reason if reason in CUT_REASONS else None


CUT_REASONS = frozenset({"length", "content_filter"})


def _streamed_completion(text: str, usage: Any, model: str, price: Prices, cut: str | None = None) -> Completion:
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

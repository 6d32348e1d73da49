"""Streamed answers cost little CPU: text deltas are merged before litellm parses them, in every wire format."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

from server.calling import llm
from server.calling.coalesce import CoalescingStream, merge_events
from tests.sim import WIRE_NAMES, ProviderSimulator

ANSWER = "".join(f"word{i} " for i in range(300))  # 2,100 characters: 263 chunks of 8


def openai_delta(text: str, finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": {"content": text}, "finish_reason": finish}
    chunk = {"object": "chat.completion.chunk", "choices": [choice]}
    return b"data: " + json.dumps(chunk).encode()


def test_consecutive_openai_text_deltas_become_one_event() -> None:
    merged = merge_events([openai_delta("Hel"), openai_delta("lo"), openai_delta("", "stop"), b"data: [DONE]"])
    events = merged.split(b"\n\n")[:-1]
    assert len(events) == 3 and events[-1] == b"data: [DONE]"
    assert json.loads(events[0][6:])["choices"][0]["delta"]["content"] == "Hello"
    assert json.loads(events[1][6:])["choices"][0]["finish_reason"] == "stop"  # passed on unchanged


def test_anthropic_deltas_merge_and_keep_their_event_line() -> None:
    def delta(text: str) -> bytes:
        payload = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
        return b"event: content_block_delta\ndata: " + json.dumps(payload).encode()

    stop = b'event: content_block_stop\ndata: {"type": "content_block_stop", "index": 0}'
    events = merge_events([delta("a"), delta("b"), stop]).split(b"\n\n")[:-1]
    assert events[0].startswith(b"event: content_block_delta\ndata: ")
    assert json.loads(events[0].split(b"data: ", 1)[1])["delta"]["text"] == "ab" and events[1] == stop


def test_gemini_deltas_merge_keeping_the_latest_usage_and_never_a_finish() -> None:
    def chunk(text: str, tokens: int, finish: str | None = None) -> bytes:
        candidate: dict = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        payload = {"candidates": [candidate], "usageMetadata": {"totalTokenCount": tokens}}
        return b"data: " + json.dumps(payload).encode()

    events = merge_events([chunk("x", 1), chunk("y", 2), chunk("z", 3, "STOP")]).split(b"\n\n")[:-1]
    first = json.loads(events[0][6:])
    assert first["candidates"][0]["content"]["parts"][0]["text"] == "xy"
    assert first["usageMetadata"]["totalTokenCount"] == 2
    assert json.loads(events[1][6:])["candidates"][0]["finishReason"] == "STOP"


def test_reasoning_and_tool_call_deltas_are_never_merged() -> None:
    thinking = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"reasoning_content": "hm"}}]}
    event = b"data: " + json.dumps(thinking).encode()
    assert merge_events([event, event]) == event + b"\n\n" + event + b"\n\n"


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("wire", WIRE_NAMES)
async def test_a_long_streamed_answer_reaches_litellm_in_few_chunks_whole(
    anyio_backend: str, sim: ProviderSimulator, wire: str
) -> None:
    sim.set_default("sim-long", ANSWER)
    request = llm.CompletionRequest(
        model=f"{wire}/sim-long",
        messages=[{"role": "user", "content": "Long answer, please."}],
        max_output_tokens=2048,
        timeout_s=30,
        api_base=sim.api_base(wire),
        api_key="sim-key",
        first_token_timeout_s=10,
        stall_timeout_s=10,
    )
    updates: list[int] = []

    async def on_text(chars: int) -> None:
        updates.append(chars)

    pieces: list[str] = []
    completion = await llm.complete(request, on_text, pieces)
    assert completion.text == ANSWER and completion.output_tokens > 0
    assert 1 <= len(updates) <= 10, f"{len(updates)} chunks reached litellm; the provider sent {len(ANSWER) // 8}"
    assert updates[-1] == len(ANSWER) and "".join(pieces) == ANSWER


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("wire", WIRE_NAMES)
async def test_a_slow_stream_still_shows_progress_and_the_first_token_at_once(
    anyio_backend: str, sim: ProviderSimulator, wire: str
) -> None:
    sim.set_default("sim-slow", "".join(f"line {i:03d}\n" for i in range(30)), chunk_delay=0.04)  # 60 chunks, 2.4 s
    request = llm.CompletionRequest(
        model=f"{wire}/sim-slow",
        messages=[{"role": "user", "content": "Slowly."}],
        max_output_tokens=1024,
        timeout_s=30,
        api_base=sim.api_base(wire),
        api_key="sim-key",
        first_token_timeout_s=10,
        stall_timeout_s=10,
    )
    arrivals: list[float] = []

    async def on_text(chars: int) -> None:
        arrivals.append(anyio.current_time())

    started = anyio.current_time()
    await llm.complete(request, on_text)
    assert arrivals[0] - started < 1.5, "the first text is handed on without waiting for the window"
    assert 4 <= len(arrivals) <= 20, "text keeps arriving while the answer streams, a few times a second"



@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_end_of_an_answer_is_not_held_back_by_the_window(anyio_backend: str) -> None:
    class Upstream(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield openai_delta("a") + b"\n\n"
            await anyio.sleep(0.05)
            yield openai_delta("b") + b"\n\n" + b"data: [DONE]\n\n"

    stream = CoalescingStream(Upstream(), window_s=30)  # a window far longer than the answer
    started = anyio.current_time()
    received = b"".join([piece async for piece in stream])
    assert anyio.current_time() - started < 10, "the body's end flushes at once"
    assert received.endswith(b"data: [DONE]\n\n") and b'"content": "b"' in received.replace(b'":"', b'": "')

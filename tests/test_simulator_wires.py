"""The provider simulator speaks each wire format the way litellm expects it (checked through litellm)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from server.calling import llm
from tests.sim import WIRE_NAMES, ProviderSimulator

pytestmark = pytest.mark.anyio
MODELS = {"openai": "openai/sim-a", "anthropic": "anthropic/sim-a", "gemini": "gemini/sim-a"}
SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
KEY_HEADERS = {"openai": "authorization", "anthropic": "x-api-key", "gemini": "x-goog-api-key"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def request(sim: ProviderSimulator, wire: str, *, stream: bool, **extra: object) -> llm.CompletionRequest:
    return llm.CompletionRequest(
        model=MODELS[wire],
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}],
        max_output_tokens=64,
        timeout_s=10,
        api_base=sim.api_base(wire),
        api_key="sim-key",
        first_token_timeout_s=5 if stream else None,
        stall_timeout_s=5 if stream else None,
        **extra,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("wire", WIRE_NAMES)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_each_format_answers_with_text_and_usage(sim: ProviderSimulator, wire: str, stream: bool) -> None:
    sim.enqueue(
        "sim-a", "a scripted answer that spans several chunks", usage={"prompt_tokens": 7, "completion_tokens": 9}
    )
    completion = await llm.complete(request(sim, wire, stream=stream))
    assert completion.text == "a scripted answer that spans several chunks"
    assert (completion.input_tokens, completion.output_tokens) == (7, 9)
    record = sim.requests("sim-a")[0]
    assert record["format"] == wire and record["headers"][KEY_HEADERS[wire]].endswith("sim-key")


@pytest.mark.parametrize("wire", WIRE_NAMES)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_each_format_returns_json_output_for_a_schema(sim: ProviderSimulator, wire: str, stream: bool) -> None:
    sim.enqueue("sim-a", '{"a": "routed"}')
    fmt = {"type": "json_schema", "json_schema": {"name": "r", "schema": SCHEMA}}
    completion = await llm.complete(request(sim, wire, stream=stream, response_format=fmt))
    assert json.loads(completion.text) == {"a": "routed"}


async def test_anthropic_requests_carry_the_version_header_and_a_top_level_system(sim: ProviderSimulator) -> None:
    await llm.complete(request(sim, "anthropic", stream=True))
    record = sim.requests("sim-a")[0]
    assert record["path"] == "/v1/messages" and record["headers"]["anthropic-version"] == "2023-06-01"
    assert record["body"]["system"] == [{"type": "text", "text": "Be brief."}]


async def test_gemini_streams_through_stream_generate_content_with_a_system_instruction(sim: ProviderSimulator) -> None:
    # litellm sends system_instruction only for Gemini ids it knows; for others it folds the system text into the turn
    known = replace(request(sim, "gemini", stream=True), model="gemini/gemini-2.5-flash")
    await llm.complete(known)
    record = sim.requests("gemini-2.5-flash")[0]
    assert record["path"] == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert record["body"]["system_instruction"] == {"parts": [{"text": "Be brief."}]}


@pytest.mark.parametrize("wire", WIRE_NAMES)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_thinking_tokens_are_billed_as_output_on_every_format(
    sim: ProviderSimulator, wire: str, stream: bool
) -> None:
    sim.enqueue("sim-a", "short", usage={"prompt_tokens": 7, "completion_tokens": 3}, thinking_tokens=40)
    completion = await llm.complete(request(sim, wire, stream=stream))
    assert completion.text == "short", "thought summaries are not part of the answer"
    assert completion.output_tokens == 43

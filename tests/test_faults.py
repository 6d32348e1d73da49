"""Fault injection: every provider fault and bad input, through litellm's HTTP path to the simulator.

Run alone with `pytest -m faults`.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from server.app import build_server
from server.delegation import Delegator
from server.store.budget import DailyBudget, today
from server.store.sqlite import SQLiteStore
from tests.conftest import WIRES, Wire, route_to, specialist_file
from tests.simulator import ProviderSimulator

pytestmark = [pytest.mark.faults, pytest.mark.anyio]
SECRETS = [
    "sk-proj-AAAABBBBCCCCDDDD1111",
    "sk-ant-api03-EEEEFFFFGGGG2222",
    "AIzaSyHHHHIIIIJJJJKKKKLLLLMMMM3333",
    "Bearer tok_NNNNOOOOPPPP4444",
    "key=QQQQRRRRSSSS5555",
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def call(delegator: Delegator, tool: str, arguments: dict[str, Any]) -> Any:
    async with Client(build_server(delegator)) as session:
        return await session.call_tool(tool, arguments)


def chain_dir(tmp_path: Path, sim: ProviderSimulator, models: list[str]) -> Path:
    """A folder with one specialist ('only') whose chain is `models`, all on the simulator."""
    folder = tmp_path / "chain"
    folder.mkdir()
    (folder / "only.md").write_text(
        specialist_file("only", models[0], sim.base_url, fallbacks=models[1:], default=True)
    )
    return folder


def faulty(make_delegator: Callable[..., Delegator], **overrides: Any) -> Delegator:
    """A delegator with the shipped defaults for retries and cooldowns unless a test says otherwise."""
    overrides.setdefault("retries", 1)
    overrides.setdefault("cooldown_s", 30)
    return make_delegator(**overrides)


# --- deadline and per-attempt time limits (every wire format) --------------------------------------------

each_wire = pytest.mark.parametrize("wire", WIRES, indirect=True)
# litellm (1.110.2) sends openai/responses/... requests unstreamed even when the call streams (the simulator sees no
# "stream": true), so stall limits, an error event mid-stream, an incomplete stream and closing
# the upstream stream on cancel cannot apply to them. strict: these start failing the day litellm streams them.
UNSTREAMED = pytest.mark.xfail(reason="litellm does not stream openai/responses/... requests", strict=True)
each_streaming_wire = pytest.mark.parametrize(
    "wire", [*(w for w in WIRES if w != "responses"), pytest.param("responses", marks=UNSTREAMED)], indirect=True
)


@each_wire  # an unstreamed Responses request that hangs has no first token either: the same limit catches it
async def test_a_hanging_model_leaves_time_for_its_fallback(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, wire: Wire
) -> None:
    sim.enqueue("sim-coder", hang=True)
    started = time.monotonic()
    data = (
        await call(faulty(make_delegator, first_token_timeout_s=1.0), "ask_coder", {"task": "x"})
    ).structured_content
    assert data["model"] == wire.model("sim-backup")
    assert data["attempts"][0]["error"] == "timed out: no first token within 1 s"
    assert time.monotonic() - started < 6.0, "one first-token limit, then the fallback (generous for loaded CI)"


@each_streaming_wire
async def test_a_stream_that_stalls_midway_falls_back(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, wire: Wire
) -> None:
    sim.enqueue("sim-coder", "a long answer that will stop half way", stream_stall_after=2)
    data = (await call(faulty(make_delegator, stall_timeout_s=0.5), "ask_coder", {"task": "x"})).structured_content
    assert data["model"] == wire.model("sim-backup")
    assert data["attempts"][0]["error"] == "timed out: stream stalled for 0.5 s after 16 characters"


@each_wire
async def test_every_call_ends_within_the_deadline_with_what_is_known(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, wire: Wire
) -> None:
    sim.set_default("sim-router", hang=True)
    sim.set_default("sim-general", hang=True)
    sim.set_default("sim-backup", hang=True)
    # Jobs off: the call itself reports what happened (with jobs on, the work would go on as a job).
    delegator = faulty(make_delegator, deadline_s=3.0, router_timeout_s=1.0, first_token_timeout_s=1.0, jobs=False)
    started = time.monotonic()
    result = await call(delegator, "delegate", {"task": "x"})
    elapsed = time.monotonic() - started
    # generous: litellm's lazy imports on a provider's first call block the event loop, seconds on a loaded machine
    assert result.is_error and elapsed < 10.0
    text = result.content[0].text
    assert f"{wire.model('sim-general')}: timed out: no first token within 1 s" in text
    assert f"{wire.model('sim-backup')}: skipped: the call's deadline was reached" in text


@each_wire
async def test_a_retry_that_cannot_fit_the_deadline_is_not_started(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, wire: Wire
) -> None:
    sim.set_default("sim-coder", status=503, retry_after=2.0)  # asks for longer than the deadline leaves
    sim.set_default("sim-backup", hang=True)
    delegator = faulty(make_delegator, deadline_s=2.5, first_token_timeout_s=1.8, retries=3, jobs=False)
    started = time.monotonic()
    result = await call(delegator, "ask_coder", {"task": "x"})
    assert result.is_error and time.monotonic() - started < 10.0  # generous, as above
    assert sim.count("sim-coder") < 4, "the retries that could not fit were not started"
    text = result.content[0].text  # how far the backup got depends on the machine's load
    backup = wire.model("sim-backup")
    assert f"{backup}: timed out" in text or f"{backup}: skipped: the call's deadline was reached" in text


# --- retries and fallbacks (every wire format) -----------------------------------------------------------


@each_wire
async def test_a_server_error_is_retried_on_the_same_model(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, wire: Wire
) -> None:
    sim.enqueue("sim-coder", status=502)
    data = (await call(faulty(make_delegator), "ask_coder", {"task": "x"})).structured_content
    assert data["model"] == wire.model("sim-coder")
    tries = [(a["model"], a["ok"]) for a in data["attempts"]]
    assert tries == [(wire.model("sim-coder"), False), (wire.model("sim-coder"), True)]
    assert sim.count("sim-backup") == 0


OVERLOADED = {"openai": 503, "anthropic": 529, "gemini": 503, "responses": 503}


@each_wire
async def test_an_overloaded_provider_is_named_so_and_retried(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, wire: Wire
) -> None:
    status = OVERLOADED[wire.name]  # Anthropic's 529 overloaded_error reaches us from litellm as a 500
    sim.enqueue("sim-coder", status=status, error_text="Overloaded")
    data = (await call(faulty(make_delegator), "ask_coder", {"task": "x"})).structured_content
    assert data["attempts"][0]["error"] == f"overloaded ({status})"
    assert data["model"] == wire.model("sim-coder") and sim.count("sim-coder") == 2


def point_at(folder: Path, name: str, old_base: str, new_base: str) -> None:
    """Move one specialist's first model to another api_base."""
    path = folder / f"{name}.md"
    path.write_text(path.read_text().replace(f"api_base: '{old_base}'", f"api_base: '{new_base}'", 1))


@each_wire
async def test_a_connection_error_is_retried_then_falls_back(
    make_delegator: Callable[..., Delegator], specialists_dir: Path, wire: Wire
) -> None:
    point_at(specialists_dir, "coder", wire.api_base, wire.dead_base)
    data = (await call(faulty(make_delegator), "ask_coder", {"task": "x"})).structured_content
    assert [a["error"] for a in data["attempts"][:2]] == ["could not connect to the provider"] * 2
    assert data["model"] == wire.model("sim-backup")


@each_wire
async def test_a_refused_connection_cools_the_model_at_once(
    make_delegator: Callable[..., Delegator], specialists_dir: Path, wire: Wire
) -> None:
    point_at(specialists_dir, "coder", wire.api_base, wire.dead_base)
    delegator = faulty(make_delegator, retries=0)
    await call(delegator, "ask_coder", {"task": "a"})
    later = (await call(delegator, "ask_coder", {"task": "b"})).structured_content
    assert later["attempts"][0]["error"].startswith("skipped: cooling down"), "a dead endpoint is not re-dialled"
    assert later["model"] == wire.model("sim-backup")


@each_wire
async def test_retry_after_is_honoured_when_it_fits(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, wire: Wire
) -> None:
    sim.enqueue("sim-coder", status=429, retry_after=1)  # Gemini says it in the body (RetryInfo retryDelay "1s")
    data = (await call(faulty(make_delegator), "ask_coder", {"task": "x"})).structured_content
    assert data["model"] == wire.model("sim-coder")
    assert data["attempts"][0]["error"] == "rate limited (429), retry after 1 s"
    first, second = [r["time"] for r in sim.requests("sim-coder")]
    assert second - first >= 1.0


@each_wire
async def test_retry_after_longer_than_the_deadline_falls_back_at_once(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, wire: Wire
) -> None:
    sim.enqueue("sim-coder", status=429, retry_after=120)
    delegator = faulty(make_delegator)
    started = time.monotonic()
    data = (await call(delegator, "ask_coder", {"task": "x"})).structured_content
    assert data["model"] == wire.model("sim-backup") and time.monotonic() - started < 4.0
    assert sim.count("sim-coder") == 1
    later = (await call(delegator, "ask_coder", {"task": "y"})).structured_content
    assert later["attempts"][0]["error"].startswith("skipped: cooling down")
    assert sim.count("sim-coder") == 1, "the provider asked for 120 s: later calls leave it alone"


@each_wire
async def test_a_wait_on_an_overloaded_answer_cools_the_model_that_long(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, wire: Wire
) -> None:
    sim.enqueue("sim-coder", status=OVERLOADED[wire.name], retry_after=60)
    delegator = faulty(make_delegator)
    await call(delegator, "ask_coder", {"task": "x"})
    later = (await call(delegator, "ask_coder", {"task": "y"})).structured_content
    error = later["attempts"][0]["error"]
    # 60 s from the failure, less the moments the fallback and the second call took (shown rounded).
    assert re.match(r"skipped: cooling down after recent failures \((59|60) s left", error), error
    assert sim.count("sim-coder") == 1


CLIENT_ERRORS = [
    (400, "Invalid 'messages' parameter", "request rejected (400): Invalid 'messages' parameter"),
    (404, "The model does not exist", "model not found (404): check the model id"),
    (
        400,
        "Your request was rejected by our safety system (content_policy_violation)",
        "refused by the provider's content policy",
    ),
    (400, "prompt is too long: 210000 tokens > 200000 maximum", "input too long for this model's context window"),
    (
        400,
        "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
        "input too long for this model's context window",
    ),
]


@each_wire
@pytest.mark.parametrize(("status", "text", "error"), CLIENT_ERRORS)
async def test_client_errors_are_not_retried_and_fall_back(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, wire: Wire, status: int, text: str, error: str
) -> None:
    sim.enqueue("sim-coder", status=status, error_text=text)
    data = (await call(faulty(make_delegator), "ask_coder", {"task": "x"})).structured_content
    assert sim.count("sim-coder") == 1
    assert data["model"] == wire.model("sim-backup") and data["attempts"][0]["error"] == error


@each_wire
async def test_a_rejected_key_moves_to_the_next_provider(
    tmp_path: Path, sim: ProviderSimulator, make_delegator: Callable[..., Delegator], wire: Wire
) -> None:
    folder = tmp_path / "providers"
    folder.mkdir()
    base = wire.api_base
    (folder / "only.md").write_text(
        f"---\nname: only\ndescription: d\nmodel: {wire.model('sim-a')}\n"
        f"api_base: '{base}'\nfallbacks:\n  - {{model: {wire.model('sim-b')}, api_base: '{base}'}}\n"
        f"  - {{model: {wire.model('sim-c')}, api_base: '{base}', api_key_env: OTHER_KEY}}\n---\nHi.\n"
    )
    sim.enqueue("sim-a", status=401)  # Gemini answers a bad key with 400 API_KEY_INVALID
    delegator = faulty(make_delegator, specialists_dir=folder, environ={"OTHER_KEY": "other-provider-key"})
    data = (await call(delegator, "ask_only", {"task": "x"})).structured_content
    assert [a["error"] for a in data["attempts"]] == [
        f"API key rejected (401): check {wire.key_env}",
        "skipped: the same provider key was just rejected",
        None,
    ]
    assert data["model"] == wire.model("sim-c") and sim.count("sim-b") == 0


@each_streaming_wire
async def test_an_error_inside_the_stream_falls_back_and_keeps_no_partial_answer(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, wire: Wire
) -> None:
    status = OVERLOADED[wire.name] if wire.name == "anthropic" else 500  # Anthropic: `event: error`, overloaded
    sim.set_default("sim-coder", "an answer that breaks off half way", stream_error=status, stream_error_after=2)
    data = (await call(faulty(make_delegator), "ask_coder", {"task": "x"})).structured_content
    assert data["model"] == wire.model("sim-backup") and "breaks off" not in data["output"]
    expected = "overloaded (529)" if wire.name == "anthropic" else "provider server error (500)"
    assert data["attempts"][0]["error"] == expected


# --- answers the provider cut short (every wire format) ---------------------------------------------------


@each_streaming_wire
async def test_an_answer_cut_by_the_output_cap_is_marked_truncated(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, wire: Wire
) -> None:
    sim.enqueue("sim-coder", "the first half of a long answer", finish="length")
    result = await call(faulty(make_delegator, max_output_tokens=300), "ask_coder", {"task": "x"})
    data = result.structured_content
    assert data["truncated"] is True and data["model"] == wire.model("sim-coder")
    assert data["output"].startswith("the first half of a long answer\n\n[... answer cut by the provider")
    assert "output cap of 300 tokens" in data["output"]
    assert " · answer truncated" in result.content[-1].text, "the summary line says so too"
    assert sim.count("sim-backup") == 0, "a paid-for partial answer is returned, not thrown away"


@each_streaming_wire
async def test_an_answer_cut_by_a_safety_filter_is_marked_truncated(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, wire: Wire
) -> None:
    sim.enqueue("sim-coder", "what came before the filter", finish="safety")
    data = (await call(faulty(make_delegator), "ask_coder", {"task": "x"})).structured_content
    assert data["truncated"] is True and "safety filter" in data["output"]


@each_wire
async def test_a_complete_answer_is_not_marked_truncated(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, wire: Wire
) -> None:
    sim.enqueue("sim-coder", "all of it")
    data = (await call(faulty(make_delegator), "ask_coder", {"task": "x"})).structured_content
    assert data["truncated"] is False and data["output"] == "all of it"


# --- context windows ------------------------------------------------------------------------------------


async def test_context_window_exceeded_moves_to_a_larger_window(
    tmp_path: Path, sim: ProviderSimulator, make_delegator: Callable[..., Delegator]
) -> None:
    models = ["openai/gpt-4o-mini", "openai/gpt-4o", "openai/gpt-4.1-mini"]  # 128k, 128k, 1M windows
    sim.enqueue("gpt-4o-mini", status=400, error_text="This model's maximum context length is 128000 tokens.")
    delegator = faulty(make_delegator, specialists_dir=chain_dir(tmp_path, sim, models))
    data = (await call(delegator, "ask_only", {"task": "x"})).structured_content
    assert data["model"] == "openai/gpt-4.1-mini"
    assert data["attempts"][0]["error"] == "input too long for this model's context window"
    assert data["attempts"][1]["error"].startswith("skipped: its window is no larger")
    assert sim.count("gpt-4o") == 0


async def test_models_whose_window_is_too_small_are_skipped_before_calling(
    tmp_path: Path, sim: ProviderSimulator, make_delegator: Callable[..., Delegator]
) -> None:
    models = ["openai/gpt-4o-mini", "openai/sim-unknown-window", "openai/gpt-4.1-mini"]
    delegator = faulty(make_delegator, specialists_dir=chain_dir(tmp_path, sim, models))
    sim.enqueue("sim-unknown-window", status=500)
    sim.enqueue("sim-unknown-window", status=500)
    data = (await call(delegator, "ask_only", {"task": "Summarise", "context": "word " * 120_000})).structured_content
    assert re.fullmatch(
        r"skipped: input is about 171,\d{3} tokens, over its 128,000-token window", data["attempts"][0]["error"]
    )
    assert data["attempts"][1]["model"] == "openai/sim-unknown-window", "an unknown window is not skipped"
    assert data["model"] == "openai/gpt-4.1-mini" and sim.count("gpt-4o-mini") == 0


async def test_input_larger_than_every_known_window_fails_before_any_call(
    tmp_path: Path, sim: ProviderSimulator, make_delegator: Callable[..., Delegator]
) -> None:
    models = ["openai/gpt-4o-mini", "openai/gpt-4.1-mini"]
    delegator = faulty(make_delegator, specialists_dir=chain_dir(tmp_path, sim, models), max_context_chars=10_000_000)
    for tool in ("delegate", "ask_only"):
        result = await call(delegator, tool, {"task": "x", "context": "y" * 4_000_000})
        assert result.is_error and "more than any usable model takes" in result.content[0].text
        assert "1,047,576 tokens, openai/gpt-4.1-mini" in result.content[0].text
    assert sim.history == []


# --- cooldowns ------------------------------------------------------------------------------------------


@each_wire
async def test_a_dead_model_costs_one_timeout_then_cools_down_and_recovers(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, wire: Wire
) -> None:
    sim.enqueue("sim-coder", hang=True)
    delegator = faulty(make_delegator, first_token_timeout_s=0.5, cooldown_s=1.0)
    first = (await call(delegator, "ask_coder", {"task": "a"})).structured_content
    assert first["attempts"][0]["error"].startswith("timed out")
    started = time.monotonic()
    second = (await call(delegator, "ask_coder", {"task": "b"})).structured_content
    assert second["attempts"][0]["error"].startswith("skipped: cooling down")
    assert second["model"] == wire.model("sim-backup") and sim.count("sim-coder") == 1
    await anyio.sleep(max(0.0, started + 1.1 - time.monotonic()))
    third = (await call(delegator, "ask_coder", {"task": "c"})).structured_content
    assert third["model"] == wire.model("sim-coder"), "the cooldown ends by itself"


@each_wire
async def test_when_every_model_is_cooling_the_first_to_recover_is_tried(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, wire: Wire
) -> None:
    sim.enqueue("sim-coder", hang=True)
    sim.enqueue("sim-backup", hang=True)
    delegator = faulty(make_delegator, first_token_timeout_s=0.5)
    assert (await call(delegator, "ask_coder", {"task": "a"})).is_error
    data = (await call(delegator, "ask_coder", {"task": "b"})).structured_content
    assert data["model"] == wire.model("sim-coder"), "a fully cooled chain still tries one model instead of failing"


# --- cancellation and concurrency -----------------------------------------------------------------------


@each_wire
async def test_a_cancelled_call_aborts_the_upstream_request_and_the_server_keeps_serving(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, wire: Wire
) -> None:
    sim.enqueue("sim-coder", hang=True)
    async with Client(build_server(faulty(make_delegator))) as session:
        with anyio.move_on_after(1.0):
            await session.call_tool("ask_coder", {"task": "x"})
        for _ in range(40):
            if sim.aborted("sim-coder"):
                break
            await anyio.sleep(0.05)
        after = await session.call_tool("ask_writer", {"task": "still there?"})
    assert sim.aborted("sim-coder") == 1, "the upstream HTTP request was closed"
    assert sim.count("sim-backup") == 0, "no fallback is billed after a cancel"
    assert not after.is_error


@each_streaming_wire
async def test_a_call_cancelled_mid_answer_closes_the_upstream_stream(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, wire: Wire
) -> None:
    sim.enqueue("sim-coder", "".join(f"part {i:02d} " for i in range(60)), chunk_delay=0.1)
    async with Client(build_server(faulty(make_delegator))) as session:
        with anyio.move_on_after(2.0):
            await session.call_tool("ask_coder", {"task": "x"})
        for _ in range(40):
            if sim.aborted("sim-coder"):
                break
            await anyio.sleep(0.05)
    assert sim.aborted("sim-coder") == 1, "an abandoned answer must stop streaming (and billing) upstream"


@pytest.mark.filterwarnings("ignore:ping is removed")
async def test_fifty_concurrent_delegate_calls_return_their_own_answers_and_ping_still_works(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.set_default("sim-router", route_to("coder"), delay=0.2)
    sim.set_default("sim-coder", delay=0.2)
    results: dict[int, Any] = {}
    finished: list[float] = []
    ping_done: list[float] = []
    async with Client(build_server(faulty(make_delegator)), mode="legacy") as session:

        async def one(i: int) -> None:
            results[i] = await session.call_tool("delegate", {"task": f"task number {i}"})
            finished.append(time.monotonic())

        async with anyio.create_task_group() as group:
            for i in range(50):
                group.start_soon(one, i)
            await anyio.sleep(0.1)
            await session.send_ping()
            ping_done.append(time.monotonic())
    assert len(results) == 50
    for i, result in results.items():
        assert not result.is_error
        assert result.structured_content["output"] == f"[sim-coder] task number {i}"
    assert ping_done[0] < max(finished), "ping is answered while the calls are still running"


async def test_the_concurrency_limit_queues_excess_calls(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.set_default("sim-coder", delay=0.4)
    delegator = faulty(make_delegator, max_concurrency=2)
    started = time.monotonic()
    async with Client(build_server(delegator)) as session, anyio.create_task_group() as group:
        for i in range(4):
            group.start_soon(session.call_tool, "ask_coder", {"task": str(i)})
    assert time.monotonic() - started >= 0.8, "4 calls of 0.4 s through 2 slots take two rounds"


# --- budgets and caps -----------------------------------------------------------------------------------


async def test_an_exhausted_daily_budget_refuses_with_zero_provider_calls(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, tmp_path: Path
) -> None:
    (tmp_path / "spend.json").write_text(json.dumps({"day": today(), "spent_usd": 5.0}))
    delegator = faulty(make_delegator, daily_budget_usd=5.0, data_dir=tmp_path)
    for tool in ("delegate", "ask_coder"):
        result = await call(delegator, tool, {"task": "x"})
        assert result.is_error and "DELEGATE_DAILY_BUDGET_USD" in result.content[0].text
    assert sim.history == []


async def test_spend_is_recorded_and_survives_a_restart(
    tmp_path: Path, sim: ProviderSimulator, make_delegator: Callable[..., Delegator]
) -> None:
    folder = chain_dir(tmp_path, sim, ["openai/gpt-4.1-mini@0.40/1.60"])  # priced in the entry: a custom base URL
    sim.set_default("gpt-4.1-mini", "ok", usage={"prompt_tokens": 1_000_000, "completion_tokens": 0})  # $0.40
    first = faulty(make_delegator, specialists_dir=folder, daily_budget_usd=0.5, data_dir=tmp_path)
    assert not (await call(first, "ask_only", {"task": "x"})).is_error
    restarted = faulty(make_delegator, specialists_dir=folder, daily_budget_usd=0.5, data_dir=tmp_path)
    assert not (await call(restarted, "ask_only", {"task": "y"})).is_error
    refused = await call(restarted, "ask_only", {"task": "z"})
    assert refused.is_error and "$0.8000 of $0.50" in refused.content[0].text
    assert sim.count("gpt-4.1-mini") == 2


def test_the_ledger_is_safe_under_concurrent_writers(tmp_path: Path) -> None:
    stores = [SQLiteStore(tmp_path / "state.sqlite3") for _ in range(4)]  # like four server processes
    budgets = [DailyBudget(100.0, store) for store in stores]

    def spend(budget: DailyBudget) -> None:
        for _ in range(50):
            hold = budget.reserve(0.02)
            hold.spent_usd = 0.01
            budget.settle(hold)

    threads = [threading.Thread(target=spend, args=(b,)) for b in budgets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert budgets[0].spent() == pytest.approx(2.0)


async def test_output_tokens_are_capped_per_call(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    await call(faulty(make_delegator, max_output_tokens=256), "ask_coder", {"task": "x"})
    assert sim.calls("sim-coder")[0]["max_tokens"] == 256


async def test_huge_answers_are_truncated_with_a_marker_when_links_are_off(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    answer = "".join(f"line {i:04d}\n" for i in range(500))  # 5,000 characters
    sim.enqueue("sim-coder", answer)
    delegator = faulty(make_delegator, max_output_chars=1_000, link_share=0)  # with links on it would go by link
    data = (await call(delegator, "ask_coder", {"task": "x"})).structured_content
    assert data["output"].startswith(answer[:1_000] + "\n\n[... answer truncated")
    assert (
        "[... answer truncated: it was 5,000 characters; the limit is 1,000 (DELEGATE_MAX_OUTPUT_CHARS)"
        in (data["output"])
    )


# --- secrets --------------------------------------------------------------------------------------------


async def test_keys_in_provider_errors_never_reach_the_result(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    env_secret = "my-proxy-password-value"
    for model in ("sim-router", "sim-general", "sim-backup"):
        sim.set_default(model, status=400, error_text=" ".join(SECRETS) + f" {env_secret} at {sim.base_url}")
    delegator = faulty(make_delegator, environ={"PROXY_API_KEY": env_secret})
    result = await call(delegator, "delegate", {"task": "x"})
    text = json.dumps([c.model_dump() for c in result.content]) + json.dumps(result.structured_content)
    assert result.is_error
    for secret in [*SECRETS, env_secret, sim.base_url]:
        assert secret.split()[-1].split("=")[-1] not in text


async def test_a_dead_router_costs_one_timeout_and_calls_share_the_limit(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.set_default("sim-router", hang=True)
    delegator = faulty(make_delegator, router_timeout_s=1.0, cooldown_s=30)
    first = (await call(delegator, "delegate", {"task": "a"})).structured_content
    assert "timeout" in first["routing"]["reason"]
    started = time.monotonic()
    second = (await call(delegator, "delegate", {"task": "b"})).structured_content
    assert second["routing"]["decided_by"] == "default" and "cooling down" in second["routing"]["reason"]
    assert time.monotonic() - started < 0.5 and sim.count("sim-router") == 1


async def test_router_calls_wait_for_a_slot_under_the_concurrency_limit(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.set_default("sim-router", route_to("coder"), delay=0.4)
    sim.set_default("sim-coder", delay=0.4)
    started = time.monotonic()
    async with (
        Client(build_server(faulty(make_delegator, max_concurrency=1))) as session,
        anyio.create_task_group() as g,
    ):
        for i in range(2):
            g.start_soon(session.call_tool, "delegate", {"task": f"t{i}"})
    assert time.monotonic() - started >= 1.6, "4 model calls of 0.4 s through 1 slot run one after another"


# --- what is sent per provider: thinking bounds, temperature range, router retry ------------------------


def one_model_dir(tmp_path: Path, model: str, base: str, extra: str = "") -> Path:
    """A folder with one specialist ('only') on one model."""
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "only.md").write_text(specialist_file("only", model, base, default=True, extra=extra))
    return folder


def generation_config(body: dict[str, Any]) -> dict[str, Any]:
    return body.get("generationConfig") or body.get("generation_config") or {}


@pytest.mark.parametrize(
    ("model", "budget", "expected"),
    [
        ("gemini/gemini-2.5-pro", None, {"thinkingBudget": 1024, "max_output_tokens": 300 + 1024}),
        ("gemini/gemini-2.5-pro", 0, {"thinkingBudget": 128, "max_output_tokens": 300 + 128}),
        ("gemini/gemini-2.5-flash", 0, {"thinkingBudget": 0, "max_output_tokens": 300}),
        ("openai/o4-mini", None, {"reasoning_effort": "low", "max_completion_tokens": 300 + 1024}),
        ("openai/o4-mini", 4096, {"reasoning_effort": "low", "max_completion_tokens": 300 + 4096}),
        ("openai/gpt-5-mini", 0, {"reasoning_effort": "low", "max_completion_tokens": 300 + 1024}),
        ("anthropic/claude-sonnet-4-5", None, {"thinking": None, "max_tokens": 300}),
        ("gemini/gemini-2.0-flash", None, {"thinkingBudget": None, "max_output_tokens": 300}),
    ],
)
async def test_reasoning_models_get_a_bounded_thinking_budget_on_top_of_the_answer_cap(
    tmp_path: Path,
    sim: ProviderSimulator,
    make_delegator: Callable[..., Delegator],
    model: str,
    budget: int | None,
    expected: dict[str, Any],
) -> None:
    provider, name = model.split("/")
    folder = one_model_dir(tmp_path, model, sim.api_base(provider), extra="max_output_tokens: 300\n")
    sim.enqueue(name, "short answer", thinking_tokens=200)
    delegator = faulty(make_delegator, specialists_dir=folder, thinking_budget_tokens=budget)
    data = (await call(delegator, "ask_only", {"task": "x"})).structured_content
    assert data["output"] == "short answer" and data["truncated"] is False
    body = sim.calls(name)[0]
    sent = {**body, **generation_config(body), **(generation_config(body).get("thinkingConfig") or {})}
    assert {key: sent.get(key) for key in expected} == expected


@each_wire
async def test_a_temperature_above_the_providers_range_is_clamped(
    tmp_path: Path, sim: ProviderSimulator, make_delegator: Callable[..., Delegator], wire: Wire
) -> None:
    folder = one_model_dir(tmp_path, wire.model("sim-warm"), wire.api_base, extra="temperature: 1.5\n")
    delegator = faulty(make_delegator, specialists_dir=folder)
    assert not (await call(delegator, "ask_only", {"task": "x"})).is_error
    body = sim.calls("sim-warm")[0]
    sent = body.get("temperature", generation_config(body).get("temperature"))
    assert sent == (1.0 if wire.name == "anthropic" else 1.5), "Anthropic takes 0 to 1; OpenAI and Gemini 0 to 2"


@each_wire
async def test_the_router_retries_once_after_a_passing_failure(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, wire: Wire
) -> None:
    sim.enqueue("sim-router", status=OVERLOADED[wire.name])
    sim.enqueue("sim-router", route_to("writer"))
    env = {"ROUTER_MODEL": wire.model("sim-router"), "ROUTER_API_BASE": wire.api_base}
    data = (await call(faulty(make_delegator, environ=env), "delegate", {"task": "x"})).structured_content
    assert data["routing"]["decided_by"] == "router" and data["specialist"] == "writer"
    assert sim.count("sim-router") == 2


@each_wire
async def test_the_router_does_not_wait_past_its_time_for_a_retry(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, wire: Wire
) -> None:
    sim.enqueue("sim-router", status=OVERLOADED[wire.name], retry_after=30)
    env = {"ROUTER_MODEL": wire.model("sim-router"), "ROUTER_API_BASE": wire.api_base}
    started = time.monotonic()
    data = (await call(faulty(make_delegator, environ=env), "delegate", {"task": "x"})).structured_content
    assert data["routing"]["decided_by"] == "default" and "overloaded" in data["routing"]["reason"]
    assert sim.count("sim-router") == 1 and time.monotonic() - started < 5.0

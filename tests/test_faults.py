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
from tests.conftest import route_to, specialist_file
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


# --- deadline and per-attempt time limits ---------------------------------------------------------------


async def test_a_hanging_model_leaves_time_for_its_fallback(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.enqueue("sim-coder", hang=True)
    started = time.monotonic()
    data = (
        await call(faulty(make_delegator, first_token_timeout_s=1.0), "ask_coder", {"task": "x"})
    ).structured_content
    assert data["model"] == "openai/sim-backup"
    assert data["attempts"][0]["error"] == "timed out: no first token within 1 s"
    assert time.monotonic() - started < 3.0


async def test_a_stream_that_stalls_midway_falls_back(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.enqueue("sim-coder", "a long answer that will stop half way", stream_stall_after=2)
    data = (await call(faulty(make_delegator, stall_timeout_s=0.5), "ask_coder", {"task": "x"})).structured_content
    assert data["model"] == "openai/sim-backup"
    assert data["attempts"][0]["error"] == "timed out: stream stalled for 0.5 s after 16 characters"


async def test_every_call_ends_within_the_deadline_with_what_is_known(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.set_default("sim-router", hang=True)
    sim.set_default("sim-general", hang=True)
    sim.set_default("sim-backup", hang=True)
    delegator = faulty(make_delegator, deadline_s=3.0, router_timeout_s=1.0, first_token_timeout_s=1.0)
    started = time.monotonic()
    result = await call(delegator, "delegate", {"task": "x"})
    elapsed = time.monotonic() - started
    assert result.is_error and elapsed < 3.5
    text = result.content[0].text
    assert "openai/sim-general: timed out: no first token within 1 s" in text
    assert "openai/sim-backup: skipped: the call's deadline was reached" in text


async def test_a_retry_that_cannot_fit_the_deadline_is_not_started(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.set_default("sim-coder", status=503)
    sim.set_default("sim-backup", hang=True)
    delegator = faulty(make_delegator, deadline_s=2.5, first_token_timeout_s=1.8, retries=3)
    started = time.monotonic()
    result = await call(delegator, "ask_coder", {"task": "x"})
    assert result.is_error and time.monotonic() - started < 3.0
    assert "openai/sim-backup: timed out" in result.content[0].text


# --- retries and fallbacks -------------------------------------------------------------------------------


async def test_a_server_error_is_retried_on_the_same_model(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.enqueue("sim-coder", status=502)
    data = (await call(faulty(make_delegator), "ask_coder", {"task": "x"})).structured_content
    assert data["model"] == "openai/sim-coder"
    tries = [(a["model"], a["ok"]) for a in data["attempts"]]
    assert tries == [("openai/sim-coder", False), ("openai/sim-coder", True)]
    assert sim.count("sim-backup") == 0


async def test_a_connection_error_is_retried_then_falls_back(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, specialists_dir: Path
) -> None:
    coder = specialists_dir / "coder.md"
    coder.write_text(coder.read_text().replace(f"api_base: '{sim.base_url}'", "api_base: 'http://127.0.0.1:9/v1'", 1))
    data = (await call(faulty(make_delegator), "ask_coder", {"task": "x"})).structured_content
    assert [a["error"] for a in data["attempts"][:2]] == ["could not connect to the provider"] * 2
    assert data["model"] == "openai/sim-backup"


async def test_retry_after_is_honoured_when_it_fits(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.enqueue("sim-coder", status=429, headers={"Retry-After": "1"})
    data = (await call(faulty(make_delegator), "ask_coder", {"task": "x"})).structured_content
    assert data["model"] == "openai/sim-coder"
    first, second = [r["time"] for r in sim.history if r["model"] == "sim-coder"]
    assert second - first >= 1.0


async def test_retry_after_longer_than_the_deadline_falls_back_at_once(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.enqueue("sim-coder", status=429, headers={"Retry-After": "120"})
    delegator = faulty(make_delegator)
    started = time.monotonic()
    data = (await call(delegator, "ask_coder", {"task": "x"})).structured_content
    assert data["model"] == "openai/sim-backup" and time.monotonic() - started < 1.5
    assert sim.count("sim-coder") == 1
    later = (await call(delegator, "ask_coder", {"task": "y"})).structured_content
    assert later["attempts"][0]["error"].startswith("skipped: cooling down")
    assert sim.count("sim-coder") == 1, "the provider asked for 120 s: later calls leave it alone"


@pytest.mark.parametrize(
    ("status", "text", "error"),
    [
        (400, "Invalid 'messages' parameter", "request rejected (400): Invalid 'messages' parameter"),
        (404, "The model does not exist", "model not found (404): check the model id"),
        (
            400,
            "Your request was rejected by our safety system (content_policy_violation)",
            "refused by the provider's content policy",
        ),
    ],
)
async def test_client_errors_are_not_retried_and_fall_back(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, status: int, text: str, error: str
) -> None:
    sim.enqueue("sim-coder", status=status, error_text=text)
    data = (await call(faulty(make_delegator), "ask_coder", {"task": "x"})).structured_content
    assert sim.count("sim-coder") == 1
    assert data["model"] == "openai/sim-backup" and data["attempts"][0]["error"] == error


async def test_a_rejected_key_moves_to_the_next_provider(
    tmp_path: Path, sim: ProviderSimulator, make_delegator: Callable[..., Delegator]
) -> None:
    folder = tmp_path / "providers"
    folder.mkdir()
    (folder / "only.md").write_text(
        "---\nname: only\ndescription: d\nmodel: openai/sim-a\n"
        f"api_base: '{sim.base_url}'\nfallbacks:\n  - {{model: openai/sim-b, api_base: '{sim.base_url}'}}\n"
        f"  - {{model: openai/sim-c, api_base: '{sim.base_url}', api_key_env: OTHER_KEY}}\n---\nHi.\n"
    )
    sim.enqueue("sim-a", status=401)
    delegator = faulty(make_delegator, specialists_dir=folder, environ={"OTHER_KEY": "other-provider-key"})
    data = (await call(delegator, "ask_only", {"task": "x"})).structured_content
    assert [a["error"] for a in data["attempts"]] == [
        "API key rejected (401): check OPENAI_API_KEY",
        "skipped: the same provider key was just rejected",
        None,
    ]
    assert data["model"] == "openai/sim-c" and sim.count("sim-b") == 0


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


async def test_a_dead_model_costs_one_timeout_then_cools_down_and_recovers(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.enqueue("sim-coder", hang=True)
    delegator = faulty(make_delegator, first_token_timeout_s=0.5, cooldown_s=1.0)
    first = (await call(delegator, "ask_coder", {"task": "a"})).structured_content
    assert first["attempts"][0]["error"].startswith("timed out")
    started = time.monotonic()
    second = (await call(delegator, "ask_coder", {"task": "b"})).structured_content
    assert second["attempts"][0]["error"].startswith("skipped: cooling down")
    assert second["model"] == "openai/sim-backup" and time.monotonic() - started < 0.5
    await anyio.sleep(1.1)
    third = (await call(delegator, "ask_coder", {"task": "c"})).structured_content
    assert third["model"] == "openai/sim-coder", "the cooldown ends by itself"


async def test_when_every_model_is_cooling_the_first_to_recover_is_tried(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.enqueue("sim-coder", hang=True)
    sim.enqueue("sim-backup", hang=True)
    delegator = faulty(make_delegator, first_token_timeout_s=0.5)
    assert (await call(delegator, "ask_coder", {"task": "a"})).is_error
    data = (await call(delegator, "ask_coder", {"task": "b"})).structured_content
    assert data["model"] == "openai/sim-coder", "a fully cooled chain still tries one model instead of failing"


# --- cancellation and concurrency -----------------------------------------------------------------------


async def test_a_cancelled_call_aborts_the_upstream_request_and_the_server_keeps_serving(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
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
    folder = chain_dir(tmp_path, sim, ["openai/gpt-4.1-mini"])
    sim.set_default("gpt-4.1-mini", "ok", usage={"prompt_tokens": 1_000_000, "completion_tokens": 0})  # $0.40
    first = faulty(make_delegator, specialists_dir=folder, daily_budget_usd=0.5, data_dir=tmp_path)
    assert not (await call(first, "ask_only", {"task": "x"})).is_error
    restarted = faulty(make_delegator, specialists_dir=folder, daily_budget_usd=0.5, data_dir=tmp_path)
    assert not (await call(restarted, "ask_only", {"task": "y"})).is_error
    refused = await call(restarted, "ask_only", {"task": "z"})
    assert refused.is_error and "$0.8000 of $0.50" in refused.content[0].text
    assert sim.count("gpt-4.1-mini") == 2


def test_the_ledger_is_safe_under_concurrent_writers(tmp_path: Path) -> None:
    budgets = [DailyBudget(100.0, tmp_path) for _ in range(4)]  # like four server processes
    threads = [threading.Thread(target=lambda b=b: [b.add(0.01) for _ in range(50)]) for b in budgets]
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


async def test_huge_answers_are_truncated_with_a_marker(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    answer = "".join(f"line {i:04d}\n" for i in range(500))  # 5,000 characters
    sim.enqueue("sim-coder", answer)
    data = (await call(faulty(make_delegator, max_output_chars=1_000), "ask_coder", {"task": "x"})).structured_content
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

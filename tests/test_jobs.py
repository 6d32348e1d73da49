"""Jobs: an answer still streaming at the deadline is handed back, goes on, and is collected with delegate_result."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from server.app import build_server
from server.delegation import Delegator
from server.errors import JobLostError, UnknownJobError
from tests.simulator import ProviderSimulator

pytestmark = pytest.mark.anyio

# 30 chunks of 8 characters, one every 0.2 s: about 6 s of streaming, well past a 3 s deadline.
LONG = "".join(f"part {i:02d} " for i in range(30))
SLOW = {"chunk_delay": 0.2}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def delegators() -> AsyncIterator[list[Delegator]]:
    """Delegators a test builds; their jobs are stopped at the end (as a server shutdown would)."""
    made: list[Delegator] = []
    yield made
    for delegator in made:
        await delegator.jobs.aclose()


@pytest.fixture
def build(make_delegator: Callable[..., Delegator], delegators: list[Delegator]) -> Callable[..., Delegator]:
    def make(**overrides: Any) -> Delegator:
        overrides.setdefault("deadline_s", 3)
        delegator = make_delegator(**overrides)
        delegators.append(delegator)
        return delegator

    return make


async def collect(session: Client, job_id: str) -> Any:
    """delegate_result, waiting as long as it allows (the deadline less a margin), until the job ends."""
    for _ in range(20):
        result = await session.call_tool("delegate_result", {"job_id": job_id, "wait_s": 50})
        if result.is_error or result.structured_content["status"] != "running":
            return result
    raise AssertionError(f"job {job_id} still running")


def priced_writer(specialists_dir: Path) -> None:
    """The writer on gpt-4.1-mini, served by the simulator, with its list price given in the entry (a custom base URL
    has no list price)."""
    writer = specialists_dir / "writer.md"
    writer.write_text(writer.read_text().replace("openai/sim-writer", "openai/gpt-4.1-mini@0.40/1.60"))


async def test_a_slow_answer_is_handed_back_at_the_deadline_and_finished_by_delegate_result(
    build: Callable[..., Delegator], sim: ProviderSimulator, specialists_dir: Path
) -> None:
    priced_writer(specialists_dir)
    sim.enqueue("gpt-4.1-mini", LONG, usage={"prompt_tokens": 1000, "completion_tokens": 500}, **SLOW)
    delegator = build()
    async with Client(build_server(delegator)) as session:
        started = time.monotonic()
        first = await session.call_tool("ask_writer", {"task": "Write a long essay"})
        took = time.monotonic() - started
        assert not first.is_error, first.content
        data = first.structured_content
        # Handed back at the deadline: still running, with the text so far (the whole answer takes twice as long).
        assert data["status"] == "running" and data["job_id"].startswith("job-"), f"returned after {took:.2f} s"
        partial = data["output"].split("\n\n[... partial answer")[0]
        assert partial and LONG.startswith(partial) and len(partial) < len(LONG)
        assert f'job_id "{data["job_id"]}"' in first.content[0].text
        assert f"still running as job {data['job_id']}" in first.content[0].text

        final = await collect(session, data["job_id"])
    done = final.structured_content
    assert (done["status"], done["output"], done["job_id"]) == ("done", LONG, data["job_id"])
    assert done["usage"]["specialist"]["output_tokens"] == 500
    assert done["usage"]["total_cost_usd"] == pytest.approx(1000 * 0.4e-6 + 500 * 1.6e-6)
    assert done["latency_ms"] > 4000, "a job's latency counts from the call that started it"
    assert sim.count("gpt-4.1-mini") == 1
    assert delegator.usage.snapshot()["calls"] == 1, "a handed-off job is counted once, when it ends"


async def test_a_job_adds_its_final_answer_to_its_thread(
    build: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.enqueue("sim-writer", LONG, **SLOW)
    sim.enqueue("sim-writer", "shorter now")
    async with Client(build_server(build())) as session:
        first = (await session.call_tool("ask_writer", {"task": "essay"})).structured_content
        assert first["status"] == "running" and first["thread_id"] is None, "the thread is written when the job ends"
        done = (await collect(session, first["job_id"])).structured_content
        assert done["thread_id"]
        follow = await session.call_tool("ask_writer", {"task": "shorter", "thread_id": done["thread_id"]})
    assert not follow.is_error
    history = sim.calls("sim-writer")[1]["messages"]
    assert {"role": "assistant", "content": LONG} in history, "the follow-up sees the job's whole answer"


async def test_delegate_result_shows_the_text_so_far_and_the_progress_while_the_job_runs(
    build: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.enqueue("sim-writer", LONG, **SLOW)
    async with Client(build_server(build())) as session:
        job_id = (await session.call_tool("ask_writer", {"task": "essay"})).structured_content["job_id"]
        first = (await session.call_tool("delegate_result", {"job_id": job_id})).structured_content
        await anyio.sleep(1)
        second = (await session.call_tool("delegate_result", {"job_id": job_id})).structured_content
    assert first["status"] == second["status"] == "running"
    grown = [len(r["output"].split("\n\n[...")[0]) for r in (first, second)]
    assert 0 < grown[0] < grown[1], grown
    assert f"{grown[1]:,} characters so far" in second["output"]


async def test_progress_notifications_flow_while_the_call_waits(
    build: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.enqueue("sim-writer", LONG, **SLOW)
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    async with Client(build_server(build())) as session:
        await session.call_tool("ask_writer", {"task": "essay"}, progress_callback=on_progress)
    assert any(m.startswith("answering:") for m in messages), messages
    assert messages[-1].startswith("still answering: handed back as job job-"), messages


async def test_cancel_stops_the_job_and_keeps_what_it_wrote(
    build: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.enqueue("sim-writer", LONG, **SLOW)
    async with Client(build_server(build())) as session:
        job_id = (await session.call_tool("ask_writer", {"task": "essay"})).structured_content["job_id"]
        cancelled = (await session.call_tool("delegate_result", {"job_id": job_id, "cancel": True})).structured_content
        later = (await session.call_tool("delegate_result", {"job_id": job_id})).structured_content
    assert cancelled["status"] == later["status"] == "cancelled"
    assert cancelled["truncated"] is True and "was cancelled after" in cancelled["output"]
    assert cancelled["output"].startswith("part 00")


async def test_cancel_closes_the_upstream_request(build: Callable[..., Delegator], sim: ProviderSimulator) -> None:
    sim.enqueue("sim-writer", LONG, **SLOW)
    async with Client(build_server(build())) as session:
        job_id = (await session.call_tool("ask_writer", {"task": "essay"})).structured_content["job_id"]
        await session.call_tool("delegate_result", {"job_id": job_id, "cancel": True})
    for _ in range(50):  # the simulator notices the closed connection at its next chunk
        if sim.aborted("sim-writer"):
            break
        await anyio.sleep(0.1)
    assert sim.aborted("sim-writer") == 1, "cancel must close the upstream HTTP request"


async def test_background_returns_a_job_id_at_once(build: Callable[..., Delegator], sim: ProviderSimulator) -> None:
    sim.enqueue("sim-writer", "A short answer, in the background.", chunk_delay=0.1)
    async with Client(build_server(build(deadline_s=30))) as session:
        started = time.monotonic()
        first = (await session.call_tool("ask_writer", {"task": "x", "background": True})).structured_content
        took = time.monotonic() - started
        final = await session.call_tool("delegate_result", {"job_id": first["job_id"], "wait_s": 20})
    assert first["status"] == "running" and first["specialist"] == "writer"
    assert took < 2.0, f"background must not wait for the answer ({took:.2f} s)"
    assert final.structured_content["output"] == "A short answer, in the background."


async def test_a_job_that_fails_after_the_hand_off_reports_why(
    build: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.enqueue("sim-writer", LONG, stream_stall_after=3)  # three chunks, then silence: the stall limit fires
    sim.enqueue("sim-backup", status=401)
    async with Client(build_server(build(stall_timeout_s=4))) as session:
        job_id = (await session.call_tool("ask_writer", {"task": "essay"})).structured_content["job_id"]
        final = await collect(session, job_id)
    assert final.is_error
    text = final.content[0].text
    assert "Every model of specialist 'writer' failed" in text and "stalled" in text


async def test_unknown_job_id_is_a_clear_error(build: Callable[..., Delegator]) -> None:
    async with Client(build_server(build())) as session:
        result = await session.call_tool("delegate_result", {"job_id": "job-nope"})
    assert result.is_error and "Unknown job_id 'job-nope'" in result.content[0].text


async def test_delegate_result_arguments_are_checked_in_plain_words(build: Callable[..., Delegator]) -> None:
    async with Client(build_server(build())) as session:
        missing = await session.call_tool("delegate_result", {"wait_s": 5})
        wrong = await session.call_tool("delegate_result", {"job_id": 7, "cancel": "yes"})
    assert missing.is_error and "'job_id' is required" in missing.content[0].text
    assert "'job_id' must be a string, not int" in wrong.content[0].text
    assert "'cancel' must be true or false, not str" in wrong.content[0].text


async def test_a_job_from_before_a_restart_is_reported_lost(
    build: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.enqueue("sim-writer", LONG, **SLOW)
    before = build()
    job_id = (await before.ask("writer", "essay", background=True)).job_id
    assert job_id is not None
    await anyio.sleep(0.5)
    await before.jobs.aclose()  # the server stops while the job runs
    after = build()  # a new server on the same store
    with pytest.raises(JobLostError, match="lost: the server restarted"):
        await after.job_result(job_id)
    with pytest.raises(UnknownJobError):
        await after.job_result("job-0000000000000000")


async def test_another_instance_on_the_same_store_reads_a_running_job_and_its_end(
    build: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.enqueue("sim-writer", LONG, chunk_delay=0.1)
    owner, other = build(), build()
    job_id = (await owner.ask("writer", "essay", background=True)).job_id
    assert job_id is not None
    await anyio.sleep(2.5)  # past one heartbeat: the text so far is in the store
    seen = await other.job_result(job_id)
    assert seen.status == "running" and seen.output.startswith("part 00")
    done = await other.job_result(job_id, wait_s=20)
    assert (done.status, done.output) == ("done", LONG)


async def test_jobs_off_returns_the_partial_answer_marked_truncated(
    build: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.enqueue("sim-writer", LONG, **SLOW)
    async with Client(build_server(build(jobs=False))) as session:
        started = time.monotonic()
        result = await session.call_tool("ask_writer", {"task": "essay"})
        took = time.monotonic() - started
    data = result.structured_content
    assert not result.is_error and took < 3.5
    assert (data["status"], data["truncated"], data["job_id"]) == ("done", True, None)
    assert data["output"].startswith("part 00") and "answer cut after" in data["output"]
    assert "DELEGATE_JOBS=off" in data["output"]


async def test_a_call_whose_models_all_hang_is_handed_back_within_the_deadline(
    build: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    for model in ("sim-writer", "sim-backup"):
        sim.set_default(model, hang=True)
    async with Client(build_server(build(first_token_timeout_s=2))) as session:
        started = time.monotonic()
        data = (await session.call_tool("ask_writer", {"task": "essay"})).structured_content
        took = time.monotonic() - started
        assert took < 3.0 and data["status"] == "running" and data["output"].startswith("[... partial answer (0 ")
        final = await collect(session, data["job_id"])
    assert final.is_error, "the job goes on through the fallback, then reports that every model failed"
    assert "openai/sim-writer: timed out: no first token within 2 s" in final.content[0].text
    assert "openai/sim-backup: timed out: no first token within 2 s" in final.content[0].text


async def test_jobs_off_refuses_background_without_calling_a_provider(
    build: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    async with Client(build_server(build(jobs=False))) as session:
        result = await session.call_tool("ask_writer", {"task": "essay", "background": True})
    assert result.is_error and "DELEGATE_JOBS=off" in result.content[0].text
    assert sim.history == []


async def test_an_answer_within_the_deadline_is_an_ordinary_result(
    build: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.enqueue("sim-writer", "quick")
    delegator = build()
    async with Client(build_server(delegator)) as session:
        data = (await session.call_tool("ask_writer", {"task": "x"})).structured_content
    assert (data["output"], data["status"], data["job_id"]) == ("quick", "done", None)
    assert delegator.store.recent("job") == [], "a call that finished in time writes no job record"


async def test_delegate_tools_can_hide_delegate_result(build: Callable[..., Delegator]) -> None:
    async with Client(build_server(build(tools="delegate,ask_writer"))) as session:
        names = {tool.name for tool in (await session.list_tools()).tools}
    assert names == {"delegate", "ask_writer"}


async def test_delegate_result_is_listed_with_its_schema(build: Callable[..., Delegator]) -> None:
    async with Client(build_server(build())) as session:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        schemas = (await session.read_resource("delegate://schemas")).contents[0].text  # type: ignore[union-attr]
    schema = tools["delegate_result"].input_schema
    assert schema["required"] == ["job_id"] and set(schema["properties"]) == {"job_id", "wait_s", "cancel", "offset"}
    assert "background" in tools["delegate"].input_schema["properties"]
    assert json.dumps(json.loads(schemas)["delegate"]).count("cancelled") >= 1, "the result's status enum"

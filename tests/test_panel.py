"""panel: several specialists answer independently, failures and late answers are listed, a blind judge synthesises."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import pytest
from mcp import Client

from server.app import build_server
from server.catalog import load_catalog
from server.delegation import Delegator
from server.panel import anonymise, choose_members, judge_messages
from server.results import PanelAnswer
from server.routing.classifier import Classifier
from server.routing.lifecycle import training_examples
from tests.simulator import ProviderSimulator

pytestmark = pytest.mark.anyio

SYNTHESIS = "Both answers agree on Postgres; they disagree on caching (A for, B against)."


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def call(delegator: Delegator, arguments: dict[str, Any], **options: Any) -> Any:
    async with Client(build_server(delegator)) as session:
        return await session.call_tool("panel", arguments, **options)


async def test_a_panel_of_three_where_one_model_fails_and_one_is_slow(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.enqueue("sim-coder", status=500)  # the coder's model fails: its fallback answers for it
    sim.enqueue("sim-backup", "Use Postgres, and I, openai/sim-backup, would add a cache.")
    sim.enqueue("sim-writer", "A slow essay that will not finish in time " * 20, chunk_delay=0.3)
    sim.enqueue("sim-general", "Use Postgres; skip the cache for now.")
    sim.enqueue("sim-general", SYNTHESIS)  # the judge: generalist is the default specialist
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    started = time.monotonic()
    result = await call(make_delegator(deadline_s=6), {"task": "Which database?"}, progress_callback=on_progress)
    took = time.monotonic() - started
    assert not result.is_error, result.content
    data = result.structured_content
    answers = {a["specialist"]: a for a in data["answers"]}
    assert set(answers) == {"coder", "writer", "generalist"} and took < 7.0
    assert answers["coder"]["ok"] and answers["coder"]["model"] == "openai/sim-backup"
    assert answers["generalist"]["ok"] and answers["generalist"]["output"] == "Use Postgres; skip the cache for now."
    writer = answers["writer"]
    assert not writer["ok"] and writer["error"].startswith("late: no complete answer within the panel's")
    assert writer["output"].startswith("A slow essay"), "what arrived in time is kept and labelled, not dropped"
    assert (data["synthesis"], data["judge"], data["judge_model"]) == (SYNTHESIS, "generalist", "openai/sim-general")
    assert data["usage"]["judge"]["output_tokens"] > 0

    judge_prompt = sim.calls("sim-general")[1]["messages"][1]["content"]
    assert "skip the cache for now" in judge_prompt and "would add a cache" in judge_prompt
    assert "A slow essay" not in judge_prompt, "the synthesis covers the answers that arrived"
    for identity in ("sim-backup", "sim-general", "sim-coder", "coder", "generalist", "writer"):
        assert identity not in judge_prompt, f"the judge must not see who wrote an answer ({identity})"

    text = result.content[0].text
    assert text.index("## coder (openai/sim-backup)") < text.index("## Synthesis (by generalist")
    assert "## writer (openai/sim-writer): no answer (late:" in text
    assert text.rstrip().splitlines()[-1].startswith("panel of 3: 2 answered")
    landed = [m for m in messages if " of 3):" in m]
    assert len(landed) == 3 and any(m.startswith("generalist (") and "Use Postgres" in m for m in landed), messages


async def test_a_panel_with_too_few_answers_fails_and_lists_each_failure(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.set_default("sim-coder", status=401)
    sim.set_default("sim-backup", status=401)
    sim.enqueue("sim-writer", "the only answer")
    result = await call(make_delegator(), {"task": "x", "specialists": ["coder", "writer"]})
    assert result.is_error
    text = result.content[0].text
    assert "The panel needs 2 answers and got 1" in text and "coder: Every model of specialist 'coder' failed" in text
    assert sim.count("sim-general") == 0, "no synthesis without enough answers"


async def test_named_specialists_and_no_synthesis(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.enqueue("sim-coder", "from the coder")
    sim.enqueue("sim-writer", "from the writer")
    result = await call(make_delegator(), {"task": "x", "specialists": ["writer", "coder"], "synthesize": False})
    data = result.structured_content
    assert [a["specialist"] for a in data["answers"]] == ["writer", "coder"]
    assert data["synthesis"] is None and data["judge"] is None
    assert sim.count("sim-general") == 0


async def test_an_unknown_specialist_costs_no_call(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    result = await call(make_delegator(), {"task": "x", "specialists": ["coder", "poet"]})
    assert result.is_error and "Unknown specialist: 'poet'" in result.content[0].text
    assert sim.history == []


async def test_panel_arguments_are_checked_in_plain_words(make_delegator: Callable[..., Delegator]) -> None:
    result = await call(make_delegator(), {"task": "x", "specialists": "coder", "synthesise": True})
    text = result.content[0].text
    assert result.is_error and "'specialists' must be an array of specialist names, not str" in text
    assert "unknown argument 'synthesise'" in text


async def test_delegate_tools_can_hide_the_panel(make_delegator: Callable[..., Delegator]) -> None:
    async with Client(build_server(make_delegator(tools="delegate,panel"))) as session:
        names = {tool.name for tool in (await session.list_tools()).tools}
    assert names == {"delegate", "panel"}
    async with Client(build_server(make_delegator(tools="delegate"))) as session:
        assert {tool.name for tool in (await session.list_tools()).tools} == {"delegate"}


def test_the_judge_sees_shuffled_letters_and_no_model_ids() -> None:
    answers = [
        PanelAnswer(specialist="coder", model="openai/gpt-5.2", output="As GPT-5.2 I say yes.", ok=True),
        PanelAnswer(specialist="writer", model="anthropic/claude-x", output="No.", ok=True),
    ]
    orders = set()
    for seed in range(20):
        messages, letters = judge_messages("Should we?", answers, random.Random(seed))
        orders.add(tuple(letters.values()))
        prompt = messages[1]["content"]
        assert "gpt-5.2" not in prompt.lower() and "claude-x" not in prompt and "coder" not in prompt
        assert '<answer label="A">' in prompt and '<answer label="B">' in prompt
    assert orders == {("coder", "writer"), ("writer", "coder")}, "the order must not give the authors away"
    assert anonymise("openai/gpt-5.2 and gpt-5.2", ["openai/gpt-5.2"]) == "[a panelist] and [a panelist]"


async def test_every_member_gets_the_files_the_server_read(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, tmp_path: Any
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "design.md").write_text("We store sessions in Redis.")
    sim.enqueue("sim-coder", "keep Redis")
    sim.enqueue("sim-writer", "move to Postgres")
    delegator = make_delegator({"DELEGATE_FILE_ROOTS": str(project)})
    arguments = {"task": "Review the design", "files": ["design.md"], "specialists": ["coder", "writer"]}
    data = (await call(delegator, {**arguments, "synthesize": False})).structured_content
    assert [f["path"] for f in data["files"]] == ["design.md"]
    for model in ("sim-coder", "sim-writer"):
        assert "We store sessions in Redis." in sim.calls(model)[0]["messages"][1]["content"]


async def test_a_budget_that_cannot_hold_the_whole_panel_refuses_it_before_any_call(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, specialists_dir: Any
) -> None:
    for name, model in (("coder", "openai/sim-coder"), ("writer", "openai/sim-writer")):
        path = specialists_dir / f"{name}.md"
        path.write_text(path.read_text().replace(model, "openai/gpt-4.1-mini@0.40/1.60"))  # priced on the simulator
    result = await call(make_delegator(daily_budget_usd=0.001), {"task": "x", "specialists": ["coder", "writer"]})
    assert result.is_error and "budget" in result.content[0].text.lower()
    assert sim.history == [], "the whole panel is reserved before any provider call"


def test_a_default_panel_is_the_specialists_the_task_fits_and_at_least_two() -> None:
    catalog = load_catalog({})
    usable = list(catalog)
    coder, generalist, writer = (catalog.get(name) for name in ("coder", "generalist", "writer"))
    fit_code = {"coder": 0.82, "generalist": 0.12, "writer": 0.06}
    assert choose_members(catalog, usable, [], fit_code) == [coder, generalist]  # two even when one fits
    fit_open = {"coder": 0.2, "generalist": 0.45, "writer": 0.35}
    assert choose_members(catalog, usable, [], fit_open) == [generalist, writer, coder]
    assert choose_members(catalog, usable, [], None) == usable  # no classifier: every usable specialist


def test_the_classifier_fit_ranks_the_specialist_a_task_belongs_to_first() -> None:
    catalog = load_catalog({})
    classifier = Classifier(training_examples(catalog, None), 0.75)
    fit = classifier.fit("Fix this Python function: it raises KeyError when the dict is empty")
    assert max(fit, key=fit.__getitem__) == "coder" and abs(sum(fit.values()) - 1) < 1e-9
    assert classifier.fit("zzzz qqqq") == {}

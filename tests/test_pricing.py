"""Costs that are true: a chain entry's own price is used everywhere; a model on someone else's server has no list
price (its cost is unknown, never OpenAI's); stats say unknown rather than $0."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from server.calling import pricing
from server.catalog import ModelRef, Price, parse_specialist, split_price
from server.commands.stats import format_stats, summarise_log
from server.delegation import Delegator
from server.errors import ConfigError
from server.results import summary_line
from server.store.budget import ledger_name, today
from tests.simulator import ProviderSimulator

LOCAL = {"OPENAI_API_BASE": "http://127.0.0.1:11434/v1"}  # Ollama's OpenAI-compatible endpoint


def spec_text(front: str) -> str:
    return f"---\nname: one\ndescription: d\n{front}\n---\nYou answer.\n"


def test_a_price_written_after_the_id_is_split_off() -> None:
    assert split_price("openai/qwen@0.15/0.60") == ("openai/qwen", Price(input_per_mtok=0.15, output_per_mtok=0.6))
    assert split_price("vertex_ai/claude-3-5-sonnet@20240620") == ("vertex_ai/claude-3-5-sonnet@20240620", None)
    ref = ModelRef(model="openai/qwen@2/8")
    assert (ref.model, ref.price) == ("openai/qwen", Price(input_per_mtok=2, output_per_mtok=8))
    assert ref.label == "openai/qwen@2/8"


def test_a_specialist_file_prices_its_primary_and_its_fallbacks() -> None:
    text = spec_text(
        "model: openai/qwen\napi_base: 'http://127.0.0.1:8000/v1'\nprice: {input_per_mtok: 0.1, output_per_mtok: 0.4}\n"
        "fallbacks: [openai/llama@0.2/0.8, {model: openai/big, price: {input_per_mtok: 3, output_per_mtok: 15}}]"
    )
    chain = parse_specialist(text, "one.md", {}).chain
    assert [(ref.model, ref.price and (ref.price.input_per_mtok, ref.price.output_per_mtok)) for ref in chain] == [
        ("openai/qwen", (0.1, 0.4)),
        ("openai/llama", (0.2, 0.8)),
        ("openai/big", (3, 15)),
    ]


def test_a_model_env_replacement_does_not_inherit_the_files_price_but_may_carry_its_own() -> None:
    text = spec_text("model: openai/qwen\nmodel_env: ONE_MODEL\nprice: {input_per_mtok: 1, output_per_mtok: 2}")
    assert parse_specialist(text, "one.md", {"ONE_MODEL": "ollama/llama3"}).chain[0].price is None
    own = parse_specialist(text, "one.md", {"ONE_MODEL": "openai/mine@0.5/1"}).chain[0]
    assert (own.model, own.price) == ("openai/mine", Price(input_per_mtok=0.5, output_per_mtok=1))


@pytest.mark.parametrize(
    ("front", "problem"),
    [
        ("model: openai/x@1/2\nprice: {input_per_mtok: 1, output_per_mtok: 2}", "give the price once"),
        ("model: openai/x\nprice: {input_per_mtok: -1, output_per_mtok: 2}", "price.input_per_mtok"),
        ("model: openai/x\nprice: {input: 1, output: 2}", "unknown field"),
        ("model: openai/x\nfallbacks: [{model: openai/y, price: {input_per_mtok: 2e4, output_per_mtok: 1}}]", "10000"),
    ],
)
def test_a_bad_price_stops_start_up_naming_the_file(front: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=r"one\.md") as caught:
        parse_specialist(spec_text(front), "one.md", {})
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("model", "base", "environ", "elsewhere"),
    [
        ("openai/gpt-5.2", None, {}, False),
        ("openai/gpt-5.2", None, LOCAL, True),
        ("gpt-4o-mini", None, {"OPENAI_BASE_URL": "http://gpu-box:8000/v1"}, True),
        ("openai/gpt-5.2", "https://api.openai.com/v1", {}, False),
        ("openai/gpt-5.2", "http://127.0.0.1:8000/v1", {}, True),
        ("anthropic/claude-haiku-4-5", None, {"ANTHROPIC_BASE_URL": "http://proxy.internal"}, True),
        ("anthropic/claude-haiku-4-5", None, LOCAL, False),
        ("azure/gpt-4o", "https://mine.openai.azure.com", {}, False),
        ("ollama/llama3.1", None, {}, False),
        ("embedded/smollm2", None, LOCAL, False),
    ],
)
def test_a_model_is_list_priced_only_at_its_vendors_endpoint(
    model: str, base: str | None, environ: dict[str, str], elsewhere: bool
) -> None:
    assert pricing.served_elsewhere(model, base, environ) is elsewhere


def test_rates_come_from_the_entry_then_the_list_and_never_from_a_list_on_a_custom_endpoint() -> None:
    listed = ModelRef(model="openai/gpt-4.1-mini")
    assert pricing.ref_rates(listed, {}) == pytest.approx((0.4e-6, 1.6e-6))
    assert pricing.ref_rates(listed, LOCAL) is None
    assert pricing.ref_rates(ModelRef(model="openai/gpt-4.1-mini@0.1/0.2"), LOCAL) == pytest.approx((0.1e-6, 0.2e-6))
    assert pricing.ref_rates(ModelRef(model="openai/never-heard-of-it"), {}) is None


def local_server_folder(tmp_path: Path, models: str) -> Path:
    """One specialist with no api_base in its file: OPENAI_API_BASE sends its models to the simulator."""
    folder = tmp_path / "local"
    folder.mkdir()
    (folder / "one.md").write_text(spec_text(f"model: {models}\ndefault: true"))
    return folder


async def test_a_model_behind_openai_api_base_has_an_unknown_cost_and_reserves_nothing(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_BASE", sim.api_base("openai"))  # litellm reads it from the process environment
    sim.set_default("gpt-5.2", "local answer", usage={"prompt_tokens": 1000, "completion_tokens": 1000})
    folder = local_server_folder(tmp_path, "openai/gpt-5.2")
    delegator = make_delegator(
        {"OPENAI_API_BASE": sim.api_base("openai")}, specialists_dir=folder, daily_budget_usd=0.000001
    )
    result = await delegator.ask("one", "Say hi")
    assert result.output == "local answer"
    assert result.usage.specialist.cost_usd is None and result.usage.total_cost_usd is None
    assert "cost unknown" in summary_line(result) and "$" not in summary_line(result)
    usage = delegator.usage.snapshot()
    assert usage["cost_usd"] is None and usage["calls_cost_unknown"] == 1
    assert delegator.store.total(ledger_name(today())) == 0.0  # reserved $0 (an unknown cost), settled $0


async def test_a_price_given_for_a_model_behind_openai_api_base_is_what_it_costs(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_BASE", sim.api_base("openai"))
    sim.set_default("gpt-5.2", "local answer", usage={"prompt_tokens": 1000, "completion_tokens": 1000})
    folder = local_server_folder(tmp_path, "openai/gpt-5.2@1/3")
    delegator = make_delegator({"OPENAI_API_BASE": sim.api_base("openai")}, specialists_dir=folder)
    result = await delegator.ask("one", "Say hi")
    assert result.usage.specialist.cost_usd == pytest.approx(1000 * 1e-6 + 1000 * 3e-6)


def test_stats_say_unknown_rather_than_zero_for_calls_with_no_known_cost() -> None:
    lines = [
        {"ok": True, "specialist": "coder", "cost_usd": None},
        {"ok": True, "specialist": "coder", "cost_usd": None},
        {"ok": True, "specialist": "writer", "cost_usd": 0.002},
        {"ok": True, "specialist": "writer", "cost_usd": None},
    ]
    summary = summarise_log(lines)
    assert summary["per_specialist"]["coder"] == {"calls": 2, "cost_usd": None, "calls_cost_unknown": 2}
    assert summary["per_specialist"]["writer"] == {"calls": 2, "cost_usd": 0.002, "calls_cost_unknown": 1}
    assert (summary["cost_usd"], summary["calls_cost_unknown"]) == (0.002, 3)
    text = format_stats(summary)
    assert "$0.0000" not in text
    assert "coder                2 calls  cost unknown" in text
    assert "$0.0020 (+1 call(s) of unknown cost)" in text
    only_unknown = summarise_log(lines[:2])
    assert only_unknown["cost_usd"] is None and json.loads(json.dumps(only_unknown))["cost_usd"] is None

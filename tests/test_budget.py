"""The daily budget in the store: worst case reserved before any provider call, real cost settled after."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from server.app import build_server
from server.delegation import Delegator
from server.errors import BudgetExceededError, StoreError
from server.store.budget import CARRIED_SUFFIX, DailyBudget, ledger_name, today
from server.store.redis_store import RedisStore
from server.store.sqlite import SQLiteStore
from tests.conftest import specialist_file
from tests.simulator import ProviderSimulator
from tests.test_console_script import run_cli, script

# gpt-4.1-mini's list price, $0.40 per million input tokens and $1.60 per million output tokens, given in the entry:
# the simulator is a custom base URL, where the list price does not apply and the cost would be unknown.
PRICED = "openai/gpt-4.1-mini@0.40/1.60"
# Each answer costs 100 x 0.4e-6 + 150 x 1.6e-6 = $0.00028; its worst case (output cap 200) about $0.00033.
USAGE = {"prompt_tokens": 100, "completion_tokens": 150}
ANSWER_COST = 0.00028
LIMIT = 0.001


def priced_folder(tmp_path: Path, sim: ProviderSimulator) -> Path:
    """One specialist, 'only', answering with a priced model on the simulator."""
    folder = tmp_path / "priced"
    folder.mkdir(exist_ok=True)
    (folder / "only.md").write_text(specialist_file("only", PRICED, sim.base_url, default=True))
    return folder


async def fifty_calls(delegator: Delegator, calls: int = 50) -> tuple[int, int]:
    """Fire `calls` ask calls at once; how many were answered and how many refused for the budget."""
    outcomes: list[str] = []

    async def one(number: int) -> None:
        try:
            await delegator.ask("only", f"task {number}")
            outcomes.append("answered")
        except BudgetExceededError:
            outcomes.append("refused")

    async with anyio.create_task_group() as group:
        for number in range(calls):
            group.start_soon(one, number)
    return outcomes.count("answered"), outcomes.count("refused")


async def test_fifty_concurrent_calls_never_spend_more_than_the_limit(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, tmp_path: Path
) -> None:
    sim.set_default("gpt-4.1-mini", "ok", delay=0.3, usage=USAGE)
    delegator = make_delegator(
        specialists_dir=priced_folder(tmp_path, sim), daily_budget_usd=LIMIT, max_output_tokens=200
    )
    answered, refused = await fifty_calls(delegator)
    spent = delegator.store.total(ledger_name(today()))
    print(f"one process: {answered} answered, {refused} refused, spent ${spent:.6f} of ${LIMIT}")
    assert answered + refused == 50 and answered >= 1
    assert spent <= LIMIT
    assert spent == pytest.approx(answered * ANSWER_COST)  # reservations were released down to the real cost
    assert sim.count("gpt-4.1-mini") == answered  # refused calls reached no provider


async def test_a_refusal_names_the_remaining_budget_and_the_worst_case_with_zero_provider_calls(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, tmp_path: Path
) -> None:
    delegator = make_delegator(specialists_dir=priced_folder(tmp_path, sim), daily_budget_usd=0.01)
    delegator.store.settle(ledger_name(today()), 0.008)  # earlier calls today spent $0.008
    async with Client(build_server(delegator)) as session:
        result = await session.call_tool("delegate", {"task": "Summarise this", "context": "word " * 2000})
    text = result.content[0].text
    assert result.is_error
    assert "$0.0020 is left" in text and "could cost up to $0.0" in text and "DELEGATE_DAILY_BUDGET_USD" in text
    assert sim.history == []


async def test_unpriced_models_reserve_nothing_but_a_spent_budget_still_refuses(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    delegator = make_delegator(daily_budget_usd=0.01)  # the sim-* models are not in litellm's price map
    result = await delegator.ask("coder", "x")
    assert result.output and delegator.store.total(ledger_name(today())) == 0
    delegator.store.settle(ledger_name(today()), 0.01)
    with pytest.raises(BudgetExceededError):
        await delegator.ask("coder", "y")
    assert sim.count("sim-coder") == 1


def test_todays_spend_in_the_old_json_ledger_is_carried_over_once(tmp_path: Path) -> None:
    old = tmp_path / "spend.json"
    old.write_text(json.dumps({"day": today(), "spent_usd": 0.3}))
    store = SQLiteStore(tmp_path / "state.sqlite3")
    assert DailyBudget(1.0, store, tmp_path).spent() == pytest.approx(0.3)
    assert not old.exists() and json.loads((tmp_path / f"spend.json{CARRIED_SUFFIX}").read_text())["spent_usd"] == 0.3
    assert DailyBudget(1.0, store, tmp_path).spent() == pytest.approx(0.3)  # a restart does not add it again


def test_an_old_days_ledger_carries_nothing_but_is_still_renamed(tmp_path: Path) -> None:
    (tmp_path / "spend.json").write_text(json.dumps({"day": "2020-01-01", "spent_usd": 4.0}))
    budget = DailyBudget(1.0, SQLiteStore(tmp_path / "state.sqlite3"), tmp_path)
    assert budget.spent() == 0 and (tmp_path / f"spend.json{CARRIED_SUFFIX}").exists()


@pytest.mark.parametrize(
    "content",
    ["garbage", "[]", '{"day": "%s", "spent_usd": NaN}', '{"day": "%s", "spent_usd": 1e300}', '{"day": 3}'],
    ids=["garbage", "list", "nan", "huge", "no-amount"],
)
def test_a_damaged_old_ledger_stops_start_up_with_its_path(tmp_path: Path, content: str) -> None:
    old = tmp_path / "spend.json"
    old.write_text(content.replace("%s", today()))
    with pytest.raises(StoreError, match=r"spend\.json"):
        DailyBudget(1.0, SQLiteStore(tmp_path / "state.sqlite3"), tmp_path)
    completed = run_cli(
        "specialists", env={**os.environ, "DELEGATE_DATA_DIR": str(tmp_path), "DELEGATE_DAILY_BUDGET_USD": "1"}
    )
    assert completed.returncode == 2 and str(old) in completed.stderr and "Traceback" not in completed.stderr
    assert old.read_text() == content.replace("%s", today())  # left as it was, never reset to $0


@pytest.mark.parametrize("amount", ["garbage", 1e12, -1.0], ids=["text", "huge", "negative"])
def test_an_impossible_amount_in_the_store_ledger_stops_start_up(tmp_path: Path, amount: object) -> None:
    path = tmp_path / "state.sqlite3"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO ledgers (name, amount) VALUES (?, ?)", (ledger_name(today()), amount))
    completed = run_cli("specialists", env={**os.environ, "DELEGATE_DATA_DIR": str(tmp_path)})
    assert completed.returncode == 2 and str(path) in completed.stderr and "impossible amount" in completed.stderr


async def test_a_store_that_cannot_be_written_keeps_the_paid_answer_with_a_warning(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, tmp_path: Path, redis_url: str
) -> None:
    import redis

    sim.set_default("gpt-4.1-mini", "the paid answer", delay=1.0, usage=USAGE)
    delegator = make_delegator(
        specialists_dir=priced_folder(tmp_path, sim), daily_budget_usd=1.0, store=redis_url, max_output_tokens=200
    )
    admin = redis.Redis.from_url(redis_url)
    result: Any = None

    async def ask() -> None:
        nonlocal result
        result = await delegator.ask("only", "x")

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(ask)
            while not sim.count("gpt-4.1-mini"):  # reserved; the provider is answering: now writes start failing
                await anyio.sleep(0.02)
            admin.config_set("maxmemory-policy", "noeviction")
            admin.config_set("maxmemory", 1)
    finally:
        admin.config_set("maxmemory", 0)
    assert result.output == "the paid answer"
    assert any("could not be added to today's budget" in warning for warning in result.warnings)
    assert any("usage totals could not be updated" in warning for warning in result.warnings)
    assert "redis://127.0.0.1" in result.warnings[0]


async def test_two_server_processes_sharing_redis_never_overspend(
    sim: ProviderSimulator, tmp_path: Path, redis_url: str
) -> None:
    sim.set_default("gpt-4.1-mini", "ok", delay=0.3, usage=USAGE)
    env = {
        **{k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_API_BASE", "_BASE_URL"))},
        "DELEGATE_SPECIALISTS_DIR": str(priced_folder(tmp_path, sim)),
        "DELEGATE_STORE": redis_url,
        "DELEGATE_DAILY_BUDGET_USD": str(LIMIT),
        "DELEGATE_MAX_OUTPUT_TOKENS": "200",
        "DELEGATE_CLASSIFIER": "off",
        "OPENAI_API_KEY": "sk-sim-0000000000",
    }
    outcomes: list[bool] = []

    async def server(calls: int) -> None:
        async with Client(StdioServerParameters(command=script(), env=env)) as session:

            async def one(number: int) -> None:
                result = await session.call_tool("ask_only", {"task": f"task {number}"})
                outcomes.append(not result.is_error)
                if result.is_error:
                    assert "daily budget" in result.content[0].text

            async with anyio.create_task_group() as group:
                for number in range(calls):
                    group.start_soon(one, number)

    async with anyio.create_task_group() as group:
        group.start_soon(server, 25)
        group.start_soon(server, 25)
    spent = RedisStore(redis_url).total(ledger_name(today()))
    answered = outcomes.count(True)
    print(f"two processes: {answered} answered, {50 - answered} refused, spent ${spent:.6f} of ${LIMIT}")
    assert len(outcomes) == 50 and answered >= 1
    assert spent <= LIMIT
    assert spent == pytest.approx(answered * ANSWER_COST)
    assert sim.count("gpt-4.1-mini") == answered


async def test_a_follow_up_reserves_for_the_thread_history_it_sends(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, tmp_path: Path
) -> None:
    sim.set_default("gpt-4.1-mini", "lorem ipsum " * 2_500, usage=USAGE)  # a long first answer: turn 2 sends it back
    delegator = make_delegator(
        specialists_dir=priced_folder(tmp_path, sim), daily_budget_usd=0.003, max_output_tokens=200
    )
    first = await delegator.ask("only", "write a lot")
    assert first.thread_id
    # Alone, the follow-up's worst case is about $0.0003 and would fit the $0.0027 left; with the 30,000-character
    # history it is about $0.004 (8,600 input tokens at $0.40 per million), which does not.
    with pytest.raises(BudgetExceededError, match=r"could cost up to \$0\.00[3-9]"):
        await delegator.ask("only", "now shorter", thread_id=first.thread_id)
    assert sim.count("gpt-4.1-mini") == 1
    assert (await delegator.ask("only", "a new question")).output

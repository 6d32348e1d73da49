"""What a new user meets in the first hour: doctor's advice and verdict, install hints, start-up messages."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import anyio
import pytest
from mcp import Client

from server.app import build_server
from server.calling import embedded
from server.commands.doctor import format_rows
from server.delegation import Delegator
from server.install import install_extra_command
from server.results import DelegateResult, Usage, confidence_text, summary_line
from tests.conftest import cloud_only_builtins, route_to
from tests.simulator import ProviderSimulator
from tests.test_console_script import run_cli, server_env


def row(model: str, used_by: list[str], usable: bool, key: str) -> dict:
    return {"model": model, "used_by": used_by, "usable": usable, "key": key, "ping": None}


def test_doctor_never_cuts_its_own_advice() -> None:
    advice = "embedded model not installed (/home/someone/projects/delegate-mcp/.venv/bin/pip install -e '/x[local]')"
    table = format_rows([row("embedded/smollm2", ["coder"], False, advice)], "built-in")
    assert advice in table


def test_doctor_ends_with_a_verdict_and_a_next_step() -> None:
    ready = format_rows([row("openai/gpt-5-mini", ["generalist", "router"], True, "OPENAI_API_KEY set")], "x")
    assert ready.splitlines()[-1].startswith("Verdict: ready (1 models can answer). Next: `delegate-mcp doctor --ping`")
    offline = format_rows([row("embedded/smollm2", ["generalist"], True, "embedded model")], "x")
    assert offline.splitlines()[-1].startswith("Verdict: only the small offline model can answer")
    no_router = format_rows([row("openai/gpt-5-mini", ["generalist"], True, "set")], "x").splitlines()[-1]
    assert "No router model is usable: the classifier and the default specialist route." in no_router


@pytest.mark.subprocess
def test_doctor_with_no_usable_model_says_so_with_a_hint_for_this_venv(sim: ProviderSimulator, tmp_path: Path) -> None:
    env = server_env(sim, cloud_only_builtins(tmp_path / "cloud"))
    for name in ("ROUTER_MODEL", "ROUTER_API_BASE"):
        env.pop(name)
    completed = run_cli("doctor", env=env)
    assert completed.returncode == 1
    verdict = completed.stdout.strip().splitlines()[-1]
    assert verdict.startswith("Verdict: no model can answer, so every call will fail. Next: set OPENAI_API_KEY")
    if embedded.available():  # installed, but these specialist files leave it out
        assert verdict.endswith("or add embedded/smollm2 to a specialist's fallbacks (it is installed)")
    else:
        assert f"{sys.prefix}/bin/pip install" in verdict  # the venv this copy runs from, by absolute path


def test_the_install_hint_fits_how_delegate_mcp_was_installed() -> None:
    venv = install_extra_command("local", "/home/u/proj/.venv", "/usr")
    assert venv.startswith("/home/u/proj/.venv/bin/pip install ") and "[local]" in venv
    uvx = install_extra_command("local", "/home/u/.cache/uv/archive-v0/abc", "/usr")
    assert uvx.startswith("uvx --with ") and uvx.endswith(" delegate-mcp")
    requirements = [r.replace("'", '"') for r in metadata.requires("delegate-mcp") or []]
    local = [r.split(";")[0].strip() for r in requirements if 'extra == "local"' in r]
    assert local and all(f"--with {shlex.quote(r)}" in uvx for r in local), "every package of the extra, as written"
    system = install_extra_command("local", "/usr", "/usr")
    assert " -m pip install " in system and "[local]" in system


@pytest.mark.subprocess
def test_specialists_says_when_no_router_model_is_usable(sim: ProviderSimulator, tmp_path: Path) -> None:
    env = server_env(sim, cloud_only_builtins(tmp_path / "cloud"))
    for name in ("ROUTER_MODEL", "ROUTER_API_BASE"):
        env.pop(name)
    listing = run_cli("specialists", env=env).stdout
    assert "No router model is usable: the embedded classifier routes the tasks it is sure of, and the rest go " in (
        listing.replace("\n", " ")
    )
    assert "default specialist (generalist)" in listing


@pytest.mark.parametrize("command", ["ask", "specialists", "eval", "doctor", "stats"])
def test_tools_is_offered_only_where_it_does_something(command: str) -> None:
    from server.__main__ import parse_args

    assert parse_args(["--tools", "delegate"]).tools == "delegate"
    assert parse_args(["serve", "--tools", "delegate"]).tools == "delegate"
    extra = {"ask": ["x"], "stats": ["log.jsonl"]}.get(command, [])
    with pytest.raises(SystemExit) as exit_info:
        parse_args([command, *extra, "--tools", "delegate"])
    assert exit_info.value.code == 2


async def test_ask_tools_do_not_claim_context_is_used_for_routing(make_delegator: Callable[..., Delegator]) -> None:
    async with Client(build_server(make_delegator())) as session:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    assert "routing" in tools["delegate"].input_schema["properties"]["context"]["description"]
    assert "routing" not in tools["ask_coder"].input_schema["properties"]["context"]["description"]


async def test_confidence_reads_the_same_in_the_summary_line_and_the_reason(
    make_delegator: Callable[..., Delegator],
) -> None:
    delegator = make_delegator({"OPENAI_API_KEY": "sk-test-not-a-real-key"}, specialists_dir=None, classifier=True)
    outcome = await delegator.route_only("Write a Python function that reverses a linked list in place.")
    routing = outcome.routing
    assert routing.decided_by == "classifier" and routing.confidence is not None
    result = DelegateResult(
        output="x", specialist=outcome.specialist, model="m", routing=routing, attempts=[], usage=Usage(), latency_ms=1
    )
    shown = confidence_text(routing.confidence)
    assert f"classifier {shown}: " in summary_line(result)
    assert routing.reason.endswith(f"with confidence {shown}")


async def usage_of(delegator: Delegator, *calls: dict) -> dict:
    async with Client(build_server(delegator), mode="legacy") as session:
        for arguments in calls:
            await session.call_tool(arguments.pop("tool", "delegate"), arguments)
        return json.loads((await session.read_resource("delegate://usage")).contents[0].text)


async def test_usage_shows_an_unknown_cost_as_unknown(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    usage = await usage_of(make_delegator(), {"tool": "ask_coder", "task": "Fix it"})  # simulator models: no price
    assert usage["per_specialist"]["coder"]["cost_usd"] is None
    assert usage["per_specialist"]["coder"]["calls_cost_unknown"] == 1
    assert usage["cost_usd"] is None and usage["calls_cost_unknown"] == 1


async def test_usage_counts_the_router_spend_of_a_call_that_failed(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    sim.enqueue("gpt-4.1-mini", route_to("coder"))  # a router model priced in ROUTER_MODEL, served by the simulator
    sim.enqueue("sim-coder", status=400)
    sim.enqueue("sim-backup", status=400)
    delegator = make_delegator({"ROUTER_MODEL": "openai/gpt-4.1-mini@0.40/1.60"})
    usage = await usage_of(delegator, {"task": "Fix the bug"})
    assert (usage["calls"], usage["errors"]) == (1, 1)
    assert usage["unanswered"]["calls"] == 1 and usage["unanswered"]["input_tokens"] > 0
    assert usage["unanswered"]["cost_usd"] > 0 and usage["cost_usd"] == usage["unanswered"]["cost_usd"]


async def test_usage_counts_cancelled_calls(make_delegator: Callable[..., Delegator], sim: ProviderSimulator) -> None:
    sim.set_default("sim-coder", hang=True)
    delegator = make_delegator()
    with anyio.move_on_after(30):
        async with anyio.create_task_group() as group:
            group.start_soon(delegator.ask, "coder", "Fix it")
            while not sim.count("sim-coder"):
                await anyio.sleep(0.02)
            group.cancel_scope.cancel()
    usage = delegator.usage.snapshot()
    assert (usage["calls"], usage["cancelled"], usage["errors"]) == (1, 1, 0)


def test_the_parsed_front_matter_shipped_with_the_builtins_is_current() -> None:
    from server.catalog import PARSED_FRONT_MATTER, front_matter_index

    folder = Path(__file__).resolve().parent.parent / "specialists"
    shipped = json.loads((folder / PARSED_FRONT_MATTER).read_text(encoding="utf-8"))
    assert shipped == front_matter_index(folder), (
        "a built-in specialist file changed: regenerate specialists/front-matter.json with\n"
        'python -c "import json; from pathlib import Path; from server.catalog import front_matter_index as f; '
        "Path('specialists/front-matter.json').write_text(json.dumps(f(Path('specialists')), indent=1, "
        "ensure_ascii=False) + '\\n')\""
    )


def test_builtins_load_without_importing_yaml() -> None:
    import subprocess

    code = "import sys; from server.catalog import load_catalog; load_catalog({}); print('yaml' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"

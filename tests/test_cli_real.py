"""The real Claude Code, Codex, Gemini CLI and opencode, installed from npm, as models of a specialist's chain,
with the provider simulator as their model: their real flags, output, errors and tools. Each test is skipped
with a reason when its CLI is not installed (tests/cli_agents.py says where the tests look)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest

from server.calling.cli.presets import PRESETS, Call
from server.results import DelegateResult
from tests import cli_agents as C
from tests.sim import wire_anthropic, wire_gemini, wire_responses
from tests.simulator import ProviderSimulator

pytestmark = [pytest.mark.anyio, pytest.mark.cli]
each_cli = pytest.mark.parametrize("name", C.NAMES)
FALLBACK = "sim-backup"
TASK = "What does notes.txt say? Answer in one line."


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def backup(sim: ProviderSimulator) -> dict[str, Any]:
    """The API model after the CLI in the chain (OpenAI format, on the simulator)."""
    return {"model": f"openai/{FALLBACK}", "api_base": sim.base_url, "api_key_env": "SIM_KEY"}


def processes_with_home(home: Path) -> list[str]:
    """Every live process whose environment has HOME=home: the CLI and anything it started (they inherit it)."""
    wanted, found = f"HOME={home}".encode(), []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if wanted in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120])
        except OSError:
            continue  # gone already, or not ours to read
    return found


class Setup:
    """One CLI, its home, its project folder and a specialist whose chain starts with it."""

    def __init__(self, tmp: Path, name: str, sim: ProviderSimulator, **kwargs: Any) -> None:
        self.name, self.sim = name, sim
        logged_in = kwargs.pop("logged_in", True)
        self.home = C.home(tmp / "home", name, logged_in=logged_in)
        self.root = C.project(tmp / "project")
        chain = [C.entry(name, sim, key=kwargs.pop("key", True)), backup(sim)]
        folder = C.specialists(tmp / "specialists", chain, extra=kwargs.pop("extra", ""))
        env = C.environment(name, self.home)
        self.delegator = C.delegator(tmp, env, folder, self.root, **kwargs)
        self.model = C.SIM_MODEL[name]

    async def ask(self, task: str = TASK, thread_id: str | None = None) -> DelegateResult:
        return await self.delegator.ask("investigator", task, thread_id=thread_id)


@each_cli
async def test_a_cli_answers_from_its_model_with_the_metadata(name: str, tmp_path: Path) -> None:
    with ProviderSimulator() as sim:
        setup = Setup(tmp_path, name, sim)
        sim.set_default(setup.model, "notes.txt says the secret word is marmalade.")
        result = await setup.ask()
        assert result.output == "notes.txt says the secret word is marmalade."
        assert result.model == f"cli/{name}" and result.status == "done"
        attempt = result.attempts[0]
        assert attempt.ok and attempt.billing == "subscription" and attempt.model == f"cli/{name}"
        assert result.usage.specialist.input_tokens > 0 and result.usage.specialist.output_tokens > 0
        if name != "claude":  # Claude Code reports what the tokens would cost at API prices; the others nothing
            assert result.usage.specialist.cost_usd is None
        sent = json.dumps(sim.calls(setup.model))
        assert TASK in sent and "You investigate code." in sent, "the task and the instructions reached the CLI"
        assert sim.count(FALLBACK) == 0
        assert not processes_with_home(setup.home)


@each_cli
async def test_the_agent_reads_a_file_but_its_attempt_to_edit_is_refused(name: str, tmp_path: Path) -> None:
    with ProviderSimulator() as sim:
        setup = Setup(tmp_path, name, sim)
        read_tool, read_args = C.READ_TOOL[name]
        write_tool, write_args = C.WRITE_TOOL[name]
        sim.enqueue(setup.model, tool_call={"name": read_tool, "arguments": read_args(setup.root)})
        sim.enqueue(setup.model, tool_call={"name": write_tool, "arguments": write_args(setup.root)})
        readers = (wire_anthropic, wire_gemini, wire_responses)
        sim.set_default(
            setup.model,
            responder=lambda body: "TOOLS SAID: " + json.dumps([o for w in readers for o in w.tool_outputs(body)]),
        )
        result = await setup.ask("Read notes.txt, then replace its text with 'overwritten'.")
        assert result.model == f"cli/{name}", result.attempts
        assert "marmalade" in result.output, "the agent read the file with its own tool"
        refused = ("plan mode", "read-only file system", "denied by policy", "unavailable tool", "permission")
        assert any(word in result.output.lower() for word in refused), result.output
        assert (setup.root / "notes.txt").read_text() == "the secret word is marmalade\n", "no file changed"


FAULTS = {
    "401": ({"status": 401}, "its credentials were rejected"),
    "429": ({"status": 429, "retry_after": 0}, "rate limited or out of quota"),
    "500": ({"status": 500, "retry_after": 0}, "its provider failed"),
    "cut": ({"stream_error": 500, "stream_error_after": 1}, ""),
}


@each_cli
@pytest.mark.parametrize("fault", FAULTS)
async def test_a_provider_fault_is_the_clis_failure_in_a_sentence_and_the_chain_falls_back(
    name: str, fault: str, tmp_path: Path
) -> None:
    behaviour, says = FAULTS[fault]
    with ProviderSimulator() as sim:
        setup = Setup(tmp_path, name, sim)
        sim.set_default(setup.model, "this answer breaks off in the middle of its stream", **behaviour)
        sim.set_default(FALLBACK, "the fallback's answer")
        result = await setup.ask()
        if fault == "cut" and name == "claude":  # Claude Code recovers on its own: it asks again without streaming
            assert result.output == "this answer breaks off in the middle of its stream"
            assert [r["body"].get("stream") for r in sim.requests(setup.model)][-1] is not True
            return
        assert result.output == "the fallback's answer" and result.model == f"openai/{FALLBACK}"
        failed = result.attempts[0]
        assert failed.model == f"cli/{name}" and not failed.ok and failed.billing == "subscription"
        assert failed.error and says in failed.error, failed.error
        assert "127.0.0.1" not in failed.error or "[url]" in failed.error or ":" in failed.error
        assert sim.count(setup.model) >= 1, "the CLI reached its model and got the fault"
        assert not processes_with_home(setup.home)


@each_cli
async def test_a_cli_still_working_at_its_deadline_is_killed_with_its_group_and_the_chain_falls_back(
    name: str, tmp_path: Path
) -> None:
    with ProviderSimulator() as sim:
        setup = Setup(tmp_path, name, sim, attempt_timeout_s=25, jobs=False)
        sim.set_default(setup.model, hang=True)
        sim.set_default(FALLBACK, "the fallback's answer")
        result = await setup.ask()
        assert result.model == f"openai/{FALLBACK}"
        assert re.match(r"killed at the deadline after \d+ s, still working", result.attempts[0].error or "")
        assert not processes_with_home(setup.home), "the CLI's whole process group was stopped"


@each_cli
async def test_a_cancelled_call_leaves_no_process_behind(name: str, tmp_path: Path) -> None:
    with ProviderSimulator() as sim:
        setup = Setup(tmp_path, name, sim)
        sim.set_default(setup.model, hang=True)
        async with anyio.create_task_group() as group:
            group.start_soon(setup.ask)
            with anyio.fail_after(200):
                while not sim.count(setup.model):  # the agent is running and waiting on its model
                    await anyio.sleep(0.2)
            assert processes_with_home(setup.home)
            group.cancel_scope.cancel()
        # The call ends at once; its job stops the CLI behind it: SIGTERM to the group, SIGKILL after 2 s.
        with anyio.move_on_after(30):
            while processes_with_home(setup.home):
                await anyio.sleep(0.2)
        assert not processes_with_home(setup.home)


@each_cli
async def test_a_cli_working_past_the_calls_deadline_becomes_a_job(name: str, tmp_path: Path) -> None:
    with ProviderSimulator() as sim:
        setup = Setup(tmp_path, name, sim, deadline_s=6, job_max_s=240)
        sim.set_default(setup.model, "the answer, after a long look", delay=9)
        first = await setup.ask()
        assert first.status == "running" and first.job_id, "handed back as a job at the call's deadline"
        with anyio.fail_after(240):
            done = await setup.delegator.job_result(first.job_id, wait_s=5)
            while done.status == "running":
                done = await setup.delegator.job_result(first.job_id, wait_s=5)
        assert done.status == "done" and done.output == "the answer, after a long look"
        assert done.model == f"cli/{name}" and done.attempts[0].billing == "subscription"


@each_cli
async def test_a_cli_that_is_not_logged_in_falls_back_to_an_api_model(name: str, tmp_path: Path) -> None:
    with ProviderSimulator() as sim:
        setup = Setup(tmp_path, name, sim, key=False, logged_in=False)
        sim.set_default(FALLBACK, "the fallback's answer")
        result = await setup.ask()
        assert result.output == "the fallback's answer"
        error = result.attempts[0].error or ""
        assert error.startswith("not logged in: "), error
        login = {
            "claude": "/login",
            "codex": "codex login",
            "gemini": "run `gemini`",
            "opencode": "opencode auth login",
        }
        assert login[name] in error
        assert sim.count(setup.model) == 0, "the CLI had nothing to call its model with"


@each_cli
async def test_a_follow_up_resumes_the_clis_own_session(name: str, tmp_path: Path) -> None:
    with ProviderSimulator() as sim:
        setup = Setup(tmp_path, name, sim)
        sim.enqueue(setup.model, "The word is marmalade.")
        sim.enqueue(setup.model, "It has nine letters.")
        first = await setup.ask("Which word does notes.txt hold?")
        second = await setup.ask("How many letters has it?", thread_id=first.thread_id)
        assert second.output == "It has nine letters." and second.thread_id == first.thread_id
        followed = json.dumps(sim.calls(setup.model)[-1])
        assert "The word is marmalade." in followed, "the CLI's session held the first turn"
        assert "<earlier-task>" not in followed, "the history came from the session, not from us"


HELP = {"claude": ["--help"], "codex": ["exec", "--help"], "gemini": ["--help"], "opencode": ["run", "--help"]}


@each_cli
def test_every_flag_a_preset_passes_is_in_the_installed_clis_help(name: str, tmp_path: Path) -> None:
    program = C.cli_path(name)
    env = {"PATH": os.environ["PATH"], "HOME": str(C.home(tmp_path / "home", name)), "CODEX_HOME": str(tmp_path)}
    shown = subprocess.run(
        [str(program), *HELP[name]], capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL
    )
    text = shown.stdout + shown.stderr
    preset = PRESETS[name]
    passed = set()
    for call in (Call(), Call(cli_model="m", resume="s", api_base="http://127.0.0.1:9", allow_edits=True)):
        passed |= {arg.split("=", 1)[0] for arg in preset.argv(call) if arg.startswith("-") and arg != "-"}
    missing = [
        f for f in sorted(passed | preset.allowed_flags) if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", text)
    ]
    assert not missing, f"{name} --help does not show {missing}: the preset needs updating for this version"
    if name == "codex":
        assert re.search(r"^\s+resume\s", text, re.MULTILINE), "codex exec has no resume subcommand any more"


@pytest.mark.parametrize("name", ["claude", "gemini"])  # the two that stream their text as it is written
async def test_what_a_cli_wrote_before_its_deadline_is_kept_as_the_partial_answer(name: str, tmp_path: Path) -> None:
    with ProviderSimulator() as sim:
        setup = Setup(tmp_path, name, sim, deadline_s=40, jobs=False)  # no time left for the fallback after it
        sim.set_default(setup.model, "The first part arrives, then the model goes silent.", stream_stall_after=3)
        result = await setup.ask()
        assert result.truncated and result.model == f"cli/{name}"
        assert result.output.startswith("The first part a") and "goes silent" not in result.output
        assert "[... answer cut after" in result.output
        assert result.attempts[0].error and result.attempts[0].error.startswith("killed at the deadline")
        assert result.attempts[1].error == "skipped: the call's deadline was reached"
        assert not processes_with_home(setup.home)

"""delegate-mcp driven by the clients our users run: the real Claude Code and Gemini CLI (installed from npm) start
it over stdio as an MCP server, and their model, the provider simulator, is scripted to call our tools. The
specialists' models are on the same simulator. What each client hands its model is read from the requests the
simulator received. Each test is skipped with a reason when its CLI is not installed (tests/cli_agents.py says
where the tests look); the prompt and answer-by-link tests are also skipped while the server offers neither."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from tests import cli_agents as C
from tests.conftest import ROUTER, route_to
from tests.sim import wire_anthropic, wire_gemini
from tests.simulator import ProviderSimulator
from tests.test_console_script import script

pytestmark = pytest.mark.cli
CLIENTS = ("claude", "gemini")
each_client = pytest.mark.parametrize("name", CLIENTS)
TOOL_NAMES = {"claude": "mcp__delegate__{}", "gemini": "mcp_delegate_{}"}
"""How each client names our tools to its model (server `delegate` in its MCP settings)."""
WIRES: dict[str, ModuleType] = {"claude": wire_anthropic, "gemini": wire_gemini}
RUN_TIMEOUT_S = 900  # a whole client session on a loaded 2-core machine: the server's start-up waits for litellm
NEEDS_ECOSYSTEM = "needs prompts/answers-by-link"
THREAD_ID = re.compile(r"\bth_[0-9a-f]{16}\b")
JOB_ID = re.compile(r"\bjob-[0-9a-f]{16}\b")
STILL_RUNNING = "Call delegate_result with job_id"
DONE = "Done with the tools."
READ_RESOURCE = "read a resource"
"""A planner's step that reads an MCP resource with the client's own tool ({"uri": ...}), not one of ours."""
CLIENT_TOOLS = {
    "claude": lambda args: {"name": "ReadMcpResourceTool", "arguments": {"server": "delegate", **args}},
    "gemini": lambda args: {"name": "read_mcp_resource", "arguments": args},
}


@dataclass(frozen=True)
class Seen:
    """One tool result as the client put it in its next request to its model."""

    raw: str
    """The tool_result's text (Claude Code), or the functionResponse's response as JSON (Gemini CLI)."""
    data: Any
    """`raw` parsed as JSON, or None when it is not JSON."""

    @property
    def text(self) -> str:
        """Every string in it, unescaped, one per line: what the model can read, whatever the form."""
        return "\n".join(strings(self.data)) if self.data is not None else self.raw


def strings(value: Any) -> Iterator[str]:
    """The string leaves of a JSON value, in order."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def seen(raw: str) -> Seen:
    """A tool result as the model reads it, parsed when it is JSON."""
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    return Seen(raw, data)


Planner = Callable[[list[Seen]], tuple[str, dict[str, Any]] | None]
"""The client model's script: from the tool results so far, the next tool call (our tool's name, its arguments),
or None to answer in text and end the session."""


@dataclass(frozen=True)
class Session:
    """What one headless client run did: its own output, and every request it sent its model."""

    completed: subprocess.CompletedProcess[str]
    requests: list[dict[str, Any]]
    """Bodies of the client's requests that offered our tools (its main turns, not side requests)."""
    wire: ModuleType

    @property
    def results(self) -> list[Seen]:
        """The tool results the client handed its model, read from its last request."""
        return [seen(raw) for raw in self.wire.tool_outputs(self.requests[-1])] if self.requests else []

    @property
    def answer(self) -> str:
        """The client's final text, from its JSON output."""
        shown = json.loads(self.completed.stdout)
        return str(shown.get("result", shown.get("response", "")))


def offers_our_tools(name: str, body: dict[str, Any]) -> bool:
    """Whether a request to the client's model lists our tools (a side request, a title or a check, does not)."""
    return TOOL_NAMES[name].format("delegate") in json.dumps(body.get("tools") or [])


class RealClient:
    """Claude Code or Gemini CLI with delegate-mcp as its MCP server, its model on the simulator, in a project."""

    def __init__(
        self,
        name: str,
        tmp: Path,
        sim: ProviderSimulator,
        specialists_dir: Path,
        server_cwd: Path | None = None,
        **server_env: str,
    ) -> None:
        self.name, self.sim, self.program = name, sim, C.cli_path(name)
        self.model = C.SIM_MODEL[name]
        self.home = C.home(tmp / "home", name)
        self.root = C.project(tmp / "project")
        (self.root / "src").mkdir()
        (self.root / "src" / "app.py").write_text("def main():\n    return 'hello from app'\n")
        env = {
            "DELEGATE_SPECIALISTS_DIR": str(specialists_dir),
            "ROUTER_MODEL": ROUTER,
            "ROUTER_API_BASE": sim.base_url,
            "DELEGATE_CLASSIFIER": "off",
            "DELEGATE_DATA_DIR": str(tmp / "data"),
            **server_env,
        }
        self.server = {**self._command(server_cwd), "env": env}
        self.config = tmp / "mcp.json"
        self.debug_log = tmp / "client-debug.log"
        if name == "claude":
            self.config.write_text(json.dumps({"mcpServers": {"delegate": self.server}}))
        else:
            settings_file = self.home / ".gemini" / "settings.json"
            settings = json.loads(settings_file.read_text())
            # trust: the headless client may call our tools without asking; timeout: a call may take minutes here.
            settings["mcpServers"] = {"delegate": {**self.server, "trust": True, "timeout": RUN_TIMEOUT_S * 1000}}
            settings_file.write_text(json.dumps(settings))

    @staticmethod
    def _command(cwd: Path | None) -> dict[str, Any]:
        """The installed console script, started in the client's folder or in `cwd` (env -C); under PYTHONPATH (a
        worktree's code) through env(1) too, because Gemini CLI refuses PYTHONPATH in a server's `env` setting."""
        path = os.environ.get("PYTHONPATH")
        before = (["-C", str(cwd)] if cwd else []) + ([f"PYTHONPATH={path}"] if path else [])
        env_program = shutil.which("env")
        if before and env_program:
            return {"command": env_program, "args": [*before, script()]}
        return {"command": script(), "args": []}

    def run(self, prompt: str, planner: Planner) -> Session:
        """Run the client headless on `prompt` in its project folder, its model following `planner`."""
        wire = WIRES[self.name]

        def next_call(body: dict[str, Any]) -> dict[str, Any] | None:
            if not offers_our_tools(self.name, body):
                return None
            step = planner([seen(raw) for raw in wire.tool_outputs(body)])
            if step is None:
                return None
            if step[0] == READ_RESOURCE:
                return CLIENT_TOOLS[self.name](step[1])
            return {"name": TOOL_NAMES[self.name].format(step[0]), "arguments": step[1]}

        self.sim.set_default(self.model, DONE, tool_call=next_call)
        completed = subprocess.run(
            self._argv(prompt),
            cwd=self.root,
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
        assert completed.returncode == 0, f"{self.name} exited {completed.returncode}:\n{completed.stderr[-3000:]}"
        requests = [body for body in self.sim.calls(self.model) if offers_our_tools(self.name, body)]
        assert requests, f"{self.name} never showed its model our tools:\n{self._mcp_log(completed.stderr)}"
        return Session(completed, requests, wire)

    def _mcp_log(self, stderr: str) -> str:
        """What the client said about its MCP connection (Claude Code in its debug file, Gemini CLI on stderr)."""
        if self.name == "claude" and self.debug_log.exists():
            lines = self.debug_log.read_text(errors="replace").splitlines()
            return "\n".join(line for line in lines if "MCP" in line)[-4000:]
        return stderr[-4000:]

    def _argv(self, prompt: str) -> list[str]:
        if self.name == "claude":  # Claude Code names its MCP servers on the command line, Gemini CLI in settings
            mcp = ["--mcp-config", str(self.config), "--strict-mcp-config", "--allowedTools", "mcp__delegate"]
            mcp += ["--allowedTools", "ReadMcpResourceTool"]
            mcp += ["--debug-file", str(self.debug_log)]
            return [str(self.program), "-p", prompt, "--output-format", "json", "--model", self.model, *mcp]
        return [str(self.program), "-p", prompt, "-o", "json", "-m", self.model]

    def _env(self) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.home)}
        if self.name == "claude":
            return {
                **env,
                "ANTHROPIC_BASE_URL": self.sim.url,
                "ANTHROPIC_API_KEY": "sk-ant-sim-key",
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                # -p mode would otherwise start its turn before we answer; and even so it waits only 5 s for the
                # server unless told longer, which a loaded machine can exceed: the model then sees no tools.
                "MCP_CONNECTION_NONBLOCKING": "false",
                "MCP_CONNECT_TIMEOUT_MS": "300000",
                "MCP_TIMEOUT": "300000",
                "MCP_TOOL_TIMEOUT": str(RUN_TIMEOUT_S * 1000),
            }
        return {
            **env,
            "GOOGLE_GEMINI_BASE_URL": self.sim.url,
            "GEMINI_API_KEY": "sim-gemini-key",
            "GEMINI_CLI_TRUST_WORKSPACE": "true",
        }


def fixed(*calls: tuple[str, dict[str, Any]]) -> Planner:
    """A planner that makes `calls` in order, then answers in text."""
    return lambda results: calls[len(results)] if len(results) < len(calls) else None


def structured(name: str, result: Seen) -> bool:
    """Whether the model read the server's structuredContent: Claude Code (2.1.197) shows its model only that, as
    JSON text, whenever a result has it (outputSchema or not); the text content only when it has none."""
    return name == "claude" and isinstance(result.data, dict)


def thread_of(result: Seen) -> str:
    """The thread id a result names."""
    found = THREAD_ID.search(result.text)
    assert found, f"no thread id in what the model read: {result.raw[:500]}"
    return found.group()


@pytest.fixture
def client_for(tmp_path: Path, sim: ProviderSimulator, specialists_dir: Path) -> Callable[..., RealClient]:
    """A RealClient factory for this test's simulator and specialists (keywords: server_cwd, the server's env)."""
    return lambda name, **server_env: RealClient(name, tmp_path, sim, specialists_dir, **server_env)


FIRST = "Count words with collections.Counter over text.split()."
SECOND = "In Rust: a HashMap<&str, usize> filled from text.split_whitespace()."


@each_client
def test_the_client_delegates_then_follows_up_in_the_thread_the_result_named(
    name: str, client_for: Callable[..., RealClient], sim: ProviderSimulator
) -> None:
    client = client_for(name)
    sim.set_default("sim-router", route_to("coder", 0.9, "code task"))
    sim.enqueue("sim-coder", FIRST)
    sim.enqueue("sim-coder", SECOND)

    def planner(results: list[Seen]) -> tuple[str, dict[str, Any]] | None:
        if not results:
            return "delegate", {"task": "How do I count words in Python?"}
        if len(results) == 1:  # the thread id the model read in the first result
            return "delegate", {"task": "And in Rust?", "thread_id": thread_of(results[0])}
        return None

    session = client.run("Ask how to count words in Python, then in Rust.", planner)

    first, second = session.results
    assert FIRST in first.text and SECOND in second.text, "each answer reached the client's model"
    assert thread_of(second) == thread_of(first), "the follow-up stayed in the thread"
    coder = sim.calls("sim-coder")
    assert len(coder) == 2 and FIRST in json.dumps(coder[1]), "the specialist saw the first turn in the follow-up"
    assert session.answer == DONE, "the client ended with its model's text"
    if structured(name, first):  # Claude Code shows only the structuredContent, as JSON text, when there is one
        assert first.data["output"] == FIRST and first.data["thread_id"] == thread_of(first), first.raw
        assert first.data["routing"]["decided_by"] == "router" and "\n---\n" not in first.text
    else:  # the text content: the answer, then the summary line (Gemini CLI fences it as untrusted)
        fence = "<untrusted_context>\n" if name == "gemini" else ""
        shown = first.data["output"] if name == "gemini" else first.raw
        assert name == "claude" or list(first.data) == ["output"], first.raw
        assert shown.startswith(f"{fence}{FIRST}\n\n---\ncoder via openai/sim-coder"), first.raw


@each_client
def test_files_named_by_reference_are_read_from_the_clients_project_folder(
    name: str, client_for: Callable[..., RealClient], sim: ProviderSimulator, tmp_path: Path
) -> None:
    # The server starts in the user's home, not in the project: only the client's MCP roots name the project
    # (Claude Code offers its working folder, Gemini CLI its workspace's folders).
    client = client_for(name, server_cwd=tmp_path / "home")
    sim.enqueue("sim-coder", "app.py returns a greeting; notes.txt holds a word.")
    call = ("ask_coder", {"task": "Review these", "files": ["src/*.py", "notes.txt"]})

    session = client.run("Have the coder review src and notes.txt.", fixed(call))

    (result,) = session.results
    assert "app.py returns a greeting" in result.text
    (request,) = sim.calls("sim-coder")
    sent = json.dumps(request)
    assert "hello from app" in sent and "marmalade" in sent, "the server read both files in the client's folder"
    assert "src/app.py" in sent and "notes.txt" in sent
    if structured(name, result):
        assert sorted(f["path"] for f in result.data["files"]) == ["notes.txt", "src/app.py"], result.raw


@each_client
def test_a_background_job_is_collected_with_delegate_result(
    name: str, client_for: Callable[..., RealClient], sim: ProviderSimulator
) -> None:
    client = client_for(name)
    essay = "".join(f"part {i:02d} " for i in range(30))
    sim.set_default("sim-router", route_to("writer", 0.9, "prose"))
    sim.enqueue("sim-writer", essay, chunk_delay=0.2)  # 30 chunks: a few seconds of writing

    def planner(results: list[Seen]) -> tuple[str, dict[str, Any]] | None:
        if not results:
            return "delegate", {"task": "Write a long essay", "background": True}
        job = JOB_ID.search(results[0].text)
        assert job, f"no job id in what the model read: {results[0].raw[:500]}"
        if STILL_RUNNING in results[-1].text and len(results) < 12:
            return "delegate_result", {"job_id": job.group(), "wait_s": 60}
        return None

    session = client.run("Start a long essay in the background, then collect it.", planner)

    first, *later = session.results
    assert STILL_RUNNING in first.text, "the call came back at once, as a job"
    assert later and essay.strip() in later[-1].text and STILL_RUNNING not in later[-1].text, later[-1].raw[:500]
    if structured(name, first):  # the text of a finished job names no job; the structured content does
        assert (first.data["status"], later[-1].data["status"]) == ("running", "done")
        assert later[-1].data["job_id"] == first.data["job_id"]


@each_client
def test_a_panel_reaches_the_client_with_every_answer_and_the_synthesis(
    name: str, client_for: Callable[..., RealClient], sim: ProviderSimulator
) -> None:
    client = client_for(name)
    sim.enqueue("sim-coder", "Use a queue.")
    sim.enqueue("sim-writer", "Use a cron job.")
    sim.enqueue("sim-general", "The two differ: a queue for bursts, cron for schedules.")
    call = ("panel", {"task": "Queue or cron for nightly exports?", "specialists": ["coder", "writer"]})

    session = client.run("Get a second opinion on queue or cron.", fixed(call))

    (result,) = session.results
    for text in ("Use a queue.", "Use a cron job.", "a queue for bursts, cron for schedules"):
        assert text in result.text, result.raw[:1000]
    if structured(name, result):
        assert {a["specialist"] for a in result.data["answers"]} == {"coder", "writer"}, result.raw


PROMPT_TASK = {"claude": "Explain_the_word_marmalade", "gemini": "Explain the word marmalade"}
"""The task each client passes to the `delegate` prompt: Claude Code gives each prompt argument one word."""
LINK_TEMPLATE = "delegate://answers/{call_id}"
"""The answers' resource template (it may add a query part, such as {?offset,length})."""


@dataclass(frozen=True)
class Offered:
    """What the server offers beyond tools, asked over the Python client once per module (and xdist worker)."""

    prompts: dict[str, list[str]]
    """Prompt name -> names of its arguments."""
    templates: list[str]
    delegate_prompt: dict[str, list[str]]
    """Per client, the text of each message the `delegate` prompt gives for its PROMPT_TASK (none without it)."""


async def _ask_the_server(env: dict[str, str]) -> Offered:
    async with Client(StdioServerParameters(command=script(), env=env), mode="legacy") as session:
        prompts = {p.name: [a.name for a in p.arguments or []] for p in (await session.list_prompts()).prompts}
        templates = [t.uri_template for t in (await session.list_resource_templates()).resource_templates]
        texts: dict[str, list[str]] = {}
        for name, task in PROMPT_TASK.items() if "delegate" in prompts else ():
            got = await session.get_prompt("delegate", {"task": task})
            texts[name] = [m.content.text for m in got.messages if getattr(m.content, "type", "") == "text"]
    return Offered(prompts, templates, texts)


@pytest.fixture(scope="module")
def offered(tmp_path_factory: pytest.TempPathFactory) -> Offered:
    """The server's prompts and resource templates (any specialists do: nothing here calls a model)."""
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_API_BASE", "_BASE_URL"))}
    env["DELEGATE_DATA_DIR"] = str(tmp_path_factory.mktemp("offered-data"))
    return anyio.run(_ask_the_server, env)


@each_client
def test_a_prompt_used_as_a_slash_command_reaches_the_clients_model_and_it_delegates(
    name: str, client_for: Callable[..., RealClient], sim: ProviderSimulator, offered: Offered
) -> None:
    client = client_for(name)
    if "delegate" not in offered.prompts:  # the server's prompts/list has no `delegate` prompt yet
        pytest.skip(NEEDS_ECOSYSTEM)
    sim.set_default("sim-router", route_to("writer", 0.9, "words"))
    sim.enqueue("sim-writer", "Marmalade: a preserve of citrus peel.")
    # Claude Code splits a prompt's arguments on whitespace (one word each, in order); Gemini CLI takes --name="..."
    command = {
        "claude": f"/mcp__delegate__delegate {PROMPT_TASK['claude']}",
        "gemini": f'/delegate --task="{PROMPT_TASK["gemini"]}"',
    }
    session = client.run(command[name], fixed(("delegate", {"task": PROMPT_TASK[name]})))

    asked = "\n".join(strings(session.requests[0]["messages" if name == "claude" else "contents"]))
    assert offered.delegate_prompt[name], "the delegate prompt gave no text message"
    text = offered.delegate_prompt[name][0]
    # Gemini CLI sends its model the first message's text as a JSON string literal (JSON.stringify)
    shown = json.dumps(text, ensure_ascii=False) if name == "gemini" else text
    assert shown in asked, f"the prompt's text is not what the client's model was asked: {asked[-1500:]}"
    assert command[name] not in asked, "the client expanded the slash command rather than sending it as is"
    (result,) = session.results
    assert "Marmalade: a preserve of citrus peel." in result.text


@each_client
def test_an_answer_too_big_for_the_client_goes_by_link_and_the_link_reads_back_whole(
    name: str, client_for: Callable[..., RealClient], sim: ProviderSimulator, offered: Offered
) -> None:
    client = client_for(name)
    if not any(t.startswith(LINK_TEMPLATE) for t in offered.templates):  # no delegate://answers/{call_id} yet
        pytest.skip(NEEDS_ECOSYSTEM)
    # About 50,000 tokens of code: twice what Claude Code accepts in one tool result (MAX_MCP_OUTPUT_TOKENS).
    body = "".join(f'    print("line {i:05d} of the generated module")\n' for i in range(4500))
    answer = f"# HEAD OF THE ANSWER\ndef main():\n{body}# TAIL OF THE ANSWER\n"
    sim.enqueue("sim-coder", answer)
    links: list[str] = []

    def planner(results: list[Seen]) -> tuple[str, dict[str, Any]] | None:
        if not results:
            return "ask_coder", {"task": "Generate the module"}
        found = re.search(r"delegate://answers/[\w-]+", results[0].text)
        if found and len(results) == 1:  # the model follows the link with the client's own resource tool
            links.append(found.group())
            return READ_RESOURCE, {"uri": found.group()}
        return None

    session = client.run("Have the coder generate the module.", planner)

    first, *rest = session.results
    assert links, f"no delegate://answers/ link in what the model read: {first.raw[:2000]}"
    assert "# HEAD OF THE ANSWER" in first.text and "# TAIL OF THE ANSWER" not in first.text
    assert len(first.raw) < min(len(answer), 100_000), "the result the model read fits the client's limit"
    assert rest, "the client's model did not read the link"
    whole = read_back(rest[0])
    if name == "gemini":  # it reads only resources that resources/list names, refreshed on list_changed
        assert "Resource not found" not in whole, (
            "Gemini CLI reads only URIs in resources/list: list each kept answer there and send "
            f"notifications/resources/list_changed when one is added ({whole[:300]})"
        )
    assert answer in whole, f"the link did not read back whole: {whole[:1000]}"


def read_back(result: Seen) -> str:
    """A resource read as the client's model can reach it: Claude Code saves a big one to a file and hands the
    model its path and a preview (its Read tool then pages through it); Gemini CLI hands over the text."""
    saved = (
        re.search(r"Full output saved to: (\S+)", result.raw) if result.raw.startswith("<persisted-output>") else None
    )
    if saved:
        return "\n".join(strings(json.loads(Path(saved.group(1)).read_text())))
    return result.text

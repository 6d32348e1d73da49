"""The installed delegate-mcp driven by Node clients: the official TypeScript SDK (v1) and the MCP Inspector CLI."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import once_per_run, route_to
from tests.simulator import ProviderSimulator
from tests.test_console_script import script, server_env

pytestmark = pytest.mark.subprocess

CLIENT_SCRIPT = Path(__file__).parent / "ts" / "client.mjs"
SDK = "@modelcontextprotocol/sdk@1"
# The last Inspector line whose engines accept Node 20; 0.16 and later need Node >= 22.7.5 (2.x: >= 22.19).
INSPECTOR = "@modelcontextprotocol/inspector@0.15"
TOOLS = ["ask_coder", "ask_generalist", "ask_writer", "delegate", "delegate_result", "panel"]


def npm_install(prefix: Path, *packages: str) -> None:
    """Install `packages` into `prefix` with npm; fail the test with npm's output if that does not work."""
    npm = shutil.which("npm")
    assert npm
    # --loglevel=error is as quiet as --silent when the install works, but keeps npm's reason when it does not.
    command = [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(prefix), *packages]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"{' '.join(command)} timed out after 300 s:\n{error.stdout!r}\n{error.stderr!r}")
    if completed.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {completed.returncode}:\n{completed.stdout}\n{completed.stderr}")


@pytest.fixture(scope="session")
def node_prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An npm prefix holding the TypeScript SDK and a copy of tests/ts/client.mjs, installed once per test run."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not on PATH: the TypeScript client tests need Node.js with npm")

    def build(prefix: Path) -> None:
        npm_install(prefix, SDK)
        # ESM resolves bare imports from the script's own folder, so the client runs from inside the prefix.
        shutil.copy(CLIENT_SCRIPT, prefix / "client.mjs")

    return once_per_run(tmp_path_factory, "node-clients", build)


@pytest.fixture(scope="session")
def inspector(node_prefix: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MCP Inspector's launcher, installed once per test run (in a prefix of its own: installing it into
    the SDK's prefix would rewrite node_modules under another worker's running client)."""
    prefix = once_per_run(tmp_path_factory, "node-inspector", lambda folder: npm_install(folder, INSPECTOR))
    launcher = prefix / "node_modules" / "@modelcontextprotocol" / "inspector" / "cli" / "build" / "cli.js"
    assert launcher.is_file(), f"{INSPECTOR} installed without {launcher}"
    return launcher


def run_node(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run node with `args`; stdout and stderr are captured as text."""
    node = shutil.which("node")
    assert node
    return subprocess.run([node, *args], env=env, capture_output=True, text=True, timeout=120)


def ts_client(prefix: Path, env: dict[str, str], calls: list[dict[str, Any]], **spec_extra: Any) -> dict[str, Any]:
    """Connect the TypeScript SDK client to delegate-mcp, list tools, make `calls`, and return its JSON report
    (`spec_extra`: cwd, the folder the server starts in; roots, file:// URIs the client offers as its roots)."""
    spec = {"command": script(), "args": [], "calls": calls, **spec_extra}
    completed = run_node([str(prefix / "client.mjs"), json.dumps(spec)], env)
    assert completed.returncode == 0, f"client.mjs exited {completed.returncode}:\n{completed.stderr}"
    report: dict[str, Any] = json.loads(completed.stdout)
    return report


def test_the_typescript_sdk_client_lists_tools_and_calls_them_over_stdio(
    sim: ProviderSimulator, specialists_dir: Path, node_prefix: Path
) -> None:
    sim.enqueue("sim-router", route_to("coder", 0.88, "code task"))
    sim.enqueue("sim-coder", "fn main() {}")
    sim.enqueue("sim-writer", "Roses are red.")
    calls = [
        {"name": "delegate", "arguments": {"task": "Write a Rust hello world"}},
        {"name": "ask_writer", "arguments": {"task": "A two-line poem", "context": "about roses"}},
        {"name": "delegate", "arguments": {"task": "x", "bogus": 1}},
    ]
    report = ts_client(node_prefix, server_env(sim, specialists_dir), calls)

    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", report["protocolVersion"] or ""), report["protocolVersion"]
    assert report["server"]["name"] == "delegate-mcp"
    assert sorted(tool["name"] for tool in report["tools"]) == TOOLS
    assert not any(tool["hasOutputSchema"] for tool in report["tools"]), "the schemas are delegate://schemas"
    coded, written, bogus = report["calls"]
    assert "error" not in coded and not coded["isError"], coded
    assert coded["structuredContent"]["output"] == "fn main() {}"
    assert coded["structuredContent"]["specialist"] == "coder"
    assert coded["structuredContent"]["model"] == "openai/sim-coder"
    assert coded["structuredContent"]["routing"]["decided_by"] == "router"
    assert coded["text"].startswith("fn main() {}")
    assert "error" not in written and not written["isError"], written
    assert written["structuredContent"]["output"] == "Roses are red."
    assert written["structuredContent"]["specialist"] == "writer"
    assert written["structuredContent"]["routing"]["decided_by"] == "direct"
    assert bogus.get("isError") is True, bogus
    assert "bogus" in bogus["text"]
    assert (sim.count("sim-router"), sim.count("sim-coder"), sim.count("sim-writer")) == (1, 1, 1)


def test_the_typescript_sdk_client_collects_a_job_handed_back_at_the_deadline(
    sim: ProviderSimulator, specialists_dir: Path, node_prefix: Path
) -> None:
    essay = "".join(f"part {i:02d} " for i in range(30))  # 30 chunks, one every 0.2 s: about 6 s
    sim.enqueue("sim-writer", essay, chunk_delay=0.2)
    collect = {"name": "delegate_result", "arguments": {"job_id": "$job_id", "wait_s": 50}}
    # A 3 s deadline is shorter than litellm's import under load: the first call may be refused while it loads.
    sim.enqueue("sim-general", "warm")
    warm = {"name": "ask_generalist", "arguments": {"task": "hi"}, "retryWhile": "still starting up"}
    calls = [warm, {"name": "ask_writer", "arguments": {"task": "A long essay"}}, *[collect] * 6]
    report = ts_client(node_prefix, server_env(sim, specialists_dir, DELEGATE_DEADLINE_S="3"), calls)

    _, first, *later = report["calls"]
    assert "error" not in first and not first["isError"], first
    assert first["structuredContent"]["status"] == "running", first
    assert first["text"].startswith("part 00") and "Call delegate_result with job_id" in first["text"]
    finals = [c for c in later if c.get("structuredContent", {}).get("status") == "done"]
    assert all("error" not in c and not c["isError"] for c in later), later
    assert finals, [c["structuredContent"]["status"] for c in later]
    assert finals[0]["structuredContent"]["output"] == essay
    assert finals[0]["structuredContent"]["job_id"] == first["structuredContent"]["job_id"]


def test_the_typescript_sdk_client_runs_a_panel(
    sim: ProviderSimulator, specialists_dir: Path, node_prefix: Path
) -> None:
    sim.enqueue("sim-coder", "Use a queue.")
    sim.enqueue("sim-writer", status=400)  # the writer's model refuses; its fallback answers
    sim.enqueue("sim-backup", "Use a cron job.")
    sim.enqueue("sim-general", "Use a queue, with retries.")
    sim.enqueue("sim-general", "A and C agree on a queue; B prefers cron.")
    calls = [{"name": "panel", "arguments": {"task": "How?"}}]
    report = ts_client(node_prefix, server_env(sim, specialists_dir), calls)

    (panel,) = report["calls"]
    assert "error" not in panel and not panel["isError"], panel
    data = panel["structuredContent"]
    assert {a["specialist"]: a["ok"] for a in data["answers"]} == {"coder": True, "generalist": True, "writer": True}
    assert data["synthesis"] == "A and C agree on a queue; B prefers cron."
    assert sorted(data["labels"].values()) == ["coder", "generalist", "writer"]
    assert "## writer (openai/sim-backup)" in panel["text"] and "## Synthesis (by generalist" in panel["text"]


def test_the_mcp_inspector_cli_lists_tools_and_delegates(
    sim: ProviderSimulator, specialists_dir: Path, inspector: Path
) -> None:
    sim.enqueue("sim-router", route_to("coder", 0.8, "code task"))
    sim.enqueue("sim-coder", "print('hi')")
    env = server_env(sim, specialists_dir)
    # The server's settings go in as -e KEY=VALUE, as a user would pass them; the rest of the environment is inherited.
    settings = [("-e", f"{k}={env.pop(k)}") for k in ("DELEGATE_SPECIALISTS_DIR", "ROUTER_MODEL", "ROUTER_API_BASE")]
    base = [str(inspector), "--cli", *(part for pair in settings for part in pair), script()]

    listed = run_node([*base, "--method", "tools/list"], env)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    tools = json.loads(listed.stdout)["tools"]
    assert sorted(tool["name"] for tool in tools) == TOOLS
    assert all("outputSchema" not in tool for tool in tools), "no outputSchema: clients show their model the text"

    called = run_node([*base, "--method", "tools/call", "--tool-name", "delegate", "--tool-arg", "task=Say hi"], env)
    assert called.returncode == 0, called.stdout + called.stderr
    result = json.loads(called.stdout)
    assert not result.get("isError"), result
    assert result["structuredContent"]["output"] == "print('hi')"
    assert result["structuredContent"]["specialist"] == "coder"
    assert result["structuredContent"]["routing"]["decided_by"] == "router"
    assert result["content"][0]["text"].startswith("print('hi')")
    assert (sim.count("sim-router"), sim.count("sim-coder")) == (1, 1)


def test_the_mcp_inspector_cli_passes_files_and_lists_the_prompts(
    sim: ProviderSimulator, specialists_dir: Path, inspector: Path, tmp_path: Path
) -> None:
    """docs/clients.md's Inspector commands: `files` as a JSON list in --tool-arg, and the prompts."""
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "app.py").write_text("print('hi')\n")
    sim.enqueue("sim-coder", "Looks fine.")
    env = server_env(sim, specialists_dir, DELEGATE_FILE_ROOTS=str(project))
    base = [str(inspector), "--cli", script()]
    arguments = ["--tool-arg", "task=Review it", "--tool-arg", 'files=["src/*.py"]']
    called = run_node([*base, "--method", "tools/call", "--tool-name", "ask_coder", *arguments], env)
    assert called.returncode == 0, called.stdout + called.stderr
    result = json.loads(called.stdout)
    assert not result.get("isError"), result
    assert result["structuredContent"]["files"] == [{"path": "src/app.py", "chars": 12}]
    assert "print('hi')" in sim.calls("sim-coder")[0]["messages"][1]["content"]
    listed = run_node([*base, "--method", "prompts/list"], env)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    prompts = {p["name"]: [a["name"] for a in p["arguments"]] for p in json.loads(listed.stdout)["prompts"]}
    assert prompts == {
        "delegate": ["task", "specialist"],
        "second-opinion": ["task", "specialists"],
        "review-files": ["files", "question"],
        "continue-thread": ["thread_id", "follow_up"],
    }


def test_the_typescript_sdk_client_offers_its_roots_and_the_server_reads_files_there(
    sim: ProviderSimulator, specialists_dir: Path, node_prefix: Path, tmp_path: Path
) -> None:
    """As Claude Desktop does: the server starts in the home folder (no default root); the client's roots name
    the project, so files there are read; without roots, nothing is."""
    home, project = tmp_path / "home", tmp_path / "home" / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "app.py").write_text("def main():\n    return 'hello from app'\n")
    sim.set_default("sim-coder", "reviewed")
    env = server_env(sim, specialists_dir, HOME=str(home))
    calls = [{"name": "ask_coder", "arguments": {"task": "Review", "files": ["src/*.py"]}}]
    with_roots = ts_client(node_prefix, env, calls, cwd=str(home), roots=[project.as_uri()])
    without = ts_client(node_prefix, env, calls, cwd=str(home))

    read = with_roots["calls"][0]
    assert "error" not in read and not read["isError"], read
    assert read["structuredContent"]["files"] == [{"path": "src/app.py", "chars": 40}]
    assert "hello from app" in str(sim.calls("sim-coder")[0]["messages"])
    refused = without["calls"][0]
    assert refused["isError"] and "home folder" in refused["text"], refused
    assert sim.count("sim-coder") == 1

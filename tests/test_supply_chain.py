"""Guards on what is installed and on the code itself."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

COMPROMISED_LITELLM = {"1.82.7", "1.82.8"}
ROOT = Path(__file__).resolve().parent.parent


def test_installed_litellm_is_not_a_compromised_release() -> None:
    assert metadata.version("litellm") not in COMPROMISED_LITELLM


def test_no_litellm_startup_hook_is_installed() -> None:
    site = Path(sysconfig.get_paths()["purelib"])
    assert not list(site.glob("litellm_init*.pth")), "a litellm_init .pth file runs code at every Python start"


def test_dependency_pin_excludes_the_compromised_releases() -> None:
    requirement = next(r for r in metadata.requires("delegate-mcp") or [] if r.startswith("litellm"))
    assert all(f"!={version}" in requirement for version in COMPROMISED_LITELLM)


def test_code_is_ruff_clean() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is part of the test extra: pip install -e '.[test]'"
    completed = subprocess.run(
        [ruff, "check", "server", "specialists", "tests"], cwd=ROOT, capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stdout


def _modules_importing(pattern: str) -> list[str]:
    regex = re.compile(rf"^\s*(from|import)\s+{pattern}\b", re.MULTILINE)
    server = ROOT / "server"
    return sorted(p.relative_to(server).as_posix() for p in server.rglob("*.py") if regex.search(p.read_text()))


def test_only_calling_llm_imports_litellm() -> None:
    assert _modules_importing("litellm") == ["calling/llm.py"]


def test_only_the_mcp_surface_imports_the_mcp_sdk() -> None:
    assert set(_modules_importing("(mcp|mcp_types)")) <= {"__main__.py", "app.py", "http.py"}


def test_only_the_store_imports_sqlite_or_redis() -> None:
    assert all(path.startswith("store/") for path in _modules_importing("(sqlite3|redis)"))


def test_nothing_imports_the_cli_module() -> None:
    assert _modules_importing(r"server\.__main__") == []


def _server_modules(folder: str = "") -> list[Path]:
    return sorted((ROOT / "server" / folder).rglob("*.py"))


def test_the_import_rules_cover_the_pipeline_and_the_composition_root() -> None:
    scanned = {p.relative_to(ROOT / "server").as_posix() for p in _server_modules()}
    stages = {"prepare.py", "route.py", "budget.py", "answer.py", "handoff.py", "record.py", "messages.py"}
    assert {f"pipeline/{name}" for name in stages} <= scanned
    assert {"components.py", "delegation.py", "routing/lifecycle.py"} <= scanned


def test_pipeline_stages_import_neither_the_mcp_sdk_nor_litellm() -> None:
    for pattern in ("litellm", "(mcp|mcp_types)"):
        assert [m for m in _modules_importing(pattern) if m.startswith("pipeline/")] == []


def test_routing_catalog_and_results_import_neither_the_mcp_sdk_nor_litellm() -> None:
    for pattern in ("litellm", "(mcp|mcp_types)"):
        found = _modules_importing(pattern)
        assert [m for m in found if m.startswith("routing/") or m in ("catalog.py", "results.py")] == []


def test_stages_never_import_what_composes_them() -> None:
    """Data flows one way: a stage knows neither the Delegator, the composition root nor the MCP surface."""
    higher = r"server\.(delegation|components|app|http)"
    assert [m for m in _modules_importing(higher) if m.startswith(("pipeline/", "routing/"))] == []


def _server_imports() -> dict[str, set[str]]:
    """Each server module and the server modules it imports (at any depth of its code, lazy imports included)."""
    import ast

    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (ROOT / "server").rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
        graph[name] = {other for other in found if other in modules and other != name}
    return graph


def test_no_import_cycles() -> None:
    graph = _server_imports()
    done: set[str] = set()

    def walk(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(name) :], name]))
        if name in done:
            return
        for other in sorted(graph[name]):
            walk(other, [*path, name])
        done.add(name)

    for name in sorted(graph):
        walk(name, [])

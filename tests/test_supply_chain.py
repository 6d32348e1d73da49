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

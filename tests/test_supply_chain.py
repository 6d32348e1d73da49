"""Guards on what is installed and on the code itself."""

from __future__ import annotations

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


def test_only_llm_py_imports_litellm() -> None:
    importers = [p.name for p in (ROOT / "server").glob("*.py") if "import litellm" in p.read_text()]
    assert importers == ["llm.py"]

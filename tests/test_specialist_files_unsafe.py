"""Start-up refuses specialist files that are not plain files or are huge, instead of hanging or filling memory."""

from __future__ import annotations

import os
import resource
import subprocess
from pathlib import Path

import pytest

from tests.test_catalog import GOOD
from tests.test_console_script import script

pytestmark = pytest.mark.subprocess
MEMORY_CAP = 2 * 1024**3  # so a server that reads /dev/zero fails fast instead of eating the machine


def cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


@pytest.mark.parametrize("kind", ["fifo", "link to /dev/zero", "link to /dev/null", "over 1 MB"])
def test_start_up_refuses_an_unsafe_specialist_file(tmp_path: Path, kind: str) -> None:
    (tmp_path / "coder.md").write_text(GOOD)
    trap = tmp_path / "trap.md"
    if kind == "fifo":
        os.mkfifo(trap)
    elif kind.startswith("link"):
        trap.symlink_to(kind.removeprefix("link to "))
    else:
        trap.write_text(GOOD.replace("name: coder", "name: big").replace("default: true", "") + "x" * 1_100_000)
    env = {**os.environ, "DELEGATE_SPECIALISTS_DIR": str(tmp_path)}
    try:
        completed = subprocess.run(
            [script()],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=20,
            preexec_fn=cap_memory,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"start-up hung on a {kind}")
    assert completed.returncode == 2 and completed.stdout == ""
    expected = "over 1,000,000 bytes" if kind == "over 1 MB" else "not a regular file"
    assert f"{trap}: " in completed.stderr and expected in completed.stderr
    assert "Traceback" not in completed.stderr

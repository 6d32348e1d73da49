"""The process side of CLI models, shown with real programs as cli/custom (what it is for) and, where no real CLI
can be made to do it offline, one small fake: the environment a child sees, a process group killed with the
grandchildren it started, output that cannot be read, output bounds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from server.calling.cli import process
from server.delegation import Delegator
from server.errors import AllModelsFailedError
from tests import cli_agents as C
from tests.test_cli_real import processes_with_home

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def custom(tmp: Path, command: list[str], **overrides: object) -> tuple[Delegator, Path]:
    """A delegator whose only specialist runs `command` as cli/custom in tmp/project."""
    home = C.home(tmp / "home", "custom")
    folder = C.specialists(tmp / "specialists", [{"model": "cli/custom", "command": command}])
    env = {"PATH": os.environ["PATH"], "HOME": str(home), **C.PLANTED, "ANTHROPIC_API_KEY": "sk-ant-not-for-cli"}
    return C.delegator(tmp, env, folder, C.project(tmp / "project"), **overrides), home


async def test_a_custom_cli_sees_only_the_base_environment_and_works_in_the_file_root(tmp_path: Path) -> None:
    delegator, home = custom(tmp_path, ["/bin/sh", "-c", "env; pwd"])
    result = await delegator.ask("investigator", "print your environment")
    shown = result.output
    assert f"HOME={home}" in shown and "PATH=" in shown
    assert str((tmp_path / "project").resolve()) in shown, "the working directory is the call's file root"
    for secret in [*C.PLANTED.values(), "sk-ant-not-for-cli"]:
        assert secret not in shown
    assert "DELEGATE_" not in shown and "_API_KEY" not in shown
    assert result.attempts[0].billing == "subscription" and result.usage.specialist.cost_usd is None


async def test_the_prompt_reaches_the_cli_on_stdin(tmp_path: Path) -> None:
    delegator, _ = custom(tmp_path, ["/bin/cat"])
    task = "--version; rm -rf / # a task that looks like flags stays text"
    result = await delegator.ask("investigator", task)
    assert result.output.rstrip().endswith(task)
    assert result.output.startswith("<instructions>\nYou investigate code.")


async def test_a_killed_cli_takes_the_processes_it_started_with_it(tmp_path: Path) -> None:
    command = ["/bin/sh", "-c", "sleep 300 & sleep 301 & sleep 302"]
    delegator, home = custom(tmp_path, command, deadline_s=3, jobs=False)
    with pytest.raises(AllModelsFailedError) as failed:
        await delegator.ask("investigator", "wait")
    assert "cli/custom: killed at the deadline after" in str(failed.value)
    assert not processes_with_home(home), "the sleeps the shell put in the background were killed too"


async def test_output_that_is_not_the_clis_json_is_an_error_naming_its_version(tmp_path: Path) -> None:
    # A fake: a real Claude Code never prints anything but its JSON events in this mode, so only a script can.
    fake = tmp_path / "claude"
    fake.write_text(
        '#!/bin/sh\nif [ "$1" = --version ]; then echo "9.9.9 (Claude Code)"; exit 0; fi\n'
        "cat > /dev/null; echo 'Welcome to the new Claude Code!'; exit 0\n"
    )
    fake.chmod(0o755)
    home = C.home(tmp_path / "home", "claude")
    folder = C.specialists(
        tmp_path / "specialists", [{"model": "cli/claude"}, {"model": "cli/custom", "command": ["/bin/echo", "ok"]}]
    )
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "DELEGATE_CLI_CLAUDE": str(fake)}
    delegator = C.delegator(tmp_path, env, folder, C.project(tmp_path / "project"))
    result = await delegator.ask("investigator", "hello")
    assert result.model == "cli/custom"
    error = result.attempts[0].error or ""
    assert error.startswith("its output could not be read (cli/claude 9.9.9 (Claude Code)): Welcome to the new"), error


async def test_output_past_the_bound_stops_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "MAX_STDOUT_BYTES", 100_000)
    delegator, home = custom(tmp_path, ["/usr/bin/yes", "a line that repeats"])
    with pytest.raises(AllModelsFailedError) as failed:
        await delegator.ask("investigator", "flood")
    assert "wrote more than 100,000 bytes and was stopped" in str(failed.value)
    assert not processes_with_home(home)


async def test_one_cli_not_logged_in_does_not_skip_another(tmp_path: Path) -> None:
    claude = C.cli_path("claude")  # the real one, with no login and no key
    chain = [{"model": "cli/claude"}, {"model": "cli/custom", "command": ["/bin/echo", "the other CLI answered"]}]
    folder = C.specialists(tmp_path / "specialists", chain)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(C.home(tmp_path / "home", "claude")),
        "DELEGATE_CLI_CLAUDE": str(claude),
    }
    result = await C.delegator(tmp_path, env, folder, C.project(tmp_path / "project")).ask("investigator", "hello")
    assert result.output.strip() == "the other CLI answered", "each CLI has its own login"
    assert (result.attempts[0].error or "").startswith("not logged in: run `claude` once and log in with /login")


async def test_a_cli_works_in_the_clients_root_when_the_client_names_one(tmp_path: Path) -> None:
    delegator, _ = custom(tmp_path, ["/bin/sh", "-c", "pwd"])
    client_project = tmp_path / "client-project"
    client_project.mkdir()
    (client_project / "notes.md").write_text("notes\n")
    result = await delegator.ask("investigator", "where are you?", files=["notes.md"], client_roots=[client_project])
    assert result.output.splitlines()[-1] == str(client_project.resolve())
    plain = await delegator.ask("investigator", "and now?")
    assert plain.output.splitlines()[-1] == str((tmp_path / "project").resolve()), "else the configured root"

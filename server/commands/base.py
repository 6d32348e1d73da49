"""What every command shares: exit codes, the Command each module registers, and small helpers for the terminal."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from server.catalog import Catalog
    from server.delegation import Delegator
    from server.settings import Settings

EXIT_OK, EXIT_CALL_FAILED, EXIT_CONFIG = 0, 1, 2
Subcommands = argparse._SubParsersAction  # what add_subparsers returns; argparse names it no other way


class Invocation(NamedTuple):
    """One run of a command: its parsed flags and what start-up built for it."""

    args: argparse.Namespace
    settings: Settings
    environ: dict[str, str]
    catalog: Catalog
    delegator: Delegator | None
    """None for the commands that do not need one (see Command.needs_delegator)."""

    @property
    def server(self) -> Delegator:
        """The Delegator, for the commands that asked for one."""
        assert self.delegator is not None, "the command was registered with needs_delegator=False"
        return self.delegator


class Command(NamedTuple):
    """One subcommand: how its parser is added, how it runs, and what it needs before it runs.
    (Tuples, not dataclasses: every start-up builds these, and a dataclass costs milliseconds to define.)"""

    name: str
    add: Callable[[Subcommands, argparse.ArgumentParser], Any]
    """Adds the command's parser to the subcommands; the second argument holds the flags every command takes."""
    run: Callable[[Invocation], int]
    """Runs the command and returns its exit code."""
    needs_delegator: bool = True
    """False: runs on settings and the catalogue alone, without opening the store for a Delegator."""
    leave_at_once: bool = True
    """Exit without interpreter teardown, which takes about 1 s once litellm is loaded."""
    settings: Callable[[argparse.Namespace], dict[str, Any]] | None = None
    """Settings its flags override, beyond the ones every command shares."""


def startup_done() -> None:
    """Resume the collector paused for start-up (server/__main__.py). Nothing is frozen here: the collector
    spaces its full passes by the count of long-lived objects, and freezing before litellm's import (in the
    background warm-up) would make those passes more frequent; warm-up freezes everything once it is done."""
    if not gc.isenabled():
        gc.enable()


def exit_now(code: int) -> int:
    """Flush and leave without interpreter teardown, which takes about 1 s once litellm is loaded."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def add_file_flag(parser: argparse.ArgumentParser) -> None:
    """--file PATH, repeatable: the tools' `files` on the command line."""
    parser.add_argument(
        "--file",
        action="append",
        default=[],
        dest="files",
        metavar="PATH",
        help="a file or glob pattern the server reads for the specialist, as the tools' `files` (repeatable); "
        "relative to DELEGATE_FILE_ROOTS, default the current folder",
    )


def add_task_flags(parser: argparse.ArgumentParser) -> None:
    """The task (or '-' for stdin), --context-file and --file: what ask and route take."""
    parser.add_argument("task", help="the task; '-' reads it from stdin")
    parser.add_argument("--context-file", type=Path, metavar="FILE", help="file whose text is passed as context")
    add_file_flag(parser)


def read_task(task: str) -> str:
    """The task given on the command line, or stdin for '-'."""
    return sys.stdin.read() if task == "-" else task


def read_context(path: Path | None) -> str | None:
    """The text of --context-file ('' when not given); None, with a message, when it cannot be read."""
    if path is None:
        return ""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"delegate-mcp: cannot read --context-file {path}: {exc.__class__.__name__}", file=sys.stderr)
        return None

"""The compare command's flags and entry point; the run itself (server/commands/compare_run.py) loads only when used."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

from server.catalog import Catalog
from server.commands.base import Command, Invocation, Subcommands
from server.quality.defaults import CONFIRM_ABOVE_USD, DEFAULT_CONCURRENCY
from server.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The compare command's arguments."""
    parser.add_argument(
        "tasks",
        type=Path,
        help='JSONL: {"task", "context"?, "files"?, "specialist"?, "reference"?, "checks"?} per line (docs/compare.md)',
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--specialist", metavar="NAME", help="compare this specialist's model chain")
    which.add_argument("--models", metavar="A,B,C", help="compare these model ids (MODEL@IN/OUT gives a price)")
    parser.add_argument(
        "--reference", metavar="MODEL", help="judge against this model's answers where a task has no reference"
    )
    parser.add_argument("--judge", metavar="MODEL", help="the blind judge (without it, only checks grade)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"calls in flight at once (default {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument("--max-cost-usd", type=float, metavar="X", help="a hard cap on what this run may spend")
    parser.add_argument(
        "--yes",
        action="store_true",
        help=f"go ahead when the worst case is over ${CONFIRM_ABOVE_USD:.2f}; write --apply's change without asking",
    )
    parser.add_argument(
        "--apply",
        action="store_true",
        help="write the recommended chain into the specialist "
        "file (needs --specialist; shows the diff, keeps a backup)",
    )



def run_compare(settings: Settings, catalog: Catalog, environ: Mapping[str, str], args: argparse.Namespace) -> int:
    """Run the bake-off the flags describe; its exit code."""
    from server.commands.compare_run import run_compare as run

    return run(settings, catalog, environ, args)


def _add(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    add_arguments(commands.add_parser("compare", parents=[common], help="compare models on your own tasks"))


def _run(call: Invocation) -> int:
    return run_compare(call.settings, call.catalog, call.environ, call.args)


COMMAND = Command("compare", _add, _run, needs_delegator=False)

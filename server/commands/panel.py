"""`delegate-mcp panel`: one task to several specialists at once, and a synthesis, as the panel tool runs it."""

from __future__ import annotations

import argparse
import sys

import anyio

from server.commands.base import (
    EXIT_CALL_FAILED,
    EXIT_CONFIG,
    EXIT_OK,
    Command,
    Invocation,
    Subcommands,
    add_task_flags,
    read_context,
    read_task,
)
from server.commands.cli_output import terminal_progress
from server.errors import DelegateError, FileRefusedError
from server.prompts import split_names
from server.results import panel_text


def add(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    """The panel subcommand."""
    panel = commands.add_parser(
        "panel", parents=[common], help="second opinions: one task to several specialists, and a synthesis"
    )
    add_task_flags(panel)
    panel.add_argument(
        "--members", metavar="NAMES", default="", help="comma-separated specialists to ask (default: every usable one)"
    )
    panel.add_argument("--no-synthesis", action="store_true", help="only the answers, no judge's synthesis")
    panel.add_argument("--json", action="store_true", help="print the whole result as JSON on stdout")


def run(call: Invocation) -> int:
    """The answers and the synthesis on stdout, each under its specialist's name; the summary on stderr."""
    args, delegator = call.args, call.server
    task = read_task(args.task)
    context = read_context(args.context_file)
    if context is None:
        return EXIT_CONFIG
    members, synthesize = split_names(args.members), not args.no_synthesis
    progress = terminal_progress()
    try:
        result = anyio.run(lambda: delegator.panel(task, context, members, synthesize, progress, args.files or []))
    except DelegateError as exc:
        print(f"delegate-mcp: {exc}", file=sys.stderr)
        return EXIT_CONFIG if isinstance(exc, (KeyError, FileRefusedError)) else EXIT_CALL_FAILED
    if args.json:
        print(result.model_dump_json(indent=2))
        return EXIT_OK
    text, _, summary = panel_text(result).rpartition("\n\n---\n")
    print(text)
    for warning in result.warnings:
        print(f"[warning: {warning}]", file=sys.stderr)
    print(f"\n[{summary}]", file=sys.stderr)
    return EXIT_OK


COMMAND = Command("panel", add, run)

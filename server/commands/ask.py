"""`delegate-mcp ask`: one task from the terminal, as the delegate (or an ask_<name>) tool would run it."""

from __future__ import annotations

import argparse
import json
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
from server.errors import DelegateError, FileRefusedError, InvalidInputError
from server.results import DelegateResult, fallback_reasons, summary_line


def add(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    """The ask subcommand."""
    ask = commands.add_parser("ask", parents=[common], help="run one task from the terminal, as the delegate tool")
    add_task_flags(ask)
    ask.add_argument("--specialist", metavar="NAME", help="skip routing and ask this specialist directly")
    ask.add_argument(
        "--thread", metavar="ID", help="follow up on the conversation ID (printed after each answer); see `threads`"
    )
    ask.add_argument("--json", action="store_true", help="print the whole result as JSON on stdout")
    ask.add_argument(
        "--check",
        metavar="JSON",
        action="append",
        type=one_check,
        help='a check the answer must pass, like the tools\' checks, e.g. \'{"contains": "Paris"}\' (repeatable): it '
        "verifies a cascade's drafts, and a plain answer that fails it gets a warning",
    )


def one_check(text: str) -> object:
    """A --check value: one JSON object (its keys are checked with the rest, before anything is spent)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f'not JSON ({exc.msg}): write it like \'{{"contains": "Paris"}}\'') from None


def run(call: Invocation) -> int:
    """One task from the terminal: the answer on stdout, the routing summary on stderr."""
    args, delegator = call.args, call.server
    task = read_task(args.task)
    context = read_context(args.context_file)
    if context is None:
        return EXIT_CONFIG
    delegator.hand_off_at_deadline = False  # nothing could collect a job after this process ends: wait for it
    print(waiting_note(delegator.settings.job_max_s), file=sys.stderr)
    progress = terminal_progress()
    try:
        if args.specialist:
            result = anyio.run(
                lambda: delegator.ask(
                    args.specialist, task, context, progress, args.files, thread_id=args.thread, checks=args.check
                )
            )
            result.routing.reason = f"asked directly (--specialist {args.specialist})"
        else:
            checks = args.check
            result = anyio.run(
                lambda: delegator.delegate(task, context, progress, args.files, thread_id=args.thread, checks=checks)
            )
    except DelegateError as exc:
        print(f"delegate-mcp: {exc}", file=sys.stderr)
        return EXIT_CONFIG if isinstance(exc, (KeyError, FileRefusedError, InvalidInputError)) else EXIT_CALL_FAILED
    if args.json:
        print(result.model_dump_json(indent=2))
    else:
        print_answer(result)
    return EXIT_OK


def waiting_note(job_max_s: float) -> str:
    """What the terminal does that an MCP client does not: it waits for the whole answer."""
    return (
        "[waiting for the whole answer: at a terminal there is no job hand-off at DELEGATE_DEADLINE_S, so a long "
        f"answer takes as long as it takes (up to DELEGATE_JOB_MAX_S = {job_max_s:g} s). Ctrl-C stops.]"
    )


def print_answer(result: DelegateResult) -> None:
    """The answer on stdout; warnings, files read, the summary line and a word on the embedded model on stderr."""
    print(result.output)
    for warning in result.warnings:
        print(f"[warning: {warning}]", file=sys.stderr)
    if result.files:
        read = ", ".join(f"{f.path} ({f.chars:,} chars)" for f in result.files)
        print(f"\n[files read: {read}]", file=sys.stderr)
    print(f"\n[{summary_line(result)}]", file=sys.stderr)
    if result.model.startswith("embedded/") and fallback_reasons(result.attempts):
        print(
            "[answered by the small embedded model, which runs on this machine, because the models before it "
            "failed: the line above says why.]",
            file=sys.stderr,
        )
    elif result.model.startswith("embedded/"):
        print(
            "[answered by the small embedded model, which runs on this machine. For better answers set "
            "OPENAI_API_KEY, ANTHROPIC_API_KEY or GEMINI_API_KEY.]",
            file=sys.stderr,
        )


COMMAND = Command("ask", add, run)

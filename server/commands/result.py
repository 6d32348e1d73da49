"""`delegate-mcp result`: a job's answer (delegate_result at the terminal), read from the shared store."""

from __future__ import annotations

import argparse
import sys

import anyio

from server.commands.ask import print_answer
from server.commands.base import EXIT_CALL_FAILED, EXIT_OK, Command, Invocation, Subcommands
from server.commands.cli_output import terminal_progress
from server.errors import DelegateError
from server.jobs import MAX_WAIT_S
from server.results import since


def add(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    """The result subcommand."""
    result = commands.add_parser(
        "result", parents=[common], help="a job's answer, by job_id (a server on the same store handed it off)"
    )
    result.add_argument("job_id", help='the job_id of a result with status "running"')
    result.add_argument(
        "--wait", type=float, default=0.0, metavar="S", help=f"wait up to S seconds (at most {MAX_WAIT_S:g})"
    )
    result.add_argument("--offset", type=int, default=0, metavar="N", help="print only the text after N characters")
    result.add_argument("--cancel", action="store_true", help="stop the job; prints what it wrote")
    result.add_argument("--json", action="store_true", help="print the whole result as JSON on stdout")


def run(call: Invocation) -> int:
    """The job's text (whole, or so far) on stdout, its status and summary on stderr; exit 1 when it failed."""
    args, delegator = call.args, call.server
    progress = terminal_progress()
    try:
        found = anyio.run(lambda: delegator.job_result(args.job_id, args.wait, args.cancel, progress))
    except DelegateError as exc:
        print(f"delegate-mcp: {exc}", file=sys.stderr)
        return EXIT_CALL_FAILED
    found = since(found, args.offset)
    if args.json:
        print(found.model_dump_json(indent=2))
        return EXIT_OK
    print_answer(found)
    if found.status == "running":
        print(
            f"[still running: run `delegate-mcp result {found.job_id} --offset {found.next_offset} --wait 30` for "
            "the rest]",
            file=sys.stderr,
        )
    return EXIT_OK


COMMAND = Command("result", add, run)

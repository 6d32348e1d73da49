"""`delegate-mcp feedback`: mark a call as well or badly routed, or list the corrections collected so far."""

from __future__ import annotations

import argparse
import json
import sys

import anyio

from server.commands.base import EXIT_CONFIG, EXIT_OK, Command, Invocation, Subcommands
from server.delegation import Delegator
from server.errors import DelegateError, InvalidInputError
from server.feedback import receipt


def add(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    """The feedback subcommand."""
    feedback = commands.add_parser(
        "feedback",
        parents=[common],
        help="mark a delegate call (by its call_id) as well routed or not; corrections teach the routing",
    )
    feedback.add_argument("call_id", nargs="?", help="the call_id of a delegate result (remembered for 30 days)")
    feedback.add_argument("--task", help="correct the routing of this task text instead of a remembered call")
    feedback.add_argument("--thread", metavar="ID", help="instead of a call_id: the thread of the call...")
    feedback.add_argument("--turn", type=int, metavar="N", help="...and its turn in that thread (1 is the first)")
    verdict = feedback.add_mutually_exclusive_group()
    verdict.add_argument("--good", action="store_true", help="the call went to the right specialist")
    verdict.add_argument("--should-be", metavar="NAME", help="the specialist the task should have gone to")
    verdict.add_argument("--list", action="store_true", help="list the corrections collected so far")
    feedback.add_argument("--json", action="store_true", help="print the result as JSON")


def run(call: Invocation) -> int:
    """Record feedback on one call or task, or list the corrections collected so far."""
    args, delegator = call.args, call.server
    try:
        if args.list:
            list_corrections(delegator, args.json)
            return EXIT_OK
        if not (args.good or args.should_be):
            raise InvalidInputError("say --good (well routed) or --should-be NAME (the specialist it should go to).")
        by_thread = args.thread is not None or args.turn is not None
        if [bool(args.call_id), bool(args.task), by_thread].count(True) != 1:
            raise InvalidInputError("give one of: a CALL_ID, --task TEXT, or --thread ID with --turn N.")
        correction = anyio.run(
            lambda: delegator.give_feedback(
                call_id=args.call_id,
                task=args.task,
                thread_id=args.thread,
                turn=args.turn,
                good=args.good,
                should_be=args.should_be,
            )
        )
    except DelegateError as exc:
        print(f"delegate-mcp: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    done = receipt(correction)
    print(done.model_dump_json(indent=2) if args.json else f"Recorded. {done.effect}")
    return EXIT_OK


def list_corrections(delegator: Delegator, as_json: bool) -> None:
    """The corrections collected so far: JSON, or one line each and their count."""
    found = [receipt(c).model_dump() for c in anyio.run(anyio.to_thread.run_sync, delegator.corrections)]
    if as_json:
        print(json.dumps(found, indent=2))
        return
    for item in found:
        verdict = "good" if item["good"] else f"{item['routed_to'] or '?'} -> {item['should_be']}"
        print(f"{item['call_id']}  {verdict}  {item['task']}")
    print(f"{len(found)} correction{'' if len(found) == 1 else 's'}", file=sys.stderr)


COMMAND = Command("feedback", add, run)

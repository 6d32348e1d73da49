"""`delegate-mcp eval`: its flags and its run; the measuring and the report are in evals.py."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import anyio

from server.commands.base import EXIT_OK, Command, Invocation, Subcommands
from server.errors import ConfigError

BUILTIN_EVAL = "routing-eval.jsonl"


def add(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    """The eval subcommand."""
    evaluate = commands.add_parser("eval", parents=[common], help="measure routing on a labelled JSONL file")
    evaluate.add_argument(
        "file",
        nargs="?",
        type=Path,
        help='lines of {"task", "expected", "context"?}; default: the shipped set for the built-ins',
    )
    evaluate.add_argument("--full", action="store_true", help="also run the specialists (costs real calls)")
    evaluate.add_argument(
        "--mode",
        choices=["hybrid", "router", "classifier"],
        default="hybrid",
        help="hybrid: as the server routes (default); router: classifier off; classifier: "
        "no router model, abstentions go to the default",
    )
    evaluate.add_argument("--concurrency", type=int, default=8, help="tasks in flight at once (default 8)")
    evaluate.add_argument(
        "--output-tokens", type=int, default=500, help="expected answer length for the cost estimate (default 500)"
    )
    evaluate.add_argument("--json", action="store_true", help="print the report as one JSON object")
    evaluate.add_argument(
        "--feedback",
        action="store_true",
        help="measure routing on the tasks users corrected through feedback (instead of a file), without the "
        "exact-task memory: does what was learned carry?",
    )


def settings_from(args: argparse.Namespace) -> dict[str, Any]:
    """--mode router turns the classifier off; --mode classifier the router model."""
    if args.mode == "hybrid":
        return {}
    return {"classifier": args.mode == "classifier", "router_enabled": args.mode == "router"}


def run(call: Invocation) -> int:
    """Route every task of the file, then print the report."""
    from server.commands import evals

    args, delegator = call.args, call.server
    if args.feedback:
        if args.file is not None:
            raise ConfigError("give either an eval FILE or --feedback, not both.")
        cases = evals.feedback_cases(delegator)
    else:
        if args.file is None and delegator.settings.specialists_dir is not None:
            raise ConfigError("give the eval FILE: the shipped set only fits the built-in specialists.")
        path = args.file or Path(str(resources.files("specialists").joinpath(BUILTIN_EVAL)))
        cases = evals.read_cases(path, delegator.catalog.names)
    show = progress_bar(sys.stderr) if sys.stderr.isatty() else lambda done, total: None
    results = anyio.run(
        lambda: evals.run_cases(
            delegator,
            cases,
            full=args.full,
            concurrency=max(1, args.concurrency),
            progress=show,
            remembered=not args.feedback,
        )
    )
    measured = evals.classifier_run(delegator, cases)
    threshold = delegator.settings.classifier_threshold if delegator.classifier else None
    summary = evals.summarise(
        results, delegator.catalog, call.environ, args.output_tokens, measured.decision_us, threshold, measured.guesses
    )
    summary["mode"] = args.mode
    print(json.dumps(summary, indent=2) if args.json else evals.format_report(summary))
    return EXIT_OK


def progress_bar(stream: TextIO) -> Callable[[int, int], None]:
    """A one-line progress bar redrawn in place on a terminal."""

    def draw(done: int, total: int) -> None:
        filled = done * 30 // total
        stream.write(f"\rrouting {done}/{total} [{'#' * filled}{'.' * (30 - filled)}]")
        if done == total:
            stream.write("\n")
        stream.flush()

    return draw


COMMAND = Command("eval", add, run, settings=settings_from)

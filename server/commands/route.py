"""`delegate-mcp route`: the routing decision for a task, explained and priced, without calling a specialist."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import anyio

from server.calling import pricing
from server.calling.chain import estimate_tokens, usable_models
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
from server.commands.calibration import task_head
from server.delegation import Delegator
from server.errors import DelegateError, InvalidInputError
from server.pipeline.messages import material, specialist_messages
from server.routing.lifecycle import classifier_text
from server.routing.router import RouteOutcome


def add(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    """The route subcommand."""
    route = commands.add_parser(
        "route", parents=[common], help="show which specialist would answer a task, why, and the cost; calls none"
    )
    add_task_flags(route)
    route.add_argument(
        "--output-tokens", type=int, default=500, help="expected answer length for the cost estimate (default 500)"
    )
    route.add_argument("--json", action="store_true", help="print the decision as JSON on stdout")


def run(call: Invocation) -> int:
    """The routing decision for one task, explained and priced; no specialist is called."""
    args, delegator = call.args, call.server
    task = read_task(args.task)
    context = read_context(args.context_file)
    if context is None:
        return EXIT_CONFIG
    try:
        if args.files:  # the files join the context, as they do for the specialist
            bundle = anyio.run(lambda: delegator.read_files(args.files, context))
            context = material(context, bundle.text)
        outcome = anyio.run(delegator.route_only, task, context)
    except DelegateError as exc:
        print(f"delegate-mcp: {exc}", file=sys.stderr)
        return EXIT_CONFIG if isinstance(exc, InvalidInputError) else EXIT_CALL_FAILED
    report = explain(delegator, outcome, task, context, max(0, args.output_tokens))
    print(json.dumps(report, indent=2) if args.json else format_explanation(report))
    return EXIT_OK


def estimate_cost(delegator: Delegator, name: str, task: str, context: str, output_tokens: int) -> dict[str, Any]:
    """What the specialist call would cost: its first usable model's prices times the estimated tokens."""
    spec = delegator.catalog.get(name)
    models = usable_models(spec, delegator.environ)
    ref = (models or list(spec.chain))[0]
    model = ref.model
    input_tokens = estimate_tokens(specialist_messages(spec, task, context))
    rates = pricing.ref_rates(ref, delegator.environ)
    cost = None if rates is None else round(input_tokens * rates[0] + output_tokens * rates[1], 8)
    return {
        "model": model,
        "usable": bool(models),
        "input_tokens": input_tokens,
        "output_tokens_assumed": output_tokens,
        "specialist_usd": cost,
    }


def explain(delegator: Delegator, outcome: RouteOutcome, task: str, context: str, output_tokens: int) -> dict[str, Any]:
    """The decision with its runner-up, confidence, how it was made and what it would cost."""
    routing = outcome.routing
    classifier: dict[str, Any] | None = None
    runner_up = None
    if delegator.classifier is not None:
        assessment = delegator.classifier.assess(classifier_text(task, context), explain=True)
        guess = assessment.prediction
        classifier = {
            "guess": guess.label if guess else None,
            "confidence": round(guess.confidence, 4) if guess else None,
            "abstained": assessment.abstained,
            "top_words": list(guess.top_features) if guess else [],
        }
        if guess is not None:
            runner_up = guess.runner_up if guess.label == outcome.specialist else guess.label
    if routing.decided_by == "classifier" and classifier:
        how = "the embedded classifier; the words that weighed most: " + ", ".join(
            f'"{word}"' for word in classifier["top_words"][:4]
        )
    else:
        how = f"{routing.decided_by}: {routing.reason}"
    cost = estimate_cost(delegator, outcome.specialist, task, context, output_tokens)
    router_usd = outcome.usage.cost_usd
    total = None if cost["specialist_usd"] is None else round(cost["specialist_usd"] + (router_usd or 0.0), 8)
    return {
        "task": task_head(task),
        "specialist": outcome.specialist,
        "runner_up": runner_up,
        "confidence": routing.confidence,
        "decided_by": routing.decided_by,
        "how": how,
        "routing": routing.model_dump(),
        "classifier": classifier,
        "cost_estimate": {**cost, "router_usd": router_usd, "total_usd": total},
    }


def format_explanation(report: dict[str, Any]) -> str:
    """The explanation as a few readable lines."""
    confidence = "-" if report["confidence"] is None else f"{report['confidence']:.0%}"
    cost = report["cost_estimate"]
    price = "not priced" if cost["total_usd"] is None else f"about ${cost['total_usd']:.4f}"
    lines = [
        f"Specialist: {report['specialist']}   (runner-up: {report['runner_up'] or '-'}, confidence {confidence})",
        f"Decided by: {report['how']}",
    ]
    classifier = report["classifier"]
    if classifier and report["decided_by"] != "classifier":
        guess = classifier["guess"] or "-"
        sure = "-" if classifier["confidence"] is None else f"{classifier['confidence']:.0%}"
        lines.append(f"Classifier: guessed {guess} ({sure}); abstained: {classifier['abstained'] or 'no'}")
    lines.append(
        f"Cost: {price} on {cost['model']}{'' if cost['usable'] else ' (not usable now: no key)'} "
        f"for ~{cost['input_tokens']:,} input and {cost['output_tokens_assumed']:,} output tokens"
        + (f", router ${cost['router_usd']:.5f}" if cost["router_usd"] else "")
    )
    return "\n".join(lines)


COMMAND = Command("route", add, run)

"""`delegate-mcp eval`: routing accuracy, paths, latency and cost on a labelled JSONL file."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from server.calling import pricing
from server.calling.chain import estimate_tokens, usable_models
from server.catalog import Catalog
from server.commands.calibration import calibration, format_calibration, format_sources, task_head, wilson
from server.commands.calibration import interval as _interval
from server.commands.calibration import pct as _pct
from server.delegation import Delegator
from server.errors import ConfigError, DelegateError
from server.pipeline.messages import specialist_messages
from server.quality.stats import percentile
from server.routing.lifecycle import classifier_text

PATHS = ("classifier", "router", "default", "feedback")


@dataclass(frozen=True)
class EvalCase:
    """One labelled task."""

    line: int
    task: str
    expected: str
    context: str = ""
    source: str = ""
    """Where the task came from (optional); the report then gives each source's figures."""


@dataclass(frozen=True)
class CaseResult:
    """How one task was routed (and, with --full, answered)."""

    case: EvalCase
    predicted: str | None
    decided_by: str | None
    routing_ms: float
    router_cost_usd: float | None
    specialist_cost_usd: float | None = None
    error: str | None = None
    confidence: float | None = None


@dataclass(frozen=True)
class ClassifierRun:
    """The classifier's own figures over the cases: time per decision and its best guesses."""

    decision_us: list[float]
    guesses: list[tuple[float, bool]]


def read_cases(path: Path, names: list[str]) -> list[EvalCase]:
    """Parse the JSONL file; any bad line stops with the file and line number."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the eval file ({exc.__class__.__name__}).") from None
    cases = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{number}: not valid JSON ({exc.msg}).") from None
        if not isinstance(item, dict) or not isinstance(item.get("task"), str) or not item["task"].strip():
            raise ConfigError(f"{path}:{number}: expected an object with a non-empty string 'task'.")
        if item.get("expected") not in names:
            raise ConfigError(
                f"{path}:{number}: 'expected' must be one of {', '.join(names)}; got {item.get('expected')!r}."
            )
        context = item.get("context", "")
        source = item.get("source", "")
        if not isinstance(context, str) or not isinstance(source, str):
            raise ConfigError(f"{path}:{number}: 'context' and 'source' must be strings.")
        cases.append(EvalCase(number, item["task"], item["expected"], context, source))
    if not cases:
        raise ConfigError(f"{path}: no tasks in the eval file.")
    return cases


def feedback_cases(delegator: Delegator) -> list[EvalCase]:
    """The tasks users gave feedback on, labelled with the specialist they said is right."""
    corrections = delegator.corrections()
    if not corrections:
        raise ConfigError("no feedback collected yet: mark calls with `delegate-mcp feedback` or the feedback tool.")
    return [EvalCase(number, c.task, c.should_be) for number, c in enumerate(reversed(corrections), start=1)]


async def run_cases(
    delegator: Delegator,
    cases: list[EvalCase],
    *,
    full: bool,
    concurrency: int,
    progress: Callable[[int, int], None],
    remembered: bool = True,
) -> list[CaseResult]:
    """Route (or, with full, run) every case with bounded concurrency, in input order; remembered=False leaves
    the exact-task memory of corrections out of routing-only runs."""
    results: list[CaseResult | None] = [None] * len(cases)
    limiter = anyio.CapacityLimiter(concurrency)
    done = 0

    async def one(index: int, case: EvalCase) -> None:
        nonlocal done
        async with limiter:
            results[index] = await _run_case(delegator, case, full, remembered)
        done += 1
        progress(done, len(cases))

    async with anyio.create_task_group() as group:
        for index, case in enumerate(cases):
            group.start_soon(one, index, case)
    return [r for r in results if r is not None]


async def _run_case(delegator: Delegator, case: EvalCase, full: bool, remembered: bool = True) -> CaseResult:
    try:
        if full:
            result = await delegator.delegate(case.task, case.context)
            routing, usage = result.routing, result.usage
            return CaseResult(
                case,
                result.specialist,
                routing.decided_by,
                routing.latency_ms,
                usage.router.cost_usd,
                usage.specialist.cost_usd,
                confidence=routing.confidence,
            )
        outcome = await delegator.route_only(case.task, case.context, remembered=remembered)
        routing = outcome.routing
        return CaseResult(
            case,
            outcome.specialist,
            routing.decided_by,
            routing.latency_ms,
            outcome.usage.cost_usd,
            confidence=routing.confidence,
        )
    except DelegateError as exc:
        return CaseResult(case, None, None, 0.0, None, error=str(exc))


def summarise(
    results: list[CaseResult],
    catalog: Catalog,
    environ: Mapping[str, str],
    output_tokens: int,
    classifier_us: list[float],
    threshold: float | None,
    guesses: list[tuple[float, bool]] | None = None,
) -> dict[str, Any]:
    """Every figure of the report, as one JSON-ready dict."""
    names = catalog.names
    total = len(results)
    correct = [r for r in results if r.predicted == r.case.expected]
    confusion = {
        e: {p: sum(1 for r in results if r.case.expected == e and r.predicted == p) for p in names} for e in names
    }
    return {
        "tasks": total,
        "accuracy": _ratio(len(correct), total),
        "accuracy_interval": wilson(len(correct), total),
        "errors": sum(1 for r in results if r.error),
        "misroutes": _misroutes(results),
        "specialists": _per_specialist(results, names),
        "confusion": confusion,
        "paths": _per_path(results, total),
        "router": _router_figures(results),
        "classifier": {
            "threshold": threshold,
            "decision_us": {"p50": percentile(classifier_us, 0.5), "p99": percentile(classifier_us, 0.99)},
            "calibration": calibration(guesses) if guesses else None,
        },
        "cost_estimate": estimate_costs(results, catalog, environ, output_tokens),
        "sources": by_source(results),
    }


def by_source(results: list[CaseResult]) -> dict[str, Any]:
    """Per source (cases that name one): accuracy, and the classifier's coverage and accuracy on what it decided."""
    found: dict[str, Any] = {}
    for source in sorted({r.case.source for r in results if r.case.source}):
        mine = [r for r in results if r.case.source == source]
        right = sum(r.predicted == r.case.expected for r in mine)
        n = len(mine)
        found[source] = {"tasks": n, "accuracy": _ratio(right, n), "accuracy_interval": wilson(right, n)}
        found[source]["classifier"] = _per_path(mine, n)["classifier"]
    return found


def _router_figures(results: list[CaseResult]) -> dict[str, Any]:
    """The router model's calls: how many, their latency and their cost."""
    runs = [r for r in results if r.decided_by == "router" or (r.decided_by == "default" and r.router_cost_usd)]
    costs = [r.router_cost_usd for r in results if r.router_cost_usd is not None]
    cost = round(sum(costs), 8) if costs else None
    return {
        "calls": len(runs),
        "latency_ms": {
            "p50": percentile([r.routing_ms for r in runs], 0.5),
            "p95": percentile([r.routing_ms for r in runs], 0.95),
        },
        "cost_usd": cost,
        "cost_per_1k_tasks_usd": round(cost / len(results) * 1000, 6) if cost is not None else None,
    }


def _per_specialist(results: list[CaseResult], names: list[str]) -> dict[str, dict[str, Any]]:
    """Precision and recall of each specialist's routing."""
    specialists = {}
    for name in names:
        predicted = [r for r in results if r.predicted == name]
        expected = [r for r in results if r.case.expected == name]
        hits = sum(1 for r in predicted if r.case.expected == name)
        specialists[name] = {
            "precision": _ratio(hits, len(predicted)),
            "recall": _ratio(hits, len(expected)),
            "count": len(expected),
            "predicted": len(predicted),
        }
    return specialists


def _per_path(results: list[CaseResult], total: int) -> dict[str, dict[str, Any]]:
    """How many tasks each routing path decided, and how accurately."""
    paths = {}
    for path in PATHS:
        taken = [r for r in results if r.decided_by == path]
        hits = sum(1 for r in taken if r.predicted == r.case.expected)
        paths[path] = {
            "coverage": _ratio(len(taken), total) or 0.0,
            "count": len(taken),
            "accuracy": _ratio(hits, len(taken)),
            "accuracy_interval": wilson(hits, len(taken)),
        }
    return paths


def _misroutes(results: list[CaseResult]) -> list[dict[str, Any]]:
    """Every task routed somewhere other than expected."""
    return [
        {
            "line": r.case.line,
            "task": task_head(r.case.task),
            "expected": r.case.expected,
            "got": r.predicted,
            "decided_by": r.decided_by,
            "confidence": r.confidence,
        }
        for r in results
        if r.predicted is not None and r.predicted != r.case.expected
    ]


def estimate_costs(
    results: list[CaseResult], catalog: Catalog, environ: Mapping[str, str], output_tokens: int
) -> dict[str, Any]:
    """The workload's cost with routing against sending every task to the priciest specialist."""
    routed = premium = 0.0
    priced = 0
    premium_names: set[str] = set()
    for result in results:
        costs = {}
        for spec in catalog:
            models = usable_models(spec, environ) or list(spec.chain)
            rates = pricing.ref_rates(models[0], environ)
            if rates:
                tokens = estimate_tokens(specialist_messages(spec, result.case.task, result.case.context))
                costs[spec.name] = tokens * rates[0] + output_tokens * rates[1]
        if result.predicted not in costs:
            continue
        priced += 1
        name = max(costs, key=lambda n: costs[n])
        premium_names.add(name)
        premium += costs[name]
        routed += costs[result.predicted] + (result.router_cost_usd or 0.0)
    saving = _ratio(premium - routed, premium) if premium else None
    return {
        "output_tokens_assumed": output_tokens,
        "tasks_priced": priced,
        "routed_usd": round(routed, 6),
        "always_premium_usd": round(premium, 6),
        "premium_specialist": sorted(premium_names),
        "saving": saving,
    }


def classifier_run(delegator: Delegator, cases: list[EvalCase]) -> ClassifierRun:
    """Microseconds per classifier decision and its best guess on each case (empty when the classifier is off)."""
    classifier = delegator.classifier
    if classifier is None:
        return ClassifierRun([], [])
    timings, guesses = [], []
    for case in cases:
        text = classifier_text(case.task, case.context)
        started = time.perf_counter()
        classifier.decide(text)
        timings.append((time.perf_counter() - started) * 1e6)
        guess = classifier.predict(text)
        if guess is not None:
            guesses.append((guess.confidence, guess.label == case.expected))
    return ClassifierRun(timings, guesses)


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def format_report(summary: dict[str, Any]) -> str:
    """The summary as a readable report."""
    names = list(summary["specialists"])
    lines = [
        f"Tasks: {summary['tasks']}   Accuracy: {_pct(summary['accuracy'])}"
        f"{_interval(summary.get('accuracy_interval'))}   Errors: {summary['errors']}",
        "",
        "Decision paths:          coverage   count   accuracy   95% interval (Wilson)",
    ]
    for path, figures in summary["paths"].items():
        if path == "feedback" and not figures["count"]:  # only there once users have corrected routing
            continue
        lines.append(
            f"  {path:<22}{_pct(figures['coverage']):>8}{figures['count']:>8}{_pct(figures['accuracy']):>11}"
            + _interval(figures.get("accuracy_interval"))
        )
    lines += format_sources(summary.get("sources") or {})
    lines += ["", "Per specialist:          precision   recall   count"]
    for name, figures in summary["specialists"].items():
        lines.append(f"  {name:<22}{_pct(figures['precision']):>10}{_pct(figures['recall']):>9}{figures['count']:>8}")
    width = max(len(n) for n in names) + 2
    lines += [
        "",
        "Confusion (rows: expected, columns: chosen):",
        " " * (width + 2) + "".join(f"{n:>{width}}" for n in names),
    ]
    for expected, row in summary["confusion"].items():
        lines.append(f"  {expected:<{width}}" + "".join(f"{row[n]:>{width}}" for n in names))
    router, classifier, cost = summary["router"], summary["classifier"], summary["cost_estimate"]
    lines += [
        "",
        f"Router: {router['calls']} calls, latency p50 {_ms(router['latency_ms']['p50'])}, "
        f"p95 {_ms(router['latency_ms']['p95'])}; cost {_usd(router['cost_usd'])} "
        f"({_usd(router['cost_per_1k_tasks_usd'])} per 1k tasks)",
    ]
    if classifier["decision_us"]["p50"] is not None:
        lines.append(
            f"Classifier: threshold {classifier['threshold']}, decision p50 "
            f"{classifier['decision_us']['p50']:.0f} µs, p99 {classifier['decision_us']['p99']:.0f} µs"
        )
    if classifier.get("calibration"):
        lines += format_calibration(classifier["calibration"])
    lines.append(
        f"Estimated cost ({cost['tasks_priced']} priced tasks, {cost['output_tokens_assumed']} output tokens "
        f"each): routed {_usd(cost['routed_usd'])} vs always {'/'.join(cost['premium_specialist']) or '?'} "
        f"{_usd(cost['always_premium_usd'])} (saving {_pct(cost['saving'])})"
    )
    misroutes = summary.get("misroutes", [])
    lines += ["", f"Misroutes ({len(misroutes)}): line, expected -> chosen, decided by, confidence, task"]
    for miss in misroutes:
        confidence = "-" if miss["confidence"] is None else f"{miss['confidence']:.2f}"
        lines.append(
            f"  {miss['line']:>4}  {miss['expected']} -> {miss['got']}  {miss['decided_by']}  {confidence}  "
            f"{miss['task']}"
        )
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _usd(value: float | None) -> str:
    return "-" if value is None else f"${value:.4f}"

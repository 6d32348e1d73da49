"""A bake-off's report: per model, pass rate with its interval, judge win/tie/loss, cost, latency and failures;
per specialist, the cheapest model whose quality is not significantly below the best, with the evidence."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from server.quality.bakeoff import OVER_CAP, Answer, Candidate, Outcome, Plan, Verdict
from server.quality.checks import grade
from server.quality.stats import ALPHA, SIGN_TEST, percentile, sign_test, wilson
from server.quality.tasks import Task

SCORES = {"win": 1.0, "tie": 0.5, "loss": 0.0}
FAILURES_SHOWN = 3


def task_score(task: Task, answer: Answer | None, verdict: Verdict | None, own_reference: bool) -> float | None:
    """A model's score on a task: its checks (1 pass, 0 fail) when it has them, else the judge against the
    reference (1 win, 0.5 tie, 0 loss; the reference model's own answer ties). A failed answer scores 0; an answer
    not run (the cap) or not graded has no score."""
    if answer is None or answer.error == OVER_CAP:
        return None
    if answer.error is not None:
        return 0.0
    if task.checks:
        return 1.0 if grade(list(task.checks), answer.text).passed else 0.0
    if own_reference:
        return 0.5
    return SCORES.get(verdict.outcome or "") if verdict is not None else None


def scores(plan: Plan, outcome: Outcome, who: Candidate, tasks: list[Task]) -> dict[int, float]:
    """Task line -> score for one model, over the tasks that have one."""
    found = {}
    for task in tasks:
        own = task.reference is None and who == plan.reference
        score = task_score(task, outcome.answers.get((task.line, who.label)), outcome.verdicts.get(key(task, who)), own)
        if score is not None:
            found[task.line] = score
    return found


def key(task: Task, who: Candidate) -> tuple[int, str]:
    """The outcome key of a task and a model."""
    return task.line, who.label


def model_figures(plan: Plan, outcome: Outcome, who: Candidate, tasks: list[Task]) -> dict[str, Any]:
    """One model's row of the report."""
    answers = [(task, outcome.answers.get(key(task, who))) for task in tasks]
    answered = [a for _, a in answers if a is not None and a.error is None]
    checked = [(t, a) for t, a in answers if t.checks and a is not None and a.error != OVER_CAP]
    passed = sum(1 for t, a in checked if a.error is None and grade(list(t.checks), a.text).passed)
    verdicts = [v for t in tasks if (v := outcome.verdicts.get(key(t, who))) is not None and v.outcome]
    count = {name: sum(1 for v in verdicts if v.outcome == name) for name in SCORES}
    costs = [a.cost_usd for a in answered]
    failures = [(t.line, a.error) for t, a in answers if a is not None and a.error not in (None, OVER_CAP)]
    latencies = [a.latency_ms for a in answered if a.latency_ms is not None]
    return {
        "model": who.label,
        "answered": len(answered),
        "from_store": sum(1 for a in answered if a.cached),
        "checked": len(checked),
        "passed": passed,
        "pass_rate": round(passed / len(checked), 4) if checked else None,
        "pass_interval": wilson(passed, len(checked)),
        "judge": {
            "wins": count["win"],
            "ties": count["tie"],
            "losses": count["loss"],
            "judged": len(verdicts),
            "win_or_tie_interval": wilson(count["win"] + count["tie"], len(verdicts)),
        },
        "cost_per_1k_tasks_usd": None if not costs or None in costs else round(sum(costs) / len(costs) * 1000, 6),
        "latency_ms": {"p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95)},
        "not_run": sum(1 for _, a in answers if a is not None and a.error == OVER_CAP),
        "failures": len(failures),
        "failure_examples": [f"line {line}: {error}" for line, error in failures[:FAILURES_SHOWN]],
    }


def recommend(plan: Plan, outcome: Outcome, tasks: list[Task], rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The cheapest model not significantly below the best on these tasks, with the test and the evidence."""
    models = plan.candidates
    graded = {who.label: scores(plan, outcome, who, tasks) for who in models}
    means = {label: sum(s.values()) / len(s) for label, s in graded.items() if s}
    if not means:
        return {"model": None, "why": "nothing was graded: give the tasks checks, or a reference and --judge MODEL"}
    cost = {label: rows[label]["cost_per_1k_tasks_usd"] for label in means}
    best = max(means, key=lambda label: (means[label], -(cost[label] if cost[label] is not None else float("inf"))))
    evidence = []
    for label in means:
        paired = [line for line in graded[label] if line in graded[best]]
        worse = sum(1 for line in paired if graded[label][line] < graded[best][line])
        better = sum(1 for line in paired if graded[label][line] > graded[best][line])
        p_value = sign_test(worse, better)
        evidence.append(
            {
                "model": label,
                "mean_score": round(means[label], 4),
                "tasks_paired": len(paired),
                "worse_than_best": worse,
                "better_than_best": better,
                "p_value": round(p_value, 4),
                "significantly_below_best": p_value < ALPHA,
                "cost_per_1k_tasks_usd": cost[label],
            }
        )
    fit = [e for e in evidence if not e["significantly_below_best"]]
    fit.sort(key=_cheapest_first)
    chosen = fit[0]["model"]
    order = [e["model"] for e in fit] + [w.label for w in models if w.label not in {e["model"] for e in fit}]
    return {
        "model": chosen,
        "best": best,
        "test": f"{SIGN_TEST}, against the best model ({best}), alpha {ALPHA}",
        "why": _why(chosen, best, fit[0], len(fit)),
        "chain": order,
        "evidence": evidence,
    }


def _cheapest_first(entry: dict[str, Any]) -> tuple[bool, float, float]:
    """Known costs first, cheapest first; then the better score."""
    cost = entry["cost_per_1k_tasks_usd"]
    return cost is None, cost if cost is not None else 0.0, -entry["mean_score"]


def _why(chosen: str, best: str, entry: dict[str, Any], fitting: int) -> str:
    if chosen == best:
        return f"{chosen} scored best, and no cheaper model came within reach of it"
    cost = entry["cost_per_1k_tasks_usd"]
    price = "unknown cost" if cost is None else f"${cost:.4f} per 1,000 tasks"
    return (
        f"{chosen} ({price}) is the cheapest of the {fitting} model(s) not significantly below {best}: worse on "
        f"{entry['worse_than_best']} and better on {entry['better_than_best']} of {entry['tasks_paired']} paired "
        f"tasks, p = {entry['p_value']:.3f} (not under {ALPHA})"
    )


def summarise(plan: Plan, outcome: Outcome, spent_usd: float, refused: int) -> dict[str, Any]:
    """The whole report as one JSON-ready object."""
    groups: dict[str, list[Task]] = defaultdict(list)
    for task in plan.tasks:
        groups[plan.specialists[task.line].name].append(task)
    specialists = {}
    for name, tasks in groups.items():
        rows = {who.label: model_figures(plan, outcome, who, tasks) for who in plan.candidates}
        specialists[name] = {
            "tasks": len(tasks),
            "checked_tasks": sum(1 for t in tasks if t.checks),
            "models": list(rows.values()),
            "recommendation": recommend(plan, outcome, tasks, rows),
        }
    return {
        "tasks": len(plan.tasks),
        "models": [who.label for who in plan.candidates],
        "reference": plan.reference.label if plan.reference else None,
        "judge": plan.judge.chain[0].label if plan.judge else None,
        "specialists": specialists,
        "spent_usd": round(spent_usd, 8),
        "not_run_over_cap": refused,
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _interval(bounds: list[float] | None) -> str:
    return "" if bounds is None else f" ({bounds[0] * 100:.0f}-{bounds[1] * 100:.0f}%)"


def _usd(value: float | None) -> str:
    return "unknown" if value is None else f"${value:.4f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def format_report(summary: dict[str, Any]) -> str:
    """The report for people."""
    lines = [
        f"{summary['tasks']} tasks x {len(summary['models'])} models"
        f"   reference: {summary['reference'] or 'the tasks file'}   judge: {summary['judge'] or 'none'}"
    ]
    for name, group in summary["specialists"].items():
        lines += ["", f"{name}: {group['tasks']} tasks, {group['checked_tasks']} with checks"]
        lines.append(f"  {'model':<34}{'pass rate (95% CI)':<22}{'judge W/T/L':<13}{'per 1k tasks':<14}p50 / p95")
        for row in group["models"]:
            judge = row["judge"]
            wtl = f"{judge['wins']}/{judge['ties']}/{judge['losses']}" if judge["judged"] else "-"
            rate = _pct(row["pass_rate"]) + _interval(row["pass_interval"])
            lines.append(
                f"  {row['model']:<34}{rate:<22}{wtl:<13}{_usd(row['cost_per_1k_tasks_usd']):<14}"
                f"{_ms(row['latency_ms']['p50'])} / {_ms(row['latency_ms']['p95'])}"
            )
            for problem in ([f"{row['failures']} failed"] if row["failures"] else []) + row["failure_examples"]:
                lines.append(f"      {problem}")
        lines += _recommendation_lines(group["recommendation"])
    lines.append("")
    spent = _usd(summary["spent_usd"])
    lines.append(f"Spent on this run: {spent} (known costs; answers kept from earlier runs cost nothing now)")
    if summary["not_run_over_cap"]:
        lines.append(
            f"{summary['not_run_over_cap']} call(s) not run: over --max-cost-usd or the daily budget. Rerun with a "
            "higher cap: what was answered is kept."
        )
    return "\n".join(lines)


def _recommendation_lines(found: dict[str, Any]) -> list[str]:
    if found["model"] is None:
        return [f"  Recommendation: none ({found['why']})."]
    lines = [f"  Recommendation: {found['model']}: {found['why']}.", f"  Test: {found['test']}."]
    for entry in found["evidence"]:
        mark = "below the best" if entry["significantly_below_best"] else "not significantly below"
        lines.append(
            f"    {entry['model']:<32} score {entry['mean_score']:.2f}  worse/better {entry['worse_than_best']}/"
            f"{entry['better_than_best']} of {entry['tasks_paired']}  p {entry['p_value']:.3f}  {mark}"
        )
    lines.append(f"  Chain: {', '.join(found['chain'])}")
    return lines

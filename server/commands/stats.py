"""`delegate-mcp stats`: a summary of the decision log."""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from server.commands.base import EXIT_OK, Command, Invocation, Subcommands
from server.errors import ConfigError
from server.quality.stats import percentile

_NUMBERS = (
    "cost_usd",
    "premium_cost_usd",
    "latency_ms",
    "provider_ms",
    "startup_wait_ms",
    "router_cost_usd",
    "input_tokens",
    "output_tokens",
)
_TEXTS = ("specialist", "decided_by", "model", "tool")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def well_formed(item: Any) -> bool:
    """Whether a parsed line has the shape the summary reads (fields may be missing, never of the wrong type)."""
    if not isinstance(item, dict) or not isinstance(item.get("ok"), bool):
        return False
    if any(item.get(name) is not None and not _is_number(item[name]) for name in _NUMBERS):
        return False
    if any(name in item and not isinstance(item[name], str) for name in _TEXTS):
        return False
    return not ("models_tried" in item and not isinstance(item["models_tried"], list))


def read_log_counted(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The log's well-formed lines, and how many lines were skipped as malformed (or half-written)."""
    try:
        raw = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the decision log ({exc.__class__.__name__}).") from None
    lines, skipped = [], 0
    for text in raw:
        if not text.strip():
            continue
        try:
            item = json.loads(text)
        except ValueError:
            item = None
        if well_formed(item):
            lines.append(item)
        else:
            skipped += 1
    return lines, skipped


def read_log(path: Path) -> list[dict[str, Any]]:
    """The log's well-formed lines."""
    return read_log_counted(path)[0]


def _cost(known: list[float], unknown: int) -> float | None:
    """Known costs added up; None (unknown, never $0) when there were calls and none had a known cost."""
    return None if unknown and not known else round(sum(known), 6)


def summarise_log(lines: list[dict[str, Any]], skipped: int = 0) -> dict[str, Any]:
    """Calls, errors, fallbacks, spend per specialist and the saving against always using the priciest one.

    A call with no known cost adds to calls_cost_unknown, not $0 to the spend (as delegate://usage does)."""
    ok = [line for line in lines if line.get("ok")]
    known: dict[str, list[float]] = defaultdict(list)
    unknown: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    for line in ok:
        name = line.get("specialist", "?")
        calls[name] += 1
        if line.get("cost_usd") is None:
            unknown[name] += 1
        else:
            known[name].append(line["cost_usd"])
    every = [cost for costs in known.values() for cost in costs]
    comparable = [line for line in ok if line.get("premium_cost_usd") is not None and line.get("cost_usd") is not None]
    actual = sum(line["cost_usd"] for line in comparable)
    premium = sum(line["premium_cost_usd"] for line in comparable)  # always-premium needs no router call
    fallbacks = sum(1 for line in ok if len(line.get("models_tried") or []) > 1)
    return {
        "calls": len(lines),
        "skipped_lines": skipped,
        "errors": len(lines) - len(ok),
        "error_rate": round((len(lines) - len(ok)) / len(lines), 4) if lines else None,
        "fallback_rate": round(fallbacks / len(ok), 4) if ok else None,
        "decided_by": dict(Counter(line.get("decided_by", "error") for line in lines)),
        "cost_usd": _cost(every, sum(unknown.values())),
        "calls_cost_unknown": sum(unknown.values()),
        "per_specialist": {
            name: {
                "calls": calls[name],
                "cost_usd": _cost(known[name], unknown[name]),
                "calls_cost_unknown": unknown[name],
            }
            for name in sorted(calls)
        },
        "always_premium_usd": round(premium, 6) if comparable else None,
        "saving_usd": round(premium - actual, 6) if comparable else None,
        "saving": round((premium - actual) / premium, 4) if premium else None,
        "latency_ms": _spread(ok, "latency_ms"),
        "provider_ms": _spread(ok, "provider_ms"),
        "startup_wait_ms": _startup(ok),
    }


def _usd(cost: float | None, unknown: int) -> str:
    """A spend for people: unknown when no call had a known cost; the count of unknown ones beside a known sum."""
    if cost is None:
        return "cost unknown"
    return f"${cost:.4f}" + (f" (+{unknown} call(s) of unknown cost)" if unknown else "")


def _spread(lines: list[dict[str, Any]], name: str) -> dict[str, float | None]:
    """p50 and p95 of a field over the lines that have it (older logs lack the newer fields)."""
    values = [line[name] for line in lines if line.get(name) is not None]
    return {"p50": percentile(values, 0.5), "p95": percentile(values, 0.95)}


def _startup(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """How many calls waited for the server to start up (their latency includes it), and how long."""
    waits = [line["startup_wait_ms"] for line in lines if line.get("startup_wait_ms") is not None]
    return {
        "calls": len(waits),
        "p50": percentile(waits, 0.5),
        "max": max(waits, default=None),
        "total": round(sum(waits), 1),
    }


def _latency_lines(summary: dict[str, Any]) -> list[str]:
    """The whole calls' latency, then the providers' share and the start-up wait apart, so neither takes the
    blame for the other."""
    latency, provider = summary["latency_ms"], summary.get("provider_ms") or {}
    if latency["p50"] is None:
        return []
    lines = [f"Latency: p50 {latency['p50']:.0f} ms, p95 {latency['p95']:.0f} ms (whole calls, as clients saw them)"]
    if provider.get("p50") is not None:
        lines.append(f"  provider requests: p50 {provider['p50']:.0f} ms, p95 {provider['p95']:.0f} ms")
    startup = summary.get("startup_wait_ms") or {}
    if startup.get("calls"):
        lines.append(
            f"  start-up wait: {startup['calls']} call(s) waited for the server to start up, p50 "
            f"{startup['p50']:.0f} ms, max {startup['max']:.0f} ms"
        )
    elif provider.get("p50") is not None:
        lines.append("  start-up wait: none")
    return lines


def format_stats(summary: dict[str, Any]) -> str:
    """The summary for people."""

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value * 100:.1f}%"

    lines = [
        f"Calls: {summary['calls']}   errors: {summary['errors']} ({pct(summary['error_rate'])})   "
        f"fallback rate: {pct(summary['fallback_rate'])}",
        "Decided by: " + ", ".join(f"{k} {v}" for k, v in sorted(summary["decided_by"].items())),
        f"Spend: {_usd(summary['cost_usd'], summary['calls_cost_unknown'])}",
    ]
    lines += [
        f"  {name:<16}{figures['calls']:>6} calls  {_usd(figures['cost_usd'], figures['calls_cost_unknown'])}"
        for name, figures in summary["per_specialist"].items()
    ]
    if summary["always_premium_usd"] is None:
        lines.append("No call's cost and priciest-specialist cost are both known: no saving to show.")
    else:
        lines.append(
            f"Always the priciest specialist would have cost ${summary['always_premium_usd']:.4f}: saved "
            f"${summary['saving_usd']:.4f} ({pct(summary['saving'])}) on the calls whose costs are known"
        )
    lines += _latency_lines(summary)
    if summary.get("skipped_lines"):
        lines.append(f"Skipped {summary['skipped_lines']} malformed line(s) of the log.")
    return "\n".join(lines)


def add(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    """The stats subcommand."""
    stats = commands.add_parser("stats", parents=[common], help="summarise a decision log")
    stats.add_argument("log", type=Path, nargs="?", help="the decision log file (DELEGATE_LOG)")
    stats.add_argument(
        "--shadow",
        action="store_true",
        help="instead, what shadow runs found (DELEGATE_SHADOW), per candidate, from the state store",
    )
    stats.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(call: Invocation) -> int:
    """Summarise a decision log, or (--shadow) the shadow verdicts in the store."""
    if call.args.shadow:
        return run_shadow(call)
    if call.args.log is None:
        raise ConfigError("stats needs the decision log file (DELEGATE_LOG), or --shadow for shadow runs.")
    summary = summarise_log(*read_log_counted(call.args.log))
    print(json.dumps(summary, indent=2) if call.args.json else format_stats(summary))
    return EXIT_OK


def run_shadow(call: Invocation) -> int:
    """Per shadow candidate: samples, win / tie / loss with intervals, cost ratio and a sentence."""
    from server.quality.shadow_report import format_shadow, shadow_summary
    from server.store.factory import open_store

    store = open_store(call.settings, call.environ)
    try:
        summary = shadow_summary(store)
    finally:
        store.close()
    print(json.dumps(summary, indent=2) if call.args.json else format_shadow(summary))
    return EXIT_OK


COMMAND = Command("stats", add, run, needs_delegator=False, leave_at_once=False)

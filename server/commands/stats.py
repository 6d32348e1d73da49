"""`delegate-mcp stats`: a summary of the decision log."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from server.commands.evals import percentile
from server.errors import ConfigError

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


def summarise_log(lines: list[dict[str, Any]], skipped: int = 0) -> dict[str, Any]:
    """Calls, errors, fallbacks, spend per specialist and the saving against always using the priciest one."""
    ok = [line for line in lines if line.get("ok")]
    spend: dict[str, float] = defaultdict(float)
    calls: Counter[str] = Counter()
    for line in ok:
        calls[line.get("specialist", "?")] += 1
        spend[line.get("specialist", "?")] += line.get("cost_usd") or 0.0
    total_cost = sum(spend.values())
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
        "cost_usd": round(total_cost, 6),
        "per_specialist": {name: {"calls": calls[name], "cost_usd": round(spend[name], 6)} for name in sorted(calls)},
        "always_premium_usd": round(premium, 6),
        "saving_usd": round(premium - actual, 6),
        "saving": round((premium - actual) / premium, 4) if premium else None,
        "latency_ms": _spread(ok, "latency_ms"),
        "provider_ms": _spread(ok, "provider_ms"),
        "startup_wait_ms": _startup(ok),
    }


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
        f"Spend: ${summary['cost_usd']:.4f}",
    ]
    lines += [
        f"  {name:<16}{figures['calls']:>6} calls  ${figures['cost_usd']:.4f}"
        for name, figures in summary["per_specialist"].items()
    ]
    lines.append(
        f"Always the priciest specialist would have cost ${summary['always_premium_usd']:.4f}: saved "
        f"${summary['saving_usd']:.4f} ({pct(summary['saving'])}) on the calls whose costs are known"
    )
    lines += _latency_lines(summary)
    if summary.get("skipped_lines"):
        lines.append(f"Skipped {summary['skipped_lines']} malformed line(s) of the log.")
    return "\n".join(lines)

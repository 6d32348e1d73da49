"""`delegate-mcp report`: one self-contained HTML file to look at or attach to a pull request.

It shows the routing eval (`eval --json`), the compare quality-against-cost charts (`compare --json`), the shadow
verdicts, and spend and savings over time (the decision log and the store's usage totals). The charts are inline
SVG drawn by matplotlib (the `report` extra); the page loads nothing: no script, no font, no CDN.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from server.commands.base import EXIT_OK, Command, Invocation, Subcommands
from server.commands.stats import read_log_counted
from server.errors import ConfigError
from server.store.base import Store

EXTRA_HINT = "pip install 'delegate-mcp[report]'"
MISROUTES_SHOWN = 50


def add(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    """The report subcommand."""
    parser = commands.add_parser(
        "report", parents=[common], help="write one self-contained HTML report (charts; opens offline)"
    )
    parser.add_argument("--out", type=Path, default=Path("report.html"), help="where to write it (report.html)")
    parser.add_argument("--eval", type=Path, metavar="FILE", help="the routing eval, as `eval --json` printed it")
    parser.add_argument("--compare", type=Path, metavar="FILE", help="a compare run, as `compare --json` printed it")


def _load_json(path: Path | None, made_by: str) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{path}: cannot read it as JSON ({exc.__class__.__name__}); make it with `{made_by}`."
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not the JSON object `{made_by}` prints.")
    return data


def shadow_verdicts(store: Store) -> list[dict[str, Any]]:
    """The shadow runs' verdicts per candidate (`stats --shadow`'s figures), an empty list while there are none."""
    from server.quality.shadow_report import shadow_summary

    return [row for row in shadow_summary(store)["candidates"].values() if row["samples"]]


def bucket_width(lines: list[dict[str, Any]]) -> int:
    """How many characters of the ISO time name a bucket: days (10), else hours (13), else minutes (16), the
    first that gives two buckets or more, so a young log still draws a line."""
    for width in (10, 13):
        if len({str(line.get("time", ""))[:width] for line in lines}) >= 2:
            return width
    return 16


def over_time(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """Per day (UTC; per hour or minute for a young log): spend, what always-premium would have cost, and calls by
    routing path."""
    width = bucket_width(lines)
    spent: dict[str, float] = defaultdict(float)
    premium: dict[str, float] = defaultdict(float)
    paths: dict[str, Counter[str]] = defaultdict(Counter)
    for line in lines:
        when = str(line.get("time", ""))[:width].replace("T", " ")
        if not when:
            continue
        paths[when][str(line.get("decided_by") or ("error" if not line.get("ok") else "unknown"))] += 1
        cost, top = line.get("cost_usd"), line.get("premium_cost_usd")
        if cost is not None:
            spent[when] += cost
        # Savings count only calls priced both ways, so an unpriced model never shows as a saving.
        premium[when] += top if top is not None and cost is not None else cost or 0.0
    buckets = sorted(paths)
    names = sorted({p for c in paths.values() for p in c})
    return {
        "unit": {10: "day", 13: "hour", 16: "minute"}[width],
        "buckets": buckets,
        "spent": [round(spent[b], 6) for b in buckets],
        "premium": [round(premium[b], 6) for b in buckets],
        "paths": {n: [paths[b][n] for b in buckets] for n in names},
    }


def gather(call: Invocation) -> dict[str, Any]:
    """Everything the page shows, as plain data."""
    args, settings = call.args, call.settings
    log = settings.decision_log
    lines, skipped = read_log_counted(log) if log is not None and log.exists() else ([], 0)
    return {
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "eval": _load_json(args.eval, "delegate-mcp eval --json > eval.json"),
        "compare": _load_json(args.compare, "delegate-mcp compare ... --json > compare.json"),
        "shadow": shadow_verdicts(call.server.store),
        "usage": call.server.usage.snapshot(),
        "log": str(log) if log is not None else None,
        "log_skipped": skipped,
        "over_time": over_time(lines),
    }


def run(call: Invocation) -> int:
    """Write the report; say where on stderr."""
    try:
        from server.commands import report_charts as charts
    except ImportError as exc:
        raise ConfigError(
            f"the report draws its charts with matplotlib, which is not installed ({exc.name}): {EXTRA_HINT}. "
            "The text commands (eval, compare, stats) need none of it."
        ) from None
    from server.commands import report_page

    page = report_page.render(gather(call), charts)
    out: Path = call.args.out
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{out}: cannot write the report ({exc.__class__.__name__}); pass another --out.") from None
    print(f"wrote {out} ({len(page.encode()) / 1024:.0f} KiB): open it in a browser, or attach it", file=sys.stderr)
    return EXIT_OK


COMMAND = Command("report", add, run)

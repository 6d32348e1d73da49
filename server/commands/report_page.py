"""The report's one HTML page: inline CSS, inline SVG charts, every text escaped, nothing loaded from anywhere."""

from __future__ import annotations

from html import escape
from types import ModuleType
from typing import Any

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;margin:2rem auto;max-width:72rem;
padding:0 1rem;color:#1a202c;line-height:1.45}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;border-bottom:1px solid #e2e8f0;padding-bottom:.2rem;
margin-top:2rem}.muted{color:#718096}.charts{display:flex;flex-wrap:wrap;gap:1.5rem;align-items:flex-start}
.charts svg{max-width:100%;height:auto}table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border-bottom:1px solid #e2e8f0;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#f7fafc}.figures{display:flex;gap:2rem;flex-wrap:wrap}.figure b{display:block;font-size:1.3rem}
.empty{background:#f7fafc;border-left:3px solid #a0aec0;padding:.5rem .8rem}
"""


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _interval(bounds: list[float] | None) -> str:
    return "" if not bounds else f" (95% interval {bounds[0] * 100:.0f}–{bounds[1] * 100:.0f}%)"


def _usd(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.4f}"


def _empty(text: str) -> str:
    return f'<p class="empty">{escape(text)}</p>'


def _table(head: list[str], rows: list[list[Any]]) -> str:
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    shown = [["–" if c is None else str(c) for c in row] for row in rows]
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in shown)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def headline(usage: dict[str, Any]) -> str:
    """The store's totals (delegate://usage)."""
    figures = [
        ("calls", f"{usage.get('calls', 0):,}"),
        ("spent", _usd(usage.get("cost_usd"))),
        ("always-premium would have cost", _usd(usage.get("always_premium_usd"))),
        ("saved", f"{_usd(usage.get('saving_usd'))} ({_pct(usage.get('saving'))})"),
        ("errors", f"{usage.get('errors', 0):,}"),
    ]
    items = "".join(f'<div class="figure">{escape(name)}<b>{escape(value)}</b></div>' for name, value in figures)
    since = usage.get("since") or "the first call"
    return f'<div class="figures">{items}</div><p class="muted">Totals in the store since {escape(since)}.</p>'


def routing(summary: dict[str, Any] | None, charts: ModuleType) -> str:
    """Confusion matrix, reliability diagram and misroutes of a routing eval."""
    if summary is None:
        return _empty(
            "No routing eval given: run `delegate-mcp eval --json > eval.json`, then report --eval eval.json."
        )
    parts = [
        f"<p>{summary.get('tasks', 0)} labelled tasks, routed right: <b>{_pct(summary.get('accuracy'))}</b>"
        f"{_interval(summary.get('accuracy_interval'))}.</p>"
    ]
    shown = []
    if summary.get("confusion"):
        shown.append(charts.confusion(summary["confusion"]))
    calibration = (summary.get("classifier") or {}).get("calibration")
    if calibration and any(b.get("count") for b in calibration.get("bands", [])):
        shown.append(charts.reliability(calibration["bands"]))
    parts.append(f'<div class="charts">{"".join(shown)}</div>')
    misroutes = summary.get("misroutes") or []
    parts.append(f"<h3>Misroutes ({len(misroutes)})</h3>")
    if misroutes:
        rows = [
            [m.get("line"), m.get("task"), m.get("expected"), m.get("got"), m.get("decided_by"), m.get("confidence")]
            for m in misroutes[:MISROUTES_SHOWN]
        ]
        parts.append(_table(["line", "task", "expected", "routed to", "decided by", "confidence"], rows))
    else:
        parts.append("<p>None.</p>")
    return "".join(parts)


MISROUTES_SHOWN = 50


def compare(summary: dict[str, Any] | None, charts: ModuleType) -> str:
    """One quality-against-cost chart per specialist of a compare run, with its recommendation."""
    if summary is None:
        return _empty(
            "No compare run given: run `delegate-mcp compare ... --json > compare.json`, then "
            "report --compare compare.json."
        )
    parts = []
    for name, entry in (summary.get("specialists") or {}).items():
        found = entry.get("recommendation") or {}
        parts.append(f"<div>{charts.quality_cost(name, entry.get('models', []))}")
        parts.append(f"<p><b>Recommended: {escape(str(found.get('model')))}</b> — {escape(found.get('why', ''))}</p>")
        parts.append("</div>")
    spent = f'<p class="muted">{summary.get("tasks", 0)} tasks; the run spent {_usd(summary.get("spent_usd"))}.</p>'
    return spent + f'<div class="charts">{"".join(parts)}</div>'


def shadow(candidates: list[dict[str, Any]], charts: ModuleType) -> str:
    """The shadow runs' verdicts per candidate, or a note that there are none yet."""
    if not candidates:
        return _empty(
            "No shadow runs yet. Set DELEGATE_SHADOW (e.g. generalist=openai/gpt-5-nano@0.1) to sample calls."
        )
    sentences = "".join(f"<li>{escape(row['specialist'])}: {escape(row['sentence'])}</li>" for row in candidates)
    return f'<div class="charts">{charts.shadow(candidates)}</div><ul>{sentences}</ul>'


def spend(data: dict[str, Any], log: str | None, skipped: int, charts: ModuleType) -> str:
    """Spend, savings and calls over time, from the decision log."""
    if not data["buckets"]:
        where = f"the decision log {log} has no calls yet" if log else "the decision log is off (DELEGATE_LOG)"
        return _empty(f"No spend over time: {where}. Set DELEGATE_LOG=PATH to keep one line per call.")
    unit, buckets = data["unit"], data["buckets"]
    shown = [
        charts.spend(buckets, data["spent"], data["premium"], unit),
        charts.calls_by_path(buckets, data["paths"], unit),
    ]
    note = f" {skipped} malformed line(s) skipped." if skipped else ""
    return f'<div class="charts">{"".join(shown)}</div><p class="muted">From {escape(log or "")}.{escape(note)}</p>'


def render(data: dict[str, Any], charts: ModuleType) -> str:
    """The whole page."""
    sections = [
        ("Usage", headline(data["usage"])),
        ("Routing eval", routing(data["eval"], charts)),
        ("Quality against cost (compare)", compare(data["compare"], charts)),
        ("Shadow verdicts", shadow(data["shadow"], charts)),
        ("Spend and savings over time", spend(data["over_time"], data["log"], data["log_skipped"], charts)),
    ]
    body = "".join(f"<section><h2>{escape(title)}</h2>{html}</section>" for title, html in sections)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # No script, style or image may come from anywhere: the page is one file that opens offline.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        'img-src data:">'
        f"<title>delegate-mcp report</title><style>{CSS}</style></head><body>"
        f'<h1>delegate-mcp report</h1><p class="muted">Generated {escape(data["generated"])}.</p>{body}'
        "</body></html>\n"
    )

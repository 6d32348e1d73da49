"""Measures for a routing report: Wilson intervals, calibration (ECE, a reliability table), per-source lines."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from server.quality.stats import wilson

__all__ = ["calibration", "format_calibration", "format_sources", "interval", "pct", "task_head", "wilson"]

BANDS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
TASK_HEAD_CHARS = 80


def calibration(guesses: Sequence[tuple[float, bool]]) -> dict[str, Any]:
    """Expected calibration error and per-band reliability of (confidence, was right) pairs."""
    bands = []
    error = 0.0
    for low, high in itertools.pairwise(BANDS):
        inside = [(c, ok) for c, ok in guesses if low <= c < high or (high == 1.0 and c == 1.0)]
        if not inside:
            bands.append({"band": f"{low:.1f}-{high:.1f}", "count": 0, "mean_confidence": None, "accuracy": None})
            continue
        confidence = sum(c for c, _ in inside) / len(inside)
        accuracy = sum(ok for _, ok in inside) / len(inside)
        error += len(inside) / len(guesses) * abs(confidence - accuracy)
        bands.append(
            {
                "band": f"{low:.1f}-{high:.1f}",
                "count": len(inside),
                "mean_confidence": round(confidence, 4),
                "accuracy": round(accuracy, 4),
            }
        )
    return {"tasks": len(guesses), "ece": round(error, 4) if guesses else None, "bands": bands}


def task_head(task: str) -> str:
    """The start of a task on one line, enough to recognise it."""
    flat = " ".join(task.split())
    return flat if len(flat) <= TASK_HEAD_CHARS else flat[: TASK_HEAD_CHARS - 1] + "…"


def format_calibration(table: dict[str, Any]) -> list[str]:
    """The reliability table as report lines."""
    lines = [f"Classifier calibration ({table['tasks']} tasks, best guess whatever its confidence): ECE {table['ece']}"]
    lines.append("  confidence   count   mean conf   accuracy")
    for band in table["bands"]:
        if band["count"]:
            lines.append(
                f"  {band['band']:<11}{band['count']:>7}{band['mean_confidence'] * 100:>11.1f}%"
                f"{band['accuracy'] * 100:>10.1f}%"
            )
    return lines


def format_sources(sources: dict[str, Any]) -> list[str]:
    """Each source's figures as report lines (none when no task named its source)."""
    if not sources:
        return []
    lines = ["", "Per source:              tasks   accuracy   classifier: coverage   accuracy   95% interval"]
    for source, figures in sources.items():
        alone = figures["classifier"]
        lines.append(
            f"  {source:<22}{figures['tasks']:>7}{pct(figures['accuracy']):>11}{pct(alone['coverage']):>23}"
            f"{pct(alone['accuracy']):>11}" + interval(alone.get("accuracy_interval"))
        )
    return lines


def interval(bounds: list[float] | None) -> str:
    """A Wilson interval as report text (empty when there is none)."""
    return "" if bounds is None else f"   [{bounds[0] * 100:.1f}%, {bounds[1] * 100:.1f}%]"


def pct(value: float | None) -> str:
    """A ratio as a percentage, '-' when there is none."""
    return "-" if value is None else f"{value * 100:.1f}%"

"""The report's charts, drawn with matplotlib as inline SVG: no script, no font or file fetched, one HTML file.

Imported only by `delegate-mcp report`, and only after matplotlib was found (the `report` extra)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

STYLE = {
    "svg.fonttype": "none",  # text stays text (small, searchable); the page's CSS font stack draws it
    "svg.hashsalt": "delegate-mcp",  # the same data gives the same file (ids are otherwise random)
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
}
BLUE, ORANGE, GREEN, RED, GREY = "#2b6cb0", "#dd6b20", "#2f855a", "#c53030", "#a0aec0"
PATH_COLOURS = {
    "classifier": GREEN,
    "router": BLUE,
    "feedback": ORANGE,
    "default": GREY,
    "direct": "#6b46c1",
    "error": RED,
}


def svg(figure: Figure) -> str:
    """The figure as an <svg> element to put straight into the page (no XML prolog, no DOCTYPE)."""
    buffer = io.StringIO()
    figure.savefig(
        buffer,
        format="svg",
        bbox_inches="tight",
        metadata={"Date": None, "Creator": None, "Format": None, "Type": None},
    )
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _figure(width: float, height: float) -> tuple[Figure, Any]:
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(figsize=(width, height))
    return figure, axes


def confusion(matrix: dict[str, dict[str, int]]) -> str:
    """Expected specialist (rows) against the one routed to (columns), counts in the cells."""
    names = list(matrix)
    values = [[matrix[e].get(p, 0) for p in names] for e in names]
    with plt.rc_context(STYLE):
        figure, axes = _figure(1.2 + 0.9 * len(names), 1.0 + 0.75 * len(names))
        axes.imshow(values, cmap="Blues")
        axes.set_xticks(range(len(names)), names, rotation=30, ha="right")
        axes.set_yticks(range(len(names)), names)
        axes.set_xlabel("routed to")
        axes.set_ylabel("expected")
        top = max((v for row in values for v in row), default=0)
        for i, row in enumerate(values):
            for j, value in enumerate(row):
                axes.text(j, i, str(value), ha="center", va="center", color="white" if value > top / 2 else "black")
        axes.set_title("Routing: confusion matrix")
        return svg(figure)


def reliability(bands: Sequence[dict[str, Any]]) -> str:
    """Accuracy against mean confidence per confidence band; the diagonal is a perfectly calibrated router."""
    shown = [b for b in bands if b.get("count")]
    with plt.rc_context(STYLE):
        figure, axes = _figure(4.2, 3.4)
        axes.plot([0, 1], [0, 1], linestyle="--", color=GREY, label="perfect calibration")
        axes.plot(
            [b["mean_confidence"] for b in shown],
            [b["accuracy"] for b in shown],
            marker="o",
            color=BLUE,
            label="measured",
        )
        for b in shown:
            axes.annotate(
                f"n={b['count']}",
                (b["mean_confidence"], b["accuracy"]),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=7,
                color="#4a5568",
            )
        axes.set_xlim(0, 1.02)
        axes.set_ylim(0, 1.05)
        axes.set_xlabel("mean confidence in the band")
        axes.set_ylabel("share routed right")
        axes.set_title("Classifier: reliability diagram")
        axes.legend(loc="upper left", frameon=False)
        return svg(figure)


def quality_cost(name: str, models: Sequence[dict[str, Any]]) -> str:
    """Each model of one specialist: quality (checks passed, else judge wins or ties) against cost per 1,000
    tasks, with the 95% Wilson interval as an error bar."""
    with plt.rc_context(STYLE):
        figure, axes = _figure(5.0, 3.4)
        for index, model in enumerate(models):
            quality, interval = _quality(model)
            cost = model.get("cost_per_1k_tasks_usd")
            if quality is None:
                continue
            x = cost if cost is not None else 0.0
            low, high = interval or (quality, quality)
            axes.errorbar(
                [x],
                [quality],
                yerr=[[quality - low], [high - quality]],
                fmt="o",
                capsize=4,
                color=BLUE if cost is not None else GREY,
            )
            label = model["model"] + ("" if cost is not None else " (cost unknown)")
            # Alternate sides, so the labels of cheap models that sit close together do not overlap.
            axes.annotate(
                label, (x, quality), textcoords="offset points", xytext=(8, 4 if index % 2 == 0 else -10), fontsize=8
            )
        axes.set_ylim(0, 1.05)
        axes.set_xlabel("cost per 1,000 tasks (USD)")
        axes.set_ylabel("quality (95% interval)")
        axes.set_title(f"compare: {name}")
        axes.margins(x=0.25)
        return svg(figure)


def _quality(model: dict[str, Any]) -> tuple[float | None, list[float] | None]:
    """Checks passed when the tasks had checks; else the judge's wins and ties."""
    if model.get("pass_rate") is not None:
        return model["pass_rate"], model.get("pass_interval")
    judge = model.get("judge") or {}
    if judge.get("judged"):
        return (judge["wins"] + judge["ties"]) / judge["judged"], judge.get("win_or_tie_interval")
    return None, None


def shadow(candidates: Sequence[dict[str, Any]]) -> str:
    """Each shadow candidate's verdicts against the live model: wins, ties and losses, stacked."""
    names = [f"{row['specialist']} → {row['model']}" for row in candidates]
    with plt.rc_context(STYLE):
        figure, axes = _figure(5.6, 1.0 + 0.45 * len(names))
        left = [0] * len(names)
        for verdict, colour in (("wins", GREEN), ("ties", GREY), ("losses", RED)):
            values = [row[verdict] for row in candidates]
            axes.barh(names, values, left=left, color=colour, label=verdict)
            left = [a + b for a, b in zip(left, values, strict=True)]
        axes.invert_yaxis()
        axes.set_xlabel("sampled calls judged")
        axes.set_title("Shadow verdicts: the candidate against the live model")
        axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=3, frameon=False)
        return svg(figure)


def spend(days: Sequence[str], actual: Sequence[float], premium: Sequence[float], unit: str = "day") -> str:
    """Spend per day (or hour, minute) against what the same calls would have cost on the priciest model."""
    with plt.rc_context(STYLE):
        figure, axes = _figure(4.6, 3.0)
        axes.plot(days, premium, marker="o", color=ORANGE, label="always the priciest model")
        axes.plot(days, actual, marker="o", color=BLUE, label="spent (routed)")
        axes.fill_between(days, actual, premium, color=GREEN, alpha=0.15, label="saved")
        axes.set_ylabel(f"USD per {unit}")
        axes.set_title("Spend and savings")
        axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=3, frameon=False)
        axes.tick_params(axis="x", rotation=30)
        return svg(figure)


def calls_by_path(days: Sequence[str], counts: dict[str, Sequence[int]], unit: str = "day") -> str:
    """Calls per day (or hour, minute), stacked by how they were routed."""
    with plt.rc_context(STYLE):
        figure, axes = _figure(4.6, 3.0)
        bottom = [0] * len(days)
        for path, values in counts.items():
            axes.bar(days, values, bottom=bottom, label=path, color=PATH_COLOURS.get(path, GREY))
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        axes.set_ylabel("calls")
        axes.set_title(f"Calls per {unit}, by how they were routed")
        axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=3, frameon=False)
        axes.tick_params(axis="x", rotation=30)
        return svg(figure)

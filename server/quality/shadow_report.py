"""What shadow runs found, per candidate: samples, win / tie / loss with Wilson intervals, the cost against the
live model, and one plain sentence. `shadow_summary(store)` is the one entry point (stats, delegate://shadow and
the HTML report call it)."""

from __future__ import annotations

from typing import Any

from server.quality.stats import wilson
from server.store.base import Store
from server.store.shadow_book import ShadowBook

NOTE = (
    "A blind judge compared each sampled call's live answer with the candidate's, in both orders (a split verdict "
    "is a tie). matched_or_beat is (wins + ties) / samples, with its 95% Wilson interval. cost_ratio is the "
    "candidate's cost over the live answer's on the samples where both costs are known (null when none are). "
    "skipped_* count sampled calls not judged: busy (DELEGATE_SHADOW_CONCURRENCY), budget (the daily budget was "
    "tight), failed (the candidate or the judge failed)."
)

SHADOW_TEXT = (
    "What shadow runs (DELEGATE_SHADOW) found, per candidate model: sampled calls, win / tie / loss against the "
    "live answer by a blind two-order judge, with 95% intervals, the cost ratio, and one sentence. Shared by every "
    "server on the same store."
)


def _percent(share: float) -> str:
    return f"{share * 100:.0f}%"


def sentence(model: str, samples: int, matched: list[float] | None, share: float, ratio: float | None) -> str:
    """e.g. 'openai/gpt-5-nano matched or beat the live model on 91% (84-95%) of 212 sampled calls at 12% of the
    cost'."""
    if not samples or matched is None:
        return f"{model} has no judged sample yet."
    cost = f"at {_percent(ratio)} of the cost" if ratio is not None else "at a cost that is unknown (no price)"
    low, high = matched
    calls = "call" if samples == 1 else "calls"
    return (
        f"{model} matched or beat the live model on {_percent(share)} ({low * 100:.0f}-{_percent(high)}) "
        f"of {samples} sampled {calls} {cost}"
    )


def candidate_summary(key: str, counts: dict[str, float]) -> dict[str, Any]:
    """One candidate's figures from its counters."""
    specialist, _, model = key.partition("=")
    samples = round(counts.get("samples", 0))
    wins, ties, losses = (round(counts.get(name, 0)) for name in ("win", "tie", "loss"))
    live, candidate = counts.get("live_cost_usd", 0.0), counts.get("candidate_cost_usd", 0.0)
    ratio = round(candidate / live, 4) if counts.get("priced") and live > 0 else None
    share = (wins + ties) / samples if samples else 0.0
    matched = wilson(wins + ties, samples)
    return {
        "specialist": specialist,
        "model": model,
        "samples": samples,
        "wins": wins,
        "ties": ties,
        "losses": losses,
        "win_interval": wilson(wins, samples),
        "tie_interval": wilson(ties, samples),
        "loss_interval": wilson(losses, samples),
        "matched_or_beat": round(share, 4) if samples else None,
        "matched_or_beat_interval": matched,
        "cost_ratio": ratio,
        "priced_samples": round(counts.get("priced", 0)),
        "live_cost_usd": round(live, 8),
        "candidate_cost_usd": round(candidate, 8),
        "judge_cost_usd": round(counts.get("judge_cost_usd", 0.0), 8),
        "skipped_busy": round(counts.get("skipped_busy", 0)),
        "skipped_budget": round(counts.get("skipped_budget", 0)),
        "skipped_failed": round(counts.get("skipped_failed", 0)),
        "sentence": sentence(model, samples, matched, share, ratio),
    }


def shadow_summary(store: Store) -> dict[str, Any]:
    """Per candidate (keyed SPECIALIST=MODEL): samples, win/tie/loss with intervals, cost ratio and a sentence.
    Blocking (store I/O); the same on every server sharing the store."""
    totals = ShadowBook(store).totals()
    return {
        "candidates": {key: candidate_summary(key, counts) for key, counts in totals.items()},
        "note": NOTE,
    }


def format_shadow(summary: dict[str, Any]) -> str:
    """The summary for people: one block per candidate."""
    if not summary["candidates"]:
        return "No shadow verdicts yet. Set DELEGATE_SHADOW (e.g. generalist=openai/gpt-5-nano@0.1) to sample calls."
    blocks = []
    for row in summary["candidates"].values():

        def interval(name: str, row: dict[str, Any] = row) -> str:
            found = row[name]
            return f"{_percent(found[0])}-{_percent(found[1])}" if found else "-"

        skipped = f"skipped: {row['skipped_busy']} busy, {row['skipped_budget']} budget, {row['skipped_failed']} failed"
        blocks.append(
            f"{row['specialist']} → {row['model']}\n  {row['sentence']}.\n"
            f"  wins {row['wins']} ({interval('win_interval')}), ties {row['ties']} ({interval('tie_interval')}), "
            f"losses {row['losses']} ({interval('loss_interval')}); judge ${row['judge_cost_usd']:.4f}; {skipped}"
        )
    return "\n".join(blocks)

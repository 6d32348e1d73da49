"""The statistics of a bake-off: Wilson intervals, nearest-rank percentiles and an exact paired sign test."""

from __future__ import annotations

import math

ALPHA = 0.05
"""A model is significantly below the best when the sign test's one-sided p-value is under this."""
SIGN_TEST = "exact one-sided sign test on paired per-task scores (McNemar's exact test when every task is pass/fail)"


def wilson(hits: int, total: int, z: float = 1.96) -> list[float] | None:
    """The 95% Wilson score interval for a proportion, [low, high]; None when there is nothing to measure."""
    if total <= 0:
        return None
    share = hits / total
    spread = 1 + z * z / total
    centre = (share + z * z / (2 * total)) / spread
    half = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) / spread
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def percentile(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return round(ordered[rank - 1], 3)


def sign_test(worse: int, better: int) -> float:
    """One-sided exact p-value that a model is worse than another, from the tasks where their scores differ:
    the chance of at least `worse` losses in `worse + better` fair coin tosses. 1.0 when no task differs."""
    trials = worse + better
    if trials == 0 or worse == 0:
        return 1.0
    tail = sum(math.comb(trials, k) for k in range(worse, trials + 1))
    return min(1.0, tail / 2**trials)

"""The classifier's figures for docs/routing.md: both labelled sets with Wilson intervals, ECE, decision time
(per task, the best of RUNS runs: on a shared machine a single run measures the neighbours' work), the prior's
load, and start-up with and without the cached classifier.
Run: python bench/classifier_figures.py
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from server.catalog import load_catalog
from server.commands.calibration import calibration, wilson
from server.routing.classifier import Classifier
from server.routing.classifier_cache import load_or_train
from server.routing.lifecycle import classifier_text, training_examples
from server.routing.prior import shipped_prior
from server.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SETS = ("routing-eval.jsonl", "routing-eval-2.jsonl")
RUNS = 20
# The test specialists (the guards were chosen with them), and three written afterwards to check the guards on.
USERS = (
    (ROOT / "tests/data/user_specialists", ROOT / "tests/data/user_specialist_tasks.jsonl"),
    (ROOT / "bench/data/unseen_specialists", ROOT / "bench/data/unseen_specialist_tasks.jsonl"),
)


def read(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def report(name: str, classifier: Classifier, cases: list[dict[str, str]]) -> None:
    timings, decided, guesses = [], [], []
    for case in cases:
        text = classifier_text(case["task"], case.get("context", ""))
        runs = []
        for _ in range(RUNS):  # the best of RUNS: the decision's own cost, not the machine's other work
            started = time.perf_counter()
            decision = classifier.decide(text)
            runs.append((time.perf_counter() - started) * 1e6)
        timings.append(min(runs))
        if decision is not None:
            decided.append(decision.label == case["expected"])
        guess = classifier.predict(text)
        if guess is not None:
            guesses.append((guess.confidence, guess.label == case["expected"]))
    low, high = wilson(sum(decided), len(decided)) or [0.0, 0.0]
    print(
        f"{name:<34} decided {len(decided):>3}/{len(cases)} ({len(decided) / len(cases):.1%}) "
        f"accuracy {sum(decided)}/{len(decided)} ({sum(decided) / max(1, len(decided)):.1%}, 95% CI "
        f"{low:.1%}-{high:.1%})  ECE {calibration(guesses)['ece']}  decision p50 "
        f"{statistics.median(timings):.0f} us, p99 {percentile(timings, 0.99):.0f} us"
    )


@contextmanager
def timed(what: str) -> Iterator[None]:
    """Print how long the block took, wall clock and this process's CPU (the machine may be shared)."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    print(f"{what}: {(time.perf_counter() - wall) * 1000:.0f} ms ({(time.process_time() - cpu) * 1000:.0f} ms CPU)")


def main() -> None:
    threshold = Settings().classifier_threshold
    examples = training_examples(load_catalog({}), None)
    with timed("reading the prior (the first time in a process)"):
        shipped_prior()
    cache = Path(tempfile.mkdtemp())
    with timed("start-up, training the classifier"):
        builtin = load_or_train(examples, threshold, cache)
    with timed("start-up, loading the cached classifier"):
        load_or_train(examples, threshold, cache)
    for name in SETS:
        report(f"built-ins, {name}", builtin, read(ROOT / "specialists" / name))
    for folder, tasks in USERS:
        for user in sorted(folder.glob("*.md")):
            user_specialist(user, tasks, threshold)


def user_specialist(user: Path, tasks_file: Path, threshold: float) -> None:
    """One five-example user specialist beside the built-ins: its 20 unseen tasks, and the built-ins' sets."""
    folder = Path(tempfile.mkdtemp())
    for source in [*(ROOT / "specialists").glob("*.md"), user]:
        shutil.copy(source, folder)
    classifier = Classifier(training_examples(load_catalog({}, folder), None), threshold)
    tasks = [t for t in read(tasks_file) if t["expected"] == user.stem]
    decisions = [classifier.decide(t["task"]) for t in tasks]
    lost = sorted({d.label for d in decisions if d is not None and d.label != user.stem})
    print(
        f"+ {user.stem} (5 examples): of its {len(tasks)} tasks, "
        f"{sum(1 for d in decisions if d is not None and d.label != user.stem)} given to another specialist "
        f"({', '.join(lost) or 'none'}), {sum(d is None for d in decisions)} left to the router"
    )
    for name in SETS:
        report(f"+ {user.stem}, {name}", classifier, read(ROOT / "specialists" / name))


if __name__ == "__main__":
    main()

"""Another checkout's classifier on the same reported halves that `classifier_public.py measure` reports, per source.

  PYTHONPATH=/path/to/other/checkout python bench/classifier_baseline.py SOURCES.jsonl

It imports the classifier of whichever checkout is first on PYTHONPATH (main's, for "today" in docs/routing.md),
trains it on that checkout's built-in specialists and decides each task of the reported halves as the server does.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

from server.catalog import load_catalog
from server.commands.calibration import wilson
from server.routing.classifier import Classifier
from server.routing.lifecycle import training_examples
from server.settings import Settings

HERE = Path(__file__).resolve().parent.parent / "specialists"
OURS = {"ours-1": "routing-eval.jsonl", "ours-2": "routing-eval-2.jsonl"}
NOISY = "arena-hard"


def reported(task: str) -> bool:
    """The half of the tasks that figures are reported on (as classifier_public.py)."""
    return int(hashlib.sha256(task.encode()).hexdigest(), 16) % 2 == 1


def line(name: str, outcomes: list[tuple[bool, bool]]) -> str:
    """A source's row: tasks, coverage, accuracy on the decided ones with its Wilson interval."""
    decided = [right for taken, right in outcomes if taken]
    low, high = wilson(sum(decided), len(decided)) or [math.nan, math.nan]
    accuracy = sum(decided) / len(decided) if decided else math.nan
    return (
        f"| {name} | {len(outcomes)} | {len(decided) / len(outcomes):.1%} | {sum(decided)}/{len(decided)} = "
        f"{accuracy:.1%} | {low:.1%}-{high:.1%} |"
    )


def main(path: Path) -> None:
    rows = [json.loads(text) for text in path.read_text(encoding="utf-8").splitlines() if text.strip()]
    for source, name in OURS.items():
        lines = (HERE / name).read_text(encoding="utf-8").splitlines()
        rows += [{**json.loads(text), "source": source} for text in lines if text.strip()]
    threshold = Settings().classifier_threshold
    classifier = Classifier(training_examples(load_catalog({}), None), threshold)
    found: dict[str, list[tuple[bool, bool]]] = {}
    for row in rows:
        if reported(row["task"]):
            decision = classifier.decide(row["task"])
            right = decision is not None and decision.label == row["expected"]
            found.setdefault(row["source"], []).append((decision is not None, right))
    print(f"classifier of {sys.modules[Classifier.__module__].__file__}, threshold {threshold}")
    print("| source | tasks | decided | accuracy on those | 95% interval |\n|---|---|---|---|---|")
    for source in sorted(found):
        print(line(source, found[source]))
    public = {source: found[source] for source in found if not source.startswith("ours")}
    print(line("public total", [o for outcomes in public.values() for o in outcomes]))
    clean = [o for source, outcomes in public.items() if source != NOISY for o in outcomes]
    print(line(f"public total without {NOISY}", clean))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

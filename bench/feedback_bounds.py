"""How far one caller's corrections can move the classifier, before and after the bounds on feedback, measured.

N corrections send tasks like "Explain how glaciers form in the alps" to coder (as 30 cheap calls and 30 feedbacks
could). For each N the table shows where the classifier sends "Explain how glaciers form" and four other glacier
questions nobody corrected, "before" (every correction learned, no guard) and "after" (at most half a specialist's
built-in texts learned, and a decision the built-in examples' own model does not also rank first goes to the
router); and
the coverage/accuracy left on the shipped eval set, and the time one decision takes with the corrections present.
Run: python bench/feedback_bounds.py
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from server.catalog import load_catalog
from server.feedback import Correction
from server.routing.classifier import Classifier, SoftmaxRegression
from server.routing.lifecycle import classifier_text, training_examples
from server.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
ENDINGS = re.split(
    r"\|",
    "in the alps|over time|near the poles|so quickly|so slowly|from snow|and move|and melt|on mountains|in valleys|"
    "each winter|under pressure|in iceland|in canada|and retreat|and carve valleys|and calve|in antarctica|"
    "in greenland|and grow|and shrink|in detail|simply|for kids|for students|step by step|and why|and where|and when|"
    "today",
)
PROBES = [
    "Explain how glaciers form",
    "Why do glaciers move downhill?",
    "How does a glacier carve a valley?",
    "What makes glaciers retreat in a warmer climate?",
    "Describe how an ice age starts",
]


def before(corrections: list[Correction]) -> Classifier:
    """The classifier as it was: every correction a training text, none of them guarded."""
    catalog = load_catalog({})
    examples = {spec.name: [spec.description, *spec.examples] for spec in catalog}
    for correction in reversed(corrections):
        examples[correction.should_be].append(correction.task)
    return Classifier(examples, Settings().classifier_threshold)


def after(corrections: list[Correction]) -> Classifier:
    """The classifier now: corrections capped per specialist, and its decisions agreeing with the built-ins' model."""
    catalog = load_catalog({})
    builtin = SoftmaxRegression.train(training_examples(catalog, None)) if corrections else None
    examples = training_examples(catalog, None, corrections)
    return Classifier(examples, Settings().classifier_threshold, builtin=builtin)


def shown(classifier: Classifier, task: str) -> str:
    found = classifier.assess(task)
    if found.decision is None:
        return "router"
    return f"{found.decision.label} {found.decision.confidence:.2f}"


def main() -> None:
    shipped = [json.loads(line) for line in (ROOT / "specialists" / "routing-eval.jsonl").read_text().splitlines()]
    print(f"probes: {PROBES}")
    print(f"{'N':>3} {'version':<7} {'probes (decision and confidence, or router)':<90} {'eval cov/acc':>13} {'ms':>6}")
    for count in (0, 1, 10, 30):
        corrections = [
            Correction(f"c{i}", f"Explain how glaciers form {ending}", "generalist", "coder", False, time.time())
            for i, ending in enumerate(ENDINGS[:count])
        ]
        for name, build in (("before", before), ("after", after)):
            classifier = build(corrections)
            probes = ", ".join(shown(classifier, task) for task in PROBES)
            started = time.perf_counter()
            decided = [(classifier.decide(classifier_text(c["task"], "")), c["expected"]) for c in shipped]
            per_call = (time.perf_counter() - started) / len(shipped) * 1000
            taken = [d.label == expected for d, expected in decided if d is not None]
            figures = f"{len(taken) / len(shipped):.0%} / {sum(taken) / max(1, len(taken)):.1%}"
            print(f"{count:>3} {name:<7} {probes:<90} {figures:>13} {per_call:>6.2f}")


if __name__ == "__main__":
    main()

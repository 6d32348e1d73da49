"""How the classifier treats user specialists with few examples: each guard against claiming their tasks, measured.

The catalogue is the built-ins plus tests/data/user_specialists (translator, sql, legal: five examples each);
the tasks are tests/data/user_specialist_tasks.jsonl (20 per user specialist, none of them its examples).
For each guard the table shows, per user specialist, how many of its tasks the classifier gave to ANOTHER
specialist (the failure the guard exists to prevent), and the coverage/accuracy left on the shipped eval set
with those specialists present, and with the built-ins alone. Run: python bench/classifier_guard.py
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import server.routing.classifier as classifier_module
from server.catalog import load_catalog
from server.routing.classifier import Classifier, SoftmaxRegression
from server.routing.lifecycle import classifier_text, training_examples
from server.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
USER = ROOT / "tests" / "data" / "user_specialists"
MEASURED = ("legal", "sql", "translator")  # the guards were chosen on these three (the others: classifier_figures)
GUARDS = {  # name -> (GUARD_SHARE, GUARD_NEIGHBOURS, GUARD_TERMS); share > 1, 0 neighbours, terms < 0: guard off
    "none (threshold only)": (1.1, 0, -1),
    "prior-corrected share 0.35": (0.35, 0, -1),
    "prior-corrected share 0.2": (0.2, 0, -1),
    "nearest 8 texts": (1.1, 8, -1),
    "description terms 0": (1.1, 0, 0.0),
    "description terms 0.01": (1.1, 0, 0.01),
    "share 0.2 + nearest 5": (0.2, 5, -1),
    "share 0.2 + nearest 8": (0.2, 8, -1),
    "share 0.2 + nearest 8 + terms 0": (0.2, 8, 0.0),
    "share 0.2 + nearest 8 + terms 0.01 *": (0.2, 8, 0.01),
}


def read(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    for source in [*(ROOT / "specialists").glob("*.md"), *(USER / f"{name}.md" for name in MEASURED)]:
        shutil.copy(source, folder)
    mixed = training_examples(load_catalog({}, folder), None)
    builtin = training_examples(load_catalog({}), None)
    tasks = [t for t in read(ROOT / "tests" / "data" / "user_specialist_tasks.jsonl") if t["expected"] in MEASURED]
    shipped = read(ROOT / "specialists" / "routing-eval.jsonl")
    threshold = Settings().classifier_threshold
    mixed_model, builtin_model = SoftmaxRegression.train(mixed), SoftmaxRegression.train(builtin)
    users = sorted({t["expected"] for t in tasks})
    print(f"threshold {threshold}; user specialists {', '.join(users)} ({len(tasks)} tasks); shipped {len(shipped)}")
    print(
        f"{'guard':<36}"
        + "".join(f"{u + ' lost':>16}" for u in users)
        + f"{'user right':>12}"
        + f"{'shipped+user cov/acc':>24}{'built-ins cov/acc':>20}"
    )
    for name, (share, neighbours, terms) in GUARDS.items():
        classifier_module.GUARD_SHARE, classifier_module.GUARD_NEIGHBOURS = share, neighbours
        classifier_module.GUARD_TERMS = terms
        mixed_classifier = Classifier(mixed, threshold, mixed_model)
        lost = dict.fromkeys(users, 0)
        right = 0
        for task in tasks:
            decision = mixed_classifier.decide(task["task"])
            if decision is not None and decision.label != task["expected"]:
                lost[task["expected"]] += 1
            right += decision is not None and decision.label == task["expected"]
        cells = [f"{lost[u]:>11} / 20" for u in users]
        figures = []
        for model_examples, model in ((mixed, mixed_model), (builtin, builtin_model)):
            judge = Classifier(model_examples, threshold, model)
            decided = [(judge.decide(classifier_text(c["task"], c.get("context", ""))), c["expected"]) for c in shipped]
            taken = [d.label == expected for d, expected in decided if d is not None]
            figures.append(f"{len(taken) / len(shipped):.0%} / {sum(taken) / max(1, len(taken)):.1%}")
        print(f"{name:<36}" + "".join(cells) + f"{right:>12}" + f"{figures[0]:>24}{figures[1]:>20}")


if __name__ == "__main__":
    main()

"""The classifier on public instruction sets it never trained on, and the build of the prior it ships.

  python bench/classifier_public.py build SOURCES.jsonl     # writes server/routing/data/builtin-prior.json.gz
  python bench/classifier_public.py measure SOURCES.jsonl   # leave-one-source-out table (a few minutes)

SOURCES.jsonl comes from bench/classifier_sources.py (docs/routing.md says how). `measure` trains one prior per
held-out source (FastChat's two benches count as one source) on every other source and the built-ins' examples,
and runs the classifier as the server does on the held-out tasks; our own two labelled sets are measured with the
prior trained on every public source. Each task falls by a hash into a tuning half or a reported half: the
threshold that would reach 97% on the tuning halves is printed, and every figure comes from the reported halves.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from server.catalog import load_catalog
from server.commands.calibration import wilson
from server.delegation import training_examples
from server.routing.classifier import MIN_KNOWN_WORDS, Classifier, SoftmaxRegression
from server.routing.prior import PRIOR_FILE, Prior, save_prior, word_features
from server.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SCALE = 0.3  # the prior's weight against the catalogue model's; 0.2-0.5 measured, see docs/routing.md
CHARS = 600  # a task's first characters trained on: pasted code or text says little about the kind of work
SMALLEST = 0.005  # weights nearer zero are dropped from the shipped file


def group(source: str) -> str:
    return "fastchat" if source in ("mt-bench", "vicuna-bench") else source


def reported(task: str) -> bool:
    return int(hashlib.sha256(task.encode()).hexdigest(), 16) % 2 == 1


def train_prior(rows: Iterable[dict[str, str]], builtins: dict[str, list[str]]) -> Prior:
    """A prior trained on the public rows and the built-ins' own texts, small weights dropped."""
    examples = {name: list(texts) for name, texts in builtins.items()}
    for row in rows:
        examples[row["expected"]].append(row["task"][:CHARS])
    model = SoftmaxRegression.train(examples, word_features)
    data = model.to_json()
    weights = {n: {f: round(w, 4) for f, w in t.items() if abs(w) >= SMALLEST} for n, t in data["weights"].items()}
    used = {f for table in weights.values() for f in table}
    idf = {f: round(v, 4) for f, v in data["idf"].items() if f in used}
    descriptions = {name: texts[0] for name, texts in builtins.items()}
    return Prior(descriptions, idf, weights, SCALE)


def read(path: Path, source: str | None = None) -> list[dict[str, str]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [{**row, "source": source} for row in rows] if source else rows


def line(name: str, outcomes: list[tuple[bool, bool]]) -> str:
    """A source's row: tasks, coverage, accuracy on the decided ones with its Wilson interval."""
    decided = [right for taken, right in outcomes if taken]
    low, high = wilson(sum(decided), len(decided)) or [math.nan, math.nan]
    accuracy = sum(decided) / len(decided) if decided else math.nan
    return (
        f"| {name} | {len(outcomes)} | {len(decided) / len(outcomes):.1%} | {sum(decided)}/{len(decided)} = "
        f"{accuracy:.1%} | {low:.1%}-{high:.1%} |"
    )


def measure(path: Path) -> None:
    threshold = Settings().classifier_threshold
    builtins = training_examples(load_catalog({}), None)
    public = read(path)
    ours = [
        *read(ROOT / "specialists/routing-eval.jsonl", "ours-1"),
        *read(ROOT / "specialists/routing-eval-2.jsonl", "ours-2"),
    ]
    today = Classifier(builtins, threshold, prior=None)
    guesses: dict[str, list[tuple[str, str, float, str, str]]] = {"today": [], "prior": []}
    for fold in [*sorted({group(r["source"]) for r in public}), "ours"]:
        held = [r for r in public if group(r["source"]) == fold] if fold != "ours" else ours
        started = time.perf_counter()
        prior = train_prior([r for r in public if group(r["source"]) != fold], builtins)
        with_prior = Classifier(builtins, threshold, today.model, prior)
        print(f"fold {fold}: prior trained in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        for name, classifier in (("today", today), ("prior", with_prior)):
            for row in held:
                guess = classifier.predict(row["task"])
                known = guess is not None and guess.known_words >= MIN_KNOWN_WORDS
                label, confidence = (guess.label, guess.confidence) if guess and known else ("", -1.0)
                guesses[name].append((row["source"], row["expected"], confidence, label, row["task"]))
    for name, found in guesses.items():
        tuning = [(c, label == e) for s, e, c, label, t in found if not reported(t) and not s.startswith("ours")]
        tuned = next((x / 100 for x in range(50, 100) if _precision(tuning, x / 100) >= 0.97), None)
        print(f"\n{name}: threshold {threshold}; the threshold reaching 97% on the tuning halves: {tuned}")
        print("| source | tasks | decided | accuracy on those | 95% interval |\n|---|---|---|---|---|")
        kept = [(s, c >= threshold, label == e) for s, e, c, label, t in found if reported(t)]
        for source in sorted({s for s, _, _ in kept}):
            print(line(source, [(taken, right) for s, taken, right in kept if s == source]))
        print(line("public total", [(taken, right) for s, taken, right in kept if not s.startswith("ours")]))


def _precision(guesses: list[tuple[float, bool]], threshold: float) -> float:
    decided = [right for confidence, right in guesses if confidence >= threshold]
    return sum(decided) / len(decided) if decided else 0.0


def build(path: Path) -> None:
    builtins = training_examples(load_catalog({}), None)
    started = time.perf_counter()
    prior = train_prior(read(path), builtins)
    save_prior(prior)
    size = PRIOR_FILE.stat().st_size
    print(f"prior: {len(prior.idf)} features, {size / 1024:.0f} KiB, trained in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    {"build": build, "measure": measure}[sys.argv[1]](Path(sys.argv[2]))

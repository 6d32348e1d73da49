"""The classifier on public instruction sets it never trained on, and the build of the prior it ships.

  python bench/classifier_public.py build SOURCES.jsonl     # writes server/routing/data/builtin-prior.json.gz
  python bench/classifier_public.py tune SOURCES.jsonl      # the two models' weights, from the tuning halves
  python bench/classifier_public.py measure SOURCES.jsonl   # leave-one-source-out table (minutes per fold)

SOURCES.jsonl comes from bench/classifier_sources.py (docs/routing.md says how). `measure` trains one prior per
held-out source (a benchmark's parts, or a set and its translations, count as one source) on every other source
and the built-ins' examples, keeps it beside SOURCES.jsonl (folds/, reused while the sources and the training
options are unchanged), and runs the classifier as the server does on the held-out tasks; our own two labelled
sets are measured with the prior trained on every public source. Each task falls by a hash into a tuning half or
a reported half: `tune` and the threshold reaching 97% look only at the tuning halves, and every figure of
`measure` comes from the reported halves.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from server.catalog import load_catalog
from server.commands.calibration import wilson
from server.routing.classifier import MIN_KNOWN_WORDS, READ_CHARS, Classifier, SoftmaxRegression, features
from server.routing.lifecycle import training_examples
from server.routing.prior import PRIOR_FILE, Prior, load_prior, save_prior, word_features
from server.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SCALE = 0.35  # the prior's logits' weight; `tune` chose it with OWN_WEIGHT on the tuning halves (docs/routing.md)
OWN_WEIGHT = 0.5  # the catalogue model's logits' weight beside the prior
CHARS = 600  # a task's first characters trained on: pasted code or text says little about the kind of work
KEEP = 20000  # features kept in the shipped file, those whose weights differ most between labels
NOISY = {"arena-hard": "labels from an automatic categoriser; about a quarter of its misses are label noise"}


GROUPS = {"mt-bench": "fastchat", "vicuna-bench": "fastchat", "humaneval-x": "humaneval"}
VARIANT = "words_head_shape"  # names the prior's features in the folds' file names (experiments change them)


def group(source: str) -> str:
    """Sources held out together: one benchmark's parts, or a set and its translations."""
    return GROUPS.get(source, source.split("-")[0] if source.startswith("hellobench") else source)


def reported(task: str) -> bool:
    return int(hashlib.sha256(task.encode()).hexdigest(), 16) % 2 == 1


def train_prior(rows: Iterable[dict[str, str]], builtins: dict[str, list[str]], keep: int = KEEP) -> Prior:
    """A prior trained on the public rows and the built-ins' own texts, pruned to its `keep` weightiest features."""
    examples = {name: list(texts) for name, texts in builtins.items()}
    for row in rows:
        examples[row["expected"]].append(row["task"][:CHARS])
    model = SoftmaxRegression.train(examples, word_features)
    labels = tuple(model.labels)
    table = {f: (idf, *(model.weight(name, f) for name in labels)) for f, idf in model.tfidf.idf.items()}
    # A feature's logits are centred, so only the spread of its weights between labels counts.
    ranked = sorted(table, key=lambda f: (-(max(table[f][1:]) - min(table[f][1:])), f))
    kept = {f: table[f] for f in ranked[:keep]}
    return Prior(labels, tuple(builtins[name][0] for name in labels), kept, SCALE, OWN_WEIGHT)


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


def fold_prior(path: Path, fold: str, public: list[dict[str, str]], builtins: dict[str, list[str]]) -> Prior:
    """The prior trained without the fold's source, from folds/ when already trained on the same data."""
    rows = [r for r in public if group(r["source"]) != fold]
    digest = hashlib.sha256(json.dumps([rows, builtins, CHARS, KEEP, VARIANT]).encode()).hexdigest()[:12]
    cached = path.parent / "folds" / f"{fold}-{digest}.json.gz"
    prior = load_prior(cached)
    if prior is None:
        started = time.perf_counter()
        prior = train_prior(rows, builtins)
        save_prior(prior, cached)
        print(f"fold {fold}: prior trained in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return replace(prior, scale=SCALE, own_weight=OWN_WEIGHT)


def guesses(path: Path) -> dict[str, list[tuple[str, str, float, str, str]]]:
    """(source, expected, confidence, guess, task) of today's classifier and of the one with the prior; the
    confidence is -1 where the classifier would abstain at any threshold (too few known words, or the public sets
    prefer another specialist), so a task is decided at threshold t exactly when its confidence reaches t."""
    builtins = training_examples(load_catalog({}), None)
    public = read(path)
    ours = [
        *read(ROOT / "specialists/routing-eval.jsonl", "ours-1"),
        *read(ROOT / "specialists/routing-eval-2.jsonl", "ours-2"),
    ]
    today = Classifier(builtins, 0.0, prior=None)
    found: dict[str, list[tuple[str, str, float, str, str]]] = {"today": [], "prior": []}
    for fold in [*sorted({group(r["source"]) for r in public}), "ours"]:
        held = [r for r in public if group(r["source"]) == fold] if fold != "ours" else ours
        prior = fold_prior(path, fold if fold != "ours" else "none", public, builtins)
        with_prior = Classifier(builtins, 0.0, today.model, prior)
        for name, classifier in (("today", today), ("prior", with_prior)):
            for row in held:
                guess = classifier.decide(row["task"])
                label, confidence = (guess.label, guess.confidence) if guess else ("", -1.0)
                found[name].append((row["source"], row["expected"], confidence, label, row["task"]))
    return found


def components(path: Path) -> list[dict[str, Any]]:
    """Per held-out task: the catalogue model's logits, the fold prior's (scale 1), and the words known."""
    builtins = training_examples(load_catalog({}), None)
    public = read(path)
    ours = [
        *read(ROOT / "specialists/routing-eval.jsonl", "ours-1"),
        *read(ROOT / "specialists/routing-eval-2.jsonl", "ours-2"),
    ]
    today = Classifier(builtins, 0.75, prior=None)
    found: list[dict[str, Any]] = []
    for fold in [*sorted({group(r["source"]) for r in public}), "ours"]:
        held = [r for r in public if group(r["source"]) == fold] if fold != "ours" else ours
        trained = fold_prior(path, fold if fold != "ours" else "none", public, builtins)
        prior = replace(trained, scale=1.0, own_weight=1.0)
        for row in held:
            vector, own = today.model.read(features(row["task"][:READ_CHARS]))
            reading = prior.read(row["task"])
            known = reading.known.union(f for f in vector if f.startswith("w:"))
            found.append({**row, "catalogue": own, "prior": reading.logits, "known": len(known)})
    return found


def tune(path: Path) -> None:
    """The weights of the two models, chosen on the tuning halves only: the pair that decides the most public tasks
    at the default threshold while 97% of them are right, every source counted (the noisy ones too), and 97% of
    those it decides on our first set (on which the threshold and the guards were always chosen) too."""
    threshold = Settings().classifier_threshold
    rows = components(path)
    found = [r for r in rows if not r["source"].startswith("ours") and not reported(str(r["task"]))]
    clean = [r for r in found if r["source"] not in NOISY]
    first = [r for r in rows if r["source"] == "ours-1"]
    grid = [(own, scale) for own in (0.5, 0.6, 0.7, 0.8, 1.0) for scale in (0.2, 0.25, 0.3, 0.35, 0.4, 0.5)]
    print("| catalogue | prior | decided | right | noisy aside: decided | right | ours-1: decided | right |")
    print("|---|---|---|---|---|---|---|---|")
    best = None
    for own, scale in grid:
        every, kept, ours = (_outcome(group, own, scale, threshold) for group in (found, clean, first))
        print(
            f"| {own} | {scale} | {every[0]:.1%} | {every[1]:.1%} | {kept[0]:.1%} | {kept[1]:.1%} | {ours[0]:.1%} "
            f"| {ours[1]:.1%} |"
        )
        if every[1] >= 0.97 and ours[1] >= 0.97 and (best is None or every[0] > best[0]):
            best = (every[0], own, scale)
    print(f"chosen (catalogue weight, prior weight): {best[1:] if best else None}")


def _outcome(rows: list[dict[str, Any]], own: float, scale: float, threshold: float) -> tuple[float, float]:
    """Coverage and accuracy of the blended models on component rows, as Classifier.assess decides."""
    decided = right = 0
    for row in rows:
        mine, prior = row["catalogue"], row["prior"]
        logits = {name: own * z + scale * prior.get(name, 0.0) for name, z in mine.items()}
        top = max(logits.values())
        total = sum(math.exp(z - top) for z in logits.values())
        best = max(logits, key=logits.__getitem__)
        agree = not prior or max(prior, key=prior.__getitem__) == best  # as Classifier's _dissent, for a built-in
        if row["known"] >= MIN_KNOWN_WORDS and 1 / total >= threshold and agree:
            decided += 1
            right += best == row["expected"]
    return decided / len(rows), right / decided if decided else 0.0


def measure(path: Path) -> None:
    threshold = Settings().classifier_threshold
    for name, found in guesses(path).items():
        tuning = [(c, label == e) for s, e, c, label, t in found if not reported(t) and not s.startswith("ours")]
        tuned = next((x / 100 for x in range(50, 100) if _precision(tuning, x / 100) >= 0.97), None)
        print(f"\n{name}: threshold {threshold}; the threshold reaching 97% on the tuning halves: {tuned}")
        print("| source | tasks | decided | accuracy on those | 95% interval |\n|---|---|---|---|---|")
        kept = [(s, c >= threshold, label == e) for s, e, c, label, t in found if reported(t)]
        for source in sorted({s for s, _, _ in kept}):
            print(line(source, [(taken, right) for s, taken, right in kept if s == source]))
        print(line("public total", [(taken, right) for s, taken, right in kept if not s.startswith("ours")]))
        clean = [(taken, right) for s, taken, right in kept if not s.startswith("ours") and s not in NOISY]
        print(line("public total without " + ", ".join(NOISY), clean))


def _precision(guesses: list[tuple[float, bool]], threshold: float) -> float:
    decided = [right for confidence, right in guesses if confidence >= threshold]
    return sum(decided) / len(decided) if decided else 0.0


def build(path: Path) -> None:
    builtins = training_examples(load_catalog({}), None)
    started = time.perf_counter()
    prior = train_prior(read(path), builtins)
    save_prior(prior)
    size = PRIOR_FILE.stat().st_size
    took = time.perf_counter() - started
    print(f"prior: {len(prior.table)} features, {size / 1024:.0f} KiB, trained in {took:.1f} s")


if __name__ == "__main__":
    {"build": build, "measure": measure, "tune": tune}[sys.argv[1]](Path(sys.argv[2]))

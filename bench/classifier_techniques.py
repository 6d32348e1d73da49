"""Compare classifier techniques on the shipped eval set: coverage and accuracy at several thresholds.

Trains on the built-in specialists' descriptions and examples only (disjoint from the eval set), then
reports on specialists/routing-eval.jsonl. Run: python bench/classifier_techniques.py
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

from server.catalog import load_catalog
from server.routing.classifier import MIN_KNOWN_WORDS, SoftmaxRegression, features
from server.routing.lifecycle import classifier_text, training_examples

ROOT = Path(__file__).resolve().parent.parent
THRESHOLDS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.9)
Scorer = Callable[[str], tuple[str, float, int]]


def naive_bayes(examples: dict[str, list[str]], smoothing: float = 0.3, temperature: float = 4.0) -> Scorer:
    """Multinomial naive Bayes with a uniform prior and a softening temperature on the log-likelihoods."""
    counts = {label: Counter(f for t in texts for f in features(t)) for label, texts in examples.items()}
    vocabulary = set().union(*counts.values())
    totals = {label: sum(c.values()) + smoothing * len(vocabulary) for label, c in counts.items()}

    def score(text: str) -> tuple[str, float, int]:
        known = [f for f in features(text) if f in vocabulary]
        if not known:
            return "", 0.0, 0
        logs = {
            label: sum(math.log((counts[label][f] + smoothing) / totals[label]) for f in known) / temperature
            for label in counts
        }
        top = max(logs.values())
        exp = {label: math.exp(v - top) for label, v in logs.items()}
        best = max(exp, key=lambda label: exp[label])
        return best, exp[best] / sum(exp.values()), sum(1 for f in known if f.startswith("w:"))

    return score


def softmax_regression(examples: dict[str, list[str]]) -> Scorer:
    """The shipped technique (server/classifier.py)."""
    model = SoftmaxRegression.train(examples)

    def score(text: str) -> tuple[str, float, int]:
        prediction = model.predict(text)
        return (prediction.label, prediction.confidence, prediction.known_words) if prediction else ("", 0.0, 0)

    return score


def _tfidf(examples: dict[str, list[str]]) -> Callable[[str], dict[str, float]]:
    docs = [features(t) for texts in examples.values() for t in texts]
    df = Counter(f for doc in docs for f in set(doc))
    idf = {f: math.log((1 + len(docs)) / (1 + n)) + 1 for f, n in df.items()}

    def vector(text: str) -> dict[str, float]:
        counts = Counter(f for f in features(text) if f in idf)
        vec = {f: (1 + math.log(c)) * idf[f] for f, c in counts.items()}
        norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
        return {f: v / norm for f, v in vec.items()}

    return vector


def centroid(examples: dict[str, list[str]]) -> Scorer:
    vector = _tfidf(examples)
    centroids = {}
    for label, texts in examples.items():
        total: dict[str, float] = defaultdict(float)
        for text in texts:
            for f, v in vector(text).items():
                total[f] += v
        norm = math.sqrt(sum(v * v for v in total.values())) or 1.0
        centroids[label] = {f: v / norm for f, v in total.items()}

    def score(text: str) -> tuple[str, float, int]:
        vec = vector(text)
        sims = {label: sum(v * c.get(f, 0.0) for f, v in vec.items()) for label, c in centroids.items()}
        exp = {label: math.exp(10 * s) for label, s in sims.items()}  # softmax with a fixed temperature
        best = max(exp, key=lambda label: exp[label])
        return best, exp[best] / sum(exp.values()), sum(1 for f in vec if f.startswith("w:"))

    return score


def cross_validated_precision(examples: dict[str, list[str]], folds: int = 5) -> None:
    """Choose the threshold without the eval set: precision and coverage of the shipped technique in k-fold CV."""
    pairs = [(text, label) for label, texts in examples.items() for text in texts[1:]]  # [0] is the description
    random.Random(1).shuffle(pairs)
    scored = []
    for fold in range(folds):
        test = pairs[fold::folds]
        train: dict[str, list[str]] = {label: [texts[0]] for label, texts in examples.items()}
        for text, label in pairs:
            if (text, label) not in test:
                train[label].append(text)
        model = softmax_regression(train)
        scored += [(model(text), label) for text, label in test]
    cells = []
    for threshold in THRESHOLDS:
        taken = [
            (got == label) for (got, conf, known), label in scored if conf >= threshold and known >= MIN_KNOWN_WORDS
        ]
        cells.append(f"{threshold}: {len(taken) / len(scored):.0%} / {sum(taken) / max(1, len(taken)):.1%}")
    print(f"{folds}-fold CV on the training examples (softmax regression): " + "   ".join(cells))


def main() -> None:
    catalog = load_catalog({})
    examples = training_examples(catalog, None)
    cases = [
        json.loads(line)
        for line in (ROOT / "specialists" / "routing-eval.jsonl").read_text().splitlines()
        if line.strip()
    ]
    texts = [classifier_text(c["task"], c.get("context", "")) for c in cases]
    print(f"training examples: {sum(len(v) for v in examples.values())}; eval tasks: {len(cases)}")
    print(f"{'technique':<22}{'build ms':>9}{'p50 us':>8}{'all acc':>8}   threshold: coverage / accuracy")
    for name, build in (
        ("naive Bayes", naive_bayes),
        ("TF-IDF centroid", centroid),
        ("softmax regression *", softmax_regression),
    ):
        started = time.perf_counter()
        scorer = build(examples)
        build_ms = (time.perf_counter() - started) * 1000
        timings, scored = [], []
        for text in texts:
            t0 = time.perf_counter()
            scored.append(scorer(text))
            timings.append((time.perf_counter() - t0) * 1e6)
        right = [label == c["expected"] for (label, _, _), c in zip(scored, cases, strict=True)]
        cells = []
        for threshold in THRESHOLDS:
            taken = [
                ok
                for (label, conf, known), ok in zip(scored, right, strict=True)
                if conf >= threshold and known >= MIN_KNOWN_WORDS
            ]
            acc = sum(taken) / len(taken) if taken else float("nan")
            cells.append(f"{threshold}: {len(taken) / len(cases):.0%} / {acc:.1%}")
        print(
            f"{name:<22}{build_ms:>9.1f}{sorted(timings)[len(timings) // 2]:>8.0f}{sum(right) / len(right):>8.1%}   "
            + "   ".join(cells)
        )
    cross_validated_precision(examples)


if __name__ == "__main__":
    main()

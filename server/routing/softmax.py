"""The catalogue model: softmax (multinomial logistic) regression over TF-IDF-weighted word unigrams, word bigrams
and character 3-5-grams, trained from each specialist's description and examples; its features, and its predictions."""

from __future__ import annotations

import functools
import itertools
import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter, mul
from typing import Any

_WORD = re.compile(r"[a-z0-9_#+]+(?:['.][a-z0-9_]+)*|[{}()\[\];=<>:!$`|\\/*&^%@~-]{1,3}")
EPOCHS = 10
LEARNING_RATE = 2.0
L2 = 1e-4
FORMAT = 2  # bump when features or training change: cached weights of another format are retrained


def features(text: str) -> list[str]:
    """Word unigrams and bigrams, and character 3-5-grams inside words (robust to typos and inflections)."""
    words = _WORD.findall(text.lower())
    found = [f"w:{w}" for w in words]
    found += [f"b:{a} {b}" for a, b in itertools.pairwise(words)]
    for word in words:
        if word.isalpha() and len(word) > 3:
            found += _grams(word)
    return found


@functools.lru_cache(maxsize=32768)
def _grams(word: str) -> tuple[str, ...]:
    """A word's character 3-5-grams, padded; cached, since most words of a task were seen in earlier tasks."""
    padded = f" {word} "
    return tuple(f"c:{padded[i : i + n]}" for n in (3, 4, 5) for i in range(len(padded) - n + 1))


def heaviest_words(text: str, pull: Mapping[str, float], count: int = 5) -> list[tuple[str, float]]:
    """The task's words (and word pairs) that pulled hardest towards the winner; a word owns its 3-5-grams."""
    words = _WORD.findall(text.lower())
    totals: dict[str, float] = defaultdict(float)
    for word in set(words):
        totals[word] += pull.get(f"w:{word}", 0.0)
        if word.isalpha() and len(word) > 3:
            padded = f" {word} "
            grams = {padded[i : i + n] for n in (3, 4, 5) for i in range(len(padded) - n + 1)}
            totals[word] += sum(pull.get(f"c:{gram}", 0.0) for gram in grams)
    for a, b in set(itertools.pairwise(words)):
        totals[f"{a} {b}"] += pull.get(f"b:{a} {b}", 0.0)
    return sorted(totals.items(), key=lambda item: -item[1])[:count]


@dataclass(frozen=True)
class Prediction:
    """A label with the classifier's probability for it, 0 to 1, and how many known words it saw."""

    label: str
    confidence: float
    known_words: int
    runner_up: str | None = None
    runner_up_confidence: float = 0.0
    top_features: tuple[str, ...] = ()
    """The words of the task that weighed most towards the label against the runner-up."""


class TfIdf:
    """Sublinear TF-IDF vectors, L2-normalised, over the training vocabulary."""

    def __init__(self, idf: dict[str, float]) -> None:
        self.idf = idf

    @classmethod
    def fit(cls, documents: list[list[str]]) -> TfIdf:
        """Inverse document frequencies of the training documents' features."""
        frequency = Counter(f for doc in documents for f in set(doc))
        total = len(documents)
        return cls({f: math.log((1 + total) / (1 + n)) + 1 for f, n in frequency.items()})

    def vector(self, found: list[str]) -> dict[str, float]:
        """The normalised vector of a document's features (unknown features are dropped)."""
        idf = self.idf
        counts = Counter(filter(idf.__contains__, found))
        # (1 + log 1) * idf is idf exactly: most features occur once, and the logarithm is the costly part.
        weights = {f: idf[f] if c == 1 else (1 + math.log(c)) * idf[f] for f, c in counts.items()}
        values = list(weights.values())
        norm = math.sqrt(sum(map(mul, values, values))) or 1.0
        return {f: w / norm for f, w in weights.items()}


class SoftmaxRegression:
    """Multinomial logistic regression trained by a few epochs of SGD (deterministic: fixed seed)."""

    def __init__(self, labels: list[str], tfidf: TfIdf, weights: dict[str, dict[str, float]]) -> None:
        self.labels = labels
        self.tfidf = tfidf
        self._weights = weights
        # Each feature's IDF and weights in one row: a decision looks a feature up once, not once per label.
        self._rows = {f: (idf, *(weights[label].get(f, 0.0) for label in labels)) for f, idf in tfidf.idf.items()}

    @classmethod
    def train(
        cls, examples: Mapping[str, Iterable[str]], featurise: Callable[[str], list[str]] | None = None
    ) -> SoftmaxRegression:
        """Fit the model to labelled texts (features() unless another feature function is given)."""
        featurise = featurise or features
        documents = [(featurise(text), label) for label, texts in examples.items() for text in texts]
        tfidf = TfIdf.fit([found for found, _ in documents])
        labels = sorted(examples)
        # Weights in flat lists indexed by feature number: the same arithmetic as dictionaries, twice as fast.
        index: dict[str, int] = {}
        data = []
        for found, label in documents:
            vector = tfidf.vector(found)
            data.append(([index.setdefault(f, len(index)) for f in vector], list(vector.values()), label))
        tables = {label: [0.0] * len(index) for label in labels}
        rng = random.Random(0)
        for epoch in range(EPOCHS):
            rng.shuffle(data)
            rate = LEARNING_RATE / (1 + 0.1 * epoch)
            for slots, values, label in data:
                pairs = list(zip(slots, values, strict=True))
                logits = {name: sum(map(mul, map(table.__getitem__, slots), values)) for name, table in tables.items()}
                top = max(logits.values())
                exps = {name: math.exp(z - top) for name, z in logits.items()}
                total = sum(exps.values())
                for name, table in tables.items():
                    gradient = exps[name] / total - (1.0 if name == label else 0.0)
                    for i, v in pairs:
                        old = table[i]
                        table[i] = old - rate * (gradient * v + L2 * old)
        names = list(index)
        return cls(labels, tfidf, {label: dict(zip(names, table, strict=True)) for label, table in tables.items()})

    def read(self, found: list[str]) -> tuple[dict[str, float], dict[str, float]]:
        """tfidf.vector(found) and its logits() in one pass (the same numbers, a third of the lookups)."""
        rows = self._rows
        counts = Counter(filter(rows.__contains__, found))
        keys = list(counts)
        got = list(map(rows.__getitem__, keys))
        weights = [r[0] if c == 1 else (1 + math.log(c)) * r[0] for r, c in zip(got, counts.values(), strict=True)]
        norm = math.sqrt(sum(map(mul, weights, weights))) or 1.0
        values = [w / norm for w in weights]
        logits = {name: sum(map(mul, map(itemgetter(k), got), values)) for k, name in enumerate(self.labels, 1)}
        return dict(zip(keys, values, strict=True)), logits

    def logits(self, vector: dict[str, float]) -> dict[str, float]:
        """Each label's score for a vector."""
        keys, values = list(vector), list(vector.values())
        return {name: sum(map(mul, map(w.get, keys, repeat(0.0)), values)) for name, w in self._weights.items()}

    def probabilities(self, vector: dict[str, float], shift: Mapping[str, float] | None = None) -> dict[str, float]:
        """Softmax of the logits, each first moved by `shift` (a log-prior correction) when given."""
        logits = self.logits(vector)
        if shift:
            logits = {name: z + shift.get(name, 0.0) for name, z in logits.items()}
        top = max(logits.values())
        exps = {name: math.exp(z - top) for name, z in logits.items()}
        total = sum(exps.values())
        return {name: e / total for name, e in exps.items()}

    def weight(self, label: str, feature: str) -> float:
        """A feature's learned weight for a label."""
        return self._weights[label].get(feature, 0.0)

    def predict(self, text: str, explain: bool = False) -> Prediction | None:
        """The most probable label, or None when the text has no known feature; explain adds the heaviest words."""
        return self.predict_vector(self.tfidf.vector(features(text)), text, explain)

    def predict_vector(self, vector: dict[str, float], text: str, explain: bool = False) -> Prediction | None:
        """predict() for a vector already computed from `text`."""
        if not vector or not self.labels:
            return None
        probabilities = self.probabilities(vector)
        ranked = sorted(probabilities, key=lambda name: -probabilities[name])
        best = ranked[0]
        second = ranked[1] if len(ranked) > 1 else None
        top: tuple[str, ...] = ()
        if explain:
            pull = {
                f: v * (self.weight(best, f) - (self.weight(second, f) if second else 0.0)) for f, v in vector.items()
            }
            top = tuple(word for word, weight in heaviest_words(text, pull) if weight > 0)
        return Prediction(
            best,
            probabilities[best],
            sum(1 for f in vector if f.startswith("w:")),
            second,
            probabilities[second] if second else 0.0,
            top,
        )

    def to_json(self) -> dict[str, Any]:
        """The trained state as plain JSON data (small weights dropped)."""
        weights = {
            label: {f: round(w, 6) for f, w in table.items() if abs(w) >= 1e-6}
            for label, table in self._weights.items()
        }
        return {"format": FORMAT, "labels": self.labels, "idf": self.tfidf.idf, "weights": weights}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SoftmaxRegression:
        """Rebuild a model from to_json() data; ValueError when it is not such data."""
        try:
            if data["format"] != FORMAT:
                raise ValueError("another format")
            labels = [str(label) for label in data["labels"]]
            idf = {str(f): float(v) for f, v in data["idf"].items()}
            weights = {str(label): {str(f): float(w) for f, w in data["weights"][label].items()} for label in labels}
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a classifier state ({exc.__class__.__name__})") from None
        return cls(labels, TfIdf(idf), weights)

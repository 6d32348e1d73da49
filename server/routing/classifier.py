"""The embedded classifier: routes confident cases in well under a millisecond, with no model download or API call.

Softmax (multinomial logistic) regression over TF-IDF-weighted word unigrams, word bigrams and character
3-5-grams, trained from each specialist's description and examples. It abstains (returns None) unless its
probability reaches the threshold and the task shares enough vocabulary with what it learned.
bench/classifier_techniques.py compares it with naive Bayes and nearest-centroid on the shipped eval set.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_WORD = re.compile(r"[a-z0-9_#+]+(?:['.][a-z0-9_]+)*|[{}()\[\];=<>:!$`|\\/*&^%@~-]{1,3}")
MIN_KNOWN_WORDS = 3  # a task with fewer words the classifier has seen is too short or too foreign to judge
EPOCHS = 10
LEARNING_RATE = 2.0
L2 = 1e-4


def features(text: str) -> list[str]:
    """Word unigrams and bigrams, and character 3-5-grams inside words (robust to typos and inflections)."""
    words = _WORD.findall(text.lower())
    found = [f"w:{w}" for w in words]
    found += [f"b:{a} {b}" for a, b in itertools.pairwise(words)]
    for word in words:
        if word.isalpha() and len(word) > 3:
            padded = f" {word} "
            found += [f"c:{padded[i : i + n]}" for n in (3, 4, 5) for i in range(len(padded) - n + 1)]
    return found


@dataclass(frozen=True)
class Prediction:
    """A label with the classifier's probability for it, 0 to 1, and how many known words it saw."""

    label: str
    confidence: float
    known_words: int


class TfIdf:
    """Sublinear TF-IDF vectors, L2-normalised, over the training vocabulary."""

    def __init__(self, documents: list[list[str]]) -> None:
        frequency = Counter(f for doc in documents for f in set(doc))
        total = len(documents)
        self.idf = {f: math.log((1 + total) / (1 + n)) + 1 for f, n in frequency.items()}

    def vector(self, found: list[str]) -> dict[str, float]:
        """The normalised vector of a document's features (unknown features are dropped)."""
        counts = Counter(f for f in found if f in self.idf)
        weights = {f: (1 + math.log(c)) * self.idf[f] for f, c in counts.items()}
        norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
        return {f: w / norm for f, w in weights.items()}


class SoftmaxRegression:
    """Multinomial logistic regression trained by a few epochs of SGD (deterministic: fixed seed)."""

    def __init__(self, examples: Mapping[str, Iterable[str]]) -> None:
        self.labels = sorted(examples)
        documents = [(features(text), label) for label, texts in examples.items() for text in texts]
        self._tfidf = TfIdf([found for found, _ in documents])
        data = [(self._tfidf.vector(found), label) for found, label in documents]
        self._weights: dict[str, dict[str, float]] = {label: {} for label in self.labels}
        rng = random.Random(0)
        for epoch in range(EPOCHS):
            rng.shuffle(data)
            rate = LEARNING_RATE / (1 + 0.1 * epoch)
            for vector, label in data:
                probabilities = self._probabilities(vector)
                for name, weights in self._weights.items():
                    gradient = probabilities[name] - (1.0 if name == label else 0.0)
                    for feature, value in vector.items():
                        old = weights.get(feature, 0.0)
                        weights[feature] = old - rate * (gradient * value + L2 * old)

    def _probabilities(self, vector: dict[str, float]) -> dict[str, float]:
        logits = {name: sum(w.get(f, 0.0) * v for f, v in vector.items()) for name, w in self._weights.items()}
        top = max(logits.values())
        exps = {name: math.exp(z - top) for name, z in logits.items()}
        total = sum(exps.values())
        return {name: e / total for name, e in exps.items()}

    def predict(self, text: str) -> Prediction | None:
        """The most probable label, or None when the text has no known feature."""
        vector = self._tfidf.vector(features(text))
        if not vector or not self.labels:
            return None
        probabilities = self._probabilities(vector)
        best = max(probabilities, key=lambda name: probabilities[name])
        return Prediction(best, probabilities[best], sum(1 for f in vector if f.startswith("w:")))


class Classifier:
    """Decides alone when confident; otherwise abstains so the router model decides."""

    def __init__(self, examples: Mapping[str, Iterable[str]], threshold: float) -> None:
        self.threshold = threshold
        self._model = SoftmaxRegression(examples)

    def decide(self, text: str) -> Prediction | None:
        """A confident prediction, or None to abstain."""
        prediction = self._model.predict(text)
        if prediction is None or prediction.known_words < MIN_KNOWN_WORDS:
            return None
        return prediction if prediction.confidence >= self.threshold else None

    def predict(self, text: str) -> Prediction | None:
        """The best guess whatever its confidence (for evaluation)."""
        return self._model.predict(text)

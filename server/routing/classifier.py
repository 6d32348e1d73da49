"""The embedded classifier: routes confident cases in well under a millisecond, with no model download or API call.

Softmax (multinomial logistic) regression over TF-IDF-weighted word unigrams, word bigrams and character
3-5-grams, trained from each specialist's description and examples. It abstains (returns None) unless its
probability reaches the threshold and the task shares enough vocabulary with what it learned.

A specialist with fewer than MIN_EXAMPLES training texts is under-trained: a handful of examples cannot show
a bag-of-words model where its work ends, and the specialists with a hundred examples own its vocabulary.
The classifier never decides for it, and abstains on any task that could be its work: when, with every
specialist given the same prior (logit adjustment for the unequal example counts), it would get at least
GUARD_SHARE of the probability; when the task uses a word of its description that the other specialists'
texts (almost) never use; or when one of its texts is among the task's GUARD_NEIGHBOURS nearest. The router
model, which reads every description, then decides. bench/classifier_guard.py measures each guard.
"""

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
from operator import mul
from typing import Any, Literal

from server.routing.guards import Neighbours, distinctive_terms, stems
from server.routing.prior import Prior, Reading, shipped_prior

_WORD = re.compile(r"[a-z0-9_#+]+(?:['.][a-z0-9_]+)*|[{}()\[\];=<>:!$`|\\/*&^%@~-]{1,3}")
MIN_KNOWN_WORDS = 3  # a task with fewer words the classifier has seen is too short or too foreign to judge
MIN_EXAMPLES = 20  # training texts (description, examples, corrections) a specialist needs to be decided alone
GUARD_SHARE = 0.2  # prior-corrected probability of an under-trained specialist that makes the classifier abstain
GUARD_NEIGHBOURS = 8  # nearest training texts searched for an under-trained specialist's
GUARD_TERMS = 0.01  # a description word found in at most this share of other specialists' texts is distinctive
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


@dataclass(frozen=True)
class Assessment:
    """The classifier's best guess for a task and, when it will not decide alone, why."""

    prediction: Prediction | None
    abstained: str | None = None

    @property
    def decision(self) -> Prediction | None:
        """The prediction when the classifier decides alone, else None."""
        return None if self.abstained else self.prediction


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


class Classifier:
    """Decides alone when confident; otherwise abstains so the router model decides."""

    def __init__(
        self,
        examples: Mapping[str, Iterable[str]],
        threshold: float,
        model: SoftmaxRegression | None = None,
        prior: Prior | Literal["shipped"] | None = "shipped",
    ) -> None:
        texts = {label: list(found) for label, found in examples.items()}
        self.threshold = threshold
        self.model = model or SoftmaxRegression.train(texts)
        shipped = shipped_prior() if prior == "shipped" else prior
        self.prior = shipped.for_labels(texts) if shipped is not None else None
        counts = {label: len(found) for label, found in texts.items()}
        total = sum(counts.values()) or 1
        self.under_trained = sorted(label for label, n in counts.items() if n < MIN_EXAMPLES)
        # Logit adjustment: remove each specialist's share of the training texts from its score.
        self._balance = {label: -math.log(max(n, 1) / total) for label, n in counts.items()}
        self._neighbours = Neighbours()
        self._terms: dict[str, set[str]] = {}
        if self.under_trained:
            for label, found in texts.items():
                for text in found:
                    self._neighbours.add(label, self.model.tfidf.vector(features(text)))
            for label in self.under_trained:  # the first text is the description (see training_examples)
                others = [text for name, found in texts.items() if name != label for text in found]
                self._terms[label] = distinctive_terms(texts[label][0], others, GUARD_TERMS) if texts[label] else set()

    def assess(self, text: str, explain: bool = False) -> Assessment:
        """The best guess and, when the classifier abstains, the reason; explain adds the heaviest words."""
        judged = self._judge(text, explain)
        prediction = judged.prediction
        if prediction is None:
            return Assessment(None, "no word of the task was in the training examples")
        if prediction.known_words < MIN_KNOWN_WORDS:
            return Assessment(prediction, f"fewer than {MIN_KNOWN_WORDS} of the task's words were in the examples")
        if prediction.confidence < self.threshold:
            return Assessment(prediction, f"{prediction.confidence:.0%} sure, below the threshold {self.threshold:.0%}")
        if judged.dissent:
            return Assessment(prediction, judged.dissent)
        if prediction.label in self.under_trained:
            return Assessment(prediction, self._few(prediction.label))
        if self.under_trained:
            balanced = _softmax(judged.own, self._balance)
            for label in self.under_trained:
                if balanced[label] >= GUARD_SHARE:
                    return Assessment(prediction, f"the task may be {label} work; {self._few(label)}")
            words = stems(text)
            for label in self.under_trained:
                shared = sorted(words & self._terms[label])
                if shared:
                    return Assessment(prediction, f"the task names {label}'s work ({shared[0]}…); {self._few(label)}")
            near = self._neighbours.nearest(judged.vector, GUARD_NEIGHBOURS)
            for label in self.under_trained:
                if label in near:
                    return Assessment(prediction, f"the task resembles {label}'s examples; {self._few(label)}")
        return Assessment(prediction)

    def _few(self, label: str) -> str:
        return f"{label} has fewer than {MIN_EXAMPLES} examples, so the router decides its tasks"

    def fit(self, text: str) -> dict[str, float]:
        """How well the task fits each specialist, 0 to 1, summing to 1; each specialist's share of the training
        texts is taken out, so one with few examples is not drowned by those with many (empty: no known word)."""
        vector = self.model.tfidf.vector(features(text))
        reading = self._read(text)
        if not vector and not reading.logits:
            return {}
        return _softmax(self._blend(self.model.logits(vector), reading.logits), self._balance)

    def decide(self, text: str) -> Prediction | None:
        """A confident prediction, or None to abstain."""
        return self.assess(text).decision

    def predict(self, text: str) -> Prediction | None:
        """The best guess whatever its confidence (for evaluation)."""
        return self._judge(text).prediction

    def _read(self, text: str) -> Reading:
        return self.prior.read(text) if self.prior else _NOTHING

    def _blend(self, own: Mapping[str, float], prior: Mapping[str, float]) -> dict[str, float]:
        """The catalogue model's logits, weighted as the prior was tuned with, plus the prior's. A label the prior
        does not know (a user's specialist) gets the prior's best score: the public sets know nothing of it, so
        they neither push a task to it nor take one away from it."""
        weight = self.prior.own_weight if self.prior else 1.0
        unknown = max(prior.values(), default=0.0)
        return {name: weight * z + prior.get(name, unknown) for name, z in own.items()}

    def _judge(self, text: str, explain: bool = False) -> _Judgement:
        """The most probable label from both models (None when neither knows a feature of the text), and why the
        classifier must not decide alone when the two models, each on its own, prefer different labels."""
        vector = self.model.tfidf.vector(features(text))
        reading = self._read(text)
        own = self.model.logits(vector)
        if (not vector and not reading.logits) or not self.model.labels:
            return _Judgement(vector, own, None, None)
        mine = max(own, key=own.__getitem__)
        # The prior speaks only for the built-ins it knows: when the catalogue model's own choice is a user's
        # specialist, the task is judged as the catalogue model alone judges it.
        alone = bool(reading.logits) and mine not in reading.logits
        if alone:
            reading = Reading({}, reading.known, {})
        probabilities = _softmax(own if alone else self._blend(own, reading.logits))
        ranked = sorted(probabilities, key=lambda name: -probabilities[name])
        best, second = ranked[0], (ranked[1] if len(ranked) > 1 else None)
        top: tuple[str, ...] = ()
        if explain:
            weight = self.prior.own_weight if self.prior and not alone else 1.0
            pull = {
                f: weight * v * (self.model.weight(best, f) - (self.model.weight(second, f) if second else 0.0))
                for f, v in vector.items()
            }
            if self.prior:
                for feature, push in self.prior.pull(reading.vector, best, second).items():
                    pull[feature] = pull.get(feature, 0.0) + push
            top = tuple(word for word, weight in heaviest_words(text, pull) if weight > 0)
        known = reading.known.union(f for f in vector if f[0] == "w")
        guess = Prediction(best, probabilities[best], len(known), second, probabilities[second] if second else 0.0, top)
        return _Judgement(vector, own, guess, _dissent(best, mine, reading.logits))


_NOTHING = Reading({}, frozenset(), {})


@dataclass(frozen=True)
class _Judgement:
    """One reading of a task: its vector, the catalogue model's own logits, the guess, and any disagreement."""

    vector: dict[str, float]
    own: dict[str, float]
    prediction: Prediction | None
    dissent: str | None


def _dissent(best: str, mine: str, prior: Mapping[str, float]) -> str | None:
    """Why the classifier must not decide `best` alone, or None. For a built-in the public sets must prefer it too,
    whatever the catalogue model's own choice `mine`: on tasks written in voices other than ours they are the better
    judge (bench/classifier_public.py tune). For a user's specialist, which they know nothing of, `mine` must."""
    if not prior:
        return None
    theirs = max(prior, key=prior.__getitem__)
    if (theirs if best in prior else mine) == best:
        return None
    return f"the examples point to {mine} but the public sets to {theirs}"


def _softmax(logits: Mapping[str, float], shift: Mapping[str, float] | None = None) -> dict[str, float]:
    """Probabilities from logits, each first moved by `shift` (a log-prior correction) when given."""
    moved = {name: z + (shift.get(name, 0.0) if shift else 0.0) for name, z in logits.items()}
    top = max(moved.values())
    exps = {name: math.exp(z - top) for name, z in moved.items()}
    total = sum(exps.values())
    return {name: e / total for name, e in exps.items()}

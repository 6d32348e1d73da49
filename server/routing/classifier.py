"""The embedded classifier: routes confident cases in well under a millisecond, with no model download or API call.

It blends two models: the catalogue model (softmax.py), trained from each specialist's description and examples,
and for the built-ins the prior learned from public instruction sets (prior.py). It reads a task's first READ_CHARS
characters and abstains (returns None) unless its probability reaches the threshold, the task shares enough
vocabulary with what it learned, and the public sets prefer the same built-in.

A specialist with fewer than MIN_EXAMPLES training texts is under-trained: a handful of examples cannot show
a bag-of-words model where its work ends, and the specialists with a hundred examples own its vocabulary.
The classifier never decides for it, and abstains on any task that could be its work: when, with every
specialist given the same prior (logit adjustment for the unequal example counts), it would get at least
GUARD_SHARE of the probability; when the task uses a word of its description that the other specialists'
texts (almost) never use; or when one of its texts is among the task's GUARD_NEIGHBOURS nearest. The router
model, which reads every description, then decides. bench/classifier_guard.py measures each guard.

Users' corrections are training texts too, but they never decide alone: given the model trained on the built-in
examples alone (`builtin`), a confident decision is left to the router model (which sees the corrections like the
task, as quoted data) unless that model also ranks it first, with at least the threshold less FEEDBACK_LIFT. So
corrections, however many and from whoever, can make the classifier a little surer of what its built-in examples
already say, never send a kind of task elsewhere, nor decide what the built-in examples are unsure of.
bench/feedback_bounds.py measures it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from server.routing.guards import Neighbours, distinctive_terms, stems
from server.routing.prior import Prior, Reading, shipped_prior
from server.routing.softmax import FORMAT, Prediction, SoftmaxRegression, features, heaviest_words

__all__ = ["FORMAT", "Assessment", "Classifier", "Prediction", "SoftmaxRegression", "features", "heaviest_words"]

MIN_KNOWN_WORDS = 3  # a task with fewer words the classifier has seen is too short or too foreign to judge
# A task's first characters: the kind of work is asked for there, and pasted material after it says little (held-out
# public sources, tuning halves: 600 decides as well as 1,000, 2,000 or all) and made a decision's time grow with it.
READ_CHARS = 600
MIN_EXAMPLES = 20  # training texts (description, examples, corrections) a specialist needs to be decided alone
GUARD_SHARE = 0.2  # prior-corrected probability of an under-trained specialist that makes the classifier abstain
GUARD_NEIGHBOURS = 8  # nearest training texts searched for an under-trained specialist's
GUARD_CONTESTED = 1  # the other text nearest each of an under-trained specialist's texts counts as its own
GUARD_TERMS = 0.01  # a description word found in at most this share of other specialists' texts is distinctive
FEEDBACK_LIFT = 0.15  # the most users' corrections may add to the built-in examples' confidence in a decision


@dataclass(frozen=True)
class Assessment:
    """The classifier's best guess for a task and, when it will not decide alone, why."""

    prediction: Prediction | None
    abstained: str | None = None

    @property
    def decision(self) -> Prediction | None:
        """The prediction when the classifier decides alone, else None."""
        return None if self.abstained else self.prediction


class Classifier:
    """Decides alone when confident; otherwise abstains so the router model decides."""

    def __init__(
        self,
        examples: Mapping[str, Iterable[str]],
        threshold: float,
        model: SoftmaxRegression | None = None,
        prior: Prior | Literal["shipped"] | None = "shipped",
        builtin: SoftmaxRegression | None = None,
    ) -> None:
        """`builtin`: the model trained without users' corrections, when the examples hold some."""
        self._builtin = builtin
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
            vectors = {
                label: [self.model.tfidf.vector(features(text)) for text in found] for label, found in texts.items()
            }
            for label, found in vectors.items():
                for vector in found:
                    self._neighbours.add(label, vector)
            for label in self.under_trained:
                self._neighbours.contest(label, vectors[label], GUARD_CONTESTED)
            for label in self.under_trained:  # the first text is the description (see training_examples)
                others = [text for name, found in texts.items() if name != label for text in found]
                self._terms[label] = distinctive_terms(texts[label][0], others, GUARD_TERMS) if texts[label] else set()

    def assess(self, text: str, explain: bool = False) -> Assessment:
        """The best guess and, when the classifier abstains, the reason; explain adds the heaviest words."""
        text = text[:READ_CHARS]
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
        corrected = self._corrections_carry(text, prediction)
        if corrected:
            return Assessment(prediction, corrected)
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

    def _corrections_carry(self, text: str, prediction: Prediction) -> str:
        """Why users' corrections alone carry this decision (the built-in examples disagree or are unsure), or ''."""
        if self._builtin is None:
            return ""
        guess = self._builtin.predict_vector(self._builtin.tfidf.vector(features(text)), text)
        if guess is not None and guess.label == prediction.label and guess.confidence >= self.threshold - FEEDBACK_LIFT:
            return ""
        built_in = f"{guess.label} at {guess.confidence:.0%}" if guess else "nothing"
        return f"users' corrections carry this choice (the built-in examples alone say {built_in}): the router decides"

    def _few(self, label: str) -> str:
        return f"{label} has fewer than {MIN_EXAMPLES} examples, so the router decides its tasks"

    def fit(self, text: str) -> dict[str, float]:
        """How well the task fits each specialist, 0 to 1, summing to 1; each specialist's share of the training
        texts is taken out, so one with few examples is not drowned by those with many (empty: no known word)."""
        text = text[:READ_CHARS]
        vector, own = self.model.read(features(text))
        reading = self._read(text)
        if not vector and not reading.logits:
            return {}
        return _softmax(self._blend(own, reading.logits), self._balance)

    def decide(self, text: str) -> Prediction | None:
        """A confident prediction, or None to abstain."""
        return self.assess(text).decision

    def predict(self, text: str) -> Prediction | None:
        """The best guess whatever its confidence (for evaluation)."""
        return self._judge(text[:READ_CHARS]).prediction

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
        vector, own = self.model.read(features(text))
        reading = self._read(text)
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

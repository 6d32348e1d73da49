"""The classifier's guards for an under-trained specialist: its distinctive words, and the nearest training texts."""

from __future__ import annotations

import heapq
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import itemgetter

SEARCH_FEATURES = 150  # a task's heaviest features used to find its nearest training texts


def stems(text: str) -> set[str]:
    """The words of a text cut to five letters ("leases" and "lease" meet) and without a plural's s ("CVs" and
    "CV", "ads" and "ad": short words name work too; the common ones are in every specialist's texts)."""
    return {word[:5].removesuffix("s") for word in re.findall(r"[a-z]{2,}", text.lower())}


def distinctive_terms(description: str, others: Iterable[str], share: float) -> set[str]:
    """Stems of a description that at most `share` of the other specialists' texts contain."""
    texts = [stems(text) for text in others]
    limit = share * len(texts)
    return {stem for stem in stems(description) if sum(stem in found for found in texts) <= limit}


@dataclass
class Neighbours:
    """An inverted index of the training texts' vectors, for nearest-text searches."""

    labels: list[str] = field(default_factory=list)
    postings: dict[str, list[tuple[int, float]]] = field(default_factory=lambda: defaultdict(list))

    def add(self, label: str, vector: dict[str, float]) -> None:
        """Index one training text's vector under its label."""
        for feature, value in vector.items():
            self.postings[feature].append((len(self.labels), value))
        self.labels.append(label)

    def nearest(self, vector: dict[str, float], k: int) -> list[str]:
        """Labels of the k training texts most cosine-similar to the vector."""
        return [self.labels[doc] for doc in self.nearest_texts(vector, k)]

    def nearest_texts(self, vector: dict[str, float], k: int, skip: str | None = None) -> list[int]:
        """Positions of the k training texts most cosine-similar to the vector (none labelled `skip`)."""
        scores = [0.0] * len(self.labels)
        postings = self.postings
        # The heaviest features carry the similarity; a long task's hundreds of light ones only cost time. (sorted is
        # what heapq.nlargest documents itself as, and four times faster on a few hundred features.)
        for feature, value in sorted(vector.items(), key=itemgetter(1), reverse=True)[:SEARCH_FEATURES]:
            for doc, weight in postings.get(feature, ()):
                scores[doc] += value * weight
        order = range(len(scores))  # a text that shares no searched feature (score 0) is no neighbour
        if skip is None:
            return [doc for doc in heapq.nlargest(k, order, key=scores.__getitem__) if scores[doc] > 0]
        ranked = sorted(order, key=scores.__getitem__, reverse=True)
        return [doc for doc in ranked if scores[doc] > 0 and self.labels[doc] != skip][:k]

    def contest(self, label: str, vectors: Iterable[dict[str, float]], k: int) -> None:
        """Mark the k other texts nearest each of a specialist's texts as its own: where a built-in's examples resemble
        a user's specialist, the two overlap, and a task near them may be the user's specialist's work."""
        for vector in list(vectors):
            for doc in self.nearest_texts(vector, k, skip=label):
                self.labels[doc] = label

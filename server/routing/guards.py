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
    """The words of a text cut to five letters ("leases" and "lease" meet), ignoring short words."""
    return {word[:5] for word in re.findall(r"[a-z]{4,}", text.lower())}


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
        scores: dict[int, float] = defaultdict(float)
        # The heaviest features carry the similarity; a long task's hundreds of light ones only cost time.
        for feature, value in heapq.nlargest(SEARCH_FEATURES, vector.items(), key=itemgetter(1)):
            for doc, weight in self.postings.get(feature, ()):
                scores[doc] += value * weight
        return [self.labels[doc] for doc in heapq.nlargest(k, scores, key=scores.__getitem__)]

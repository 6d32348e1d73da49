"""What the built-in specialists learned from public instruction sets, shipped as weights (never as text).

Our own examples are written in one voice; public sets are not. The weights in data/builtin-prior.json.gz are a
softmax regression over word unigrams and bigrams trained on public sets whose source gives the label and on
the built-ins' examples (docs/routing.md names the sets, their licences and how the file is built). The
classifier adds these logits, scaled, to those of the model it trains on the catalogue's examples, for the
built-ins whose description is still the one the weights were trained for.
"""

from __future__ import annotations

import gzip
import itertools
import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)
PRIOR_FILE = Path(__file__).resolve().parent / "data" / "builtin-prior.json.gz"
PRIOR_FORMAT = 1
_WORD = re.compile(r"[a-z0-9_#+]+(?:['.][a-z0-9_]+)*|[{}()\[\];=<>:!$`|\\/*&^%@~-]{1,3}")
# Function words carry each public set's style (every NQ task starts "who", every code task "how can"), not the
# kind of work: trained on, they teach the prior which set a task looks like. bench/classifier_public.py measures it.
_FUNCTION_WORDS = (
    "the a an of to in on for with and or is are was were be been how what who when where which why can "
    "could would should do does did i you my me your it this that these those please from by as at about "
    "there their we our he she they his her its if so not no will just some any all have has had get "
    "into than then also"
)
STOPWORDS = frozenset(_FUNCTION_WORDS.split())


def word_features(text: str) -> list[str]:
    """The prior's features: content words and the word pairs that are not two function words."""
    words = _WORD.findall(text.lower())
    found = [f"w:{w}" for w in words if w not in STOPWORDS and len(w) > 1]
    found += [f"b:{a} {b}" for a, b in itertools.pairwise(words) if not (a in STOPWORDS and b in STOPWORDS)]
    return found


@dataclass(frozen=True)
class Prior:
    """Shipped per-label weights over TF-IDF features, for the labels whose descriptions they were trained with."""

    descriptions: Mapping[str, str]
    """Each label's description when the weights were trained; another description means another specialist."""
    idf: Mapping[str, float]
    weights: Mapping[str, Mapping[str, float]]
    scale: float
    """How much the prior's logits count, added to the catalogue model's (tuned on held-out public sources)."""

    def for_labels(self, examples: Mapping[str, list[str]]) -> Prior | None:
        """The prior restricted to the labels whose description (their first text) is unchanged; None if none is."""
        labels = [name for name, texts in examples.items() if texts and self.descriptions.get(name) == texts[0]]
        if not labels:
            return None
        return Prior(
            {name: self.descriptions[name] for name in labels},
            self.idf,
            {name: self.weights[name] for name in labels},
            self.scale,
        )

    def logits(self, text: str) -> dict[str, float]:
        """Each label's centred score for a text (empty when the prior knows none of its features)."""
        counts: dict[str, int] = {}
        for feature in word_features(text):
            if feature in self.idf:
                counts[feature] = counts.get(feature, 0) + 1
        if not counts:
            return {}
        weighted = {f: (1 + math.log(c)) * self.idf[f] for f, c in counts.items()}
        norm = sum(w * w for w in weighted.values()) ** 0.5 or 1.0
        scores = {
            name: self.scale * sum(table.get(f, 0.0) * w for f, w in weighted.items()) / norm
            for name, table in self.weights.items()
        }
        mean = sum(scores.values()) / len(scores)
        # Centred, so a label the prior does not know (a user's specialist) stands at the prior's average.
        return {name: score - mean for name, score in scores.items()}

    def known_words(self, text: str) -> set[str]:
        """The text's word features that the prior knows."""
        return {f for f in word_features(text) if f.startswith("w:") and f in self.idf}

    def pull(self, text: str, best: str, second: str | None) -> dict[str, float]:
        """Each known feature's push towards `best` against `second`, for explanations."""
        known = {f for f in word_features(text) if f in self.idf}
        if best not in self.weights:
            return {}
        other = self.weights.get(second or "", {})
        return {f: self.scale * (self.weights[best].get(f, 0.0) - other.get(f, 0.0)) for f in known}

    def to_json(self) -> dict[str, Any]:
        """The prior as plain JSON data."""
        return {
            "format": PRIOR_FORMAT,
            "scale": self.scale,
            "descriptions": dict(self.descriptions),
            "idf": dict(self.idf),
            "weights": {name: dict(table) for name, table in self.weights.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Prior:
        """Rebuild a prior from to_json() data; ValueError when it is not such data."""
        try:
            if data["format"] != PRIOR_FORMAT:
                raise ValueError("another format")
            descriptions = {str(k): str(v) for k, v in data["descriptions"].items()}
            idf = {str(f): float(v) for f, v in data["idf"].items()}
            weights = {str(n): {str(f): float(w) for f, w in t.items()} for n, t in data["weights"].items()}
            if set(weights) != set(descriptions):
                raise ValueError("labels differ")
            return cls(descriptions, idf, weights, float(data["scale"]))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a prior ({exc.__class__.__name__})") from None


def load_prior(path: Path = PRIOR_FILE) -> Prior | None:
    """The shipped prior, or None when the file is missing or broken (the classifier then uses its examples alone)."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as stream:
            return Prior.from_json(json.load(stream))
    except FileNotFoundError:
        return None
    except (OSError, EOFError, UnicodeDecodeError, ValueError) as exc:
        logger.warning("ignoring the classifier's prior %s (%s)", path, exc.__class__.__name__)
        return None


def save_prior(prior: Prior, path: Path = PRIOR_FILE) -> None:
    """Write the prior compactly (weights rounded, gzip), deterministically so a rebuild diffs cleanly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(prior.to_json(), separators=(",", ":"), sort_keys=True)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as stream:
        stream.write(text.encode("utf-8"))

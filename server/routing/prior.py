"""What the built-in specialists learned from public instruction sets, shipped as weights (never as text).

Our own examples are written in one voice; public sets are not. The weights in data/builtin-prior.json.gz are a
softmax regression over content words, word pairs, the first sentence's words and the shape of code, trained on
public sets whose source gives the label and on the built-ins' examples (docs/routing.md names the sets, their
licences and how the file is built). The classifier adds these logits, scaled, to those of the model it trains
on the catalogue's examples, for the built-ins whose description is still the one the weights were trained for.

The file is read once per process (shipped_prior) and holds only the features that carry weight, as quantised
integers: reading it costs milliseconds, and a decision looks each of the task's features up once.
"""

from __future__ import annotations

import array
import base64
import functools
import gzip
import itertools
import json
import logging
import math
import re
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from operator import itemgetter, mul
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)
PRIOR_FILE = Path(__file__).resolve().parent / "data" / "builtin-prior.json.gz"
PRIOR_FORMAT = 2
CHARS = 600  # the prior reads a task's first characters, as it was trained: pasted material says little
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
# A line that opens, closes or calls like code, in the languages the public sets carry.
_CODE_LINE = re.compile(
    r"^\s*(def |class |import |from \S+ import|#include|func |fn |public |private |static |function |var |let |"
    r"const |return\b|if ?\(|for ?\(|while ?\(|[}\]]|>>>|//|/\*|\*/|#!)|[;{(:,]\s*$|=>|->|==|\w\(.*\)\s*$"
)
_SENTENCE = re.compile(r"[.?!:\n]")
HEAD_WORDS = 20  # words of the first sentence read apart
_LEVELS = 32767  # quantisation: weights and IDFs are stored as 16-bit integers times a step


def word_features(text: str) -> list[str]:
    """The prior's features: content words, the word pairs that are not two function words, the first sentence's
    words, and code's shape."""
    words = _WORD.findall(text.lower())
    found = [f"w:{w}" for w in words if w not in STOPWORDS and len(w) > 1]
    found += [f"b:{a} {b}" for a, b in itertools.pairwise(words) if not (a in STOPWORDS and b in STOPWORDS)]
    return found + head_features(text) + shape_features(text)


def head_features(text: str) -> list[str]:
    """The words of the first sentence, apart: the kind of work is asked for there, before any pasted material."""
    first = _SENTENCE.split(text.strip(), 1)[0]
    return [f"h:{w}" for w in _WORD.findall(first.lower())[:HEAD_WORDS] if len(w) > 1]


def shape_features(text: str) -> list[str]:
    """Whether a text is laid out like code: a bare signature with a docstring is code work whatever its words."""
    lines = [line for line in text.splitlines() if line.strip()]
    code = sum(1 for line in lines if _CODE_LINE.search(line))
    found = ["s:code"] if code >= 2 else []
    found += ["s:code5"] if code >= 5 else []
    found += ["s:mostly-code"] if code >= 2 and code >= 0.5 * len(lines) else []
    found += ["s:indented"] if sum(1 for line in lines if line.startswith(("    ", "\t"))) >= 2 else []
    return found


@dataclass(frozen=True)
class Reading:
    """What the prior makes of a text: each scored label's centred logit, and the text's words it knows."""

    logits: dict[str, float]
    known: frozenset[str]
    """Word features (w:...) of the text that the prior has weights for."""
    vector: dict[str, float]
    """The text's normalised TF-IDF vector over the prior's features (for explanations)."""


@dataclass(frozen=True)
class Prior:
    """Shipped per-label weights over TF-IDF features, for the labels whose descriptions they were trained with."""

    labels: tuple[str, ...]
    descriptions: tuple[str, ...]
    """Each label's description when the weights were trained; another description means another specialist."""
    table: Mapping[str, tuple[float, ...]]
    """Each feature's IDF, then its weight for each label in `labels` order."""
    scale: float
    """How much the prior's logits count, added to the catalogue model's (tuned on held-out public sources)."""
    own_weight: float = 1.0
    """How much the catalogue model's logits count beside this prior (tuned with `scale`)."""
    scored: tuple[int, ...] = ()
    """The positions in `labels` that are scored (empty: all)."""

    def for_labels(self, examples: Mapping[str, list[str]]) -> Prior | None:
        """The prior restricted to the labels whose description (their first text) is unchanged; None if none is."""
        scored = tuple(
            i for i, name in enumerate(self.labels) if examples.get(name) and examples[name][0] == self.descriptions[i]
        )
        return replace(self, scored=scored) if scored else None

    @property
    def scored_labels(self) -> list[str]:
        """The labels this prior gives logits for."""
        return [self.labels[i] for i in self.scored] if self.scored else list(self.labels)

    def read(self, text: str) -> Reading:
        """Each scored label's centred score for a text's first CHARS characters, and the words it knows."""
        table = self.table
        counts = Counter(filter(table.__contains__, word_features(text[:CHARS])))
        if not counts:
            return Reading({}, frozenset(), {})
        columns = self.scored or tuple(range(len(self.labels)))
        keys = list(counts)
        rows = list(map(table.__getitem__, keys))
        weighted = [(1 + math.log(c)) * row[0] for row, c in zip(rows, counts.values(), strict=True)]
        norm = math.sqrt(sum(w * w for w in weighted)) or 1.0
        values = [w / norm for w in weighted]
        scores = [sum(map(mul, map(itemgetter(column + 1), rows), values)) for column in columns]
        mean = sum(scores) / len(scores)
        # Centred, so a label the prior does not know (a user's specialist) stands at the prior's average.
        logits = {self.labels[c]: self.scale * (s - mean) for c, s in zip(columns, scores, strict=True)}
        return Reading(logits, frozenset(f for f in keys if f[0] == "w"), dict(zip(keys, values, strict=True)))

    def pull(self, vector: Mapping[str, float], best: str, second: str | None) -> dict[str, float]:
        """Each feature's push towards `best` against `second` (a Reading's vector), for explanations."""
        if best not in self.labels:
            return {}
        b = self.labels.index(best) + 1
        s = self.labels.index(second) + 1 if second in self.labels else None
        return {
            f: self.scale * v * (self.table[f][b] - (self.table[f][s] if s is not None else 0.0))
            for f, v in vector.items()
        }

    def to_json(self) -> dict[str, Any]:
        """The prior as JSON data: feature names as one text, IDFs and weights as base64 16-bit integers."""
        names = sorted(self.table)
        width = len(self.labels) + 1
        idf_step = max((self.table[f][0] for f in names), default=1.0) / _LEVELS or 1.0
        weight_step = max((abs(w) for f in names for w in self.table[f][1:]), default=1.0) / _LEVELS or 1.0
        idf = array.array("h", (round(self.table[f][0] / idf_step) for f in names))
        weights = array.array("h", (round(self.table[f][j] / weight_step) for f in names for j in range(1, width)))
        return {
            "format": PRIOR_FORMAT,
            "scale": self.scale,
            "own_weight": self.own_weight,
            "labels": list(self.labels),
            "descriptions": list(self.descriptions),
            "features": "\n".join(names),
            "idf_step": idf_step,
            "idf": _encode(idf),
            "weight_step": weight_step,
            "weights": _encode(weights),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Prior:
        """Rebuild a prior from to_json() data; ValueError when it is not such data."""
        try:
            if data["format"] != PRIOR_FORMAT:
                raise ValueError("another format")
            labels = tuple(str(name) for name in data["labels"])
            descriptions = tuple(str(text) for text in data["descriptions"])
            names = str(data["features"]).split("\n") if data["features"] else []
            idf_step, weight_step = float(data["idf_step"]), float(data["weight_step"])
            idf = _decode(str(data["idf"]))
            weights = _decode(str(data["weights"]))
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"not a prior ({exc.__class__.__name__})") from None
        width = len(labels)
        if len(descriptions) != width or len(idf) != len(names) or len(weights) != width * len(names):
            raise ValueError("not a prior (sizes differ)")
        table = {
            name: (idf[i] * idf_step, *(weights[i * width + j] * weight_step for j in range(width)))
            for i, name in enumerate(names)
        }
        return cls(labels, descriptions, table, float(data["scale"]), float(data.get("own_weight", 1.0)))


def _encode(values: array.array[int]) -> str:
    if sys.byteorder == "big":  # the file is little-endian wherever it was written
        values = array.array("h", values)
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode("ascii")


def _decode(text: str) -> array.array[int]:
    values = array.array("h")
    values.frombytes(base64.b64decode(text, validate=True))
    if sys.byteorder == "big":
        values.byteswap()
    return values


def load_prior(path: Path = PRIOR_FILE) -> Prior | None:
    """The prior in a file, or None when the file is missing or broken (the classifier then uses its examples)."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as stream:
            return Prior.from_json(json.load(stream))
    except FileNotFoundError:
        return None
    except (OSError, EOFError, UnicodeDecodeError, ValueError) as exc:
        logger.warning("ignoring the classifier's prior %s (%s)", path, exc.__class__.__name__)
        return None


@functools.cache
def shipped_prior() -> Prior | None:
    """The shipped prior, read once per process (retraining after feedback reuses it)."""
    return load_prior(PRIOR_FILE)


def save_prior(prior: Prior, path: Path = PRIOR_FILE) -> None:
    """Write the prior compactly (gzip), deterministically so a rebuild diffs cleanly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(prior.to_json(), separators=(",", ":"), sort_keys=True)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as stream:
        stream.write(text.encode("utf-8"))

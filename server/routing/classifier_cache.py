"""The trained classifier kept as JSON in the data directory, keyed by its examples, so start-up skips training.

JSON, never pickle: the file is data in a user-writable place, and loading it must not run code. A missing,
corrupt or foreign file only costs a retraining (logged at debug level), never a failed start-up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from server import __version__
from server.routing.classifier import FORMAT, Classifier, SoftmaxRegression

logger = logging.getLogger(__name__)
PREFIX = "classifier-"
BUILTIN_PREFIX = "builtin-classifier-"
"""The model trained without users' corrections, kept apart (each prefix keeps only its newest file)."""


def cache_key(examples: Mapping[str, Sequence[str]]) -> str:
    """A hash of the training texts and labels, the model format and the code version."""
    digest = hashlib.sha256(f"{FORMAT}\0{__version__}\0".encode())
    for label in sorted(examples):
        digest.update(label.encode("utf-8", "surrogatepass") + b"\1")
        for text in examples[label]:
            digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()


def cache_path(directory: Path, examples: Mapping[str, Sequence[str]], prefix: str = PREFIX) -> Path:
    """Where the classifier trained on these examples is kept."""
    return directory / f"{prefix}{cache_key(examples)[:24]}.json"


def load_or_train(
    examples: Mapping[str, Sequence[str]],
    threshold: float,
    directory: Path | None,
    builtin: SoftmaxRegression | None = None,
) -> Classifier:
    """The cached classifier for these examples, or a freshly trained one (then cached when possible); `builtin` is
    the model trained without users' corrections, when the examples hold some."""
    return Classifier(examples, threshold, trained(examples, directory), builtin=builtin)


def trained(examples: Mapping[str, Sequence[str]], directory: Path | None, prefix: str = PREFIX) -> SoftmaxRegression:
    """The model for these examples: from the cache under `prefix` when it is there, else trained (and cached)."""
    path = cache_path(directory, examples, prefix) if directory is not None else None
    if path is not None:
        model = _load(path)
        if model is not None and sorted(model.labels) == sorted(examples):
            return model
    model = SoftmaxRegression.train(examples)
    if path is not None:
        _save(path, model, prefix)
    return model


def _load(path: Path) -> SoftmaxRegression | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return SoftmaxRegression.from_json(data)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        logger.debug("ignoring the classifier cache %s (%s); retraining", path, exc.__class__.__name__)
        return None


def _save(path: Path, model: SoftmaxRegression, prefix: str) -> None:
    """Write atomically (a reader never sees half a file) and drop caches of other example sets."""
    temporary: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, suffix=".tmp", delete=False) as out:
            temporary = out.name
            json.dump(model.to_json(), out, separators=(",", ":"))
        os.replace(temporary, path)
        temporary = None
        for old in path.parent.glob(f"{prefix}*.json"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError as exc:  # a read-only data directory only means training again next start
        logger.debug("cannot write the classifier cache %s (%s)", path, exc.__class__.__name__)
    finally:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)

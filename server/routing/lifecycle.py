"""The embedded classifier's life cycle: trained on first use (or loaded from its cache), warmed up in the background,
retrained after feedback, and the corrections users made, which it, the router and the exact-task memory learn."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

from server.catalog import Catalog
from server.errors import ConfigError, StoreError
from server.feedback import Correction, FeedbackBook, task_key
from server.routing.classifier import Classifier, SoftmaxRegression
from server.routing.classifier_cache import BUILTIN_PREFIX, load_or_train, trained
from server.routing.router import Router
from server.settings import Settings

logger = logging.getLogger(__name__)

QUIET_WAIT_S = 30.0
"""Background training waits at most this long for the calls in flight to end (training is CPU-bound)."""
CORRECTION_SHARE = 0.5
"""Corrections learned per specialist, at most this share of its built-in texts (description and examples): the
most recent ones. With the classifier's guard (its decisions must agree with the built-in examples' model) it
bounds what feedback can teach."""


def classifier_text(task: str, context: str) -> str:
    """What the classifier reads: the task only. The kind of work is asked for in the task; the context is
    material (a log, a contract, code) whose vocabulary misleads a bag-of-words model."""
    del context
    return task


def training_examples(
    catalog: Catalog, extra: Path | None, corrections: list[Correction] | None = None
) -> dict[str, list[str]]:
    """Each specialist's description and examples, a user's labelled JSONL file when given, and the tasks users
    corrected through feedback (under the specialist they should have gone to; the most recent, up to
    CORRECTION_SHARE of its built-in texts)."""
    examples = {spec.name: [spec.description, *spec.examples] for spec in catalog}
    for correction in reversed(learnable(catalog, corrections or [])):  # oldest first: the order is in the cache key
        examples[correction.should_be].append(correction.task)
    if extra is not None:
        for number, line in enumerate(_read_lines(extra), start=1):
            try:
                item = json.loads(line)
                examples[item["expected"]].append(str(item["task"]))
            except (ValueError, KeyError, TypeError):
                raise ConfigError(
                    f"{extra}:{number}: expected a JSON object with 'task' and 'expected' (one of "
                    f"{', '.join(examples)}) (DELEGATE_CLASSIFIER_EXAMPLES)."
                ) from None
    return examples


def learnable(catalog: Catalog, corrections: list[Correction]) -> list[Correction]:
    """The corrections the classifier learns, most recent first: per specialist, at most CORRECTION_SHARE of its
    built-in texts, so one caller's many corrections cannot outweigh the examples it ships with."""
    room = {spec.name: max(1, math.ceil(CORRECTION_SHARE * (1 + len(spec.examples)))) for spec in catalog}
    kept = []
    for correction in corrections:
        if room.get(correction.should_be, 0) > 0:
            room[correction.should_be] -= 1
            kept.append(correction)
    return kept


def _read_lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the classifier examples ({exc.__class__.__name__}).") from None


class ClassifierLifecycle:
    """Owns the classifier and the corrections it learns from; every method that reads the store or trains blocks."""

    def __init__(
        self, settings: Settings, catalog: Catalog, feedback: FeedbackBook, router: Router, data_dir: Path | None
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._feedback = feedback
        self._router = router
        self._data_dir = data_dir
        self._classifier: Classifier | None = None
        self._builtin: SoftmaxRegression | None = None
        self._lock = threading.Lock()
        self._corrections: list[Correction] | None = None
        self._memory: dict[str, str] = {}  # task_key -> the specialist a user said it should go to
        self._retraining = threading.Condition()
        self._retrain_running = False
        self._retrain_again = False
        self.wait = True
        """Calls wait for training (one-shot commands); the server sets False so early calls never wait for it."""

    @property
    def enabled(self) -> bool:
        """Whether the classifier is on (DELEGATE_CLASSIFIER)."""
        return self._settings.classifier

    @property
    def classifier(self) -> Classifier | None:
        """The classifier, trained on first use (under a second), or by warm_up() in the background."""
        if self.enabled and self._classifier is None:
            with self._lock:
                if self._classifier is None:
                    self._classifier = self._train()
        return self._classifier

    def current(self) -> Classifier | None:
        """The classifier a call uses now: trained on the spot when calls wait, else only once it is ready."""
        return self.classifier if self.wait else self._classifier

    @property
    def needs_training(self) -> bool:
        """Whether a call must wait for training before it can route."""
        return self.wait and self.enabled and self._classifier is None

    @property
    def corrections_read(self) -> bool:
        """Whether the corrections have been read from the store."""
        return self._corrections is not None

    def _train(self) -> Classifier:
        """The classifier for the catalogue and the corrections so far (from the cache when it has them); with
        corrections, beside the model of the built-in examples alone, which their decisions must agree with."""
        corrections = self.corrections()
        examples = training_examples(self._catalog, self._settings.classifier_examples, corrections)
        builtin = self._builtin_model() if corrections else None
        return load_or_train(examples, self._settings.classifier_threshold, self._data_dir, builtin)

    def _builtin_model(self) -> SoftmaxRegression:
        """The model trained on the catalogue (and any examples file) without corrections: once, or from its cache."""
        if self._builtin is None:
            examples = training_examples(self._catalog, self._settings.classifier_examples)
            self._builtin = trained(examples, self._data_dir, BUILTIN_PREFIX)
        return self._builtin

    def corrections(self) -> list[Correction]:
        """The corrections users made and not yet expired, read from the store once; they also teach the router."""
        if self._corrections is None:
            try:
                found = self._feedback.corrections()
            except StoreError as exc:  # routing still works without the lessons
                logger.warning("cannot read routing feedback from the store: %s", exc)
                found = []
            self._learn_all(found)
        self._expire()
        return self._corrections or []

    def _expire(self) -> None:
        """Forget the corrections past DELEGATE_FEEDBACK_TTL_DAYS: memory and router at once, the classifier by a
        retraining in the background."""
        known = self._corrections or []
        live = self._feedback.live(known)
        if len(live) < len(known):
            self._learn_all(live)
            self.retrain_in_background()

    def _learn_all(self, corrections: list[Correction]) -> None:
        self._corrections = corrections
        self._memory = {task_key(c.task): c.should_be for c in reversed(corrections)}
        self._router.set_corrections([(c.task, c.should_be) for c in corrections if not c.good])

    def remembered(self, task: str) -> str | None:
        """The specialist a user said this very task should go to, if any (and not expired)."""
        if not self._memory:
            return None
        self._expire()
        return self._memory.get(task_key(task))

    def record(
        self,
        *,
        call_id: str | None,
        task: str | None,
        good: bool,
        should_be: str | None,
        routed_to: str | None,
        key: str | None,
        caller: str | None = None,
    ) -> Correction:
        """Store a correction and learn it at once (memory and router); the classifier learns it by retrain()."""
        correction = self._feedback.record(
            call_id=call_id, task=task, good=good, should_be=should_be, routed_to=routed_to, key=key, caller=caller
        )
        self._learn_all([correction, *[c for c in self.corrections() if c.call_id != correction.call_id]])
        return correction

    def retrain_in_background(self) -> None:
        """Retrain a classifier already in use on a thread; the exact task is routed as corrected meanwhile. One
        retraining runs at a time: requests made while it runs are folded into one more run after it, which
        learns every correction recorded until then."""
        if not (self.enabled and self._classifier is not None):
            return
        with self._retraining:
            if self._retrain_running:
                self._retrain_again = True
                return
            self._retrain_running = True
        threading.Thread(target=self._retrain_until_current, name="classifier-retrain", daemon=True).start()

    def _retrain_until_current(self) -> None:
        while True:
            self._retrain()
            with self._retraining:
                if not self._retrain_again:
                    self._retrain_running = False
                    self._retraining.notify_all()
                    return
                self._retrain_again = False

    def wait_for_retraining(self, timeout_s: float) -> bool:
        """Block until no retraining runs or is due (True), or `timeout_s` passes (False)."""
        with self._retraining:
            return self._retraining.wait_for(lambda: not self._retrain_running, timeout_s)

    def _retrain(self) -> None:
        try:
            classifier = self._train()
        except Exception:  # the previous classifier keeps working
            logger.warning("retraining the classifier after feedback failed", exc_info=True)
            return
        with self._lock:
            self._classifier = classifier

    def warm_up(self, busy: Callable[[], bool]) -> None:
        """Train now, once the calls in flight (`busy`) have ended or QUIET_WAIT_S has passed."""
        quiet_by = time.monotonic() + QUIET_WAIT_S
        while busy() and time.monotonic() < quiet_by:
            time.sleep(0.05)
        _ = self.classifier

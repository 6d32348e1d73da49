"""The route stage: which specialist answers. A user's correction of this very task first, then the classifier when
it is sure, then a cached or fresh router decision; the window check comes before all of them."""

from __future__ import annotations

import time
from collections.abc import Sequence

from server import tracing
from server.calling.chain import ChainRunner, estimate_tokens
from server.catalog import Catalog, Specialist
from server.clock import Deadline, ms_since
from server.pipeline.messages import material, specialist_messages
from server.results import CallUsage, Routing, confidence_text
from server.routing.lifecycle import ClassifierLifecycle, classifier_text
from server.routing.router import RouteCache, RouteOutcome, Router


def direct(spec: Specialist) -> RouteOutcome:
    """The outcome of an ask_ call: the specialist was named, nothing was routed."""
    return RouteOutcome(
        spec.name, Routing(decided_by="direct", reason=f"called directly as {spec.tool_name}"), CallUsage()
    )


class Route:
    """Chooses a specialist among the usable ones that fit the input."""

    def __init__(
        self,
        catalog: Catalog,
        usable: Sequence[Specialist],
        chain: ChainRunner,
        router: Router,
        cache: RouteCache,
        lifecycle: ClassifierLifecycle,
        preview_chars: int,
    ) -> None:
        self._catalog = catalog
        self._usable = list(usable)
        self._chain = chain
        self._router = router
        self._cache = cache
        self._lifecycle = lifecycle
        self._preview_chars = preview_chars

    def fit(self, task: str) -> dict[str, float] | None:
        """How well the task fits each specialist, by the classifier (None when it is off or still training)."""
        classifier = self._lifecycle.current()
        return classifier.fit(classifier_text(task, "")) if classifier else None

    async def route(
        self,
        task: str,
        context: str,
        deadline: Deadline,
        files_text: str = "",
        *,
        remembered: bool = True,
        owner: str | None = None,
    ) -> RouteOutcome:
        """Choose a specialist: as a user corrected this very task, else the classifier when it is sure, else a
        cached or fresh router decision. Files count toward the window check and the router's size information
        exactly like context."""
        with tracing.stage("route") as span:
            outcome = await self._route(task, context, deadline, files_text, remembered=remembered, owner=owner)
            tracing.annotate(span, tracing.routing_attributes(outcome.specialist, outcome.routing, outcome.usage))
            return outcome

    async def _route(
        self, task: str, context: str, deadline: Deadline, files_text: str, *, remembered: bool, owner: str | None
    ) -> RouteOutcome:
        if not self._usable:  # nothing can answer: the default's error names the keys to set
            nothing = Routing(decided_by="default", reason="no specialist has a usable model")
            return RouteOutcome(self._catalog.default.name, nothing, CallUsage())
        tokens = max(estimate_tokens(specialist_messages(s, task, context, files_text)) for s in self._usable)
        context = material(context, files_text)
        candidates = [s for s in self._usable if self._chain.fits(s, tokens)]
        if not candidates:
            raise self._chain.too_large_error(self._usable, tokens)
        names = [s.name for s in candidates]
        corrected = self._lifecycle.remembered(task) if remembered else None
        if corrected in names:
            routing = Routing(decided_by="feedback", reason=f"a user corrected this task's routing to {corrected}")
            return RouteOutcome(corrected, routing, CallUsage())
        classified = self._classified(task, context, names)
        if classified is not None:
            return classified
        key = RouteCache.key(task, context, self._preview_chars, names, owner)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        fallback = self._catalog.default.name if self._catalog.default.name in names else names[0]
        outcome = await self._router.route(task, context, candidates, fallback, deadline)
        self._cache.put(key, outcome)
        return outcome

    def _classified(self, task: str, given: str, names: list[str]) -> RouteOutcome | None:
        """The classifier's choice when it is sure of one of `names`."""
        # A server answering its first calls does not wait for the classifier's training: the router decides.
        classifier = self._lifecycle.current()
        started = time.monotonic()
        decision = classifier.decide(classifier_text(task, given)) if classifier else None
        if decision is None or decision.label not in names:
            return None
        confidence = round(decision.confidence, 4)
        routing = Routing(
            decided_by="classifier",
            reason=f"the embedded classifier chose {decision.label} with confidence {confidence_text(confidence)}",
            confidence=confidence,
            latency_ms=ms_since(started),
        )
        return RouteOutcome(decision.label, routing, CallUsage())

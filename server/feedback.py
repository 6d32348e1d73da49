"""Routing feedback: calls remembered for a while, and the corrections users make to them, kept in the store.

A correction says which specialist a task should have gone to (or that the routing was right). Corrections
become training examples for the classifier, few-shot examples in the router's prompt, and an exact-task
memory, so the same mistake is not made twice. Store methods block: call these from a worker thread.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel, Field

from server.errors import InvalidInputError, shown
from server.ids import check_id
from server.store.base import Store

CALL_KIND = "call"
FEEDBACK_KIND = "feedback"
CALL_TTL_S = 30 * 24 * 3600.0  # a call can be corrected for 30 days
MAX_TASK_CHARS = 4_000  # what is kept of a task: enough to learn from, bounded in the store
MAX_CORRECTIONS = 1_000  # the most recent corrections are the ones learned from
DAY_S = 86_400.0


def task_key(task: str) -> str:
    """The key of a task in the exact-task memory: a hash of its whitespace-normalised text."""
    return hashlib.sha256(" ".join(task.split()).encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass(frozen=True)
class Correction:
    """One piece of feedback: the task, where it was routed, and where it should have gone."""

    call_id: str
    task: str
    routed_to: str | None
    should_be: str
    good: bool
    time: float
    caller: str | None = None
    """Who gave it, on a server shared by named callers (None: the server's one caller)."""

    def to_json(self) -> dict[str, object]:
        """The stored document."""
        return asdict(self)


class FeedbackReceipt(BaseModel):
    """What the feedback tool recorded and what it changes."""

    call_id: str
    task: str = Field(description="The start of the task the feedback is about.")
    routed_to: str | None = Field(None, description="Where the call was routed.")
    should_be: str = Field(description="The specialist such tasks should go to.")
    good: bool
    effect: str = Field(description="What the server does with it.")


def receipt(correction: Correction) -> FeedbackReceipt:
    """The tool's answer for a recorded correction."""
    head = " ".join(correction.task.split())
    effect = (
        f"This task now goes to {correction.should_be}; the classifier learns it as a {correction.should_be} "
        "example and the router sees it as a corrected example."
        if not correction.good
        else f"Kept as a {correction.should_be} example for the classifier; this task keeps going there."
    )
    return FeedbackReceipt(
        call_id=correction.call_id,
        task=head if len(head) <= 80 else head[:79] + "…",
        routed_to=correction.routed_to,
        should_be=correction.should_be,
        good=correction.good,
        effect=effect,
    )


class FeedbackBook:
    """Remembers calls and records corrections against them, in the store."""

    def __init__(self, store: Store, names: Sequence[str], ttl_days: float = 90.0) -> None:
        self._store = store
        self._names = list(names)
        self.ttl_s = ttl_days * DAY_S
        """A correction is forgotten this long after it was given (DELEGATE_FEEDBACK_TTL_DAYS)."""

    def live(self, corrections: Sequence[Correction], now: float | None = None) -> list[Correction]:
        """The corrections not yet expired."""
        cutoff = (time.time() if now is None else now) - self.ttl_s
        return [c for c in corrections if c.time > cutoff]

    def remember_call(
        self, call_id: str, task: str, specialist: str, decided_by: str, owner: str | None = None
    ) -> None:
        """Keep what a call routed, so feedback can name it by call id (only its own caller's feedback can)."""
        record = {"task": task[:MAX_TASK_CHARS], "specialist": specialist, "decided_by": decided_by}
        self._store.put(CALL_KIND, call_id, record, ttl_s=CALL_TTL_S, owner=owner)

    def record(
        self,
        *,
        call_id: str | None = None,
        task: str | None = None,
        good: bool,
        should_be: str | None,
        routed_to: str | None = None,
        key: str | None = None,
        caller: str | None = None,
    ) -> Correction:
        """Record feedback on a remembered call (by id), on a thread's turn (its task, routing and key) or on a
        task's text; the stored correction."""
        if call_id:
            check_id("call_id", call_id, "the call_id of a delegate result")
            call = self._store.get(CALL_KIND, call_id, caller)
            if call is None:
                raise InvalidInputError(
                    f"no call {call_id!r} is remembered: use the call_id of a delegate result from the last 30 "
                    "days, made while feedback was on (DELEGATE_FEEDBACK=on)."
                )
            task, routed_to = str(call["task"]), str(call["specialist"])
        if not task or not task.strip():
            raise InvalidInputError("feedback needs the call_id of a delegate result (on the command line, or --task).")
        if good:
            if should_be and routed_to and should_be != routed_to:
                raise InvalidInputError(
                    f"the call went to {routed_to}; give good=false with should_be={should_be!r} to correct it."
                )
            should_be = should_be or routed_to
        if should_be not in self._names:
            raise InvalidInputError(
                f"should_be must name the specialist the task should have gone to: one of {', '.join(self._names)}"
                + (f" (got {shown(should_be)})." if should_be else ".")
            )
        key = call_id or key or f"task-{task_key(task)}"
        correction = Correction(key, task[:MAX_TASK_CHARS], routed_to, should_be, good, time.time(), caller)
        self._store.put(FEEDBACK_KIND, key, correction.to_json(), ttl_s=self.ttl_s)
        return correction

    def corrections(self, limit: int = MAX_CORRECTIONS) -> list[Correction]:
        """The stored corrections not yet expired, most recent first (unreadable documents are skipped)."""
        found = []
        for _, doc in self._store.recent(FEEDBACK_KIND, limit):
            try:
                found.append(
                    Correction(
                        str(doc["call_id"]),
                        str(doc["task"]),
                        None if doc.get("routed_to") is None else str(doc["routed_to"]),
                        str(doc["should_be"]),
                        bool(doc["good"]),
                        float(doc["time"]),
                        None if doc.get("caller") is None else str(doc["caller"]),
                    )
                )
            except (KeyError, TypeError, ValueError):
                continue
        return self.live([c for c in found if c.should_be in self._names])


def one_call_named(call_id: str, thread_id: str, turn: int) -> dict[str, Any]:
    """The feedback tool's naming of its call (call_id, or thread_id and turn; empty means not given), checked."""
    if bool(call_id) == bool(thread_id or turn):
        raise InvalidInputError("feedback names one call: give call_id, or thread_id and turn, not both.")
    return {"call_id": call_id or None, "thread_id": thread_id or None, "turn": turn or None}

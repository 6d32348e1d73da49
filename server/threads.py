"""Conversations: a thread's turns, fitting its history to a window or a size bound, and keeping it in the store."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import BaseModel, Field, ValidationError

from server.errors import DamagedDocumentError, StoreError, UnknownThreadError
from server.ids import check_id
from server.results import FileRead
from server.store.base import JSON, Store

logger = logging.getLogger(__name__)
KIND = "thread"
TITLE_CHARS = 80
_LOCK_STRIPES = 64


class Turn(BaseModel):
    """One exchange: what the specialist was given and what it answered."""

    task: str
    context: str = ""
    files: list[FileRead] = Field(default_factory=list)
    """The files read for this turn (paths and sizes)."""
    files_text: str = ""
    """The files' contents exactly as the specialist received them."""
    answer: str
    specialist: str
    model: str
    at: float
    """When the answer arrived (Unix time)."""
    material_dropped: bool = False
    """Context and files were removed to keep the thread under DELEGATE_THREAD_MAX_CHARS."""

    def material_chars(self) -> int:
        """Characters of context and files: the first material dropped when a thread must shrink."""
        return len(self.context) + len(self.files_text)

    def chars(self) -> int:
        """All the characters this turn adds to a later request."""
        return self.material_chars() + len(self.task) + len(self.answer)

    def without_material(self) -> Turn:
        """The turn with its context and files left out (the task and answer stay)."""
        if not self.material_chars():
            return self
        return self.model_copy(update={"context": "", "files_text": "", "material_dropped": True})


class Thread(BaseModel):
    """A conversation: its turns in order, oldest first."""

    id: str
    created: float
    updated: float
    turns: list[Turn] = Field(default_factory=list)
    dropped_turns: int = 0
    """Oldest turns removed entirely to keep the thread under DELEGATE_THREAD_MAX_CHARS."""
    damaged: bool = False
    """Its stored document cannot be read: listed (by id, with how to delete it) so one bad row never hides the rest."""

    @classmethod
    def unreadable(cls, thread_id: str) -> Thread:
        """A listing's stand-in for a thread whose stored document is damaged."""
        return cls(id=thread_id, created=0, updated=0, damaged=True)

    @property
    def title(self) -> str:
        """The first task, on one line and shortened."""
        if self.damaged:
            return f"(damaged and unreadable: delete it with `delegate-mcp threads delete {self.id}`)"
        first = " ".join(self.turns[0].task.split()) if self.turns else ""
        return first if len(first) <= TITLE_CHARS else first[: TITLE_CHARS - 1] + "…"

    @property
    def specialists(self) -> list[str]:
        """The specialists that answered, in order of first appearance."""
        return list(dict.fromkeys(turn.specialist for turn in self.turns))

    def summary(self) -> JSON:
        """What delegate://threads lists for this thread."""
        if self.damaged:
            return {"thread_id": self.id, "title": self.title, "damaged": True}
        return {
            "thread_id": self.id,
            "title": self.title,
            "turns": len(self.turns) + self.dropped_turns,
            "specialists": self.specialists,
            "created": iso_time(self.created),
            "updated": iso_time(self.updated),
        }

    def transcript(self) -> JSON:
        """The whole conversation, for delegate://threads/{thread_id} and `threads show --json`."""
        turns = [{**turn.model_dump(mode="json"), "at": iso_time(turn.at)} for turn in self.turns]
        return {**self.summary(), "dropped_turns": self.dropped_turns, "turns": turns}


def iso_time(timestamp: float) -> str:
    """A Unix time as ISO 8601 in UTC, to the second."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def new_thread_id() -> str:
    """A fresh, unguessable thread id."""
    return "th_" + secrets.token_hex(8)


def check_thread_id(thread_id: str) -> None:
    """Reject an id that no thread can have (before any store or provider is touched)."""
    check_id("thread_id", thread_id, "the thread_id of an earlier result, or leave it out to start a new conversation")


def trim_history(turns: list[Turn], fits: Callable[[list[Turn]], bool]) -> tuple[list[Turn], bool]:
    """The longest history that fits: context and files go first, oldest first; then whole turns, oldest first.

    Returns the kept turns and whether anything was left out. The result may be empty.
    """
    kept = list(turns)
    if fits(kept):
        return kept, False
    for index, turn in enumerate(kept):
        if turn.material_chars():
            kept[index] = turn.without_material()
            if fits(kept):
                return kept, True
    while kept:
        kept.pop(0)
        if fits(kept):
            break
    return kept, True


def bound_thread(thread: Thread, max_chars: int) -> Thread:
    """Shrink a thread to at most `max_chars` characters the same way; the newest turn is always kept."""
    turns, trimmed = trim_history(thread.turns[:-1], lambda kept: _chars(kept + thread.turns[-1:]) <= max_chars)
    if not trimmed:
        return thread
    newest = thread.turns[-1:]
    if _chars(turns + newest) > max_chars:
        newest = [turn.without_material() for turn in newest]
    dropped = len(thread.turns) - len(turns) - len(newest)
    return thread.model_copy(update={"turns": turns + newest, "dropped_turns": thread.dropped_turns + dropped})


def _chars(turns: list[Turn]) -> int:
    return sum(turn.chars() for turn in turns)


class ThreadBook:
    """Threads kept in the store (kind "thread"), each expiring `ttl_days` after its last turn.

    Methods block (they call the store): run them on a worker thread in async code.
    """

    def __init__(self, store: Store, ttl_days: float, max_chars: int, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._ttl_s = ttl_days * 86_400
        self._max_chars = max_chars
        self._clock = clock
        self._locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]

    def get(self, thread_id: str, owner: str | None = None) -> Thread | None:
        """The thread, or None when it does not exist or has expired (or, given an owner, is another caller's)."""
        try:
            document = self.store.get(KIND, thread_id, owner)
            if document is None:
                return None
            return Thread.model_validate(document)
        except (DamagedDocumentError, ValidationError):
            raise StoreError(
                f"{self.store.location}: thread {thread_id!r} is damaged; delete it with "
                f"`delegate-mcp threads delete {thread_id}`."
            ) from None

    def load(self, thread_id: str, owner: str | None = None) -> Thread:
        """The thread to continue; UnknownThreadError when it does not exist or has expired, or (given an owner) is
        another caller's: the same message, so a caller cannot tell another's thread from none."""
        check_thread_id(thread_id)
        thread = self.get(thread_id, owner)
        if thread is None:
            days = self._ttl_s / 86_400
            raise UnknownThreadError(
                f"Unknown thread_id {thread_id!r}: no such conversation, or it expired ({days:g} days after its last "
                "turn, DELEGATE_THREAD_TTL_DAYS) or was deleted. Nothing was sent to any model. Leave thread_id out "
                "to start a new conversation (pass any earlier material again as context)."
            )
        return thread

    def append(self, thread_id: str, turn: Turn, owner: str | None = None) -> Thread:
        """Add a turn (creating the thread, owned by `owner`, if needed), bounded by the size limit; the saved thread.

        The read-modify-write is serialised per thread within this process, so concurrent turns are all kept.
        """
        with self._locks[hash(thread_id) % _LOCK_STRIPES]:
            now = self._clock()
            thread = self.get(thread_id, owner) or Thread(id=thread_id, created=now, updated=now)
            thread = thread.model_copy(update={"turns": [*thread.turns, turn], "updated": now})
            thread = bound_thread(thread, self._max_chars)
            document = thread.model_dump(mode="json", exclude={"damaged"})
            self.store.put(KIND, thread_id, document, ttl_s=self._ttl_s, owner=owner)
            return thread

    def recent(self, limit: int = 50, owner: str | None = None) -> list[Thread]:
        """The most recently continued threads first (given an owner, only that caller's); a damaged one is listed
        as such, never failing the listing."""
        found = []
        for thread_id, document in self.store.recent(KIND, limit, owner):
            try:
                found.append(Thread.model_validate(document))
            except ValidationError:
                logger.warning("thread %s in %s is damaged; it is listed as such", thread_id, self.store.location)
                found.append(Thread.unreadable(thread_id))
        return found

    def delete(self, thread_id: str) -> bool:
        """Forget a thread; True when it existed."""
        check_thread_id(thread_id)
        return self.store.delete(KIND, thread_id)

"""Big answers by link: an answer too large for the client's tool-result limit is kept whole in the store, and the
result carries its head and a link to delegate://answers/{call_id}, which serves it whole or in ranges."""

from __future__ import annotations

import json
import math
import time
import uuid

import anyio

from server.errors import StoreError, UnknownAnswerError
from server.ids import check_id
from server.results import DelegateResult, PanelResult, panel_text, since
from server.settings import Settings
from server.store.base import Store

KIND = "answer"
SHARED_CALLER = "shared"
"""The caller every answer belongs to until HTTP callers are told apart (each then reads only its own answers)."""
CHARS_PER_TOKEN = 4
"""The estimate used against the client's limit: about 4 characters a token for English and code."""
URI_PREFIX = "delegate://answers/"
LISTED = 20
"""Kept answers named in resources/list: some clients (Gemini CLI) read only the resources listed there."""


def answer_uri(call_id: str) -> str:
    """Where the whole answer of a call is read."""
    return f"{URI_PREFIX}{call_id}"


def result_tokens(output: str) -> int:
    """Estimated tokens an answer costs in a result: it is sent twice, as text and JSON-escaped in the structured
    content, so both count."""
    return math.ceil((len(output) + len(json.dumps(output, ensure_ascii=False))) / CHARS_PER_TOKEN)


class AnswerShelf:
    """Keeps answers that go by link, in the store, for DELEGATE_ANSWER_TTL_S."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self._settings = settings
        self._store = store

    @property
    def on(self) -> bool:
        """Whether big answers go by link (DELEGATE_LINK_SHARE above 0)."""
        return self._settings.link_share > 0

    @property
    def limit_tokens(self) -> int:
        """The estimated size above which an answer goes by link."""
        return math.floor(self._settings.link_share * self._settings.client_max_tokens)

    def too_big(self, output: str) -> bool:
        """Whether this answer would take more than the configured share of the client's limit."""
        return self.on and result_tokens(output) > self.limit_tokens

    def head(self, text: str, size: int | None = None) -> str:
        """The start of the answer sent in the result (by default a quarter of the limit), ended at a line break
        when one is near, so code is not cut mid-line."""
        size = size or self.limit_tokens * CHARS_PER_TOKEN // 4
        cut = text.rfind("\n", size // 2, size)
        return text[: cut + 1 if cut > 0 else size]

    def keep(self, call_id: str, text: str, caller: str = SHARED_CALLER) -> None:
        """Store a whole answer under its call_id (blocking)."""
        document = {"text": text, "caller": caller, "at": time.time()}
        self._store.put(KIND, call_id, document, self._settings.answer_ttl_s)

    def recent(self, caller: str = SHARED_CALLER, limit: int = LISTED) -> list[tuple[str, int]]:
        """The newest kept answers of this caller, as (call_id, characters), for resources/list (blocking)."""
        found = [
            (call_id, len(document["text"]))
            for call_id, document in self._store.recent(KIND, limit * 4)
            if isinstance(document, dict) and document.get("caller") == caller and isinstance(document.get("text"), str)
        ]
        return found[:limit]

    def read(self, call_id: str, caller: str = SHARED_CALLER) -> str:
        """The whole answer of a call; UnknownAnswerError when it is not kept (never kept, expired, another
        caller's). Blocking."""
        check_id("call_id", call_id, "the call_id in the link of a result")
        document = self._store.get(KIND, call_id)
        if document is None or document.get("caller") != caller or not isinstance(document.get("text"), str):
            raise UnknownAnswerError(call_id, self._settings.answer_ttl_s)
        return document["text"]

    async def linked(self, result: DelegateResult, offset: int = 0, caller: str = SHARED_CALLER) -> DelegateResult:
        """The result as the client gets it: from `offset` on (a job's poll), whole when small enough; else the
        head, a link and how to read the rest, with the whole answer kept. A store that cannot keep it leaves the
        answer whole, with a warning."""
        part = since(result, offset)
        if result.call_id is None or result.status != "done" or not self.too_big(part.output):
            return part
        whole = result.output
        problem = await _kept(self, result.call_id, whole, caller)  # paid for: kept even if the client gives up
        if problem:
            return part.model_copy(update={"warnings": [*part.warnings, problem]})
        head = self.head(part.output)
        uri, end = answer_uri(result.call_id), max(0, offset) + len(head)
        note = (
            f"\n\n[... characters {max(0, offset):,} to {end:,} of {len(whole):,}. The whole answer is the resource "
            f"{uri} (resources/read); {uri}?offset={end}&length=20000 reads the next part. The rest was kept out of "
            f"this result: it would take about {result_tokens(part.output):,} tokens, over {self.limit_tokens:,} "
            "(DELEGATE_LINK_SHARE of DELEGATE_CLIENT_MAX_TOKENS).]"
        )
        return part.model_copy(update={"output": head + note, "answer_uri": uri, "answer_chars": len(whole)})


async def _kept(shelf: AnswerShelf, key: str, text: str, caller: str) -> str | None:
    """Keep a whole text under `key`, even if the client gives up meanwhile; the store's error, or None."""
    try:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(shelf.keep, key, text, caller)
    except StoreError as exc:
        return f"not kept for a link: {exc}"
    return None


async def linked_panel(shelf: AnswerShelf, result: PanelResult, caller: str = SHARED_CALLER) -> PanelResult:
    """A panel too big for the client: its whole text kept under a new id, each answer cut to its head (the
    synthesis stays whole), and the link in the result."""
    whole = panel_text(result)
    if not shelf.too_big(whole):
        return result
    panel_id = uuid.uuid4().hex[:16]
    problem = await _kept(shelf, panel_id, whole, caller)
    if problem:
        return result.model_copy(update={"warnings": [*result.warnings, problem]})
    uri, size = answer_uri(panel_id), shelf.limit_tokens * CHARS_PER_TOKEN // 4 // max(1, len(result.answers))
    answers = []
    for answer in result.answers:
        if len(answer.output) > size:
            note = f"\n\n[... the first part of {len(answer.output):,} characters; the whole panel is {uri}.]"
            answer = answer.model_copy(update={"output": shelf.head(answer.output, size) + note})
        answers.append(answer)
    update = {"answers": answers, "call_id": panel_id, "answer_uri": uri, "answer_chars": len(whole)}
    return result.model_copy(update=update)


def answer_range(text: str, offset: int, length: int) -> str:
    """A part of an answer: `length` characters from `offset` (0 for all the rest)."""
    offset = max(0, offset)
    return text[offset : offset + length] if length > 0 else text[offset:]

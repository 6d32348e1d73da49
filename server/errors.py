"""Our exception types; every message says what went wrong and how to fix it."""

from __future__ import annotations

ECHO_CHARS = 40
"""The most of a client's value an error message repeats."""


def shown(value: object, limit: int = ECHO_CHARS) -> str:
    """A value a client sent, for a message: its repr, cut to `limit` characters with a count of the rest."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters)"


class DelegateError(Exception):
    """Base class: a failure whose message is safe and useful to show the user or the client model."""


class ConfigError(DelegateError):
    """A specialist file or setting is invalid; start-up stops with this message."""


class UnknownSpecialistError(DelegateError, KeyError):
    """A specialist name that is not in the catalogue."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"Unknown specialist: {shown(name)}. Known specialists: {', '.join(known)}.")

    def __str__(self) -> str:
        return str(self.args[0])


class InvalidInputError(DelegateError):
    """A tool argument is empty or over a size limit; nothing was sent to any provider."""


class NoUsableModelError(DelegateError):
    """No model of a specialist's chain can be called: every provider key is missing."""


class AllModelsFailedError(DelegateError):
    """Every model in the chain was tried and failed; carries the attempts for the caller."""

    def __init__(self, message: str, attempts: list[object]) -> None:
        super().__init__(message)
        self.attempts = attempts


class BudgetExceededError(DelegateError):
    """The daily USD budget is spent; no provider was called."""


class InputTooLargeError(DelegateError):
    """The input does not fit any usable model's context window; no provider was called."""


class UnknownThreadError(DelegateError):
    """A thread_id that names no live conversation (never created, expired or deleted); nothing was called."""


class StoreError(DelegateError):
    """The state store cannot be opened, read or written; the message names its location."""


class DamagedDocumentError(StoreError):
    """One stored document cannot be read (it is not a JSON object); the rest of the store is fine."""

    def __init__(self, location: str, kind: str, key: str) -> None:
        super().__init__(
            f"{location}: the stored {kind} {shown(key)} is damaged (not a JSON object). Delete that one entry, or "
            "let it expire; the rest of the store is fine."
        )
        self.kind = kind
        self.key = key


class FileRefusedError(InvalidInputError):
    """A file named in `files` cannot be given to a model (outside the roots, secret, binary, too big, missing)."""


class UnknownJobError(DelegateError):
    """A job_id that names no job: never started here, or its result expired."""

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"Unknown job_id {job_id!r}: no such job, or its result expired (finished jobs are kept for "
            "DELEGATE_JOB_TTL_S). Pass the job_id a delegate or ask_ result returned, or start the task again."
        )


class UnknownAnswerError(DelegateError):
    """A call_id whose whole answer is not kept: never sent by link, expired, or another caller's."""

    def __init__(self, call_id: str, ttl_s: float) -> None:
        super().__init__(
            f"No answer kept for call_id {call_id!r}: only answers sent by link are kept, for {ttl_s / 3600:g} hours "
            "(DELEGATE_ANSWER_TTL_S). Read the link a result gave you, or ask again."
        )


class JobLostError(DelegateError):
    """A job whose server stopped before it finished."""

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"Job {job_id!r} is lost: the server restarted while it was running, so its answer was never finished. "
            "Start the task again."
        )


class JobFailedError(DelegateError):
    """A job ended without an answer (every model failed, or it ran past DELEGATE_JOB_MAX_S)."""


class TooManyJobsError(DelegateError):
    """DELEGATE_MAX_JOBS jobs are running; nothing was started."""


class PanelFailedError(DelegateError):
    """Fewer panel members answered than a panel needs (two, or one when one was asked)."""

    def __init__(self, message: str, cost_usd: float | None = None) -> None:
        super().__init__(message)
        self.cost_usd = cost_usd
        """What the answers that did arrive cost (they were paid for)."""

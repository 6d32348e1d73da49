"""The prepare stage: everything a call must pass before any provider is called (its deadline starts, the input is
checked, the thread is loaded, the files are read, start-up work is waited for)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from server import tracing
from server.callers import ONLY, Caller
from server.clock import Deadline
from server.errors import InvalidInputError
from server.files import FileBundle, FileReader, FileRules, configured_roots, resolved_roots, split_list
from server.jobs import JobManager
from server.pipeline.startup import StartUp
from server.settings import Settings
from server.threads import Thread, ThreadBook, check_thread_id

logger = logging.getLogger(__name__)

# Characters that show nothing: a task made only of them (and whitespace) is empty.
_INVISIBLE = "\x00\u200b\u200c\u200d\u2060\ufeff"

EMPTY_TASK = "'task' is empty: pass the complete task for the specialist (and any material as 'context')"


def is_blank(text: str) -> bool:
    """Whether a text is empty once whitespace, NULs and zero-width characters are removed."""
    return not text.translate({ord(c): None for c in _INVISIBLE}).strip()


def validate(settings: Settings, task: str, context: str) -> None:
    """Reject an empty task or oversized input before any provider is called."""
    if is_blank(task):
        raise InvalidInputError(f"Invalid arguments: {EMPTY_TASK}.")
    limit = settings.max_task_chars
    if len(task) > limit:
        raise InvalidInputError(
            f"task is {len(task):,} characters; the limit is {limit:,} "
            "(DELEGATE_MAX_TASK_CHARS). Move long material into 'context'."
        )
    limit = settings.max_context_chars
    if len(context) > limit:
        raise InvalidInputError(
            f"context is {len(context):,} characters; the limit is {limit:,} "
            "(DELEGATE_MAX_CONTEXT_CHARS). Send only the relevant part."
        )


@dataclass(frozen=True)
class FileRoots:
    """The folders configured for reading files, and why there are none when there are none."""

    roots: list[Path]
    no_roots_reason: str

    @classmethod
    def from_settings(cls, settings: Settings) -> FileRoots:
        """Read once at start-up: the working directory is the one the client started us in, like the keys."""
        roots, reason = configured_roots(
            settings.file_roots, Path.cwd(), Path.home(), settings.file_roots_allow_wide
        )
        for missing in [p for p in roots if not p.is_dir()]:
            logger.warning("DELEGATE_FILE_ROOTS names %s, which is not a folder; no file is read from it", missing)
        return cls(roots, reason)


def file_rules(settings: Settings, configured: FileRoots, client_roots: Sequence[Path] = ()) -> FileRules:
    """Where a call may read files: the configured roots plus the client's MCP roots."""
    return FileRules(
        roots=resolved_roots([*configured.roots, *client_roots]),
        allow=tuple(split_list(settings.file_allow, ",")),
        max_file_chars=settings.max_file_chars,
        max_total_chars=settings.max_context_chars,
        max_files=settings.max_files,
        no_roots_reason=configured.no_roots_reason,
    )


@dataclass(frozen=True)
class Request:
    """What the caller sent, before anything is checked."""

    task: str
    context: str = ""
    files: Sequence[str] = ()
    client_roots: Sequence[Path] = ()
    thread_id: str | None = None
    background: bool = False
    caller: Caller = ONLY
    """Who sent it: on a server with named callers, its threads, jobs, answers and usage are its own."""


@dataclass
class Prepared:
    """A call that passed every check: its deadline (started as it arrived), its files, its thread, and how long it
    waited for the server's start-up work (None: it did not wait)."""

    deadline: Deadline
    bundle: FileBundle = field(default_factory=FileBundle)
    thread: Thread | None = None
    startup_wait_ms: float | None = None
    workdir: Path | None = None
    """Where a coding-agent CLI works for this call: the client's first root (None: the configured one)."""


class Prepare:
    """Runs the checks every call passes before any provider is called."""

    def __init__(
        self,
        settings: Settings,
        roots: FileRoots,
        threads: ThreadBook | None,
        jobs: JobManager,
        startup: StartUp,
    ) -> None:
        self._settings = settings
        self._roots = roots
        self._threads = threads
        self._jobs = jobs
        self._startup = startup

    async def run(self, request: Request) -> Prepared:
        """Start the call's deadline as it arrives, then check it (the thread must exist, the files are read);
        waiting for start-up work counts against the deadline (and the latency)."""
        deadline = Deadline(self._settings.deadline_s)
        validate(self._settings, request.task, request.context)
        thread = await self.thread(request.thread_id, request.caller.owner)
        if request.background and not self._settings.jobs:
            raise InvalidInputError("background needs jobs, which are off (DELEGATE_JOBS=off): call without it.")
        if request.background and self._jobs.full():
            raise self._jobs.full_error()
        bundle = await self.read_files(request.files, request.context, request.client_roots, deadline)
        waited = await self._startup.wait(deadline)
        workdir = next(iter(resolved_roots(request.client_roots)), None)
        return Prepared(deadline, bundle, thread, waited, workdir)

    async def read_files(
        self, files: Sequence[str], context: str, client_roots: Sequence[Path] = (), deadline: Deadline | None = None
    ) -> FileBundle:
        """Resolve and read the call's files on a worker thread within its deadline; refused files raise before any
        provider call."""
        if not files:
            return FileBundle()
        reader = FileReader(file_rules(self._settings, self._roots, client_roots))
        with tracing.stage("files", {"delegate.files.requested": len(files)}) as span:
            # A cancelled call does not wait for a slow glob to finish walking its folders.
            bundle = await anyio.to_thread.run_sync(
                reader.read, list(files), len(context), deadline, abandon_on_cancel=True
            )
            tracing.annotate(span, {"delegate.files.read": len(bundle.reads), "delegate.files.chars": len(bundle.text)})
        return bundle

    async def thread(self, thread_id: str | None, owner: str | None = None) -> Thread | None:
        """The conversation a call continues (UnknownThreadError when there is none, or it is not `owner`'s), or
        None for a new one."""
        if thread_id is None:
            return None
        if self._threads is None:
            raise InvalidInputError(
                "this server keeps no conversations (DELEGATE_THREADS=off): leave thread_id out and pass the "
                "earlier material again as context."
            )
        check_thread_id(thread_id)
        return await anyio.to_thread.run_sync(self._threads.load, thread_id, owner)

    async def turn_of(self, thread_id: str | None, turn: int | None, owner: str | None = None) -> tuple[str, str, str]:
        """For feedback on a thread: the task and specialist of turn `turn` (1 is the first), and the feedback key."""
        if not thread_id or turn is None:
            raise InvalidInputError("feedback on a thread needs both thread_id and turn (1 is the first turn).")
        thread = await self.thread(thread_id, owner)
        assert thread is not None
        if not 1 <= turn <= len(thread.turns):
            raise InvalidInputError(
                f"thread {thread_id!r} has {len(thread.turns)} turn(s); turn must be 1 to {len(thread.turns)}."
            )
        chosen = thread.turns[turn - 1]
        return chosen.task, chosen.specialist, f"thread-{thread_id}-{turn}"

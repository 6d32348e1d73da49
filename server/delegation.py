"""One delegate or ask call end to end: validate, check budget and size, route, answer, build the result."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import anyio

from server.calling import embedded, llm
from server.calling.chain import CHARS_PER_TOKEN, ChainRunner, Partial, estimate_tokens, usable_models
from server.calling.cooldown import Cooldowns
from server.catalog import Catalog, Specialist
from server.clock import Deadline, ms_since
from server.errors import (
    AllModelsFailedError,
    ConfigError,
    DelegateError,
    InvalidInputError,
    PanelFailedError,
    StoreError,
)
from server.feedback import Correction, FeedbackBook, task_key
from server.files import FileBundle, FileReader, FileRules, configured_roots, resolved_roots, split_list
from server.jobs import HANDOFF_MARGIN_S, Job, JobManager, new_job_id
from server.panel import Panel, choose_members, judge_messages
from server.progress import NO_PROGRESS, Progress
from server.redact import secret_values
from server.results import (
    CallUsage,
    DelegateResult,
    PanelAnswer,
    PanelResult,
    Routing,
    Usage,
    confidence_text,
    total_cost,
)
from server.routing.classifier import Classifier
from server.routing.classifier_cache import load_or_train
from server.routing.router import RouteCache, RouteOutcome, Router
from server.settings import Settings
from server.store.base import Store
from server.store.budget import DailyBudget, default_data_dir
from server.store.decision_log import DecisionLog, entry
from server.store.factory import open_store
from server.store.usage import UsageTally
from server.threads import Thread, ThreadBook, Turn, check_thread_id, new_thread_id, trim_history

logger = logging.getLogger(__name__)


# Characters that show nothing: a task made only of them (and whitespace) is empty.
_INVISIBLE = "\x00\u200b\u200c\u200d\u2060\ufeff"


def is_blank(text: str) -> bool:
    """Whether a text is empty once whitespace, NULs and zero-width characters are removed."""
    return not text.translate({ord(c): None for c in _INVISIBLE}).strip()


EMPTY_TASK = "'task' is empty: pass the complete task for the specialist (and any material as 'context')"


def material(context: str, files_text: str = "") -> str:
    """The context the caller passed, then the files the server read for it."""
    return "\n\n".join(part for part in (context, files_text) if part)


def user_content(task: str, context: str, files_text: str = "", material_dropped: bool = False) -> str:
    """One user message: the context and files (if any), then the task."""
    given = material(context, files_text)
    note = "[The context and files given with this task were left out to save space.]\n\n" if material_dropped else ""
    return f"{note}<context>\n{given}\n</context>\n\n{task}" if given else f"{note}{task}"


def specialist_messages(
    spec: Specialist, task: str, context: str, files_text: str = "", history: Sequence[Turn] = ()
) -> list[dict[str, str]]:
    """The specialist's conversation: its instructions, the thread's earlier turns, then this turn's context and
    files (if any) and its task."""
    messages = [{"role": "system", "content": spec.instructions}]
    for turn in history:
        messages.append(
            {"role": "user", "content": user_content(turn.task, turn.context, turn.files_text, turn.material_dropped)}
        )
        messages.append({"role": "assistant", "content": turn.answer})
    messages.append({"role": "user", "content": user_content(task, context, files_text)})
    return messages


def classifier_text(task: str, context: str) -> str:
    """What the classifier reads: the task only. The kind of work is asked for in the task; the context is
    material (a log, a contract, code) whose vocabulary misleads a bag-of-words model."""
    del context
    return task


def training_examples(
    catalog: Catalog, extra: Path | None, corrections: list[Correction] | None = None
) -> dict[str, list[str]]:
    """Each specialist's description and examples, a user's labelled JSONL file when given, and the tasks users
    corrected through feedback (under the specialist they should have gone to)."""
    examples = {spec.name: [spec.description, *spec.examples] for spec in catalog}
    for correction in reversed(corrections or []):  # oldest first: the order is part of the cache key
        if correction.should_be in examples:
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


def _read_lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the classifier examples ({exc.__class__.__name__}).") from None


def premium_rates(catalog: Catalog, environ: Mapping[str, str]) -> list[tuple[float, float]]:
    """Per-token prices of each specialist's first usable model (those litellm can price)."""
    rates = []
    for spec in catalog:
        models = usable_models(spec, environ)
        found = llm.price(models[0].model) if models else None
        if found:
            rates.append(found)
    return rates


def premium_cost(rates: list[tuple[float, float]], usage: CallUsage) -> float | None:
    """What the specialist call would have cost on the priciest of those models."""
    costs = [usage.input_tokens * per_in + usage.output_tokens * per_out for per_in, per_out in rates]
    return round(max(costs), 10) if costs else None


def cut_marker(cut: str, cap_tokens: int) -> str:
    """The line appended to an answer the provider stopped early, saying why and what to do."""
    if cut == "length":
        return (
            f"\n\n[... answer cut by the provider: the model reached its output cap of {cap_tokens:,} tokens "
            "(max_output_tokens in the specialist file, DELEGATE_MAX_OUTPUT_TOKENS). Ask for a shorter answer or "
            "for the rest.]"
        )
    return "\n\n[... answer cut by the provider's safety filter; what came before the cut is above.]"


def cap_output(text: str, limit: int) -> str:
    """Cut an answer longer than `limit` characters, with a marker saying so."""
    if len(text) <= limit:
        return text
    return (
        f"{text[:limit]}\n\n[... answer truncated: it was {len(text):,} characters; the limit is {limit:,} "
        "(DELEGATE_MAX_OUTPUT_CHARS). Ask for a shorter answer or a part of it.]"
    )


class Answering(NamedTuple):
    """Everything _answer needs for one call's answer, in its argument order (a job carries it on)."""

    spec: Specialist
    outcome: RouteOutcome
    task: str
    context: str
    deadline: Deadline
    progress: Progress
    bundle: FileBundle
    thread: Thread | None


@dataclass
class Paid:
    """What one call has paid so far, for settling its budget reservation."""

    cost_usd: float | None = None
    result: DelegateResult | None = None


class Delegator:
    """Runs delegate and ask calls; shared by the MCP tools and the command line."""

    def __init__(
        self, settings: Settings, catalog: Catalog, environ: Mapping[str, str], store: Store | None = None
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self._environ = dict(environ)
        self.store: Store = store if store is not None else open_store(settings, environ)
        """The one state store (threads, jobs, budget, usage); opened and checked at start-up."""
        shared = getattr(self.store, "shared_cooldowns", None)  # only a fleet store (Redis) shares cooldowns
        cooldowns = Cooldowns(settings.cooldown_s, shared=shared() if shared is not None else None)
        limiter = anyio.CapacityLimiter(settings.max_concurrency)
        self._chain = ChainRunner(
            settings, self._environ, secret_values(environ, catalog.key_env_names), cooldowns, limiter
        )
        self._router = Router(settings, self._environ, cooldowns, limiter)
        self._budget = None
        if settings.daily_budget_usd is not None:
            data_dir = settings.data_dir or default_data_dir(environ)
            self._budget = DailyBudget(settings.daily_budget_usd, self.store, data_dir)
        # Keys are read once at start-up, like every MCP server's environment.
        self._usable = [s for s in catalog if usable_models(s, self._environ)]
        self._cache = RouteCache(settings.route_cache_size)
        self._classifier: Classifier | None = None
        self._classifier_lock = threading.Lock()
        self._calls_started = 0
        self._in_flight = 0
        self.wait_for_classifier = True
        """True for one-shot commands (ask, eval); the server sets False so early calls never wait for training."""
        self._log = DecisionLog(settings.decision_log, settings.log_tasks) if settings.decision_log else None
        self.feedback = FeedbackBook(self.store, catalog.names)
        """Corrections users made to routing, kept in the store."""
        self.feedback_on = settings.feedback or "feedback" in (settings.tools or "").replace(" ", "").split(",")
        """Whether delegate calls are remembered (task text included) so feedback can name them by call_id."""
        self._corrections: list[Correction] | None = None
        self._memory: dict[str, str] = {}  # task_key -> the specialist a user said it should go to
        self.usage = UsageTally(self.store)
        self.usage.start()
        self._premium_rates: list[tuple[float, float]] | None = None
        self.threads: ThreadBook | None = None
        """Conversations, kept in the store unless DELEGATE_THREADS=off."""
        if settings.threads:
            self.threads = ThreadBook(self.store, settings.thread_ttl_days, settings.thread_max_chars)
        # The working directory is the one the client started us in; it is read once, like the keys.
        self._file_roots, self._no_roots_reason = configured_roots(
            settings.file_roots, Path.cwd(), Path.home(), settings.file_roots_allow_wide
        )
        for missing in [p for p in self._file_roots if not p.is_dir()]:
            logger.warning("DELEGATE_FILE_ROOTS names %s, which is not a folder; no file is read from it", missing)
        self.jobs = JobManager(settings, self.store)
        """Answers that outlive their tool call (delegate_result reads them)."""
        if settings.panel_judge and settings.panel_judge not in catalog.names:
            raise ConfigError(
                f"DELEGATE_PANEL_JUDGE: unknown specialist {settings.panel_judge!r}. Known: {', '.join(catalog.names)}."
            )
        self.hand_off_at_deadline = True
        """Hand a job back at the call's deadline (the server); one-shot commands wait for the whole answer."""

    def close(self) -> None:
        """Release the store's connections."""
        self.store.close()

    @property
    def environ(self) -> Mapping[str, str]:
        """The environment snapshot taken at start-up (keys are read once)."""
        return self._environ

    @property
    def classifier(self) -> Classifier | None:
        """The embedded classifier, trained on first use (under a second), or by warm_up() in the background."""
        if self.settings.classifier and self._classifier is None:
            with self._classifier_lock:
                if self._classifier is None:
                    self._classifier = self._train()
        return self._classifier

    def _train(self) -> Classifier:
        """The classifier for the catalogue and the corrections so far (from the cache when it has them)."""
        corrections = self.corrections()
        examples = training_examples(self.catalog, self.settings.classifier_examples, corrections)
        data_dir = self.settings.data_dir or default_data_dir(self._environ)
        return load_or_train(examples, self.settings.classifier_threshold, data_dir)

    def corrections(self) -> list[Correction]:
        """The corrections users made, read from the store once (blocking); they also teach the router."""
        if self._corrections is None:
            try:
                found = self.feedback.corrections()
            except StoreError as exc:  # routing still works without the lessons
                logger.warning("cannot read routing feedback from the store: %s", exc)
                found = []
            self._learn_all(found)
        return self._corrections or []

    def _learn_all(self, corrections: list[Correction]) -> None:
        self._corrections = corrections
        self._memory = {task_key(c.task): c.should_be for c in reversed(corrections)}
        self._router.set_corrections([(c.task, c.should_be) for c in corrections if not c.good])

    async def _thread_turn(self, thread_id: str | None, turn: int | None) -> tuple[str, str, str]:
        """The task and specialist of turn `turn` (1 is the first) of a thread, and the feedback key for it."""
        if not thread_id or turn is None:
            raise InvalidInputError("feedback on a thread needs both thread_id and turn (1 is the first turn).")
        thread = await self._thread(thread_id)
        assert thread is not None
        if not 1 <= turn <= len(thread.turns):
            raise InvalidInputError(
                f"thread {thread_id!r} has {len(thread.turns)} turn(s); turn must be 1 to {len(thread.turns)}."
            )
        chosen = thread.turns[turn - 1]
        return chosen.task, chosen.specialist, f"thread-{thread_id}-{turn}"

    async def give_feedback(
        self,
        *,
        call_id: str | None = None,
        task: str | None = None,
        thread_id: str | None = None,
        turn: int | None = None,
        good: bool,
        should_be: str | None = None,
    ) -> Correction:
        """Record feedback on a call (by call_id, or by thread_id and turn number); a correction takes effect at
        once and retrains the classifier in the background (the exact task is routed as corrected meanwhile)."""
        routed_to = key = None
        if thread_id is not None or turn is not None:
            task, routed_to, key = await self._thread_turn(thread_id, turn)

        def record() -> Correction:
            correction = self.feedback.record(
                call_id=call_id, task=task, good=good, should_be=should_be, routed_to=routed_to, key=key
            )
            self._learn_all([correction, *[c for c in self.corrections() if c.call_id != correction.call_id]])
            return correction

        correction = await anyio.to_thread.run_sync(record)
        if self.settings.classifier and self._classifier is not None:
            threading.Thread(target=self._retrain, name="classifier-retrain", daemon=True).start()
        return correction

    def _retrain(self) -> None:
        try:
            classifier = self._train()
        except Exception:  # the previous classifier keeps working
            logger.warning("retraining the classifier after feedback failed", exc_info=True)
            return
        with self._classifier_lock:
            self._classifier = classifier

    def warm_up(self) -> None:
        """Import and prime litellm, then train the classifier, so the first call pays for none of it (on a thread)."""
        try:
            llm.warm_up_in_background().join()
            if not self._calls_started:  # a call already under way primes litellm itself; do not compete with it
                llm.prime()
            quiet_by = time.monotonic() + 30
            while self._in_flight and time.monotonic() < quiet_by:  # training is CPU-bound: let calls finish
                time.sleep(0.05)
            _ = self.classifier
        except Exception:  # warm-up only saves time; a call that needs the failing part reports it properly
            logger.warning("background warm-up failed; the first call will do the work", exc_info=True)

    def validate(self, task: str, context: str) -> None:
        """Reject an empty task or oversized input before any provider is called."""
        if is_blank(task):
            raise InvalidInputError(f"Invalid arguments: {EMPTY_TASK}.")
        limit = self.settings.max_task_chars
        if len(task) > limit:
            raise InvalidInputError(
                f"task is {len(task):,} characters; the limit is {limit:,} "
                "(DELEGATE_MAX_TASK_CHARS). Move long material into 'context'."
            )
        limit = self.settings.max_context_chars
        if len(context) > limit:
            raise InvalidInputError(
                f"context is {len(context):,} characters; the limit is {limit:,} "
                "(DELEGATE_MAX_CONTEXT_CHARS). Send only the relevant part."
            )

    def file_rules(self, client_roots: Sequence[Path] = ()) -> FileRules:
        """Where this call may read files: the configured roots plus the client's MCP roots."""
        s = self.settings
        return FileRules(
            roots=resolved_roots([*self._file_roots, *client_roots]),
            allow=tuple(split_list(s.file_allow, ",")),
            max_file_chars=s.max_file_chars,
            max_total_chars=s.max_context_chars,
            max_files=s.max_files,
            no_roots_reason=self._no_roots_reason,
        )

    async def read_files(
        self, files: Sequence[str], context: str, client_roots: Sequence[Path] = (), deadline: Deadline | None = None
    ) -> FileBundle:
        """Resolve and read the call's files on a worker thread within its deadline; refused files raise before any
        provider call."""
        if not files:
            return FileBundle()
        reader = FileReader(self.file_rules(client_roots))
        # A cancelled call does not wait for a slow glob to finish walking its folders.
        return await anyio.to_thread.run_sync(reader.read, list(files), len(context), deadline, abandon_on_cancel=True)

    async def _prepare(
        self,
        task: str,
        context: str,
        files: Sequence[str] = (),
        client_roots: Sequence[Path] = (),
        thread_id: str | None = None,
        background: bool = False,
    ) -> tuple[Deadline, FileBundle, Thread | None]:
        """Start the call's deadline as it arrives, then the checks every call passes (the thread must exist, the
        files are read) before any provider is called; waiting for start-up work counts against the deadline (and
        the latency)."""
        deadline = Deadline(self.settings.deadline_s)
        self.validate(task, context)
        thread = await self._thread(thread_id)
        if background and not self.settings.jobs:
            raise InvalidInputError("background needs jobs, which are off (DELEGATE_JOBS=off): call without it.")
        if background and self.jobs.full():
            raise self.jobs.full_error()
        bundle = await self.read_files(files, context, client_roots, deadline)
        # One-off start-up work, normally done by warm_up() before the first call arrives; on worker threads
        # so the event loop keeps serving.
        with anyio.move_on_after(deadline.remaining()) as waiting:
            await llm.ready()
            if self._corrections is None:
                await anyio.to_thread.run_sync(self.corrections)
            if self.wait_for_classifier and self.settings.classifier and self._classifier is None:
                await anyio.to_thread.run_sync(lambda: self.classifier)
        if waiting.cancelled_caught:
            raise AllModelsFailedError(
                f"The call's deadline ({self.settings.deadline_s:g} s, DELEGATE_DEADLINE_S) ran out while the server "
                "was still starting up (loading its model library); no provider was called. Try again: later calls "
                "do not wait for it.",
                [],
            )
        return deadline, bundle, thread

    async def _thread(self, thread_id: str | None) -> Thread | None:
        """The conversation a call continues (UnknownThreadError when there is none), or None for a new one."""
        if thread_id is None:
            return None
        if self.threads is None:
            raise InvalidInputError(
                "this server keeps no conversations (DELEGATE_THREADS=off): leave thread_id out and pass the "
                "earlier material again as context."
            )
        check_thread_id(thread_id)
        return await anyio.to_thread.run_sync(self.threads.load, thread_id)

    async def delegate(
        self,
        task: str,
        context: str = "",
        progress: Progress = NO_PROGRESS,
        files: Sequence[str] = (),
        client_roots: Sequence[Path] = (),
        thread_id: str | None = None,
        background: bool = False,
    ) -> DelegateResult:
        """Route the task to the best specialist and return its answer with the routing metadata; with a
        thread_id, as the next turn of that conversation."""
        call = self._delegate(task, context, progress, files, client_roots, thread_id, background)
        return await self._logged("delegate", task, call)

    async def ask(
        self,
        name: str,
        task: str,
        context: str = "",
        progress: Progress = NO_PROGRESS,
        files: Sequence[str] = (),
        client_roots: Sequence[Path] = (),
        thread_id: str | None = None,
        background: bool = False,
    ) -> DelegateResult:
        """Send the task straight to one specialist, with no routing; with a thread_id, as the next turn."""
        spec = self.catalog.get(name)
        call = self._ask(spec, task, context, progress, files, client_roots, thread_id, background)
        return await self._logged(spec.tool_name, task, call)

    async def job_result(
        self, job_id: str, wait_s: float = 0, cancel: bool = False, progress: Progress = NO_PROGRESS
    ) -> DelegateResult:
        """A job's result: done with the whole answer, or running with the text so far (delegate_result)."""
        return await self.jobs.result(job_id, wait_s, cancel, progress)

    async def panel(
        self,
        task: str,
        context: str = "",
        specialists: Sequence[str] = (),
        synthesize: bool = True,
        progress: Progress = NO_PROGRESS,
        files: Sequence[str] = (),
        client_roots: Sequence[Path] = (),
    ) -> PanelResult:
        """The same task to several specialists at once, each blind to the others, and a synthesis of them."""
        named = choose_members(self.catalog, self._usable, list(specialists)) if specialists else None
        judge = self.catalog.get(self.settings.panel_judge or self.catalog.default.name) if synthesize else None
        deadline, bundle, _ = await self._prepare(task, context, files, client_roots)
        members = named or choose_members(self.catalog, self._usable, [], self._fit(task))
        given = material(context, bundle.text)
        # The whole panel is reserved before any call: every member's worst case, and the judge's.
        async with self._budgeted(self._panel_worst_case(task, given, members, judge)) as paid:
            try:
                result = await Panel(self._chain).run(task, given, members, judge, deadline, progress)
            except PanelFailedError as exc:
                paid.cost_usd = exc.cost_usd  # the answers that arrived were paid for
                raise
            paid.cost_usd = result.usage.total_cost_usd
        return result.model_copy(update={"files": bundle.reads, "warnings": [*bundle.warnings, *result.warnings]})

    async def _delegate(
        self,
        task: str,
        context: str,
        progress: Progress,
        files: Sequence[str],
        client_roots: Sequence[Path],
        thread_id: str | None,
        background: bool,
    ) -> DelegateResult:
        deadline, bundle, thread = await self._prepare(task, context, files, client_roots, thread_id, background)
        turns = thread.turns if thread else []
        worst = self._worst_case(task, context, bundle.text, turns, self._usable, routed=True)
        settle = AsyncExitStack()
        paid = await settle.enter_async_context(self._budgeted(worst))
        try:
            outcome = await self.route(task, context, deadline, bundle.text)
            paid.cost_usd = outcome.usage.cost_usd  # the router is paid for even if no specialist answers
            await progress.milestone(f"routed to {outcome.specialist} ({outcome.routing.decided_by})")
            spec = self.catalog.get(outcome.specialist)
        except BaseException:
            await settle.aclose()
            raise
        answer = Answering(spec, outcome, task, context, deadline, progress, bundle, thread)
        return await self._respond("delegate", answer, paid, settle, background)

    async def _ask(
        self,
        spec: Specialist,
        task: str,
        context: str,
        progress: Progress,
        files: Sequence[str],
        client_roots: Sequence[Path],
        thread_id: str | None,
        background: bool,
    ) -> DelegateResult:
        deadline, bundle, thread = await self._prepare(task, context, files, client_roots, thread_id, background)
        direct = Routing(decided_by="direct", reason=f"called directly as {spec.tool_name}")
        outcome = RouteOutcome(spec.name, direct, CallUsage())
        worst = self._worst_case(task, context, bundle.text, thread.turns if thread else [], [spec], routed=False)
        settle = AsyncExitStack()
        paid = await settle.enter_async_context(self._budgeted(worst))
        answer = Answering(spec, outcome, task, context, deadline, progress, bundle, thread)
        return await self._respond(spec.tool_name, answer, paid, settle, background)

    async def _respond(
        self, tool: str, answer: Answering, paid: Paid, settle: AsyncExitStack, background: bool
    ) -> DelegateResult:
        """Answer within the deadline; an answer still streaming then goes on as a job (or is cut, jobs off). The
        budget reservation is settled when the answer ends: by this call, or by its job after the hand-off."""
        spec, outcome, deadline = answer.spec, answer.outcome, answer.deadline
        if not self.settings.jobs:
            partial = Partial()
            async with settle:
                try:
                    paid.result = await self._answer(*answer, partial)
                except AllModelsFailedError:
                    if not partial.text:
                        raise
                    why = "Jobs are off (DELEGATE_JOBS=off)"
                    paid.result = self._cut(spec, outcome, partial, deadline, answer.bundle, why)
            return paid.result
        job = Job(new_job_id(), spec.name, outcome.routing, outcome.usage, deadline.started)
        job.partial.try_limit_s = self.settings.job_max_s
        job_answer = answer._replace(
            deadline=Deadline(self.settings.job_max_s, started=deadline.started), progress=job.progress
        )

        async def work(job: Job) -> DelegateResult:
            async with settle:  # settled here, whether the call or the job returns the answer
                paid.result = await self._answer(*job_answer, job.partial)
            return paid.result

        async def record(job: Job) -> None:  # a handed-off job counts in usage and the log when it ends
            await self._record(tool, answer.task, job.result if job.status == "done" else None, job.error)

        job.on_finish = record
        self.jobs.start(job, work)
        if background:
            return await self.jobs.hand_off(job)
        wait = deadline.remaining() - HANDOFF_MARGIN_S if self.hand_off_at_deadline else math.inf
        try:
            ended = await self.jobs.wait(job, wait, answer.progress)
        except anyio.get_cancelled_exc_class():
            job.cancel()  # the client gave up on this call before a job id reached it: stop paying for it
            raise
        if not ended and not self.jobs.full():
            return await self.jobs.hand_off(job)
        if not ended:
            job.cancel()
            await self.jobs.wait(job, math.inf)
            if job.partial.text:
                why = f"{self.settings.max_jobs} jobs were already running (DELEGATE_MAX_JOBS)"
                return self._cut(spec, outcome, job.partial, deadline, answer.bundle, why)
        if job.error is not None:
            raise job.error
        if job.result is None:
            raise AllModelsFailedError(
                f"No answer from specialist '{spec.name}' within the call's deadline (DELEGATE_DEADLINE_S), and "
                f"{self.settings.max_jobs} jobs were already running (DELEGATE_MAX_JOBS) to carry it on.",
                job.partial.attempts,
            )
        return job.result

    def _cut(
        self,
        spec: Specialist,
        outcome: RouteOutcome,
        partial: Partial,
        deadline: Deadline,
        bundle: FileBundle,
        why: str,
    ) -> DelegateResult:
        """What streamed before the deadline (or a stall), marked truncated: it was paid for, so it is kept."""
        marker = (
            f"[... answer cut after {len(partial.text):,} characters: the model stopped or the call's deadline "
            f"(DELEGATE_DEADLINE_S = {self.settings.deadline_s:g} s) came. {why}, so the rest was not written.]"
        )
        return DelegateResult(
            output=f"{cap_output(partial.text, self.settings.max_output_chars)}\n\n{marker}",
            specialist=spec.name,
            model=partial.model or "",
            routing=outcome.routing,
            attempts=partial.attempts,
            usage=Usage(router=outcome.usage, total_cost_usd=outcome.usage.cost_usd),
            latency_ms=deadline.elapsed_ms(),
            truncated=True,
            files=bundle.reads,
            warnings=list(bundle.warnings),
        )

    async def route_only(self, task: str, context: str = "", *, remembered: bool = True) -> RouteOutcome:
        """Only the routing decision, as delegate would make it (for evaluation); no specialist is called.
        remembered=False leaves out the exact-task memory of corrections (to measure what the models learned)."""
        deadline, _, _ = await self._prepare(task, context)
        async with self._budgeted(self._worst_case(task, context, "", [], [], routed=True)) as paid:
            outcome = await self.route(task, context, deadline, remembered=remembered)
            paid.cost_usd = outcome.usage.cost_usd
        return outcome

    def _worst_case(
        self, task: str, context: str, files_text: str, turns: list[Turn], specs: list[Specialist], *, routed: bool
    ) -> float:
        """The most this call could cost: the router's worst case (when it routes) plus the priciest answer."""
        if self._budget is None:
            return 0.0
        router = 0.0
        if routed and self._usable:
            names = [s.name for s in self._usable]
            default = self.catalog.default.name if self.catalog.default.name in names else names[0]
            router = self._router.worst_case_usd(task, material(context, files_text), self._usable, default)
        answers = []
        for spec in specs:  # the thread's history as _answer will send it: trimmed to the specialist's window
            history, _ = self.fit_history(spec, task, context, files_text, turns)
            messages = specialist_messages(spec, task, context, files_text, history)
            answers.append(self._chain.worst_case_usd(spec, messages))
        return router + max(answers, default=0.0)

    def _panel_worst_case(
        self, task: str, given: str, members: list[Specialist], judge: Specialist | None
    ) -> float:
        """The most a panel could cost: each member's priciest answer, and the judge reading answers at their caps."""
        if self._budget is None:
            return 0.0
        total = sum(self._worst_case(task, given, "", [], [m], routed=False) for m in members)
        if judge is not None and len(members) > 1:
            caps = [min(m.max_output_tokens, self.settings.max_output_tokens) for m in members]
            longest = [PanelAnswer(specialist="", output="x" * int(c * CHARS_PER_TOKEN), ok=True) for c in caps]
            total += self._chain.worst_case_usd(judge, judge_messages(task, longest)[0])
        return total

    @asynccontextmanager
    async def _budgeted(self, worst_case_usd: float) -> AsyncIterator[Paid]:
        """Reserve the worst case before any provider call; afterwards settle what was paid, never losing an answer."""
        paid = Paid()
        if self._budget is None:
            yield paid
            return
        budget = self._budget
        hold = await anyio.to_thread.run_sync(budget.reserve, worst_case_usd)  # BudgetExceededError: nothing called
        try:
            yield paid
        finally:
            if paid.result is not None:
                paid.cost_usd = paid.result.usage.total_cost_usd
            hold.spent_usd = paid.cost_usd or 0.0
            with anyio.CancelScope(shield=True):  # money already spent is recorded even if the call is cancelled
                try:
                    await anyio.to_thread.run_sync(budget.settle, hold)
                except StoreError as exc:
                    warning = f"This call's cost (${hold.spent_usd:.6f}) could not be added to today's budget: {exc}"
                    logger.warning("%s", warning)
                    if paid.result is not None:
                        paid.result.warnings.append(warning)

    def _fit(self, task: str) -> dict[str, float] | None:
        """How well the task fits each specialist, by the classifier (None when it is off or still training)."""
        classifier = self.classifier if self.wait_for_classifier else self._classifier
        return classifier.fit(classifier_text(task, "")) if classifier else None

    async def route(
        self, task: str, context: str, deadline: Deadline, files_text: str = "", *, remembered: bool = True
    ) -> RouteOutcome:
        """Choose a specialist: as a user corrected this very task, else the classifier when it is sure, else a
        cached or fresh router decision. Files count toward the window check and the router's size information
        exactly like context."""
        if not self._usable:  # nothing can answer: the default's error names the keys to set
            nothing = Routing(decided_by="default", reason="no specialist has a usable model")
            return RouteOutcome(self.catalog.default.name, nothing, CallUsage())
        tokens = max(estimate_tokens(specialist_messages(s, task, context, files_text)) for s in self._usable)
        context = material(context, files_text)
        candidates = [s for s in self._usable if self._chain.fits(s, tokens)]
        if not candidates:
            raise self._chain.too_large_error(self._usable, tokens)
        names = [s.name for s in candidates]
        corrected = self._memory.get(task_key(task)) if remembered and self._memory else None
        if corrected in names:
            routing = Routing(decided_by="feedback", reason=f"a user corrected this task's routing to {corrected}")
            return RouteOutcome(corrected, routing, CallUsage())
        # A server answering its first calls does not wait for the classifier's training: the router decides.
        classifier = self.classifier if self.wait_for_classifier else self._classifier
        started = time.monotonic()
        decision = classifier.decide(classifier_text(task, context)) if classifier else None
        if decision is not None and decision.label in names:
            confidence = round(decision.confidence, 4)
            routing = Routing(
                decided_by="classifier",
                reason=f"the embedded classifier chose {decision.label} with confidence {confidence_text(confidence)}",
                confidence=confidence,
                latency_ms=ms_since(started),
            )
            return RouteOutcome(decision.label, routing, CallUsage())
        key = RouteCache.key(task, context, self.settings.router_preview_chars, names)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        fallback = self.catalog.default.name if self.catalog.default.name in names else names[0]
        outcome = await self._router.route(task, context, candidates, fallback, deadline)
        self._cache.put(key, outcome)
        return outcome

    async def _logged(self, tool: str, task: str, call: Awaitable[DelegateResult]) -> DelegateResult:
        """Run a call (counted, so background warm-up can stay out of its way) and log it when asked."""
        self._calls_started += 1
        self._in_flight += 1
        try:
            return await self._log_call(tool, task, call)
        finally:
            self._in_flight -= 1

    async def _log_call(self, tool: str, task: str, call: Awaitable[DelegateResult]) -> DelegateResult:
        """Await the call; count it for delegate://usage and, when the decision log is on, append its line."""
        call_id = uuid.uuid4().hex[:16]
        try:
            result = (await call).model_copy(update={"call_id": call_id})
        except anyio.get_cancelled_exc_class():
            await self._count(self.usage.record_cancelled)
            raise
        except DelegateError as exc:
            await self._record(tool, task, None, exc)
            raise
        if result.status != "running":  # a job handed off records itself when it ends
            result = await self._record(tool, task, result, None) or result
        if self.feedback_on and tool == "delegate":
            problem = await self._remember(call_id, task, result)
            if problem:
                result = result.model_copy(update={"warnings": [*result.warnings, problem]})
        return result

    async def _record(
        self, tool: str, task: str, result: DelegateResult | None, error: Exception | None
    ) -> DelegateResult | None:
        """Count one call for delegate://usage and, when the decision log is on, append its line; the result,
        with a warning when the usage totals could not be updated."""
        if result is None:
            await self._count(self.usage.record, None, None)
            if self._log is not None:
                name = error.__class__.__name__ if error is not None else "cancelled"
                await self._write_log(entry(tool, task, None, name, None, include_task=self._log.include_task))
            return None
        if self._premium_rates is None:  # litellm is loaded by now; keys and prices do not change while we run
            self._premium_rates = premium_rates(self.catalog, self._environ)
        premium = premium_cost(self._premium_rates, result.usage.specialist)
        problem = await self._count(self.usage.record, result, premium)
        if problem:
            result = result.model_copy(update={"warnings": [*result.warnings, problem]})
        if self._log is not None:
            await self._write_log(entry(tool, task, result, None, premium, include_task=self._log.include_task))
        return result

    async def _remember(self, call_id: str, task: str, result: DelegateResult) -> str | None:
        """Keep the call so feedback can name it; a store failure costs the answer nothing (a warning)."""
        with anyio.CancelScope(shield=True):
            try:
                await anyio.to_thread.run_sync(
                    self.feedback.remember_call, call_id, task, result.specialist, result.routing.decided_by
                )
            except StoreError as exc:
                logger.warning("cannot remember the call for feedback: %s", exc)
                return "this call could not be remembered for feedback (the store failed)"
        return None

    async def _count(self, record: Callable[..., None], *args: Any) -> str | None:
        """Update the usage totals in the store; a store failure costs the answer nothing (a warning)."""
        with anyio.CancelScope(shield=True):
            try:
                await anyio.to_thread.run_sync(record, *args)
            except StoreError as exc:
                logger.warning("cannot update the usage totals: %s", exc)
                return f"The usage totals could not be updated: {exc}"
        return None

    async def _write_log(self, line: dict[str, Any]) -> None:
        assert self._log is not None
        with anyio.CancelScope(shield=True):
            try:
                await anyio.to_thread.run_sync(self._log.append, line)
            except OSError as exc:  # a log that cannot be written must not fail the call
                logger.warning("cannot write the decision log %s: %s", self._log.path, exc.__class__.__name__)

    async def _answer(
        self,
        spec: Specialist,
        outcome: RouteOutcome,
        task: str,
        context: str,
        deadline: Deadline,
        progress: Progress = NO_PROGRESS,
        bundle: FileBundle | None = None,
        thread: Thread | None = None,
        partial: Partial | None = None,
    ) -> DelegateResult:
        bundle = bundle or FileBundle()
        history, trimmed = self.fit_history(spec, task, context, bundle.text, thread.turns if thread else [])
        messages = specialist_messages(spec, task, context, bundle.text, history)
        try:
            answer = await self._chain.run(spec, messages, deadline, progress, partial)
        except (AllModelsFailedError, anyio.get_cancelled_exc_class()):
            await self._count(self.usage.record_unanswered, outcome.usage)
            raise
        completion = answer.completion
        specialist_usage = CallUsage(
            input_tokens=completion.input_tokens, output_tokens=completion.output_tokens, cost_usd=completion.cost_usd
        )
        usage = Usage(
            router=outcome.usage,
            specialist=specialist_usage,
            total_cost_usd=total_cost(outcome.usage.cost_usd, specialist_usage.cost_usd),
        )
        output = cap_output(completion.text, self.settings.max_output_chars)
        if completion.cut and not answer.model.startswith(f"{embedded.PROVIDER}/"):  # it writes its own cut note
            output += cut_marker(completion.cut, min(spec.max_output_tokens, self.settings.max_output_tokens))
        result = DelegateResult(
            output=output,
            truncated=completion.cut is not None or output != completion.text,
            specialist=spec.name,
            model=answer.model,
            routing=outcome.routing,
            attempts=answer.attempts,
            usage=usage,
            latency_ms=deadline.elapsed_ms(),
            thread_trimmed=trimmed,
            files=bundle.reads,
            warnings=list(bundle.warnings),
        )
        turn = Turn(
            task=task,
            context=context,
            files=bundle.reads,
            files_text=bundle.text,
            answer=result.output,
            specialist=spec.name,
            model=answer.model,
            at=time.time(),
        )
        await self.save_turn(thread.id if thread else None, turn, result)
        result.latency_ms = deadline.elapsed_ms()
        return result

    def fit_history(
        self, spec: Specialist, task: str, context: str, files_text: str, turns: list[Turn]
    ) -> tuple[list[Turn], bool]:
        """The thread's turns that fit the specialist's largest usable window with this turn, and whether any
        material was left out to make them fit (the oldest context and files first, then the oldest turns)."""
        window = self._chain.largest_window(spec)
        if window is None or not turns:
            return turns, False
        return trim_history(
            turns, lambda kept: estimate_tokens(specialist_messages(spec, task, context, files_text, kept)) <= window
        )

    async def save_turn(self, thread_id: str | None, turn: Turn, result: DelegateResult) -> None:
        """Add the turn to its thread (a new one when thread_id is None) and put the id in the result. A store
        that cannot be written costs the thread, never the answer: the result carries a warning instead."""
        if self.threads is None:
            return
        continuing = thread_id is not None
        thread_id = thread_id or new_thread_id()
        try:
            with anyio.CancelScope(shield=True):  # the answer is paid for: keep it even if the client gives up
                await anyio.to_thread.run_sync(self.threads.append, thread_id, turn)
        except StoreError as exc:
            logger.warning("a turn of thread %s was not saved: %s", thread_id, exc)
            later = "later turns of this thread will not see it" if continuing else "it cannot be followed up"
            result.warnings.append(f"This turn was not saved ({later}): {exc}")
            if not continuing:
                return
        result.thread_id = thread_id

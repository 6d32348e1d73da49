"""A bake-off run: every candidate model answers every task, then the judge compares answers with the reference.
Answers and verdicts kept in the store are reused, so a rerun pays only for what is missing."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import anyio

from server.calling import pricing
from server.calling.chain import CHARS_PER_TOKEN, ChainRunner, estimate_tokens
from server.catalog import ModelRef, Specialist
from server.clock import Deadline
from server.errors import DelegateError, StoreError
from server.quality.judge import JUDGE_OUTPUT_TOKENS, JudgeFailed, judge_messages, judge_pair
from server.quality.spend import SpendCap
from server.quality.tasks import Task
from server.store.compare_book import CompareBook, content_key

CALL_DEADLINE_S = 300.0
"""Time one answer (retries and all) may take: nobody waits on a bake-off's calls as a client waits on a tool."""
OVER_CAP = "not run: its worst case did not fit --max-cost-usd (or the daily budget)"


@dataclass(frozen=True)
class Candidate:
    """A model in the bake-off: the id as the user wrote it (the report's name for it) and the entry it makes."""

    label: str
    ref: ModelRef


@dataclass
class Answer:
    """One model's answer to one task, or why there is none."""

    text: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    latency_ms: float | None = None
    error: str | None = None
    cached: bool = False


@dataclass
class Verdict:
    """The judge's verdict on one candidate's answer to one task against the reference, or why there is none."""

    outcome: str | None = None
    reason: str = ""
    cost_usd: float | None = None
    error: str | None = None
    cached: bool = False


@dataclass
class Plan:
    """Everything a run needs, built (and checked) before anything is spent."""

    tasks: list[Task]
    candidates: list[Candidate]
    specialists: Mapping[int, Specialist]
    """The specialist each task is answered as (its instructions, output cap and temperature), by line."""
    messages: Mapping[int, list[dict[str, str]]]
    """What every model is sent for each task, by line: as a real call to that specialist sends it."""
    reference: Candidate | None = None
    """The reference model, whose answers are the reference where a task gives none."""
    judge: Specialist | None = None
    environ: Mapping[str, str] = field(default_factory=dict)
    skipped: tuple[ModelRef, ...] = ()
    """Models of the specialist's chain left out (they cannot be called here); --apply keeps them at the end."""


@dataclass
class Outcome:
    """What a run produced, by (task line, candidate label)."""

    answers: dict[tuple[int, str], Answer] = field(default_factory=dict)
    verdicts: dict[tuple[int, str], Verdict] = field(default_factory=dict)


def models_of(plan: Plan) -> list[Candidate]:
    """The candidates and, when it is not one of them, the reference model."""
    extra = [plan.reference] if plan.reference and plan.reference not in plan.candidates else []
    return [*plan.candidates, *extra]


def answer_key(plan: Plan, task: Task, who: Candidate) -> str:
    """The key of an answer: the model, its endpoint, the exact messages and the settings that shape the answer."""
    spec = plan.specialists[task.line]
    return content_key(
        {
            "model": who.ref.model,
            "api_base": who.ref.api_base,
            "messages": plan.messages[task.line],
            "max_output_tokens": spec.max_output_tokens,
            "temperature": spec.temperature,
        }
    )


def verdict_key(plan: Plan, task: Task, candidate: str, reference: str) -> str:
    """The key of a verdict: the judge, the task and both answers (so a new answer is judged anew)."""
    assert plan.judge is not None
    judge = plan.judge.chain[0]
    parts = {"judge": judge.model, "api_base": judge.api_base, "task": task.task, "context": task.context}
    return content_key({**parts, "candidate": candidate, "reference": reference, "prompt": plan.judge.instructions})


def answer_worst_case(plan: Plan, task: Task, who: Candidate) -> float | None:
    """The most one answer could cost (its input and its output cap at its price); None when it has no price."""
    rates = pricing.ref_rates(who.ref, plan.environ)
    if rates is None:
        return None
    cap = plan.specialists[task.line].max_output_tokens
    return estimate_tokens(plan.messages[task.line]) * rates[0] + cap * rates[1]


def verdict_worst_case(plan: Plan, task: Task, candidate: str, reference: str) -> float | None:
    """The most one verdict could cost: both orders, each reading the task and both answers."""
    assert plan.judge is not None
    rates = pricing.ref_rates(plan.judge.chain[0], plan.environ)
    if rates is None:
        return None
    tokens = estimate_tokens(judge_messages(task.task, task.context, candidate, reference, nonce="0" * 16))
    return 2 * (tokens * rates[0] + JUDGE_OUTPUT_TOKENS * rates[1])


def capped_answer(plan: Plan, task: Task) -> str:
    """An answer at its output cap, for estimating a verdict's worst case before the answers exist."""
    return "x" * int(plan.specialists[task.line].max_output_tokens * CHARS_PER_TOKEN)


class Bakeoff:
    """Runs a plan with bounded concurrency under a spending cap, reusing what the store has kept."""

    def __init__(self, plan: Plan, runner: ChainRunner, book: CompareBook, cap: SpendCap) -> None:
        self.plan = plan
        self._runner = runner
        self._book = book
        self._cap = cap
        self.warnings: list[str] = []

    async def run(self, concurrency: int, progress: Callable[[int, int], None] = lambda done, total: None) -> Outcome:
        """Every answer, then every verdict; failures are recorded (and not kept), never raised."""
        outcome = Outcome()
        limiter = anyio.CapacityLimiter(max(1, concurrency))
        answers = [(task, who) for task in self.plan.tasks for who in models_of(self.plan)]
        total = len(answers) + len(self.plan.tasks) * len(self.plan.candidates) * (self.plan.judge is not None)
        done = 0

        async def one(work: Callable[[], Any]) -> None:
            nonlocal done
            async with limiter:
                await work()
            done += 1
            progress(done, total)

        async with anyio.create_task_group() as group:
            for task, who in answers:
                group.start_soon(one, lambda t=task, w=who: self._answer(outcome, t, w))
        if self.plan.judge is not None:
            async with anyio.create_task_group() as group:
                for task in self.plan.tasks:
                    for who in self.plan.candidates:
                        group.start_soon(one, lambda t=task, w=who: self._verdict(outcome, t, w))
        return outcome

    def reference_text(self, outcome: Outcome, task: Task) -> str | None:
        """The task's reference answer: the file's, else the reference model's (None when there is neither)."""
        if task.reference is not None:
            return task.reference
        if self.plan.reference is None:
            return None
        kept = outcome.answers.get((task.line, self.plan.reference.label))
        return kept.text if kept is not None and kept.error is None else None

    async def _answer(self, outcome: Outcome, task: Task, who: Candidate) -> None:
        key = answer_key(self.plan, task, who)
        kept = await self._read(self._book.answer, key)
        if kept is not None:
            outcome.answers[(task.line, who.label)] = self._from_kept(kept, who)
            return
        hold = await self._cap.reserve(answer_worst_case(self.plan, task, who) or 0.0)
        if hold is None:
            outcome.answers[(task.line, who.label)] = Answer(error=OVER_CAP)
            return
        spec = replace(self.plan.specialists[task.line], chain=(who.ref,))
        started = time.monotonic()
        try:
            answer = await self._runner.run(spec, self.plan.messages[task.line], Deadline(CALL_DEADLINE_S))
        except DelegateError as exc:
            await self._cap.settle(hold, None)
            outcome.answers[(task.line, who.label)] = Answer(error=str(exc)[:300])
            return
        done = answer.completion
        await self._cap.settle(hold, done.cost_usd)
        latency = next((a.latency_ms for a in reversed(answer.attempts) if a.ok), (time.monotonic() - started) * 1000)
        result = Answer(done.text, done.input_tokens, done.output_tokens, done.cost_usd, latency)
        outcome.answers[(task.line, who.label)] = result
        kept_fields = {k: v for k, v in result.__dict__.items() if k not in ("error", "cached")}
        await self._write(self._book.keep_answer, key, {**kept_fields, "model": who.ref.model})

    def _from_kept(self, kept: dict[str, Any], who: Candidate) -> Answer:
        """A kept answer; priced again when the entry gives a price (tokens are kept, prices may change)."""
        answer = Answer(
            text=str(kept.get("text", "")),
            input_tokens=int(kept.get("input_tokens") or 0),
            output_tokens=int(kept.get("output_tokens") or 0),
            cost_usd=kept.get("cost_usd"),
            latency_ms=kept.get("latency_ms"),
            cached=True,
        )
        if who.ref.price is not None:
            per_input, per_output = who.ref.price.per_token
            answer.cost_usd = round(answer.input_tokens * per_input + answer.output_tokens * per_output, 10)
        return answer

    async def _verdict(self, outcome: Outcome, task: Task, who: Candidate) -> None:
        judge = self.plan.judge
        mine = outcome.answers.get((task.line, who.label))
        reference = self.reference_text(outcome, task)
        own = task.reference is None and who == self.plan.reference  # the reference is this model's own answer
        if judge is None or mine is None or mine.error is not None or reference is None or own:
            return
        key = verdict_key(self.plan, task, mine.text, reference)
        kept = await self._read(self._book.verdict, key)
        if kept is not None:
            outcome.verdicts[(task.line, who.label)] = Verdict(
                kept.get("outcome"), str(kept.get("reason", "")), kept.get("cost_usd"), cached=True
            )
            return
        hold = await self._cap.reserve(verdict_worst_case(self.plan, task, mine.text, reference) or 0.0)
        if hold is None:
            outcome.verdicts[(task.line, who.label)] = Verdict(error=OVER_CAP)
            return
        try:
            found = await judge_pair(
                self._runner, judge, task.task, task.context, mine.text, reference, CALL_DEADLINE_S
            )
        except JudgeFailed as exc:  # what the judge's calls cost is still settled
            await self._cap.settle(hold, exc.cost_usd)
            outcome.verdicts[(task.line, who.label)] = Verdict(error=str(exc)[:300])
            return
        await self._cap.settle(hold, found.cost_usd)
        outcome.verdicts[(task.line, who.label)] = Verdict(found.outcome, found.reason, found.cost_usd)
        kept_fields = {"outcome": found.outcome, "reason": found.reason, "orders": list(found.orders)}
        await self._write(self._book.keep_verdict, key, {**kept_fields, "cost_usd": found.cost_usd})

    async def _read(self, read: Callable[[str], dict[str, Any] | None], key: str) -> dict[str, Any] | None:
        try:
            return await anyio.to_thread.run_sync(read, key)
        except StoreError as exc:  # a store that cannot be read costs a fresh answer, never the run
            self._warn(f"kept answers could not be read: {exc}")
            return None

    async def _write(self, write: Callable[[str, dict[str, Any]], None], key: str, value: dict[str, Any]) -> None:
        with anyio.CancelScope(shield=True):  # paid for: kept even when the run is being stopped
            try:
                await anyio.to_thread.run_sync(write, key, value)
            except StoreError as exc:
                self._warn(f"an answer could not be kept for a rerun: {exc}")

    def _warn(self, warning: str) -> None:
        if warning not in self.warnings:
            self.warnings.append(warning)

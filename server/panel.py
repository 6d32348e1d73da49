"""panel: one task to several specialists at once, each blind to the others, then a judge's anonymised synthesis."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Mapping, Sequence

import anyio

from server.calling.chain import ChainRunner, Partial
from server.catalog import Catalog, Specialist
from server.clock import Deadline, ms_since
from server.errors import DelegateError, InvalidInputError, PanelFailedError
from server.progress import Progress
from server.results import CallUsage, PanelAnswer, PanelResult, total_cost

JUDGE_SHARE = 1 / 3
"""Part of the call's time kept for the synthesis: the answers must be in before the rest has passed."""
LATE_MARGIN_S = 0.2
MAX_MEMBERS = 6
FIT_SHARE = 0.15
"""A specialist sits on a default panel when the classifier gives the task at least this share for it."""
PREVIEW_CHARS = 160
JUDGE_INSTRUCTIONS = (
    "You are the judge of a panel. Several assistants answered the same task independently; you see their "
    "answers labelled with letters, in random order, and nothing about who wrote them. Write a synthesis for the "
    "person who asked: first the points the answers agree on, then each point where they disagree (name the "
    "answers by letter and say which position is better supported and why), then the recommended answer. Judge "
    "on substance, not length or confidence. Be concise."
)


def choose_members(
    catalog: Catalog, usable: Sequence[Specialist], names: Sequence[str], fit: Mapping[str, float] | None = None
) -> list[Specialist]:
    """The named specialists (checked); else the usable ones the task fits (`fit`: the classifier's share per
    specialist), best first and at least two, or every usable one when nothing says how well it fits."""
    if names:
        if len(set(names)) != len(names):
            raise InvalidInputError("specialists: each specialist may sit on the panel once; remove the repeats.")
        if len(names) > MAX_MEMBERS:
            raise InvalidInputError(f"specialists: a panel has at most {MAX_MEMBERS} members; name fewer.")
        return [catalog.get(name) for name in names]
    if len(usable) < 2:
        which = ", ".join(s.name for s in usable) or "none"
        raise InvalidInputError(
            f"A panel needs at least two specialists with a usable model; usable now: {which}. Set another "
            "provider key (delegate-mcp doctor says which), or name the specialists to ask."
        )
    if not fit:
        return list(usable)[:MAX_MEMBERS]
    ranked = sorted(usable, key=lambda spec: -fit.get(spec.name, 0.0))
    fitting = [spec for spec in ranked if fit.get(spec.name, 0.0) >= FIT_SHARE]
    return (fitting if len(fitting) >= 2 else ranked[:2])[:MAX_MEMBERS]


def member_messages(spec: Specialist, task: str, context: str) -> list[dict[str, str]]:
    """What one panel member sees: its own instructions, the context and the task; nothing of the others."""
    content = f"<context>\n{context}\n</context>\n\n{task}" if context else task
    return [{"role": "system", "content": spec.instructions}, {"role": "user", "content": content}]


def anonymise(text: str, models: Sequence[str]) -> str:
    """Remove model ids an answer may carry about itself (full and short forms), so the judge stays blind."""
    forms = {form for model in models for form in (model, model.split("/", 1)[-1])}
    for form in sorted(forms, key=len, reverse=True):  # the full id first, or its short form would leave "openai/"
        text = re.sub(re.escape(form), "[a panelist]", text, flags=re.IGNORECASE)
    return text


def judge_messages(
    task: str, answers: Sequence[PanelAnswer], rng: random.Random | None = None
) -> tuple[list[dict[str, str]], dict[str, str]]:
    """The judge's conversation, with answers shuffled under letters; and which letter stands for whom."""
    shuffled = list(answers)
    (rng or random.Random()).shuffle(shuffled)
    models = [m for a in answers for m in (a.model,) if m]
    letters = {chr(ord("A") + i): a.specialist for i, a in enumerate(shuffled)}
    blocks = "\n\n".join(
        f'<answer label="{letter}">\n{anonymise(a.output, models)}\n</answer>'
        for letter, a in zip(letters, shuffled, strict=True)
    )
    user = f"<task>\n{task}\n</task>\n\n{blocks}"
    return [{"role": "system", "content": JUDGE_INSTRUCTIONS}, {"role": "user", "content": user}], letters


class Panel:
    """Runs one panel over the shared chain runner (its cooldowns and concurrency limit)."""

    def __init__(self, chain: ChainRunner) -> None:
        self._chain = chain

    async def run(
        self,
        task: str,
        context: str,
        members: Sequence[Specialist],
        judge: Specialist | None,
        deadline: Deadline,
        progress: Progress,
    ) -> PanelResult:
        """Ask every member at once; at least min(2, asked) must answer in time; then the judge synthesises."""
        share = deadline.remaining() * (1 - JUDGE_SHARE if judge is not None and len(members) > 1 else 1)
        answers: list[PanelAnswer | None] = [None] * len(members)
        landed = 0

        async def ask(index: int, spec: Specialist) -> None:
            nonlocal landed
            answers[index] = await self._member(spec, task, context, share)
            landed += 1
            answer = answers[index]
            assert answer is not None
            what = answer.output[:PREVIEW_CHARS] if answer.ok else f"no answer ({answer.error})"
            await progress.milestone(f"{spec.name} ({landed} of {len(members)}): {what}")

        async with anyio.create_task_group() as group:
            for index, spec in enumerate(members):
                group.start_soon(ask, index, spec)
        done = [a for a in answers if a is not None]
        answered = [a for a in done if a.ok]
        needed = min(2, len(members))
        if len(answered) < needed:
            why = "; ".join(f"{a.specialist}: {a.error}" for a in done if not a.ok)
            raise PanelFailedError(
                f"The panel needs {needed} answers and got {len(answered)}. {why}. Try again, or name specialists "
                "whose models are up (delegate-mcp doctor).",
                total_cost(*(a.usage.cost_usd for a in answered)),
            )
        result = PanelResult(answers=done, latency_ms=0.0)
        if judge is not None and len(answered) > 1:
            await progress.milestone(f"{judge.name} is writing the synthesis")
            await self._synthesise(result, task, judge, answered, deadline)
        costs = [a.usage.cost_usd for a in done] + [result.usage.judge.cost_usd]
        result.usage.total_cost_usd = total_cost(*costs)
        result.latency_ms = deadline.elapsed_ms()
        return result

    async def _member(self, spec: Specialist, task: str, context: str, seconds: float) -> PanelAnswer:
        """One member's answer within `seconds`; a failure or a late answer is reported, never dropped."""
        partial = Partial()
        started = time.monotonic()
        with anyio.move_on_after(max(0.0, seconds - LATE_MARGIN_S)):
            try:
                answer = await self._chain.run(
                    spec, member_messages(spec, task, context), Deadline(seconds), partial=partial
                )
            except DelegateError as exc:
                return PanelAnswer(
                    specialist=spec.name, model=partial.model, ok=False, error=str(exc), latency_ms=ms_since(started)
                )
            completion = answer.completion
            usage = CallUsage(
                input_tokens=completion.input_tokens,
                output_tokens=completion.output_tokens,
                cost_usd=completion.cost_usd,
            )
            return PanelAnswer(
                specialist=spec.name,
                model=answer.model,
                output=completion.text,
                ok=True,
                usage=usage,
                latency_ms=ms_since(started),
            )
        return PanelAnswer(
            specialist=spec.name,
            model=partial.model,
            output=partial.text,
            ok=False,
            error=f"late: no complete answer within the panel's {seconds:.0f} s (DELEGATE_DEADLINE_S)",
            latency_ms=ms_since(started),
        )

    async def _synthesise(
        self, result: PanelResult, task: str, judge: Specialist, answered: list[PanelAnswer], deadline: Deadline
    ) -> None:
        messages, letters = judge_messages(task, answered)
        try:
            answer = await self._chain.run(judge, messages, deadline)
        except DelegateError as exc:
            result.warnings.append(f"no synthesis: the judge ({judge.name}) failed: {exc}")
            return
        completion = answer.completion
        result.synthesis, result.labels = completion.text, dict(sorted(letters.items()))
        result.judge, result.judge_model = judge.name, answer.model
        result.usage.judge = CallUsage(
            input_tokens=completion.input_tokens, output_tokens=completion.output_tokens, cost_usd=completion.cost_usd
        )

"""The cascade stage, for a specialist with `escalate: true`: its first model drafts, a verifier checks the draft
(the call's checks, else a cheap judge with the rubric), and a failed draft escalates to the next model, which is
told nothing of it unless `show_draft: true`. The last model's answer is kept unverified: nothing is above it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from server import tracing
from server.calling import pricing
from server.calling.chain import CHARS_PER_TOKEN, MIN_ATTEMPT_S, ChainAnswer, ChainRunner, Partial, usable_models
from server.calling.cooldown import Cooldowns
from server.catalog import ModelRef, Specialist
from server.clock import Deadline
from server.errors import AllModelsFailedError, DelegateError
from server.progress import Progress
from server.quality import verify
from server.quality.checks import Check, grade
from server.results import Attempt, CallUsage, CascadeUsage, Escalation, total_cost
from server.routing.router import Router

COOLING = "cooling down after recent failures (DELEGATE_COOLDOWN_S)"
NO_VERIFIER = "no usable verifier model (set the specialist's verifier: or a router model key)"


@dataclass
class Cascaded:
    """The kept answer, what every draft and verification cost, and the drafts that were not kept."""

    answer: ChainAnswer
    specialist: CallUsage
    """Every draft's tokens and cost, the kept one included."""
    cascade: CascadeUsage | None = None
    escalations: list[Escalation] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def add_usage(total: CallUsage, tokens_in: int, tokens_out: int, cost: float | None) -> CallUsage:
    """A usage with one more call's tokens and cost added (an unknown cost adds nothing and stays unknown alone)."""
    return CallUsage(
        input_tokens=total.input_tokens + tokens_in,
        output_tokens=total.output_tokens + tokens_out,
        cost_usd=total_cost(total.cost_usd, cost),
    )


def revision_messages(messages: list[dict[str, str]], draft: str, reason: str) -> list[dict[str, str]]:
    """The next model's conversation with `show_draft: true`: the rejected draft and the verifier's reason."""
    ask = (
        f"A reviewer rejected the answer above: {reason or 'no reason given'}. Write a correct and complete answer "
        "to the task, from the start."
    )
    return [*messages, {"role": "assistant", "content": draft}, {"role": "user", "content": ask}]


class CascadeStage:
    """Runs a specialist's chain as a cascade of verified drafts; other specialists' chains run as before."""

    def __init__(
        self,
        chain: ChainRunner,
        router: Router,
        environ: Mapping[str, str],
        verifier_timeout_s: float,
        cooldowns: Cooldowns | None = None,
    ) -> None:
        self._chain = chain
        self._router = router
        self._environ = environ
        self._timeout_s = verifier_timeout_s
        self._cooldowns = cooldowns

    def steps(self, spec: Specialist) -> list[ModelRef]:
        """The models that may draft, in order (those that can be called here)."""
        return usable_models(spec, self._environ)

    def verifier(self, spec: Specialist) -> Specialist | None:
        """The verifier model(s): the file's own, else the router's cheap models; None when none is usable."""
        assert spec.cascade is not None
        chain = (spec.cascade.verifier,) if spec.cascade.verifier else tuple(self._router.router_models())
        usable = [ref for ref in chain if usable_models(replace(spec, chain=(ref,)), self._environ)]
        return verify.verifier_specialist(tuple(usable), spec.cascade.rubric) if usable else None

    def worst_case_usd(self, spec: Specialist, messages: list[dict[str, str]], task: str, context: str) -> float:
        """The most a cascade could cost: every model drafting at its cap, and every draft but the last verified."""
        steps = self.steps(spec)
        cap = spec.max_output_tokens
        draft = {"role": "assistant", "content": "x" * int(cap * CHARS_PER_TOKEN)}
        shown = spec.cascade is not None and spec.cascade.show_draft
        total = 0.0
        for number, ref in enumerate(steps):
            sent = [*messages, draft, draft] if shown and number else messages  # a shown draft, and the reason
            total += self._chain.worst_case_usd(replace(spec, chain=(ref,), cascade=None), sent)
        verifier = self.verifier(spec)
        if verifier is not None and len(steps) > 1:
            total += (len(steps) - 1) * verify.worst_case_usd(self._chain, verifier, task, context, cap)
        return total

    async def answer(
        self,
        spec: Specialist,
        messages: list[dict[str, str]],
        task: str,
        context: str,
        checks: Sequence[Check],
        deadline: Deadline,
        progress: Progress,
        partial: Partial | None,
        workdir: Path | None = None,
    ) -> Cascaded:
        """Draft, verify, escalate: the answer kept, and what it all cost. AllModelsFailedError when no model
        answers at all."""
        partial = partial if partial is not None else Partial()  # one list of attempts across every step
        steps = self.steps(spec)
        if spec.cascade is None or len(steps) < 2:  # no cascade, or nothing to escalate to: the chain as it is
            answer = await self._chain.run(spec, messages, deadline, progress, partial, workdir=workdir)
            return self.plain(answer, checks)
        kept: Cascaded | None = None
        escalations: list[Escalation] = []
        drafts, verifier, warnings, sent = CallUsage(), CallUsage(), [], messages
        for number, ref in enumerate(steps):
            last = number == len(steps) - 1
            if not last and self._cooldowns is not None and self._cooldowns.remaining(ref.model) > 0:
                partial.attempts.append(Attempt(model=ref.model, ok=False, error=f"skipped: {COOLING}"))
                escalations.append(Escalation(model=ref.model, verdict="error", reason=COOLING))
                continue  # a failing cheap model is not asked again and again: the next model answers
            try:
                one = replace(spec, chain=(ref,), cascade=None)
                answer = await self._chain.run(one, sent, deadline, progress, partial, workdir=workdir)
            except DelegateError as exc:
                if last:
                    why = f"Every model of specialist '{spec.name}' failed or was rejected. Last: {exc}"
                    raise AllModelsFailedError(why, partial.attempts) from None
                escalations.append(Escalation(model=ref.model, verdict="error", reason=_short(str(exc))))
                continue
            got = answer.completion
            drafts = add_usage(drafts, got.input_tokens, got.output_tokens, got.cost_usd)
            check = None
            if not last:  # the verifier's reason is left out of the span: it quotes the draft
                with tracing.stage("verify", {"delegate.model": ref.model, "delegate.step": number + 1}) as span:
                    check = await self._verify(spec, task, context, checks, answer, deadline, progress)
                    tracing.annotate(span, tracing.verdict_attributes(check.passed, check.verdict, check.cost_usd))
            if check is not None:
                verifier = add_usage(verifier, check.input_tokens, check.output_tokens, check.cost_usd)
                warnings += [check.warning] if check.warning else []
            if check is None or check.passed:
                kept = Cascaded(answer, drafts, escalations=escalations, warnings=warnings)
                break
            cost = total_cost(got.cost_usd, check.cost_usd)
            escalations.append(Escalation(model=ref.model, verdict=check.verdict, reason=check.reason, cost_usd=cost))
            if spec.cascade is not None and spec.cascade.show_draft and check.verdict == "fail":
                sent = revision_messages(messages, got.text, check.reason)
        assert kept is not None
        kept.specialist = drafts
        kept.cascade = self._against_last(steps[-1], kept, verifier)
        return kept

    def plain(self, answer: ChainAnswer, checks: Sequence[Check]) -> Cascaded:
        """A chain's answer as it came; when the call gave checks that it fails, a warning says so."""
        got = answer.completion
        done = Cascaded(
            answer, CallUsage(input_tokens=got.input_tokens, output_tokens=got.output_tokens, cost_usd=got.cost_usd)
        )
        if checks:
            graded = grade(list(checks), got.text)
            if not graded.passed:
                done.warnings.append(f"The answer fails the call's checks: {'; '.join(graded.failed)}"[:300])
        return done

    async def _verify(
        self,
        spec: Specialist,
        task: str,
        context: str,
        checks: Sequence[Check],
        answer: ChainAnswer,
        deadline: Deadline,
        progress: Progress,
    ) -> Checked:
        """The verdict on one draft; a verifier that fails or runs out of time accepts the draft and says so
        (or escalates, with on_verifier_error: escalate)."""
        assert spec.cascade is not None
        if checks:
            found = verify.by_checks(list(checks), answer.completion.text)
            return Checked(found.passed, "fail", found.reason)
        verifier = self.verifier(spec)
        seconds = min(self._timeout_s, deadline.remaining() - MIN_ATTEMPT_S)
        await progress.milestone(f"{spec.name}: verifying the answer of {answer.model}")
        try:
            if verifier is None:
                raise verify.VerifierFailed(NO_VERIFIER)
            if seconds < MIN_ATTEMPT_S:
                raise verify.VerifierFailed("no time was left before the call's deadline")
            found = await verify.by_judge(self._chain, verifier, task, context, answer.completion.text, seconds)
        except verify.VerifierFailed as exc:
            cost = exc.cost_usd
            if spec.cascade.on_verifier_error == "escalate":
                return Checked(False, "verifier_error", f"the verifier failed: {exc}"[:300], cost)
            warning = (
                f"The verifier failed ({exc}); the answer of {answer.model} was kept unverified "
                "(on_verifier_error: accept)."
            )
            return Checked(True, "", "", cost, warning=warning)
        return Checked(found.passed, "fail", found.reason, found.cost_usd, found.input_tokens, found.output_tokens)

    def _against_last(self, last: ModelRef, kept: Cascaded, verifier: CallUsage) -> CascadeUsage:
        """What the kept answer's tokens would have cost on the last model, and what the cascade saved against it."""
        got = kept.answer.completion
        rates = pricing.ref_rates(last, self._environ)
        if rates is None:
            return CascadeUsage(verifier=verifier)
        always = round(got.input_tokens * rates[0] + got.output_tokens * rates[1], 10)
        spent = total_cost(kept.specialist.cost_usd, verifier.cost_usd)
        saving = None if spent is None else round(always - spent, 10)
        return CascadeUsage(verifier=verifier, always_last_usd=always, saving_usd=saving)


@dataclass(frozen=True)
class Checked:
    """A verification's outcome in the cascade's terms: keep the draft or not, and what it cost."""

    passed: bool
    verdict: str
    """fail or verifier_error, when not passed."""
    reason: str
    cost_usd: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    warning: str | None = None


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

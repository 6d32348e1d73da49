"""The result models returned by every tool (their outputSchema) and their readable summary."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

DecidedBy = Literal["router", "classifier", "default", "direct", "feedback"]
Status = Literal["done", "running", "cancelled"]


class Routing(BaseModel):
    """How the specialist was chosen."""

    decided_by: DecidedBy = Field(
        description="router: the router model chose; classifier: the embedded classifier was sure; default: "
        "routing failed or was skipped and the default specialist answered; direct: an ask_ tool was called; "
        "feedback: a user corrected the routing of this same task."
    )
    router_model: str | None = Field(None, description="The router model that was asked, if any.")
    reason: str = Field(description="Why this specialist answers.")
    confidence: float | None = Field(None, ge=0, le=1, description="The router's confidence, 0 to 1.")
    latency_ms: float = Field(0.0, description="Time spent routing, in milliseconds.")


class Attempt(BaseModel):
    """One try of one model."""

    model: str
    ok: bool
    error: str | None = Field(None, description="Why this try failed or was skipped.")
    latency_ms: float = 0.0
    billing: Literal["subscription"] | None = Field(
        None,
        description="subscription: a coding-agent CLI (cli/...) answered on its own account, so cost_usd is what "
        "it reported, or null; null for API models, billed per token.",
    )


class CallUsage(BaseModel):
    """Tokens and cost of one model call."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = Field(None, description="From litellm's price map; null when the model is not priced.")


class CascadeUsage(BaseModel):
    """What a cascade's verifications cost, and what always using its last model would have cost."""

    verifier: CallUsage = Field(default_factory=CallUsage, description="Every verification of a draft, added up.")
    always_last_usd: float | None = Field(
        None, description="The kept answer's tokens at the cascade's last model's price; null when unpriced."
    )
    saving_usd: float | None = Field(
        None, description="always_last_usd less this answer's specialist and verifier cost (negative: it cost more)."
    )


class Usage(BaseModel):
    """Tokens and cost of the router call and the specialist call."""

    router: CallUsage = Field(default_factory=CallUsage)
    specialist: CallUsage = Field(
        default_factory=CallUsage, description="The specialist's model calls (a cascade's rejected drafts included)."
    )
    cascade: CascadeUsage | None = Field(None, description="Set when the specialist escalates (a cascade).")
    total_cost_usd: float | None = Field(None, description="Sum of the known costs; null when neither is known.")


class Escalation(BaseModel):
    """A cascade's draft that was not kept, and why the next model was asked."""

    model: str = Field(description="The model whose draft was rejected (or that failed).")
    verdict: Literal["fail", "error", "verifier_error"] = Field(
        description="fail: the verifier rejected the draft; error: the model gave no answer; verifier_error: the "
        "verifier failed and on_verifier_error is escalate."
    )
    reason: str
    cost_usd: float | None = Field(None, description="The draft and its verification; null when unpriced.")


class FileRead(BaseModel):
    """One file the server read and gave to the specialist."""

    path: str
    chars: int


class DelegateResult(BaseModel):
    """The answer and everything about how it was produced."""

    output: str = Field(description="The specialist's answer.")
    specialist: str = Field(description="The specialist that answered.")
    model: str = Field(description="The model that actually produced the output.")
    routing: Routing
    attempts: list[Attempt] = Field(description="Every model tried for the answer, in order.")
    usage: Usage
    latency_ms: float = Field(description="Wall time of the whole call as the client saw it, in milliseconds.")
    startup_wait_ms: float | None = Field(
        None,
        description="The part of latency_ms this call spent waiting for the server to finish starting up (loading "
        "its model library, training its classifier); null when it did not wait.",
    )
    thread_id: str | None = Field(None, description="The conversation this call belongs to; pass it to follow up.")
    thread_trimmed: bool = Field(False, description="Older thread material was left out to fit the model's window.")
    files: list[FileRead] = Field(default_factory=list, description="Files the server read for this call.")
    truncated: bool = Field(False, description="The answer was cut: by the provider's output cap, or the deadline.")
    status: Status = Field(
        "done",
        description="done: the answer is complete; running: a job is still answering (output holds the text so "
        "far); cancelled: the job was stopped (output holds what it had written).",
    )
    job_id: str | None = Field(None, description="Pass to delegate_result to get the rest of a running answer.")
    warnings: list[str] = Field(default_factory=list, description="Problems that did not stop the answer.")
    call_id: str | None = Field(None, description="This call's id (decision log; pass it to feedback).")
    answer_uri: str | None = Field(
        None, description="When output holds only the head of a big answer: the resource with the whole answer."
    )
    answer_chars: int | None = Field(None, description="The whole answer's length when it went by link.")
    next_offset: int | None = Field(
        None, description="For a job: pass as delegate_result's offset to receive only the text after this point."
    )
    escalations: list[Escalation] = Field(
        default_factory=list, description="A cascade's drafts that were not kept, in order (empty otherwise)."
    )


def since(result: DelegateResult, offset: int) -> DelegateResult:
    """The result with only the answer's text after `offset` characters (what an earlier poll carried already).
    A job's text so far is a prefix of every later output, so cutting the output's head is enough."""
    if offset <= 0:
        return result
    rest = result.output[offset:]
    if not rest and result.status == "running":
        rest = f"[... nothing new yet after {offset:,} characters; the specialist is still working.]"
    return result.model_copy(update={"output": rest})


def total_cost(*costs: float | None) -> float | None:
    """Sum the known costs; None when none is known."""
    known = [c for c in costs if c is not None]
    return round(sum(known), 8) if known else None


# Skips that stand for a failure (of this call or a recent one); other skips (no key set, window too small) are
# the configuration working as intended and would only be noise in the summary.
_FAILURE_SKIPS = ("skipped: cooling down", "skipped: the same provider key")
MAX_WHY_CHARS = 100


def fallback_reasons(attempts: list[Attempt]) -> str:
    """Why the models before the one that answered failed, one short phrase per model ('' when none did)."""
    reasons: dict[str, str] = {}
    for attempt in attempts:
        error = attempt.error or ""
        if attempt.ok or (error.startswith("skipped") and not error.startswith(_FAILURE_SKIPS)):
            continue
        why = error.removeprefix("skipped: ")
        reasons[attempt.model] = why if len(why) <= MAX_WHY_CHARS else why[: MAX_WHY_CHARS - 1] + "…"
    return "; ".join(f"{model}: {why}" for model, why in reasons.items())


def _short_why(why: str) -> str:
    return why if len(why) <= MAX_WHY_CHARS else why[: MAX_WHY_CHARS - 1] + "…"


def confidence_text(confidence: float) -> str:
    """A confidence as people read it, the same everywhere it is shown (summary line and reasons)."""
    return f"{confidence:.2f}"


def startup_text(startup_wait_ms: float | None) -> str:
    """How much of a call's time went to waiting for start-up, as the summary line shows it ('' for none)."""
    seconds = round((startup_wait_ms or 0) / 1000, 2)
    return f" ({seconds:.2f} s of it waiting for the server to start up)" if seconds else ""


def summary_line(result: DelegateResult) -> str:
    """One line for people: who answered, how it was chosen, tokens, cost and time; when a fallback answered,
    why the models before it failed (a mistyped key must not go unnoticed)."""
    routing = result.routing
    how = routing.decided_by
    if routing.confidence is not None:
        how += f" {confidence_text(routing.confidence)}"
    calls = [result.usage.router, result.usage.specialist]
    calls += [result.usage.cascade.verifier] if result.usage.cascade else []
    tokens = sum(u.input_tokens + u.output_tokens for u in calls)
    cost = "cost unknown" if result.usage.total_cost_usd is None else f"${result.usage.total_cost_usd:.6f}"
    reasons = fallback_reasons(result.attempts)
    tried = f" · fallback, because {reasons}" if reasons and not result.escalations else ""
    tried += "".join(f" · escalated from {e.model}: {_short_why(e.reason)}" for e in result.escalations)
    cut = " · answer truncated" if result.truncated else ""
    running = f" · still running as job {result.job_id}" if result.status == "running" else ""
    waited = startup_text(result.startup_wait_ms)
    thread = ""
    if result.thread_id:
        thread = f" · thread {result.thread_id}" + (" (older material left out)" if result.thread_trimmed else "")
    return (
        f"{result.specialist} via {result.model or 'no model yet'} ({how}: {routing.reason}) · {tokens} tokens · "
        f"{cost} · {result.latency_ms / 1000:.2f} s{waited}{tried}{cut}{thread}{running}"
    )


class PanelAnswer(BaseModel):
    """One specialist's independent answer in a panel."""

    specialist: str
    model: str | None = Field(None, description="The model that answered (or was answering, for a late answer).")
    output: str = Field("", description="The answer; for a late answer, what had arrived when time ran out.")
    ok: bool
    error: str | None = Field(None, description="Why this specialist has no (complete) answer.")
    usage: CallUsage = Field(default_factory=CallUsage)
    latency_ms: float = 0.0


class PanelUsage(BaseModel):
    """Tokens and cost of the judge's synthesis, and the cost of everything."""

    judge: CallUsage = Field(default_factory=CallUsage)
    total_cost_usd: float | None = Field(None, description="Every answer and the synthesis; null when none is known.")


class PanelResult(BaseModel):
    """Several independent answers to one task, and a synthesis of them."""

    answers: list[PanelAnswer] = Field(description="Every specialist asked, in order: answered, failed or late.")
    synthesis: str | None = Field(None, description="The judge's synthesis: agreements and disagreements; or null.")
    judge: str | None = Field(None, description="The specialist that wrote the synthesis.")
    judge_model: str | None = Field(None, description="The model that wrote the synthesis.")
    labels: dict[str, str] = Field(
        default_factory=dict, description="The letter each answer had for the judge, and its specialist."
    )
    usage: PanelUsage = Field(default_factory=PanelUsage)
    latency_ms: float = Field(description="Wall time of the whole panel, in milliseconds.")
    startup_wait_ms: float | None = Field(
        None, description="The part of latency_ms spent waiting for the server to finish starting up; or null."
    )
    files: list[FileRead] = Field(default_factory=list, description="Files the server read for every member.")
    warnings: list[str] = Field(default_factory=list, description="Problems that did not stop the panel.")
    call_id: str | None = Field(None, description="This panel's id, when its whole text went by link.")
    answer_uri: str | None = Field(
        None, description="When the answers hold only their heads: the resource with the whole panel as text."
    )
    answer_chars: int | None = Field(None, description="The whole panel text's length when it went by link.")


def panel_text(result: PanelResult) -> str:
    """Each answer under its specialist's name, then the synthesis, then one summary line."""
    parts = []
    for answer in result.answers:
        model = f" ({answer.model})" if answer.model else ""
        if answer.ok:
            parts.append(f"## {answer.specialist}{model}\n\n{answer.output}")
        else:
            got = f"\n\n{answer.output}" if answer.output else ""
            parts.append(f"## {answer.specialist}{model}: no answer ({answer.error}){got}")
    if result.synthesis is not None:
        labels = ", ".join(f"{letter} = {name}" for letter, name in result.labels.items())
        parts.append(f"## Synthesis (by {result.judge}, {result.judge_model}; {labels})\n\n{result.synthesis}")
    answered = sum(1 for a in result.answers if a.ok)
    cost = "cost unknown" if result.usage.total_cost_usd is None else f"${result.usage.total_cost_usd:.6f}"
    tokens = sum(a.usage.input_tokens + a.usage.output_tokens for a in result.answers)
    tokens += result.usage.judge.input_tokens + result.usage.judge.output_tokens
    summary = (
        f"panel of {len(result.answers)}: {answered} answered · {tokens} tokens · {cost} · "
        f"{result.latency_ms / 1000:.2f} s{startup_text(result.startup_wait_ms)}"
    )
    return "\n\n".join(parts) + f"\n\n---\n{summary}"

"""The result models returned by every tool (their outputSchema) and their readable summary."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

DecidedBy = Literal["router", "classifier", "default", "direct", "feedback"]
Status = Literal["done", "running"]


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


class CallUsage(BaseModel):
    """Tokens and cost of one model call."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = Field(None, description="From litellm's price map; null when the model is not priced.")


class Usage(BaseModel):
    """Tokens and cost of the router call and the specialist call."""

    router: CallUsage = Field(default_factory=CallUsage)
    specialist: CallUsage = Field(default_factory=CallUsage)
    total_cost_usd: float | None = Field(None, description="Sum of the known costs; null when neither is known.")


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
    thread_id: str | None = Field(None, description="The conversation this call belongs to; pass it to follow up.")
    thread_trimmed: bool = Field(False, description="Older thread material was left out to fit the model's window.")
    files: list[FileRead] = Field(default_factory=list, description="Files the server read for this call.")
    truncated: bool = Field(False, description="The answer was cut: by the provider's output cap, or the deadline.")
    status: Status = Field("done", description="done: the answer is complete; running: a job is still answering.")
    job_id: str | None = Field(None, description="Pass to delegate_result to get the rest of a running answer.")
    warnings: list[str] = Field(default_factory=list, description="Problems that did not stop the answer.")
    call_id: str | None = Field(None, description="This call's id (decision log; pass it to feedback).")


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


def confidence_text(confidence: float) -> str:
    """A confidence as people read it, the same everywhere it is shown (summary line and reasons)."""
    return f"{confidence:.2f}"


def summary_line(result: DelegateResult) -> str:
    """One line for people: who answered, how it was chosen, tokens, cost and time; when a fallback answered,
    why the models before it failed (a mistyped key must not go unnoticed)."""
    routing = result.routing
    how = routing.decided_by
    if routing.confidence is not None:
        how += f" {confidence_text(routing.confidence)}"
    tokens = sum(u.input_tokens + u.output_tokens for u in (result.usage.router, result.usage.specialist))
    cost = "cost unknown" if result.usage.total_cost_usd is None else f"${result.usage.total_cost_usd:.6f}"
    reasons = fallback_reasons(result.attempts)
    tried = f" · fallback, because {reasons}" if reasons else ""
    cut = " · answer truncated" if result.truncated else ""
    thread = ""
    if result.thread_id:
        thread = f" · thread {result.thread_id}" + (" (older material left out)" if result.thread_trimmed else "")
    return (
        f"{result.specialist} via {result.model} ({how}: {routing.reason}) · {tokens} tokens · {cost} · "
        f"{result.latency_ms / 1000:.2f} s{tried}{cut}{thread}"
    )

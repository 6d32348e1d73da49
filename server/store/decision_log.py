"""The opt-in decision log: one JSON line per call, for `delegate-mcp stats` and your own analysis."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from server.results import DelegateResult


def task_hash(task: str) -> str:
    """A stable fingerprint of a task, so repeats can be counted without storing the text."""
    return hashlib.sha256(task.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def provider_ms(result: DelegateResult) -> float:
    """Time spent in provider requests: the router model's call (a cached or classifier decision has none) and
    every try of the specialist's models."""
    router = result.routing.latency_ms if result.routing.router_model else 0.0
    return round(router + sum(attempt.latency_ms for attempt in result.attempts), 1)


def entry(
    tool: str,
    task: str,
    result: DelegateResult | None,
    error: str | None,
    premium_cost_usd: float | None,
    *,
    include_task: bool,
) -> dict[str, Any]:
    """The log line for one call: what was decided, what was tried, tokens, cost and time."""
    line: dict[str, Any] = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "tool": tool,
        "task_sha256": task_hash(task),
        "ok": result is not None,
    }
    if result is not None:
        usage = result.usage
        line.update(
            call_id=result.call_id,
            specialist=result.specialist,
            model=result.model,
            decided_by=result.routing.decided_by,
            confidence=result.routing.confidence,
            models_tried=[a.model for a in result.attempts if not (a.error or "").startswith("skipped")],
            input_tokens=usage.router.input_tokens + usage.specialist.input_tokens,
            output_tokens=usage.router.output_tokens + usage.specialist.output_tokens,
            router_cost_usd=usage.router.cost_usd,
            cost_usd=usage.total_cost_usd,
            premium_cost_usd=premium_cost_usd,
            latency_ms=result.latency_ms,
            provider_ms=provider_ms(result),
            startup_wait_ms=result.startup_wait_ms,
        )
        if usage.cascade is not None:  # a verified cascade: what verifying cost, and which drafts went up
            line["verifier_cost_usd"] = usage.cascade.verifier.cost_usd
            line["escalations"] = [e.model_dump(mode="json") for e in result.escalations]
    else:
        line["error"] = error
    if include_task:
        line["task"] = task
    return line


class DecisionLog:
    """Appends lines to a file; each line is one write, so parallel servers can share the file."""

    def __init__(self, path: Path, include_task: bool) -> None:
        self.path = path
        self.include_task = include_task

    def append(self, line: dict[str, Any]) -> None:
        """Write one line (O_APPEND: the line lands whole at the end even with other writers)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = (json.dumps(line, ensure_ascii=False) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

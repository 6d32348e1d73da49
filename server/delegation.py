"""One delegate or ask call end to end: validate, check budget and size, route, answer, build the result."""

from __future__ import annotations

from collections.abc import Mapping

import anyio

from server import llm
from server.budget import DailyBudget, default_data_dir
from server.catalog import Catalog, Specialist
from server.chain import ChainRunner, estimate_tokens, usable_models
from server.clock import Deadline
from server.cooldown import Cooldowns
from server.errors import AllModelsFailedError, InvalidInputError
from server.redact import secret_values
from server.results import CallUsage, DelegateResult, Routing, Usage, total_cost
from server.router import RouteOutcome, Router
from server.settings import Settings


def specialist_messages(spec: Specialist, task: str, context: str) -> list[dict[str, str]]:
    """The specialist's conversation: its instructions, then the context (if any) and the task."""
    content = f"<context>\n{context}\n</context>\n\n{task}" if context else task
    return [{"role": "system", "content": spec.instructions}, {"role": "user", "content": content}]


def cap_output(text: str, limit: int) -> str:
    """Cut an answer longer than `limit` characters, with a marker saying so."""
    if len(text) <= limit:
        return text
    return (
        f"{text[:limit]}\n\n[... answer truncated: it was {len(text):,} characters; the limit is {limit:,} "
        "(DELEGATE_MAX_OUTPUT_CHARS). Ask for a shorter answer or a part of it.]"
    )


class Delegator:
    """Runs delegate and ask calls; shared by the MCP tools and the command line."""

    def __init__(self, settings: Settings, catalog: Catalog, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self.catalog = catalog
        self._environ = dict(environ)
        cooldowns = Cooldowns(settings.cooldown_s)
        limiter = anyio.CapacityLimiter(settings.max_concurrency)
        self._chain = ChainRunner(settings, self._environ, secret_values(environ), cooldowns, limiter)
        self._router = Router(settings, self._environ, cooldowns, limiter)
        self._budget = None
        if settings.daily_budget_usd is not None:
            data_dir = settings.data_dir or default_data_dir(environ)
            self._budget = DailyBudget(settings.daily_budget_usd, data_dir)
        # Keys are read once at start-up, like every MCP server's environment.
        self._usable = [s for s in catalog if usable_models(s, self._environ)]

    def validate(self, task: str, context: str) -> None:
        """Reject an empty task or oversized input before any provider is called."""
        if not task.strip():
            raise InvalidInputError("task is empty: pass the work to do as 'task' (and any material as 'context').")
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

    async def _prepare(self, task: str, context: str) -> Deadline:
        """Checks every call passes before any provider is called; starts the call's deadline."""
        self.validate(task, context)
        deadline = Deadline(self.settings.deadline_s)
        if self._budget is not None:
            await anyio.to_thread.run_sync(self._budget.check)
        await llm.ready()  # a call that arrives before the background import finishes waits here, not in routing
        return deadline

    async def delegate(self, task: str, context: str = "") -> DelegateResult:
        """Route the task to the best specialist and return its answer with the routing metadata."""
        deadline = await self._prepare(task, context)
        if not self._usable:  # nothing can answer: the default's error names the keys to set
            outcome = RouteOutcome(
                self.catalog.default.name, Routing(decided_by="default", reason="no usable specialist"), CallUsage()
            )
            return await self._answer(self.catalog.default, outcome, task, context, deadline)
        tokens = max(estimate_tokens(specialist_messages(s, task, context)) for s in self._usable)
        candidates = [s for s in self._usable if self._chain.fits(s, tokens)]
        if not candidates:
            raise self._chain.too_large_error(self._usable, tokens)
        names = [s.name for s in candidates]
        fallback = self.catalog.default.name if self.catalog.default.name in names else names[0]
        outcome = await self._router.route(task, context, candidates, fallback, deadline)
        return await self._answer(self.catalog.get(outcome.specialist), outcome, task, context, deadline)

    async def ask(self, name: str, task: str, context: str = "") -> DelegateResult:
        """Send the task straight to one specialist, with no routing."""
        spec = self.catalog.get(name)
        deadline = await self._prepare(task, context)
        outcome = RouteOutcome(
            name, Routing(decided_by="direct", reason=f"called directly as {spec.tool_name}"), CallUsage()
        )
        return await self._answer(spec, outcome, task, context, deadline)

    async def _answer(
        self, spec: Specialist, outcome: RouteOutcome, task: str, context: str, deadline: Deadline
    ) -> DelegateResult:
        try:
            answer = await self._chain.run(spec, specialist_messages(spec, task, context), deadline)
        except AllModelsFailedError:
            await self._spend(outcome.usage.cost_usd)  # the router was still paid for
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
        await self._spend(usage.total_cost_usd)
        return DelegateResult(
            output=cap_output(completion.text, self.settings.max_output_chars),
            specialist=spec.name,
            model=answer.model,
            routing=outcome.routing,
            attempts=answer.attempts,
            usage=usage,
            latency_ms=deadline.elapsed_ms(),
        )

    async def _spend(self, cost_usd: float | None) -> None:
        if self._budget is not None and cost_usd:
            with anyio.CancelScope(shield=True):  # money already spent is recorded even if the call is cancelled
                await anyio.to_thread.run_sync(self._budget.add, cost_usd)

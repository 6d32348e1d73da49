"""One delegate or ask call end to end: validate, route, call the specialist, build the result."""

from __future__ import annotations

from collections.abc import Mapping

from server import llm
from server.catalog import Catalog, Specialist
from server.chain import run_chain, usable_models
from server.clock import Deadline
from server.errors import InvalidInputError
from server.redact import secret_values
from server.results import CallUsage, DelegateResult, Routing, Usage, total_cost
from server.router import RouteOutcome, Router
from server.settings import Settings


def specialist_messages(spec: Specialist, task: str, context: str) -> list[dict[str, str]]:
    """The specialist's conversation: its instructions, then the context (if any) and the task."""
    content = f"<context>\n{context}\n</context>\n\n{task}" if context else task
    return [{"role": "system", "content": spec.instructions}, {"role": "user", "content": content}]


class Delegator:
    """Runs delegate and ask calls; shared by the MCP tools and the command line."""

    def __init__(self, settings: Settings, catalog: Catalog, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self.catalog = catalog
        self._environ = dict(environ)
        self._secrets = secret_values(environ)
        self._router = Router(settings, self._environ)
        # Keys are read once at start-up, like every MCP server's environment.
        self._candidates = [s for s in catalog if usable_models(s, self._environ)]

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

    async def delegate(self, task: str, context: str = "") -> DelegateResult:
        """Route the task to the best specialist and return its answer with the routing metadata."""
        self.validate(task, context)
        deadline = Deadline(self.settings.deadline_s)
        await llm.ready()  # a call that arrives before the background import finishes waits here, not in routing
        candidates = self._candidates or list(self.catalog)  # none usable: the default explains which key to set
        names = [s.name for s in candidates]
        fallback = self.catalog.default.name if self.catalog.default.name in names else names[0]
        outcome = await self._router.route(task, context, candidates, fallback, deadline)
        return await self._answer(self.catalog.get(outcome.specialist), outcome, task, context, deadline)

    async def ask(self, name: str, task: str, context: str = "") -> DelegateResult:
        """Send the task straight to one specialist, with no routing."""
        spec = self.catalog.get(name)
        self.validate(task, context)
        deadline = Deadline(self.settings.deadline_s)
        await llm.ready()
        outcome = RouteOutcome(
            name, Routing(decided_by="direct", reason=f"called directly as {spec.tool_name}"), CallUsage()
        )
        return await self._answer(spec, outcome, task, context, deadline)

    async def _answer(
        self, spec: Specialist, outcome: RouteOutcome, task: str, context: str, deadline: Deadline
    ) -> DelegateResult:
        answer = await run_chain(
            spec,
            specialist_messages(spec, task, context),
            self._environ,
            deadline,
            self.settings.attempt_timeout_s,
            self._secrets,
        )
        completion = answer.completion
        specialist_usage = CallUsage(
            input_tokens=completion.input_tokens, output_tokens=completion.output_tokens, cost_usd=completion.cost_usd
        )
        usage = Usage(
            router=outcome.usage,
            specialist=specialist_usage,
            total_cost_usd=total_cost(outcome.usage.cost_usd, specialist_usage.cost_usd),
        )
        return DelegateResult(
            output=completion.text,
            specialist=spec.name,
            model=answer.model,
            routing=outcome.routing,
            attempts=answer.attempts,
            usage=usage,
            latency_ms=deadline.elapsed_ms(),
        )

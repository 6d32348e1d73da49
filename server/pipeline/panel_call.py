"""A panel call as stages: prepare → members chosen → the whole panel reserved → members and judge → settled."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from server.catalog import Catalog, Specialist
from server.errors import PanelFailedError
from server.panel import Panel, choose_members
from server.pipeline.budget import Budget
from server.pipeline.messages import material
from server.pipeline.prepare import Prepare, Request
from server.pipeline.route import Route
from server.progress import Progress
from server.results import PanelResult
from server.settings import Settings


class PanelCall:
    """The same task to several specialists at once, each blind to the others, and a synthesis of them."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        usable: list[Specialist],
        stages: tuple[Prepare, Route, Budget, Panel],
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._usable = usable
        self._prepare, self._route, self._budget, self._panel = stages

    async def run(
        self,
        task: str,
        context: str,
        specialists: Sequence[str],
        synthesize: bool,
        progress: Progress,
        files: Sequence[str] = (),
        client_roots: Sequence[Path] = (),
    ) -> PanelResult:
        """The members' answers and the judge's synthesis, the whole panel's worst case reserved before any call."""
        catalog = self._catalog
        named = choose_members(catalog, self._usable, list(specialists)) if specialists else None
        judge = catalog.get(self._settings.panel_judge or catalog.default.name) if synthesize else None
        prepared = await self._prepare.run(Request(task, context, files, client_roots))
        members = named or choose_members(catalog, self._usable, [], self._route.fit(task))
        given = material(context, prepared.bundle.text)
        budget = self._budget
        async with budget.reserved(budget.panel_worst_case(task, given, members, judge)) as paid:
            try:
                result = await self._panel.run(task, given, members, judge, prepared.deadline, progress)
            except PanelFailedError as exc:
                paid.cost_usd = exc.cost_usd  # the answers that arrived were paid for
                raise
            paid.cost_usd = result.usage.total_cost_usd
        bundle, waited = prepared.bundle, prepared.startup_wait_ms
        warnings = [*bundle.warnings, *result.warnings]
        return result.model_copy(update={"files": bundle.reads, "warnings": warnings, "startup_wait_ms": waited})

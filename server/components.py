"""The composition root: every component a call uses, built once from Settings, and the stages they are handed to.

Nothing else constructs a component: a stage receives the few it uses, so what a stage can touch is read here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import anyio

from server.calling.chain import ChainRunner, usable_models
from server.calling.cooldown import Cooldowns
from server.catalog import Catalog, Specialist
from server.errors import ConfigError
from server.feedback import FeedbackBook
from server.jobs import JobManager
from server.panel import Panel
from server.pipeline.answer import Answer
from server.pipeline.budget import Budget
from server.pipeline.cascade import CascadeStage
from server.pipeline.handoff import Handoff
from server.pipeline.prepare import FileRoots, Prepare
from server.pipeline.record import Record, Tally
from server.pipeline.route import Route
from server.pipeline.startup import StartUp
from server.quality.shadow import ShadowRunner, build_shadow, judge_chain
from server.redact import secret_values
from server.routing.lifecycle import ClassifierLifecycle
from server.routing.router import RouteCache, Router
from server.settings import Settings
from server.store.base import Store
from server.store.budget import DailyBudget, default_data_dir
from server.store.decision_log import DecisionLog
from server.store.factory import open_store
from server.store.shadow_book import ShadowBook
from server.store.usage import UsageTally
from server.threads import ThreadBook


@dataclass
class Components:
    """The long-lived parts of one server process, each built once."""

    environ: dict[str, str]
    """The environment snapshot taken at start-up: keys are read once, like every MCP server's environment."""
    store: Store
    cooldowns: Cooldowns
    chain: ChainRunner
    router: Router
    daily_budget: DailyBudget | None
    usable: list[Specialist]
    """The specialists with a usable model (a key set, or a model that needs none)."""
    route_cache: RouteCache
    decision_log: DecisionLog | None
    feedback: FeedbackBook
    lifecycle: ClassifierLifecycle
    feedback_on: bool
    """Whether delegate calls are remembered (task text included) so feedback can name them by call_id."""
    usage: UsageTally
    threads: ThreadBook | None
    file_roots: FileRoots
    jobs: JobManager
    shadow: ShadowRunner | None
    """Shadow runs (DELEGATE_SHADOW); None when off, the default."""


def feedback_is_on(settings: Settings) -> bool:
    """DELEGATE_FEEDBACK=on, or the feedback tool named in DELEGATE_TOOLS."""
    return settings.feedback or "feedback" in (settings.tools or "").replace(" ", "").split(",")


def build_components(
    settings: Settings, catalog: Catalog, environ: Mapping[str, str], store: Store | None = None
) -> Components:
    """Open the store (checked) and build every component from the settings; a bad setting raises ConfigError."""
    snapshot = dict(environ)
    store = store if store is not None else open_store(settings, environ)
    shared = getattr(store, "shared_cooldowns", None)  # only a fleet store (Redis) shares cooldowns
    cooldowns = Cooldowns(settings.cooldown_s, shared=shared() if shared is not None else None)
    limiter = anyio.CapacityLimiter(settings.max_concurrency)
    chain = ChainRunner(settings, snapshot, secret_values(environ, catalog.key_env_names), cooldowns, limiter)
    router = Router(settings, snapshot, cooldowns, limiter)
    data_dir = settings.data_dir or default_data_dir(environ)
    daily_budget = None
    if settings.daily_budget_usd is not None:
        daily_budget = DailyBudget(settings.daily_budget_usd, store, data_dir)
    feedback = FeedbackBook(store, catalog.names, settings.feedback_ttl_days)
    usage = UsageTally(store)
    usage.start()
    threads = None
    if settings.threads:
        threads = ThreadBook(store, settings.thread_ttl_days, settings.thread_max_chars)
    parts = Components(
        environ=snapshot,
        store=store,
        cooldowns=cooldowns,
        chain=chain,
        router=router,
        daily_budget=daily_budget,
        usable=[s for s in catalog if usable_models(s, snapshot)],
        route_cache=RouteCache(settings.route_cache_size),
        decision_log=DecisionLog(settings.decision_log, settings.log_tasks) if settings.decision_log else None,
        feedback=feedback,
        lifecycle=ClassifierLifecycle(settings, catalog, feedback, router, data_dir),
        feedback_on=feedback_is_on(settings),
        usage=usage,
        threads=threads,
        file_roots=FileRoots.from_settings(settings),
        jobs=JobManager(settings, store),
        shadow=build_shadow(
            settings.shadow,
            catalog,
            chain,
            judge_chain(settings.shadow_judge, router.router_models),
            ShadowBook(store),
            daily_budget,
            settings.shadow_concurrency,
            settings.log_tasks,
        ),
    )
    if settings.panel_judge and settings.panel_judge not in catalog.names:
        raise ConfigError(
            f"DELEGATE_PANEL_JUDGE: unknown specialist {settings.panel_judge!r}. Known: {', '.join(catalog.names)}."
        )
    return parts


@dataclass
class Stages:
    """The pipeline's stages for one server process, each holding only the components it uses."""

    startup: StartUp
    prepare: Prepare
    route: Route
    budget: Budget
    handoff: Handoff
    record: Record
    panel: Panel


def build_stages(settings: Settings, catalog: Catalog, parts: Components) -> Stages:
    """Hand each stage the components it uses."""
    startup = StartUp(parts.lifecycle, settings.deadline_s)
    tally = Tally(parts.usage)
    record = Record(
        catalog, parts.environ, tally, parts.decision_log, parts.feedback, parts.feedback_on, settings.log_tasks
    )
    cascade = CascadeStage(parts.chain, parts.router, parts.environ, settings.verifier_timeout_s, parts.cooldowns)
    answer = Answer(settings, parts.chain, parts.threads, tally, cascade, parts.shadow)
    return Stages(
        startup=startup,
        prepare=Prepare(settings, parts.file_roots, parts.threads, parts.jobs, startup),
        route=Route(
            catalog,
            parts.usable,
            parts.chain,
            parts.router,
            parts.route_cache,
            parts.lifecycle,
            settings.router_preview_chars,
        ),
        budget=Budget(
            parts.daily_budget, catalog, parts.usable, parts.chain, parts.router, settings.max_output_tokens, cascade
        ),
        handoff=Handoff(settings, parts.jobs, answer, record),
        record=record,
        panel=Panel(parts.chain),
    )

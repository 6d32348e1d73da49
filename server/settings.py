"""One Settings object, read from environment variables and command-line flags."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from server.errors import ConfigError

DEFAULT_ROUTER_MODELS = ("openai/gpt-4.1-mini", "anthropic/claude-haiku-4-5", "gemini/gemini-2.5-flash-lite")

# Settings field -> environment variable that sets it.
ENV_NAMES: dict[str, str] = {
    "specialists_dir": "DELEGATE_SPECIALISTS_DIR",
    "router_model": "ROUTER_MODEL",
    "router_api_base": "ROUTER_API_BASE",
    "max_task_chars": "DELEGATE_MAX_TASK_CHARS",
    "max_context_chars": "DELEGATE_MAX_CONTEXT_CHARS",
    "file_roots": "DELEGATE_FILE_ROOTS",
    "file_roots_allow_wide": "DELEGATE_FILE_ROOTS_ALLOW_WIDE",
    "file_allow": "DELEGATE_FILE_ALLOW",
    "max_file_chars": "DELEGATE_MAX_FILE_CHARS",
    "max_files": "DELEGATE_MAX_FILES",
    "router_preview_chars": "DELEGATE_ROUTER_PREVIEW_CHARS",
    "router_timeout_s": "DELEGATE_ROUTER_TIMEOUT_S",
    "attempt_timeout_s": "DELEGATE_ATTEMPT_TIMEOUT_S",
    "deadline_s": "DELEGATE_DEADLINE_S",
    "first_token_timeout_s": "DELEGATE_FIRST_TOKEN_TIMEOUT_S",
    "stall_timeout_s": "DELEGATE_STALL_TIMEOUT_S",
    "retries": "DELEGATE_RETRIES",
    "cooldown_s": "DELEGATE_COOLDOWN_S",
    "max_concurrency": "DELEGATE_MAX_CONCURRENCY",
    "cli_max_concurrency": "DELEGATE_CLI_MAX_CONCURRENCY",
    "max_output_tokens": "DELEGATE_MAX_OUTPUT_TOKENS",
    "max_output_chars": "DELEGATE_MAX_OUTPUT_CHARS",
    "thinking_budget_tokens": "DELEGATE_THINKING_BUDGET_TOKENS",
    "daily_budget_usd": "DELEGATE_DAILY_BUDGET_USD",
    "data_dir": "DELEGATE_DATA_DIR",
    "store": "DELEGATE_STORE",
    "threads": "DELEGATE_THREADS",
    "thread_ttl_days": "DELEGATE_THREAD_TTL_DAYS",
    "thread_max_chars": "DELEGATE_THREAD_MAX_CHARS",
    "router_enabled": "DELEGATE_ROUTER",
    "classifier": "DELEGATE_CLASSIFIER",
    "classifier_threshold": "DELEGATE_CLASSIFIER_THRESHOLD",
    "classifier_examples": "DELEGATE_CLASSIFIER_EXAMPLES",
    "feedback": "DELEGATE_FEEDBACK",
    "feedback_ttl_days": "DELEGATE_FEEDBACK_TTL_DAYS",
    "route_cache_size": "DELEGATE_ROUTE_CACHE_SIZE",
    "decision_log": "DELEGATE_LOG",
    "log_tasks": "DELEGATE_LOG_TASKS",
    "tools": "DELEGATE_TOOLS",
    "transport": "DELEGATE_TRANSPORT",
    "http_host": "DELEGATE_HTTP_HOST",
    "http_port": "DELEGATE_HTTP_PORT",
    "http_token": "DELEGATE_HTTP_TOKEN",
    "http_allow_no_token": "DELEGATE_HTTP_ALLOW_NO_TOKEN",
    "http_tokens": "DELEGATE_HTTP_TOKENS",
    "http_tokens_file": "DELEGATE_HTTP_TOKENS_FILE",
    "feedback_callers": "DELEGATE_FEEDBACK_CALLERS",
    "http_allowed_hosts": "DELEGATE_HTTP_ALLOWED_HOSTS",
    "http_allowed_origins": "DELEGATE_HTTP_ALLOWED_ORIGINS",
    "http_max_connections": "DELEGATE_HTTP_MAX_CONNECTIONS",
    "http_header_timeout_s": "DELEGATE_HTTP_HEADER_TIMEOUT_S",
    "log_level": "DELEGATE_LOG_LEVEL",
    "jobs": "DELEGATE_JOBS",
    "job_max_s": "DELEGATE_JOB_MAX_S",
    "job_ttl_s": "DELEGATE_JOB_TTL_S",
    "max_jobs": "DELEGATE_MAX_JOBS",
    "panel_judge": "DELEGATE_PANEL_JUDGE",
    "link_share": "DELEGATE_LINK_SHARE",
    "client_max_tokens": "DELEGATE_CLIENT_MAX_TOKENS",
    "answer_ttl_s": "DELEGATE_ANSWER_TTL_S",
    "result_form": "DELEGATE_RESULT_FORM",
    "verifier_timeout_s": "DELEGATE_VERIFIER_TIMEOUT_S",
    "shadow": "DELEGATE_SHADOW",
    "shadow_judge": "DELEGATE_SHADOW_JUDGE",
    "shadow_concurrency": "DELEGATE_SHADOW_CONCURRENCY",
}
# Settings whose values are secrets: an error about them never shows the value.
SECRET_FIELDS = frozenset({"http_token", "http_tokens"})


class Settings(BaseModel):
    """Everything the server can be told; immutable once built."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    specialists_dir: Path | None = None
    """A folder of specialist files that replaces the built-ins."""
    router_model: str | None = None
    """The router model tried first; the built-in cheap models follow it as fallbacks."""
    router_api_base: str | None = None
    """An OpenAI-compatible endpoint for the router model (local server or LiteLLM proxy)."""
    max_task_chars: int = Field(100_000, gt=0)
    """Longest task accepted, in characters."""
    max_context_chars: int = Field(2_000_000, ge=0)
    """Longest context accepted, in characters (files read for a call count toward it too)."""
    file_roots: str | None = None
    """Folders `files` may be read from (os.pathsep-separated); default the working directory unless it is / or
    the home folder. Over stdio the client's MCP roots are added."""
    file_roots_allow_wide: bool = False
    """Let DELEGATE_FILE_ROOTS name /, the home folder or a folder above it (never a root otherwise)."""
    file_allow: str | None = None
    """Comma-separated glob patterns of credential-looking files that may be read anyway (e.g. ".env.example")."""
    max_file_chars: int = Field(500_000, gt=0)
    """Longest single file accepted in `files`, in characters."""
    max_files: int = Field(100, gt=0)
    """Most files one call may read (a glob matching more is refused)."""
    router_preview_chars: int = Field(2_000, ge=0)
    """How much of the context (its head) the router sees, besides its size."""
    router_timeout_s: float = Field(10.0, gt=0)
    """Time the router model gets before the default specialist takes the task."""
    attempt_timeout_s: float = Field(50.0, gt=0)
    """Longest time one model try may take in all (streaming limits catch hangs sooner)."""
    deadline_s: float = Field(50.0, gt=0)
    """Time a whole tool call may take, router and fallbacks included (clients give up near 60 s)."""
    first_token_timeout_s: float = Field(20.0, gt=0)
    """Time a specialist model gets to start answering before its fallback is tried."""
    stall_timeout_s: float = Field(10.0, gt=0)
    """Longest silence allowed inside a streamed answer before it counts as failed."""
    retries: int = Field(1, ge=0, le=5)
    """Extra tries of the same model after a rate limit, server error or connection error."""
    cooldown_s: float = Field(30.0, ge=0)
    """How long a failing model is skipped by later calls (0 turns cooldowns off)."""
    max_concurrency: int = Field(32, gt=0)
    """Most provider calls in flight at once; further calls wait, within their deadline."""
    cli_max_concurrency: int = Field(2, gt=0, le=64)
    """Most runs of each coding-agent CLI at once (each is a process of a few hundred MB); more wait their turn."""
    max_output_tokens: int = Field(8192, gt=0)
    """Cap on any specialist's output tokens per call, whatever its file says."""
    max_output_chars: int = Field(40_000, gt=0)
    """With links off (DELEGATE_LINK_SHARE=0), longer answers are cut with a marker; with links on, never cut."""
    thinking_budget_tokens: int = Field(1024, ge=0, le=32_768)
    """Thinking allowed to a reasoning model (Gemini 2.5, OpenAI o-series / gpt-5) on top of its output cap."""
    daily_budget_usd: float | None = Field(None, gt=0)
    """Optional spend limit per UTC day, across restarts and processes; unset means no limit."""
    data_dir: Path | None = None
    """Where the spend ledger lives; default the user's data directory."""
    store: str | None = None
    """Where state lives: a SQLite file path, or redis://host:port/N for a fleet; default a SQLite file in the
    data directory."""
    threads: bool = True
    """Keep conversations: every result gets a thread_id to follow up with; off stores nothing."""
    thread_ttl_days: float = Field(30.0, gt=0)
    """A thread is forgotten this many days after its last turn."""
    thread_max_chars: int = Field(400_000, gt=0)
    """Most characters a thread keeps (about 115k tokens): beyond it the oldest context and files, then the oldest
    turns, are dropped. The whole history is re-sent every turn, so this bounds a follow-up's cost; it fits the
    200k-token windows of the default specialists' models with room for the new turn and the answer."""
    router_enabled: bool = True
    """Ask the router model when the classifier abstains; off sends those tasks to the default specialist."""
    classifier: bool = True
    """Let the embedded classifier decide confident cases without calling the router model."""
    classifier_threshold: float = Field(0.75, gt=0, le=1)
    """Confidence the classifier needs to decide alone; below it the router model decides."""
    classifier_examples: Path | None = None
    """A JSONL file of {"task", "expected"} lines the classifier also learns from."""
    feedback: bool = False
    """Offer the feedback tool and remember delegate calls (their task text, 30 days) so they can be corrected."""
    feedback_ttl_days: float = Field(90.0, gt=0)
    """A correction is forgotten this many days after it was given: no longer shown to the router nor learned."""
    route_cache_size: int = Field(1024, ge=0)
    """Routing decisions remembered for identical tasks (0 turns the cache off)."""
    decision_log: Path | None = None
    """Append one JSON line per call to this file (opt-in)."""
    log_tasks: bool = False
    """Also write the task text into the decision log (by default only its hash)."""
    tools: str | None = Field(None, pattern=r"^[a-z_][a-z0-9_]*(\s*,\s*[a-z_][a-z0-9_]*)*$")
    """Comma-separated tool names to expose (e.g. "delegate"); unset exposes all. Each schema costs context."""
    transport: str = Field("stdio", pattern="^(stdio|http)$")
    """stdio for clients that spawn the server; http for streamable HTTP (stateless)."""
    http_host: str = "127.0.0.1"
    """Address the HTTP transport listens on."""
    http_port: int = Field(8765, gt=0, lt=65536)
    """Port the HTTP transport listens on."""
    http_token: str | None = Field(None, min_length=16)
    """When set, every HTTP request needs `Authorization: Bearer <token>`."""
    http_allow_no_token: bool = False
    """Serve HTTP on a non-loopback address without a token (only behind a proxy that checks callers)."""
    http_tokens: str | None = None
    """Named callers' tokens, "name=token,...": each caller sees only its own threads, jobs, answers and usage."""
    http_tokens_file: Path | None = None
    """A file of named callers' tokens, a `name: token` line each (`name: token feedback` may correct routing)."""
    feedback_callers: str | None = None
    """Comma-separated caller names allowed to give routing feedback on a server with named callers."""
    http_allowed_hosts: str | None = None
    """Comma-separated Host headers accepted (DNS-rebinding protection); default: loopback names."""
    http_allowed_origins: str | None = None
    """Comma-separated Origin headers accepted; default: loopback origins."""
    http_max_connections: int = Field(1000, gt=0)
    """Most HTTP connections open at once; when full, the one waiting longest for a request head is closed."""
    http_header_timeout_s: float = Field(5.0, gt=0, le=300)
    """Time an HTTP client has to send a request's head (and longest pause inside its body) before it is closed."""
    log_level: str = Field("WARNING", pattern="^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    """Level of the log written to stderr."""
    jobs: bool = True
    """Hand an answer still streaming at the deadline back as a job (off: return it cut, marked truncated)."""
    job_max_s: float = Field(600.0, gt=0, le=86_400)
    """Longest time a job may work in all; it is stopped after that."""
    job_ttl_s: float = Field(86_400.0, gt=0)
    """How long a finished job's result stays readable with delegate_result (default a day)."""
    max_jobs: int = Field(16, gt=0)
    """Most jobs working at once; more are refused with no provider called."""
    panel_judge: str | None = None
    """The specialist that writes a panel's synthesis; default the default specialist."""
    link_share: float = Field(0.4, ge=0, le=1)
    """An answer estimated over this share of the client's token limit is returned as its head and a link to the
    whole (delegate://answers/{call_id}); 0 turns links off (answers are cut at DELEGATE_MAX_OUTPUT_CHARS)."""
    client_max_tokens: int = Field(25_000, gt=0)
    """The largest tool result the client accepts, in tokens (Claude Code's MAX_MCP_OUTPUT_TOKENS)."""
    answer_ttl_s: float = Field(86_400.0, gt=0)
    """How long an answer sent by link stays readable (default a day)."""
    result_form: str = Field("auto", pattern="^(auto|both|text)$")
    """What a tool result carries: both the text and the structured content; text only (a model then reads the answer
    as text, not JSON-escaped); auto: text only for clients known to show their model only the structured content."""
    verifier_timeout_s: float = Field(15.0, gt=0)
    """Time a cascade's verifier gets per draft; then the draft is kept unverified (or escalates, if so set)."""
    shadow: str | None = None
    """Shadow runs: SPECIALIST=MODEL@RATE, comma-separated (e.g. generalist=openai/gpt-5-nano@0.1); off when unset."""
    shadow_judge: str | None = None
    """The model that judges shadow answers against live ones; default the router's cheap models."""
    shadow_concurrency: int = Field(2, gt=0, le=64)
    """Most shadow runs in flight at once; a sampled call beyond it is not shadowed."""

    @property
    def router_models(self) -> list[str]:
        """The router chain: the configured model first, then the built-in cheap ones."""
        chain = [self.router_model] if self.router_model else []
        return chain + [m for m in DEFAULT_ROUTER_MODELS if m not in chain]

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> Settings:
        """Build settings from the environment; non-None overrides (command-line flags) win."""
        values: dict[str, Any] = {}
        for field, env_name in ENV_NAMES.items():
            raw = environ.get(env_name, "").strip()
            if raw:
                values[field] = raw.upper() if field == "log_level" else raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                field = str(err["loc"][0]) if err["loc"] else "?"
                source = ENV_NAMES.get(field, field) if field not in overrides else f"--{field.replace('_', '-')}"
                got = "" if field in SECRET_FIELDS else f" (got {err.get('input')!r})"  # never echo a secret
                problems.append(f"{source}: {err['msg']}{got}")
            raise ConfigError("Invalid setting. " + "; ".join(problems)) from None

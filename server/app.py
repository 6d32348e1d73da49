"""build_server(): the MCP server with the delegate tool and one ask_<name> tool per specialist."""

from __future__ import annotations

import json
import logging
import threading
import types
import typing
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.server.mcpserver.resolve import ListRoots, Resolve
from mcp.server.mcpserver.tools import Tool
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from mcp_types import CallToolResult, JSONRPCError, ListRootsRequest, ListRootsResult, TextContent, ToolAnnotations
from mcp_types.version import is_version_at_least
from pydantic import ConfigDict, Field, ValidationError

from server import __version__
from server.catalog import Catalog, Specialist
from server.commands.cli_output import catalog_report
from server.delegation import EMPTY_TASK, Delegator, is_blank
from server.errors import ConfigError, DelegateError, InvalidInputError, UnknownThreadError
from server.feedback import FeedbackReceipt, receipt
from server.files import root_paths
from server.jobs import MAX_WAIT_S
from server.progress import NO_PROGRESS, Progress
from server.results import DelegateResult, PanelResult, panel_text, summary_line
from server.stdio_check import CheckedLines, claimed_stdin
from server.threads import ThreadBook

logger = logging.getLogger(__name__)
RECENT_THREADS = 50

TaskArg = Annotated[
    str,
    Field(
        description="The complete, self-contained task: the specialist sees nothing else "
        "of your conversation, so include what it needs to know."
    ),
]
ContextArg = Annotated[
    str,
    Field(
        description="Optional material the task refers to: code, a document, logs. "
        "Only a short preview of it is used for routing."
    ),
]
AskContextArg = Annotated[
    str, Field(description="Optional material the task refers to: code, a document, logs; the specialist reads it all.")
]
FilesArg = Annotated[
    list[str] | None,
    Field(
        description='Optional files for the specialist, as paths or glob patterns ("src/**/*.py"), relative to '
        "the project folder. The server reads them itself and passes them with the context: do not read them "
        "yourself or paste them into `context`. Credential files (.env, keys, .git internals) are refused."
    ),
]
ThreadArg = Annotated[
    str | None,
    Field(
        description="To follow up on an earlier answer, pass that result's thread_id: the specialist then sees "
        'the earlier tasks, material and answers of the conversation, so say only what is new ("now add tests", '
        '"shorter"). Leave it out for an unrelated task; every result carries a new thread_id to continue from.'
    ),
]
BackgroundArg = Annotated[
    bool,
    Field(
        description="true: start the work and return at once with a job_id (status \"running\"); "
        "collect the answer later with delegate_result. For work you expect to take minutes."
    ),
]
JobIdArg = Annotated[str, Field(description="The job_id a delegate or ask_ result returned with status \"running\".")]
WaitArg = Annotated[
    float,
    Field(
        ge=0,
        description=f"Seconds to wait for the job to finish before answering (at most {MAX_WAIT_S:g}); "
        "0 answers at once with the text so far.",
    ),
]
CancelArg = Annotated[bool, Field(description="true: stop the job and close its model request; returns what it wrote.")]
ToolResult = Annotated[CallToolResult, DelegateResult]
CallIdArg = Annotated[
    str, Field(description="The call_id of the delegate result the feedback is about (or give thread_id and turn).")
]
FeedbackThreadArg = Annotated[str, Field(description="Instead of call_id: the thread_id of the conversation...")]
TurnArg = Annotated[int, Field(ge=0, description="...and the turn in it (1 is the first).")]
GoodArg = Annotated[bool, Field(description="true: the right specialist answered; false: it was misrouted.")]
ShouldBeArg = Annotated[
    str,
    Field(
        description="When good is false: the specialist the task should have gone to (named in the tool's description)."
    ),
]
_ANNOTATIONS = ToolAnnotations(read_only_hint=True, open_world_hint=True, idempotent_hint=False)


def server_instructions(catalog: Catalog) -> str:
    """Tell the client model what the server is for and when delegating is worth a call."""
    roster = "\n".join(f"- {s.name}: {s.description}" for s in catalog)
    return (
        "delegate-mcp hands a task to the specialist model best suited to it and returns the answer with who "
        "answered, why, tokens, cost and latency.\n"
        "Call `delegate` for self-contained work another model can do well or more cheaply: writing, reviewing or "
        "debugging code; drafting, rewriting or summarising long documents (pass them as `context` rather than "
        "reading them into your own context); everyday questions, extraction and formatting. Call `ask_<name>` "
        "to choose the specialist yourself. Specialists see only the task and context you pass, not this "
        "conversation. Do not delegate what needs your tools, files or conversation history. A result with "
        'status "running" is still being written: call `delegate_result` with its job_id for the rest. Call '
        "`panel` for independent answers from several specialists and a synthesis (design decisions, tricky bugs).\n"
        f"Specialists:\n{roster}"
    )


def to_tool_result(result: DelegateResult) -> CallToolResult:
    """Structured content for clients that read it; the answer first, then one summary line, as text."""
    text = f"{result.output}\n\n---\n{summary_line(result)}"
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=result.model_dump(mode="json")
    )


def progress_for(ctx: Context | None) -> Progress:
    """Progress notifications for this call (sent only when the client asked for them)."""
    if ctx is None:
        return NO_PROGRESS
    return Progress(lambda value, message: ctx.report_progress(value, None, message))


async def client_roots(ctx: Context, files: list[str] | None = None) -> ListRoots | ListRootsResult | None:
    """The client's MCP roots, asked only when the call names files and the client offers roots, and only over
    stdio (an HTTP client's roots are folders on its own machine, not this one). A client whose roots/list fails
    still gets its call answered, from the configured roots."""
    capabilities = ctx.client_capabilities
    if not files or capabilities is None or capabilities.roots is None:
        return None
    if getattr(ctx.request_context, "request", None) is not None:  # an HTTP request
        return None
    if ctx.protocol_version is not None and is_version_at_least(ctx.protocol_version, "2026-07-28"):
        return ListRoots()  # an input_required round trip: the SDK asks and injects the answer
    try:  # older protocols: a request to the client in the middle of the call, whose failure we survive
        return await ctx.session.send_request(
            ListRootsRequest(), ListRootsResult, metadata=ServerMessageMetadata(related_request_id=ctx.request_id)
        )
    except (MCPError, ValidationError) as exc:
        logger.warning("the client's roots/list failed (%s); using the configured roots only", exc)
        return None


ClientRoots = Annotated[ListRootsResult | None, Resolve(client_roots)]


def roots_of(listed: ListRootsResult | None) -> list[Path]:
    """Folders named by the client's roots/list answer (none when it was not asked)."""
    return root_paths([str(root.uri) for root in listed.roots]) if listed else []


async def _run(call: Awaitable[DelegateResult], progress: Progress) -> CallToolResult:
    """Await a delegation; turn our errors into clean isError results and hide anything unexpected."""
    try:
        result = await call
        if result.status == "running":
            await progress.milestone(f"still answering: handed back as job {result.job_id}")
        else:
            await progress.milestone(f"{result.status}: {result.specialist} answered with {result.model}")
        return to_tool_result(result)
    except DelegateError as exc:
        raise ToolError(str(exc)) from None
    except Exception:
        logger.exception("delegate-mcp failed unexpectedly")
        raise ToolError("delegate-mcp hit an internal error; the server log (stderr) has the details.") from None


def _strict(tool: Tool) -> Tool:
    """Reject unknown arguments instead of silently ignoring them (a misspelt 'context' would vanish)."""
    base = tool.fn_metadata.arg_model
    strict = type(base.__name__, (base,), {"model_config": ConfigDict(**base.model_config, extra="forbid")})
    tool.fn_metadata.arg_model = strict
    tool.parameters = strict.model_json_schema(by_alias=True)
    return tool


def delegate_tool(delegator: Delegator) -> Tool:
    """The routed tool."""

    async def delegate(
        task: TaskArg,
        context: ContextArg = "",
        files: FilesArg = None,
        thread_id: ThreadArg = None,
        background: BackgroundArg = False,
        ctx: Context | None = None,
        roots: ClientRoots = None,
    ) -> ToolResult:
        progress = progress_for(ctx)
        call = delegator.delegate(
            task, context, progress, files or [], roots_of(roots), thread_id=thread_id, background=background
        )
        return await _run(call, progress)

    names = ", ".join(delegator.catalog.names)
    description = (
        f"Hand a task to the best specialist model ({names}): a cheap router picks one, it answers. Returns the "
        "answer plus routing metadata: specialist, model, reason, confidence, tokens, cost in USD, latency and "
        "fallbacks tried. Put long material in `context`; name files in `files` and the server reads them (do not "
        "read them yourself). Follow-ups: pass the earlier result's `thread_id`; each turn is routed afresh and the "
        'specialist sees the whole conversation. An answer still coming at the deadline returns status "running", '
        "the text so far and a job_id for delegate_result."
    )
    return _strict(Tool.from_function(delegate, name="delegate", description=description, annotations=_ANNOTATIONS))


def ask_tool(delegator: Delegator, spec: Specialist, like: Tool | None = None) -> Tool:
    """A tool that calls one specialist directly; `like`, another ask tool, lends its schemas (all ask tools share
    one signature, and building a tool's schemas is most of what start-up spends before it can list tools)."""

    async def ask(
        task: TaskArg,
        context: AskContextArg = "",
        files: FilesArg = None,
        thread_id: ThreadArg = None,
        background: BackgroundArg = False,
        ctx: Context | None = None,
        roots: ClientRoots = None,
    ) -> ToolResult:
        progress = progress_for(ctx)
        call = delegator.ask(
            spec.name, task, context, progress, files or [], roots_of(roots), thread_id=thread_id, background=background
        )
        return await _run(call, progress)

    ask.__name__ = spec.tool_name  # names the input schema ask_<name>Arguments

    description = (
        f"Ask the {spec.name} specialist directly, with no routing. It handles: {spec.description} Name files in "
        "`files` and the server reads them (do not read them yourself). Follow-ups: pass the earlier result's "
        "`thread_id`."
    )
    if like is not None:
        update = {
            "fn": ask,
            "name": spec.tool_name,
            "description": description,
            "parameters": {**like.parameters, "title": f"{spec.tool_name}Arguments"},
            "resolved_params": dict(like.resolved_params),
            "resolver_plans": dict(like.resolver_plans),
        }
        return like.model_copy(update=update)
    return _strict(Tool.from_function(ask, name=spec.tool_name, description=description, annotations=_ANNOTATIONS))


def ask_tools(delegator: Delegator) -> list[Tool]:
    """One ask_<name> tool per specialist, the first one's schemas shared by the rest."""
    tools: list[Tool] = []
    for spec in delegator.catalog:
        tools.append(ask_tool(delegator, spec, tools[0] if tools else None))
    return tools


def feedback_tool(delegator: Delegator) -> Tool:
    """The tool that marks a delegate call as well or badly routed (offered when feedback is on)."""
    names = ", ".join(delegator.catalog.names)

    async def feedback(
        good: GoodArg,
        call_id: CallIdArg = "",
        should_be: ShouldBeArg = "",
        thread_id: FeedbackThreadArg = "",
        turn: TurnArg = 0,
    ) -> FeedbackReceipt:
        try:
            if bool(call_id) == bool(thread_id or turn):
                raise InvalidInputError("feedback names one call: give call_id, or thread_id and turn, not both.")
            correction = await delegator.give_feedback(
                call_id=call_id or None,
                thread_id=thread_id or None,
                turn=turn or None,
                good=good,
                should_be=should_be or None,
            )
        except DelegateError as exc:
            raise ToolError(str(exc)) from None
        return receipt(correction)

    description = (
        "Tell delegate-mcp whether a delegate call went to the right specialist, so it routes better: pass the "
        "result's call_id (or its thread_id and turn number), good=true/false and, when false, should_be (one of "
        f"{names}). The same task then goes to should_be at once, and similar tasks learn from it."
    )
    return _strict(
        Tool.from_function(
            feedback,
            name="feedback",
            description=description,
            annotations=ToolAnnotations(read_only_hint=False, open_world_hint=False, idempotent_hint=True),
        )
    )


def result_tool(delegator: Delegator) -> Tool:
    """delegate_result: the rest of an answer handed back as a job."""

    async def delegate_result(
        job_id: JobIdArg, wait_s: WaitArg = 0, cancel: CancelArg = False, ctx: Context | None = None
    ) -> ToolResult:
        progress = progress_for(ctx)
        return await _run(delegator.job_result(job_id, wait_s, cancel, progress), progress)

    description = (
        'Get the rest of an answer that was still coming when a delegate or ask_ call returned status "running" '
        'with a job_id. Returns the usual result: status "done" with the whole answer, or "running" with the text '
        f"so far. Pass wait_s (up to {MAX_WAIT_S:g}) to wait for it; cancel=true stops the job."
    )
    annotations = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
    return _strict(
        Tool.from_function(delegate_result, name="delegate_result", description=description, annotations=annotations)
    )


SpecialistsArg = Annotated[
    list[str],
    Field(description="Specialists to ask, by name; empty asks every specialist with a usable model (at least two)."),
]
SynthesizeArg = Annotated[
    bool,
    Field(description="true: a judge model compares the answers, blind to who wrote them, and writes a synthesis."),
]


def panel_tool(delegator: Delegator) -> Tool:
    """panel: several independent answers to one task, and a synthesis."""

    async def panel(
        task: TaskArg,
        context: ContextArg = "",
        files: FilesArg = None,
        specialists: SpecialistsArg = [],  # noqa: B006 (never mutated; the schema shows the default)
        synthesize: SynthesizeArg = True,
        ctx: Context | None = None,
        roots: ClientRoots = None,
    ) -> Annotated[CallToolResult, PanelResult]:
        progress = progress_for(ctx)
        try:
            call = delegator.panel(task, context, specialists, synthesize, progress, files or [], roots_of(roots))
            result = await call
        except DelegateError as exc:
            raise ToolError(str(exc)) from None
        except Exception:
            logger.exception("delegate-mcp panel failed unexpectedly")
            raise ToolError("delegate-mcp hit an internal error; the server log (stderr) has the details.") from None
        content = [TextContent(type="text", text=panel_text(result))]
        return CallToolResult(content=content, structured_content=result.model_dump(mode="json"))

    names = ", ".join(delegator.catalog.names)
    description = (
        f"Get second opinions: the same task goes to several specialists at once ({names}; by default every one "
        "with a usable model), each answering independently, then a judge compares the answers without knowing "
        "who wrote which and writes a synthesis naming where they agree and disagree. For design decisions, "
        "tricky bugs, anything worth more than one view. Costs one call per specialist plus the judge."
    )
    return _strict(Tool.from_function(panel, name="panel", description=description, annotations=_ANNOTATIONS))


# Each argument our tools take, the JSON type it needs, and that type in words. Tools that take more add them here.
# A kind may be a generic alias such as list[str]: a list whose items all have that type.
ARGUMENTS: dict[str, tuple[Any, str]] = {
    "task": (str, "a string"),
    "context": (str, "a string"),
    "files": ((list[str], type(None)), "a list of strings (file paths or glob patterns)"),
    "thread_id": ((str, type(None)), "a string (the thread_id of an earlier result)"),
    "background": (bool, "true or false"),
}
RESULT_ARGUMENTS: dict[str, tuple[Any, str]] = {
    "job_id": (str, "a string"),
    "wait_s": ((int, float), "a number of seconds"),
    "cancel": (bool, "true or false"),
}
PANEL_ARGUMENTS: dict[str, tuple[Any, str]] = {
    "task": (str, "a string"),
    "context": (str, "a string"),
    "files": ((list[str], type(None)), "a list of strings (file paths or glob patterns)"),
    "specialists": (list[str], "an array of specialist names"),
    "synthesize": (bool, "true or false"),
}


class Signature(NamedTuple):
    """What a tool takes: its arguments' types, and the required ones with what they are for."""

    arguments: dict[str, tuple[Any, str]]
    required: dict[str, str]


TASK_TOOL = Signature(ARGUMENTS, {"task": "the complete task for the specialist"})
RESULT_TOOL = Signature(RESULT_ARGUMENTS, {"job_id": "the job_id a delegate or ask_ result returned"})
PANEL_TOOL = Signature(PANEL_ARGUMENTS, {"task": "the complete task every specialist answers"})


def _type_name(value: Any) -> str:
    names = {"dict": "object", "list": "array", "bool": "boolean", "NoneType": "null"}
    return names.get(type(value).__name__, type(value).__name__)


def _has_type(value: Any, kind: Any) -> bool:
    """isinstance, except that true/false is not a number (bool subclasses int in Python, not in JSON), and that
    list[str] means a list of strings."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    for one in kinds:
        if isinstance(one, types.GenericAlias) and typing.get_origin(one) is list:
            (item,) = typing.get_args(one)
            if isinstance(value, list) and all(_has_type(v, item) for v in value):
                return True
        elif isinstance(value, one) and (one is bool or not isinstance(value, bool)):
            return True
    return False


def argument_problem(tool: str, arguments: Any, signature: Signature = TASK_TOOL) -> str | None:
    """What is wrong with a call's arguments, in words a model can act on; None when they are fine."""
    table, required = signature
    if not isinstance(arguments, dict):
        needed = ", ".join(f"'{name}' (required, {table[name][1]})" for name in required)
        optional = ", ".join(name for name in table if name not in required)
        return f"{tool} takes an object: {needed}" + (f" and optionally {optional}." if optional else ".")
    problems = []
    unknown = sorted(set(arguments) - set(table))
    if unknown:
        problems.append(
            f"unknown argument{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"({tool} takes only {', '.join(map(repr, table))})"
        )
    problems += [f"'{name}' is required: {what}" for name, what in required.items() if name not in arguments]
    if "task" in table and isinstance(arguments.get("task"), str) and is_blank(arguments["task"]):
        problems.append(EMPTY_TASK)
    problems += [
        f"'{name}' must be {words}, not {_type_name(arguments[name])}"
        for name, (kind, words) in table.items()
        if name in arguments and not _has_type(arguments[name], kind)
    ]
    return f"Invalid arguments for {tool}: " + "; ".join(problems) + "." if problems else None


class ArgumentCheck:
    """Middleware that answers malformed calls of our tools with a plain explanation (pydantic's own message,
    with its URLs and input echoes, stays the backstop)."""

    def __init__(self, tools: dict[str, Signature]) -> None:
        self._tools = tools

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        """Check tools/call arguments before validation; pass everything else through."""
        params = ctx.params if ctx.method == "tools/call" else None
        if isinstance(params, dict) and params.get("name") in self._tools:
            name = params["name"]
            problem = argument_problem(name, params.get("arguments") or {}, self._tools[name])
            if problem:
                return CallToolResult(content=[TextContent(type="text", text=problem)], is_error=True)
        return await call_next(ctx)


class AfterHandshake:
    """Middleware that runs a callback once the handshake is over: after the first request that follows it has
    been answered (usually tools/list), before a tools/call, or a moment after `initialized` if nothing follows.
    Heavy background work started then (litellm's import) no longer competes with `initialize` for the GIL."""

    def __init__(self, callback: Callable[[], Any], idle_s: float = 0.5) -> None:
        self._callback = callback
        self._idle_s = idle_s
        self._done = threading.Event()

    def fire(self) -> None:
        """Run the callback, once."""
        if not self._done.is_set():
            self._done.set()
            self._callback()

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        """Pass every message through; fire at the right moment."""
        method = ctx.method
        if method == "notifications/initialized":
            timer = threading.Timer(self._idle_s, self.fire)
            timer.daemon = True
            timer.start()
            return await call_next(ctx)
        if method == "initialize":
            return await call_next(ctx)
        if method == "tools/call":
            self.fire()
        try:
            return await call_next(ctx)
        finally:
            self.fire()


def chosen_tools(all_names: list[str], wanted: str | None) -> list[str]:
    """The tool names to expose: all, or those listed in DELEGATE_TOOLS (unknown names are a config error)."""
    if not wanted:
        return all_names
    names = [name.strip() for name in wanted.split(",") if name.strip()]
    unknown = [name for name in names if name not in all_names]
    if unknown:
        raise ConfigError(
            f"DELEGATE_TOOLS / --tools: unknown tool {', '.join(map(repr, unknown))}. "
            f"Known tools: {', '.join(all_names)}."
        )
    return [name for name in all_names if name in names]


def tool_names(catalog: Catalog) -> list[str]:
    """Every tool the server can expose (feedback aside, which is offered when it is on), in the listed order."""
    return ["delegate", *(spec.tool_name for spec in catalog), "delegate_result", "panel"]


def build_server(delegator: Delegator, after_handshake: Callable[[], Any] | None = None) -> MCPServer:
    """The MCP server exposing delegate, ask_<name>, delegate_result, panel and resources; built once, here."""
    catalog = delegator.catalog
    tools = [delegate_tool(delegator), *ask_tools(delegator)]
    tools += [result_tool(delegator), panel_tool(delegator)]
    if delegator.feedback_on:
        tools.append(feedback_tool(delegator))
    keep = set(chosen_tools([t.name for t in tools], delegator.settings.tools))
    tools = [t for t in tools if t.name in keep]
    # The plain-language argument check; feedback's own arguments are few and typed.
    signatures = {"delegate_result": RESULT_TOOL, "panel": PANEL_TOOL}
    middleware: list[Any] = [
        ArgumentCheck({t.name: signatures.get(t.name, TASK_TOOL) for t in tools if t.name != "feedback"})
    ]
    if after_handshake:
        middleware.append(AfterHandshake(after_handshake))
    server = MCPServer(
        name="delegate-mcp",
        version=__version__,
        instructions=server_instructions(catalog),
        tools=tools,
        log_level=delegator.settings.log_level,  # type: ignore[arg-type]
        middleware=middleware,
    )

    @server.resource(
        "delegate://specialists",
        name="specialists",
        mime_type="application/json",
        description="The specialists: descriptions, model chains, and which models are usable now "
        "and why (or which env var would enable them).",
    )
    def specialists() -> str:
        return json.dumps(catalog_report(catalog, delegator.settings, delegator.environ), indent=2)

    @server.resource(
        "delegate://usage",
        name="usage",
        mime_type="application/json",
        description="Usage since the state store began counting (`since`; shared by every server on the same "
        "store, kept across restarts): calls, tokens and cost per specialist and in total, and the estimated "
        "saving against sending everything to the priciest specialist.",
    )
    async def usage() -> str:
        return json.dumps(await anyio.to_thread.run_sync(delegator.usage.snapshot), indent=2)

    if delegator.threads is not None:
        add_thread_resources(server, delegator.threads)
    return server


def add_thread_resources(server: MCPServer, book: ThreadBook) -> None:
    """delegate://threads (recent conversations) and delegate://threads/{thread_id} (one transcript)."""

    @server.resource(
        "delegate://threads",
        name="threads",
        mime_type="application/json",
        description=f"Recent conversations, newest first (up to {RECENT_THREADS}): thread_id, title (the first "
        "task), turns, specialists that answered, created and updated times.",
    )
    async def threads() -> str:
        found = await anyio.to_thread.run_sync(book.recent, RECENT_THREADS)
        return json.dumps([thread.summary() for thread in found], indent=2, ensure_ascii=False)

    @server.resource(
        "delegate://threads/{thread_id}",
        name="thread",
        mime_type="application/json",
        description="One conversation as JSON: every turn's task, context, files, answer, specialist, model and time.",
    )
    async def thread(thread_id: str) -> str:
        try:
            found = await anyio.to_thread.run_sync(book.load, thread_id)
        except (UnknownThreadError, InvalidInputError) as exc:
            raise ResourceNotFoundError(str(exc)) from None
        except DelegateError as exc:
            raise ResourceError(str(exc)) from None
        return json.dumps(found.transcript(), indent=2, ensure_ascii=False)


async def run_stdio(server: MCPServer) -> None:
    """Serve MCP over stdio as MCPServer.run_stdio_async does, but answer malformed JSON-RPC lines (the SDK drops
    them): our reader checks each line, and replies go out through the SDK's own writer."""
    with claimed_stdin() as wire:
        lines = CheckedLines(wire)
        async with stdio_server(stdin=lines) as (read_stream, write_stream):  # type: ignore[arg-type]

            async def reply(payload: dict[str, Any]) -> None:
                await write_stream.send(SessionMessage(JSONRPCError.model_validate(payload)))

            lines.reply = reply
            lowlevel = server._lowlevel_server  # MCPServer serves only its own streams; this is what it runs on them
            await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())

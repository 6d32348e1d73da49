"""build_server(): the MCP server with the delegate tool and one ask_<name> tool per specialist."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

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
from pydantic import ConfigDict, ValidationError

from server import __version__
from server.arguments import ToolArguments
from server.catalog import Specialist
from server.commands.cli_output import catalog_report
from server.delegation import Delegator
from server.errors import DelegateError, InvalidInputError, UnknownThreadError
from server.feedback import FeedbackReceipt, receipt
from server.files import root_paths
from server.handshake import AfterHandshake
from server.progress import NO_PROGRESS, Progress
from server.quality.shadow_report import SHADOW_TEXT, shadow_summary
from server.results import DelegateResult, PanelResult, panel_text, summary_line
from server.stdio_check import CheckedLines, claimed_stdin
from server.threads import ThreadBook
from server.tool_text import (
    AskContextArg,
    BackgroundArg,
    CallIdArg,
    CancelArg,
    ChecksArg,
    ContextArg,
    FeedbackThreadArg,
    FilesArg,
    GoodArg,
    JobIdArg,
    ShouldBeArg,
    SpecialistsArg,
    SynthesizeArg,
    TaskArg,
    ThreadArg,
    TurnArg,
    WaitArg,
    ask_description,
    chosen_tools,
    delegate_description,
    feedback_description,
    panel_description,
    result_description,
    server_instructions,
)

logger = logging.getLogger(__name__)
RECENT_THREADS = 50
ToolResult = Annotated[CallToolResult, DelegateResult]
_ANNOTATIONS = ToolAnnotations(read_only_hint=True, open_world_hint=True, idempotent_hint=False)


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
        checks: ChecksArg = None,
        ctx: Context | None = None,
        roots: ClientRoots = None,
    ) -> ToolResult:
        progress = progress_for(ctx)
        call = delegator.delegate(
            task, context, progress, files or [], roots_of(roots), thread_id, background, checks=checks
        )
        return await _run(call, progress)

    description = delegate_description(delegator.catalog)
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
        checks: ChecksArg = None,
        ctx: Context | None = None,
        roots: ClientRoots = None,
    ) -> ToolResult:
        progress, where = progress_for(ctx), roots_of(roots)
        call = delegator.ask(spec.name, task, context, progress, files or [], where, thread_id, background, checks)
        return await _run(call, progress)

    ask.__name__ = spec.tool_name  # names the input schema ask_<name>Arguments

    description = ask_description(spec)
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

    return _strict(
        Tool.from_function(
            feedback,
            name="feedback",
            description=feedback_description(delegator.catalog),
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

    description = result_description()
    annotations = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
    return _strict(
        Tool.from_function(delegate_result, name="delegate_result", description=description, annotations=annotations)
    )


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

    description = panel_description(delegator.catalog)
    return _strict(Tool.from_function(panel, name="panel", description=description, annotations=_ANNOTATIONS))


def tool_arguments(tool: Tool) -> ToolArguments:
    """What a tool takes, read from its own input schema and its arguments' Annotated markers."""
    fields = tool.fn_metadata.arg_model.model_fields
    return ToolArguments.read(tool.parameters, {name: field.metadata for name, field in fields.items()})


class ArgumentCheck:
    """Middleware that answers malformed calls of our tools with a plain explanation (pydantic's own message,
    with its URLs and input echoes, stays the backstop)."""

    def __init__(self, tools: dict[str, ToolArguments]) -> None:
        self._tools = tools

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        """Check tools/call arguments before validation; pass everything else through."""
        params = ctx.params if ctx.method == "tools/call" else None
        if isinstance(params, dict) and params.get("name") in self._tools:
            name = params["name"]
            problem = self._tools[name].problem(name, params.get("arguments") or {})
            if problem:
                return CallToolResult(content=[TextContent(type="text", text=problem)], is_error=True)
        return await call_next(ctx)


def build_server(delegator: Delegator, after_handshake: Callable[[], Any] | None = None) -> MCPServer:
    """The MCP server exposing delegate, ask_<name>, delegate_result, panel and resources; built once, here."""
    catalog = delegator.catalog
    tools = [delegate_tool(delegator), *ask_tools(delegator)]
    tools += [result_tool(delegator), panel_tool(delegator)]
    if delegator.feedback_on:
        tools.append(feedback_tool(delegator))
    keep = set(chosen_tools([t.name for t in tools], delegator.settings.tools))
    tools = [t for t in tools if t.name in keep]
    middleware: list[Any] = [ArgumentCheck({t.name: tool_arguments(t) for t in tools})]
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

    @server.resource("delegate://shadow", name="shadow", mime_type="application/json", description=SHADOW_TEXT)
    async def shadow() -> str:
        return json.dumps(await anyio.to_thread.run_sync(shadow_summary, delegator.store), indent=2)

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

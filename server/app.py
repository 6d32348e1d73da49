"""build_server(): the MCP server with the delegate tool and one ask_<name> tool per specialist."""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import anyio
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.server.mcpserver.prompts.base import Prompt
from mcp.server.mcpserver.resolve import ListRoots, Resolve
from mcp.server.mcpserver.tools import Tool
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from mcp_types import (
    INVALID_PARAMS,
    CallToolResult,
    Completion,
    EmptyResult,
    JSONRPCError,
    ListRootsRequest,
    ListRootsResult,
    PromptReference,
    Resource,
    ResourceLink,
    SetLevelRequestParams,
    TextContent,
    ToolAnnotations,
)
from mcp_types.version import is_version_at_least
from pydantic import ValidationError

from server import __version__, resource_text
from server import tool_text as text
from server.answers import answer_range, answer_uri, linked_panel
from server.arguments import ArgumentCheck, tool_arguments
from server.arguments import strict as _strict
from server.catalog import Specialist
from server.commands.cli_output import catalog_report
from server.delegation import Delegator
from server.errors import DelegateError, InvalidInputError, UnknownAnswerError, UnknownThreadError
from server.feedback import FeedbackReceipt, one_call_named, receipt
from server.files import listed_roots
from server.handshake import AfterHandshake
from server.progress import Progress, progress_for
from server.prompts import Completions, prompt_specs
from server.quality.shadow_report import SHADOW_TEXT, shadow_summary
from server.reply import ClientLogLevels, Reply, connection_of, log_channel
from server.results import DelegateResult, PanelResult, panel_text, summary_line
from server.stdio_check import CheckedLines, claimed_stdin
from server.threads import ThreadBook

logger = logging.getLogger(__name__)
_ANNOTATIONS = ToolAnnotations(read_only_hint=True, open_world_hint=True, idempotent_hint=False)
MODERN = "2026-07-28"  # from this protocol on, requests are stateless and carry their own options (roots, log level)
_INTERNAL = "delegate-mcp hit an internal error; the server log (stderr) has the details."


def to_tool_result(result: DelegateResult | PanelResult, text_only: bool = False) -> CallToolResult:
    """The answer itself, then one summary line, as text; the whole result as structured content for programs,
    unless the client would show its model that JSON instead of the text (docs/results.md)."""
    structured = None if text_only else result.model_dump(mode="json")
    body = panel_text(result) if isinstance(result, PanelResult) else f"{result.output}\n\n---\n{summary_line(result)}"
    content: list[Any] = [TextContent(type="text", text=body)]
    if result.answer_uri:  # the whole of a big answer, which the text holds only the head of
        link = {"uri": result.answer_uri, "name": f"answer {result.call_id}", "size": result.answer_chars}
        content.append(ResourceLink(type="resource_link", mime_type="text/plain", **link))
    return CallToolResult(content=content, structured_content=structured)


def modern(ctx: Context) -> bool:
    """A 2026-07-28 (or later) request: stateless, carrying its own options (roots, log level)."""
    return ctx.protocol_version is not None and is_version_at_least(ctx.protocol_version, MODERN)


async def client_roots(ctx: Context, files: list[str] | None = None) -> ListRoots | ListRootsResult | None:
    """The client's MCP roots, asked only when the call names files and the client offers roots, and only over
    stdio (an HTTP client's roots are folders on its own machine, not this one). A client whose roots/list fails
    still gets its call answered, from the configured roots."""
    capabilities = ctx.client_capabilities
    if not files or capabilities is None or capabilities.roots is None:
        return None
    if getattr(ctx.request_context, "request", None) is not None:  # an HTTP request
        return None
    if modern(ctx):
        return ListRoots()  # an input_required round trip: the SDK asks and injects the answer
    try:  # older protocols: a request to the client in the middle of the call, whose failure we survive
        return await ctx.session.send_request(
            ListRootsRequest(), ListRootsResult, metadata=ServerMessageMetadata(related_request_id=ctx.request_id)
        )
    except (MCPError, ValidationError) as exc:
        logger.warning("the client's roots/list failed (%s); using the configured roots only", exc)
        return None


ClientRoots = Annotated[ListRootsResult | None, Resolve(client_roots)]


async def _run(
    call: Awaitable[DelegateResult], progress: Progress, reply: Reply, ctx: Context | None, offset: int = 0
) -> CallToolResult:
    """Await a delegation; turn our errors into clean isError results and hide anything unexpected."""
    try:
        result = await reply.finish(await call, progress, offset, log_channel(ctx, ctx is not None and modern(ctx)))
        await announce_answer(ctx, result.answer_uri)
        return to_tool_result(result, reply.text_only(ctx))
    except DelegateError as exc:
        raise ToolError(str(exc)) from None
    except Exception:
        logger.exception("delegate-mcp failed unexpectedly")
        raise ToolError(_INTERNAL) from None


async def announce_answer(ctx: Context | None, uri: str | None) -> None:
    """A big answer was kept: tell the client its resource list changed (a client that cannot take it loses nothing)."""
    if uri is not None and ctx is not None:
        with anyio.move_on_after(2), contextlib.suppress(Exception):
            await ctx.session.send_resource_list_changed()


class Server(MCPServer):
    """MCPServer whose resources/list also names the caller's newest kept answers: some clients (Gemini CLI) read
    only listed resources, so a big answer's link must be listed to be followed."""

    kept: Callable[[], list[tuple[str, int]]] = staticmethod(list)

    async def list_resources(self) -> list[Resource]:
        kept = await anyio.to_thread.run_sync(self.kept)
        mine = [Resource(uri=answer_uri(i), name=f"answer {i}", mime_type="text/plain", size=n) for i, n in kept]
        return [*await super().list_resources(), *mine]


def delegate_tool(delegator: Delegator, reply: Reply) -> Tool:
    """The routed tool."""

    async def delegate(
        task: text.TaskArg,
        context: text.ContextArg = "",
        files: text.FilesArg = None,
        thread_id: text.ThreadArg = None,
        background: text.BackgroundArg = False,
        checks: text.ChecksArg = None,
        ctx: Context | None = None,
        roots: ClientRoots = None,
    ) -> CallToolResult:
        progress = progress_for(ctx)
        call = delegator.delegate(
            task, context, progress, files or [], listed_roots(roots), thread_id, background, checks=checks
        )
        return await _run(call, progress, reply, ctx)

    description = text.delegate_description(delegator.catalog)
    return _strict(Tool.from_function(delegate, name="delegate", description=description, annotations=_ANNOTATIONS))


def ask_tool(delegator: Delegator, spec: Specialist, reply: Reply, like: Tool | None = None) -> Tool:
    """A tool that calls one specialist directly; `like`, another ask tool, lends its schemas (all ask tools share
    one signature, and building a tool's schemas is most of what start-up spends before it can list tools)."""

    async def ask(
        task: text.TaskArg,
        context: text.AskContextArg = "",
        files: text.FilesArg = None,
        thread_id: text.ThreadArg = None,
        background: text.BackgroundArg = False,
        checks: text.ChecksArg = None,
        ctx: Context | None = None,
        roots: ClientRoots = None,
    ) -> CallToolResult:
        progress, where = progress_for(ctx), listed_roots(roots)
        call = delegator.ask(spec.name, task, context, progress, files or [], where, thread_id, background, checks)
        return await _run(call, progress, reply, ctx)

    ask.__name__ = spec.tool_name  # names the input schema ask_<name>Arguments

    description = text.ask_description(spec)
    if like is not None:
        update = {
            "fn": ask,
            "name": spec.tool_name,
            "description": description,
            "parameters": like.parameters,
            "resolved_params": dict(like.resolved_params),
            "resolver_plans": dict(like.resolver_plans),
        }
        return like.model_copy(update=update)
    return _strict(Tool.from_function(ask, name=spec.tool_name, description=description, annotations=_ANNOTATIONS))


def ask_tools(delegator: Delegator, reply: Reply) -> list[Tool]:
    """One ask_<name> tool per specialist, the first one's schemas shared by the rest."""
    specs = list(delegator.catalog)
    first = ask_tool(delegator, specs[0], reply)
    return [first, *(ask_tool(delegator, spec, reply, first) for spec in specs[1:])]


def feedback_tool(delegator: Delegator) -> Tool:
    """The tool that marks a delegate call as well or badly routed (offered when feedback is on)."""

    async def feedback(
        good: text.GoodArg,
        call_id: text.CallIdArg = "",
        should_be: text.ShouldBeArg = "",
        thread_id: text.FeedbackThreadArg = "",
        turn: text.TurnArg = 0,
    ) -> FeedbackReceipt:
        try:
            named = one_call_named(call_id, thread_id, turn)
            correction = await delegator.give_feedback(**named, good=good, should_be=should_be or None)
        except DelegateError as exc:
            raise ToolError(str(exc)) from None
        return receipt(correction)

    annotations = ToolAnnotations(read_only_hint=False, open_world_hint=False, idempotent_hint=True)
    description = text.feedback_description(delegator.catalog)
    return _strict(Tool.from_function(feedback, name="feedback", description=description, annotations=annotations))


def result_tool(delegator: Delegator, reply: Reply) -> Tool:
    """delegate_result: the rest of an answer handed back as a job."""

    async def delegate_result(
        job_id: text.JobIdArg,
        wait_s: text.WaitArg = 0,
        cancel: text.CancelArg = False,
        offset: text.OffsetArg = 0,
        ctx: Context | None = None,
    ) -> CallToolResult:
        progress = progress_for(ctx)
        return await _run(delegator.job_result(job_id, wait_s, cancel, progress), progress, reply, ctx, offset)

    annotations = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
    tool = Tool.from_function(delegate_result, description=text.result_description(), annotations=annotations)
    return _strict(tool)


def panel_tool(delegator: Delegator, reply: Reply) -> Tool:
    """panel: several independent answers to one task, and a synthesis."""

    async def panel(
        task: text.TaskArg,
        context: text.ContextArg = "",
        files: text.FilesArg = None,
        specialists: text.SpecialistsArg = [],  # noqa: B006 (never mutated; the schema shows the default)
        synthesize: text.SynthesizeArg = True,
        ctx: Context | None = None,
        roots: ClientRoots = None,
    ) -> CallToolResult:
        progress = progress_for(ctx)
        try:
            call = delegator.panel(task, context, specialists, synthesize, progress, files or [], listed_roots(roots))
            result = await linked_panel(reply.shelf, await call, reply.caller())
            await announce_answer(ctx, result.answer_uri)
        except DelegateError as exc:
            raise ToolError(str(exc)) from None
        except Exception:
            logger.exception("delegate-mcp panel failed unexpectedly")
            raise ToolError(_INTERNAL) from None
        return to_tool_result(result, reply.text_only(ctx))

    description = text.panel_description(delegator.catalog)
    return _strict(Tool.from_function(panel, name="panel", description=description, annotations=_ANNOTATIONS))


def build_server(delegator: Delegator, after_handshake: Callable[[], Any] | None = None) -> MCPServer:
    """The MCP server exposing delegate, ask_<name>, delegate_result, panel, resources and prompts; built once."""
    owner = lambda: delegator.caller().owner  # noqa: E731 (a shared HTTP server's named caller, else None)
    reply = Reply(delegator.answers, ClientLogLevels(), delegator.settings.result_form, owner)
    tools = [delegate_tool(delegator, reply), *ask_tools(delegator, reply)]
    tools += [result_tool(delegator, reply), panel_tool(delegator, reply)]
    if delegator.feedback_on:
        tools.append(feedback_tool(delegator))
    keep = set(text.chosen_tools([t.name for t in tools], delegator.settings.tools))
    tools = [t for t in tools if t.name in keep]
    refused = lambda problem: CallToolResult(content=[TextContent(type="text", text=problem)], is_error=True)  # noqa: E731
    middleware: list[Any] = [ArgumentCheck({t.name: tool_arguments(t) for t in tools}, refused)]
    if after_handshake:
        middleware.append(AfterHandshake(after_handshake))
    server = Server(
        name="delegate-mcp",
        version=__version__,
        instructions=text.server_instructions(delegator.catalog),
        tools=tools,
        log_level=delegator.settings.log_level,  # type: ignore[arg-type]
        middleware=middleware,
    )
    server.kept = lambda: delegator.answers.recent(reply.caller()) if delegator.answers.on else []
    add_resources(server, delegator, reply)
    if delegator.threads is not None:
        add_thread_resources(server, delegator.threads, owner)
    add_prompts(server, delegator)
    add_log_level(server, reply.levels)
    return server


def _resource(server: MCPServer, uri: str, name: str, description: str, mime_type: str = "application/json") -> Any:
    """The SDK's resource decorator, for one of ours."""
    return server.resource(uri, name=name, mime_type=mime_type, description=description)


async def _read(fn: Callable[..., Any], *args: Any) -> Any:
    """A blocking read on a worker thread; what does not exist is a not-found error, other problems a read error."""
    try:
        return await anyio.to_thread.run_sync(fn, *args)
    except (UnknownThreadError, UnknownAnswerError, InvalidInputError) as exc:
        raise ResourceNotFoundError(str(exc)) from None
    except DelegateError as exc:
        raise ResourceError(str(exc)) from None


def add_resources(server: MCPServer, delegator: Delegator, reply: Reply) -> None:
    """delegate://specialists, delegate://usage, delegate://answers/{call_id} and delegate://schemas."""
    catalog, shelf = delegator.catalog, delegator.answers

    @_resource(server, "delegate://specialists", "specialists", resource_text.SPECIALISTS)
    def specialists() -> str:
        return json.dumps(catalog_report(catalog, delegator.settings, delegator.environ), indent=2)

    @_resource(server, "delegate://usage", "usage", resource_text.USAGE)
    async def usage() -> str:
        owner = delegator.caller().owner
        return json.dumps(await anyio.to_thread.run_sync(delegator.usage.snapshot, owner), indent=2)

    @_resource(server, "delegate://answers/{call_id}{?offset,length}", "answer", resource_text.ANSWER, "text/plain")
    async def answer(call_id: str, offset: int = 0, length: int = 0) -> str:
        return answer_range(await _read(shelf.read, call_id, reply.caller()), offset, length)

    @_resource(server, "delegate://schemas", "schemas", resource_text.SCHEMAS)
    def schemas() -> str:
        models = {"delegate": DelegateResult, "panel": PanelResult, "feedback": FeedbackReceipt}
        return json.dumps({name: model.model_json_schema() for name, model in models.items()}, indent=2)

    @_resource(server, "delegate://shadow", "shadow", SHADOW_TEXT)
    async def shadow() -> str:
        return json.dumps(await anyio.to_thread.run_sync(shadow_summary, delegator.store), indent=2)


def add_thread_resources(server: MCPServer, book: ThreadBook, owner: Callable[[], str | None]) -> None:
    """delegate://threads (recent conversations) and delegate://threads/{thread_id} (one transcript): `owner`'s."""

    @_resource(server, "delegate://threads", "threads", resource_text.THREADS)
    async def threads() -> str:
        found = await anyio.to_thread.run_sync(book.recent, resource_text.RECENT_THREADS, owner())
        return json.dumps([thread.summary() for thread in found], indent=2, ensure_ascii=False)

    @_resource(server, "delegate://threads/{thread_id}", "thread", resource_text.THREAD)
    async def thread(thread_id: str) -> str:
        return json.dumps((await _read(book.load, thread_id, owner())).transcript(), indent=2, ensure_ascii=False)


def add_prompts(server: MCPServer, delegator: Delegator) -> None:
    """The prompts (slash commands in clients that show them) and completion of their arguments."""
    for spec in prompt_specs(delegator.catalog, lambda why: MCPError(INVALID_PARAMS, why)):
        server.add_prompt(Prompt.from_function(spec.fn, name=spec.name, title=spec.title, description=spec.description))
    completions = Completions(delegator.catalog, delegator.threads)

    @server.completion()
    async def complete(ref: Any, argument: Any, context: Any) -> Completion:
        known = isinstance(ref, PromptReference) or str(getattr(ref, "uri", "")).startswith("delegate://threads/")
        found = await anyio.to_thread.run_sync(completions.values, argument.name, argument.value) if known else []
        return Completion(values=found, total=len(found), has_more=False)


def add_log_level(server: MCPServer, levels: ClientLogLevels) -> None:
    """logging/setLevel: a client (2025 protocols) chooses which log messages of its calls it receives."""

    async def set_level(ctx: Any, params: SetLevelRequestParams) -> EmptyResult:
        levels.set(connection_of(ctx.session), params.level)
        return EmptyResult()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        server._lowlevel_server.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)


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
            # resources/list grows when a big answer is kept, and the client is told (announce_answer)
            options = lowlevel.create_initialization_options(NotificationOptions(resources_changed=True))
            await lowlevel.run(read_stream, write_stream, options)

"""`delegate-mcp serve`, the default command: MCP over stdio (what MCP clients run) or streamable HTTP."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from typing import Any

from server.commands.base import EXIT_CONFIG, EXIT_OK, Command, Invocation, Subcommands, exit_now, startup_done
from server.delegation import Delegator
from server.errors import ConfigError

SETTINGS_FLAGS = {"tools": "tools", "transport": "transport", "host": "http_host", "port": "http_port"}
"""Each serve flag and the setting it overrides. The flags are also accepted before any command (serve is the
default), so every command reads them."""


def add_flags(parser: argparse.ArgumentParser) -> None:
    """The transport and tool flags, on `serve` and on the bare command line."""
    parser.add_argument(
        "--transport",
        choices=["stdio", "http"],
        default=argparse.SUPPRESS,
        help="stdio (default) or streamable HTTP (env DELEGATE_TRANSPORT)",
    )
    parser.add_argument("--host", default=argparse.SUPPRESS, help="HTTP address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=argparse.SUPPRESS, help="HTTP port (default 8765)")
    parser.add_argument(
        "--tools",
        metavar="NAMES",
        default=argparse.SUPPRESS,
        help="comma-separated tools to expose, e.g. delegate (env DELEGATE_TOOLS)",
    )


def add(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    """The serve subcommand."""
    add_flags(commands.add_parser("serve", parents=[common], help="serve MCP over stdio (the default) or HTTP"))


def settings_from(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the serve flags override (None where a flag was not given)."""
    return {setting: getattr(args, flag, None) for flag, setting in SETTINGS_FLAGS.items()}


def check(call: Invocation) -> None:
    """Refuse to start with an unknown tool name, or an HTTP server exposed without protection."""
    from server.tool_text import chosen_tools, tool_names

    delegator, settings = call.server, call.settings
    extra = ["feedback"] if delegator.feedback_on else []
    chosen_tools([*tool_names(call.catalog), *extra], settings.tools)
    if settings.transport == "http":
        from server.callers import named_tokens
        from server.http import exposure_problem

        named_tokens(settings)  # malformed named tokens stop start-up, naming the setting and line
        problem = exposure_problem(settings)
        if problem:
            raise ConfigError(problem)


def run(call: Invocation) -> int:
    """Check the configuration, then serve."""
    check(call)
    return serve(call.server)


def serve(delegator: Delegator) -> int:
    """Serve MCP over stdio (until the client closes stdin) or HTTP, until SIGTERM or Ctrl-C."""
    from server import otel

    stop_telemetry = otel.install(os.environ)  # only when OTEL_* asks for an exporter and the extra is installed
    try:
        return _serve(delegator)
    finally:
        stop_telemetry()


def _serve(delegator: Delegator) -> int:
    from server.app import build_server, run_stdio

    def warm_up() -> None:
        startup_done()  # the handshake is answered: start-up is over
        threading.Thread(target=delegator.warm_up, name="warm-up", daemon=True).start()

    delegator.wait_for_classifier = False  # early calls go to the router rather than wait for training
    # Ctrl-C as SIGTERM: at once. Left to Python, KeyboardInterrupt waits for the thread blocked reading stdin.
    # (uvicorn installs its own graceful handlers while it serves HTTP.)
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda *_: exit_now(EXIT_OK))
    if delegator.settings.transport == "http":
        from server.http import run_http

        def announce(line: str) -> None:
            print(line, file=sys.stderr, flush=True)  # not through the log: its redactor hides every URL
            warm_up()  # no stdio handshake to wait for: HTTP clients connect whenever they like

        try:
            app = build_server(delegator)
            startup_done()
            with contextlib.suppress(KeyboardInterrupt):
                run_http(app, delegator.settings, announce)
        except ConfigError as exc:
            print(f"delegate-mcp: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        return EXIT_OK
    server = build_server(delegator, after_handshake=warm_up)
    from server.shutdown import run_until_stopped

    run_until_stopped(lambda: run_stdio(server), lambda: exit_now(EXIT_OK))  # SIGTERM settles as stdin's close does
    return EXIT_OK


COMMAND = Command("serve", add, run)

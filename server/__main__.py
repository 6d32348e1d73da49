"""The command line: serve (default, MCP over stdio), ask, specialists."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path

import anyio

from server import __version__
from server.catalog import load_catalog
from server.cli_output import catalog_report, format_catalog_report
from server.delegation import Delegator
from server.errors import ConfigError, DelegateError
from server.redact import RedactingFormatter, secret_values
from server.results import summary_line
from server.settings import Settings

EXIT_OK, EXIT_CALL_FAILED, EXIT_CONFIG = 0, 1, 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line; `serve` is the default command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--specialists",
        type=Path,
        metavar="DIR",
        help="folder of specialist .md files replacing the built-ins (env DELEGATE_SPECIALISTS_DIR)",
    )
    common.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="stderr log level (env DELEGATE_LOG_LEVEL, default WARNING)",
    )
    parser = argparse.ArgumentParser(
        prog="delegate-mcp",
        parents=[common],
        description="MCP server that routes each task to the best specialist model. With no command it serves "
        "MCP over stdio, which is what MCP clients (Claude Desktop, Claude Code, Cursor) run.",
        epilog="Exit codes: 0 ok, 1 the call failed (provider errors, no usable model), 2 bad configuration or usage.",
    )
    parser.add_argument("--version", action="version", version=f"delegate-mcp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("serve", parents=[common], help="serve MCP over stdio (the default)")
    ask = commands.add_parser("ask", parents=[common], help="run one task from the terminal, as the delegate tool")
    ask.add_argument("task", help="the task; '-' reads it from stdin")
    ask.add_argument("--context-file", type=Path, metavar="FILE", help="file whose text is passed as context")
    ask.add_argument("--specialist", metavar="NAME", help="skip routing and ask this specialist (as ask_NAME)")
    ask.add_argument("--json", action="store_true", help="print the whole result as JSON on stdout")
    listing = commands.add_parser(
        "specialists", parents=[common], help="list specialists, their model chains and which models are usable now"
    )
    listing.add_argument("--json", action="store_true", help="print the listing as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the delegate-mcp console script."""
    args = parse_args(argv)
    environ = dict(os.environ)
    try:
        settings = Settings.from_env(environ, specialists_dir=args.specialists, log_level=args.log_level)
        configure_logging(settings.log_level, secret_values(environ))
        catalog = load_catalog(environ, settings.specialists_dir)
    except ConfigError as exc:
        print(f"delegate-mcp: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    delegator = Delegator(settings, catalog, environ)
    if args.command == "specialists":
        report = catalog_report(catalog, settings, environ)
        print(json.dumps(report, indent=2) if args.json else format_catalog_report(report))
        return EXIT_OK
    if args.command == "ask":
        return exit_now(run_ask(delegator, args))
    return exit_now(serve(delegator))


def exit_now(code: int) -> int:
    """Flush and leave without interpreter teardown, which takes about 1 s once litellm is loaded."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def configure_logging(level: str, secrets: list[str]) -> None:
    """Everything logs to stderr (stdout is the protocol), redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def run_ask(delegator: Delegator, args: argparse.Namespace) -> int:
    """One task from the terminal: the answer on stdout, the routing summary on stderr."""
    task = sys.stdin.read() if args.task == "-" else args.task
    context = ""
    if args.context_file:
        try:
            context = args.context_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            print(
                f"delegate-mcp: cannot read --context-file {args.context_file}: {exc.__class__.__name__}",
                file=sys.stderr,
            )
            return EXIT_CONFIG
    try:
        if args.specialist:
            result = anyio.run(delegator.ask, args.specialist, task, context)
        else:
            result = anyio.run(delegator.delegate, task, context)
    except DelegateError as exc:
        print(f"delegate-mcp: {exc}", file=sys.stderr)
        return EXIT_CONFIG if isinstance(exc, KeyError) else EXIT_CALL_FAILED
    if args.json:
        print(result.model_dump_json(indent=2))
    else:
        print(result.output)
        print(f"\n[{summary_line(result)}]", file=sys.stderr)
    return EXIT_OK


def serve(delegator: Delegator) -> int:
    """Serve MCP over stdio until the client closes stdin or sends SIGTERM."""
    from server import llm
    from server.app import build_server

    server = build_server(delegator)
    signal.signal(signal.SIGTERM, lambda *_: exit_now(EXIT_OK))
    llm.warm_up_in_background()
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

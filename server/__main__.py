"""The command line: builds the parser from each command's registration and dispatches (commands/ runs them)."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from pathlib import Path
from typing import Any

if sys.argv and Path(sys.argv[0]).name in ("delegate-mcp", "__main__.py"):
    # Start-up allocates hundreds of thousands of objects that live as long as the process; the collector's passes
    # over them cost about a tenth of the time to `initialize`. Paused until the handshake is answered (startup_done).
    gc.disable()

from server import __version__
from server.catalog import load_catalog
from server.commands import (
    ask,
    compare,
    doctor,
    evaluate,
    feedback,
    panel,
    report,
    result,
    route,
    serve,
    specialists,
    stats,
    threads,
)
from server.commands.base import EXIT_CONFIG, EXIT_OK, Command, Invocation, exit_now, startup_done
from server.delegation import Delegator
from server.errors import ConfigError, StoreError
from server.redact import RedactingFormatter, secret_values
from server.routing.lifecycle import training_examples
from server.settings import Settings

# In the order `--help` lists them; serve, the default, first.
COMMANDS: dict[str, Command] = {
    command.name: command
    for command in (
        serve.COMMAND,
        ask.COMMAND,
        panel.COMMAND,
        result.COMMAND,
        route.COMMAND,
        feedback.COMMAND,
        specialists.COMMAND,
        evaluate.COMMAND,
        doctor.COMMAND,
        threads.COMMAND,
        compare.COMMAND,
        stats.COMMAND,
        report.COMMAND,
    )
}
SHARED_SETTINGS = {"specialists": "specialists_dir", "log_level": "log_level", "decision_log": "decision_log"}
"""Each flag every command takes and the setting it overrides."""


def shared_flags() -> argparse.ArgumentParser:
    """The flags every command takes, as a parent parser."""
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
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
    common.add_argument(
        "--decision-log", type=Path, metavar="FILE", help="append one JSON line per call to FILE (env DELEGATE_LOG)"
    )
    return common


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line; `serve` is the default command."""
    common = shared_flags()
    parser = argparse.ArgumentParser(
        prog="delegate-mcp",
        parents=[common],
        description="MCP server that routes each task to the best specialist model. With no command it serves "
        "MCP over stdio, which is what MCP clients (Claude Desktop, Claude Code, Cursor) run.",
        epilog="Exit codes: 0 ok, 1 the call failed (provider errors, no usable model), 2 bad configuration or usage.",
    )
    parser.add_argument("--version", action="version", version=f"delegate-mcp {__version__}")
    serve.add_flags(parser)  # the default command's flags work without naming it
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS.values():
        command.add(commands, common)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the delegate-mcp console script."""
    try:
        return run(argv)
    except BrokenPipeError:  # `delegate-mcp specialists | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def run(argv: list[str] | None) -> int:
    """Parse the command line, build what the command needs, and run it."""
    args = parse_args(argv)
    command = COMMANDS[args.command or "serve"]
    try:
        invocation = start(args, command)
        if command is not serve.COMMAND:
            startup_done()  # serve resumes the collector once its server is built
        code = command.run(invocation)
    except ConfigError as exc:
        print(f"delegate-mcp: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreError as exc:  # damaged or unreachable state is never silently replaced by an empty one
        print(f"delegate-mcp: state store error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return exit_now(code) if command.leave_at_once else code


def start(args: argparse.Namespace, command: Command) -> Invocation:
    """Settings, logging, the catalogue and (for the commands that need one) the Delegator."""
    environ = dict(os.environ)
    overrides: dict[str, Any] = {setting: getattr(args, flag, None) for flag, setting in SHARED_SETTINGS.items()}
    overrides.update(serve.settings_from(args))  # accepted before any command, so read for every one
    overrides.update(command.settings(args) if command.settings else {})
    settings = Settings.from_env(environ, **overrides)
    configure_logging(settings.log_level, secret_values(environ))
    catalog = load_catalog(environ, settings.specialists_dir)
    configure_logging(settings.log_level, secret_values(environ, catalog.key_env_names))
    if not command.needs_delegator:
        return Invocation(args, settings, environ, catalog, None)
    if settings.classifier and settings.classifier_examples:
        training_examples(catalog, settings.classifier_examples)  # a bad file stops start-up, not a later call
    return Invocation(args, settings, environ, catalog, Delegator(settings, catalog, environ))


def configure_logging(level: str, secrets: list[str]) -> None:
    """Everything logs to stderr (stdout is the protocol), redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets))
    logging.basicConfig(level=level, handlers=[handler], force=True)


if __name__ == "__main__":
    sys.exit(main())

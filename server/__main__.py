"""The command line: serve (default, MCP over stdio), ask, specialists."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TextIO

import anyio

from server import __version__
from server.catalog import load_catalog
from server.delegation import Delegator
from server.errors import (
    ConfigError,
    DelegateError,
    FileRefusedError,
    InvalidInputError,
    StoreError,
    UnknownThreadError,
)
from server.redact import RedactingFormatter, secret_values
from server.results import fallback_reasons, summary_line
from server.settings import Settings

EXIT_OK, EXIT_CALL_FAILED, EXIT_CONFIG = 0, 1, 2
BUILTIN_EVAL = "routing-eval.jsonl"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line; `serve` is the default command."""
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
    parser = argparse.ArgumentParser(
        prog="delegate-mcp",
        parents=[common],
        description="MCP server that routes each task to the best specialist model. With no command it serves "
        "MCP over stdio, which is what MCP clients (Claude Desktop, Claude Code, Cursor) run.",
        epilog="Exit codes: 0 ok, 1 the call failed (provider errors, no usable model), 2 bad configuration or usage.",
    )
    parser.add_argument("--version", action="version", version=f"delegate-mcp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser("serve", parents=[common], help="serve MCP over stdio (the default) or HTTP")
    for target in (parser, serve):
        target.add_argument(
            "--transport",
            choices=["stdio", "http"],
            default=argparse.SUPPRESS,
            help="stdio (default) or streamable HTTP (env DELEGATE_TRANSPORT)",
        )
        target.add_argument("--host", default=argparse.SUPPRESS, help="HTTP address (default 127.0.0.1)")
        target.add_argument("--port", type=int, default=argparse.SUPPRESS, help="HTTP port (default 8765)")
        target.add_argument(
            "--tools",
            metavar="NAMES",
            default=argparse.SUPPRESS,
            help="comma-separated tools to expose, e.g. delegate (env DELEGATE_TOOLS)",
        )
    ask = commands.add_parser("ask", parents=[common], help="run one task from the terminal, as the delegate tool")
    ask.add_argument("task", help="the task; '-' reads it from stdin")
    ask.add_argument("--context-file", type=Path, metavar="FILE", help="file whose text is passed as context")
    add_file_flag(ask)
    ask.add_argument("--specialist", metavar="NAME", help="skip routing and ask this specialist (as ask_NAME)")
    ask.add_argument(
        "--thread", metavar="ID", help="follow up on the conversation ID (printed after each answer); see `threads`"
    )
    ask.add_argument("--json", action="store_true", help="print the whole result as JSON on stdout")
    route = commands.add_parser(
        "route", parents=[common], help="show which specialist would answer a task, why, and the cost; calls none"
    )
    route.add_argument("task", help="the task; '-' reads it from stdin")
    route.add_argument("--context-file", type=Path, metavar="FILE", help="file whose text is passed as context")
    add_file_flag(route)
    route.add_argument(
        "--output-tokens", type=int, default=500, help="expected answer length for the cost estimate (default 500)"
    )
    route.add_argument("--json", action="store_true", help="print the decision as JSON on stdout")
    feedback = commands.add_parser(
        "feedback",
        parents=[common],
        help="mark a delegate call (by its call_id) as well routed or not; corrections teach the routing",
    )
    feedback.add_argument("call_id", nargs="?", help="the call_id of a delegate result (remembered for 30 days)")
    feedback.add_argument("--task", help="correct the routing of this task text instead of a remembered call")
    feedback.add_argument("--thread", metavar="ID", help="instead of a call_id: the thread of the call...")
    feedback.add_argument("--turn", type=int, metavar="N", help="...and its turn in that thread (1 is the first)")
    verdict = feedback.add_mutually_exclusive_group()
    verdict.add_argument("--good", action="store_true", help="the call went to the right specialist")
    verdict.add_argument("--should-be", metavar="NAME", help="the specialist the task should have gone to")
    verdict.add_argument("--list", action="store_true", help="list the corrections collected so far")
    feedback.add_argument("--json", action="store_true", help="print the result as JSON")
    listing = commands.add_parser(
        "specialists", parents=[common], help="list specialists, their model chains and which models are usable now"
    )
    listing.add_argument("--json", action="store_true", help="print the listing as JSON")
    evaluate = commands.add_parser("eval", parents=[common], help="measure routing on a labelled JSONL file")
    evaluate.add_argument(
        "file",
        nargs="?",
        type=Path,
        help='lines of {"task", "expected", "context"?}; default: the shipped set for the built-ins',
    )
    evaluate.add_argument("--full", action="store_true", help="also run the specialists (costs real calls)")
    evaluate.add_argument(
        "--mode",
        choices=["hybrid", "router", "classifier"],
        default="hybrid",
        help="hybrid: as the server routes (default); router: classifier off; classifier: "
        "no router model, abstentions go to the default",
    )
    evaluate.add_argument("--concurrency", type=int, default=8, help="tasks in flight at once (default 8)")
    evaluate.add_argument(
        "--output-tokens", type=int, default=500, help="expected answer length for the cost estimate (default 500)"
    )
    evaluate.add_argument("--json", action="store_true", help="print the report as one JSON object")
    evaluate.add_argument(
        "--feedback",
        action="store_true",
        help="measure routing on the tasks users corrected through feedback (instead of a file), without the "
        "exact-task memory: does what was learned carry?",
    )
    doctor = commands.add_parser(
        "doctor",
        parents=[common],
        help="check specialist files and keys; --ping sends a one-token request to each model",
    )
    doctor.add_argument("--ping", action="store_true", help="send a one-token request to every usable model")
    doctor.add_argument("--json", action="store_true", help="print the diagnosis as JSON")
    threads = commands.add_parser(
        "threads",
        parents=[common],
        help="list conversations; `threads show ID` prints one, `threads delete ID` forgets it",
        description="Conversations kept in the store (DELEGATE_STORE): every answer starts or continues one; "
        "follow up with `ask --thread ID` or the tools' thread_id.",
    )
    threads.add_argument("action", nargs="?", choices=["list", "show", "delete"], default="list", help="default list")
    threads.add_argument("thread_id", nargs="?", metavar="ID", help="the thread, for show and delete")
    threads.add_argument("--limit", type=int, default=50, help="how many threads to list (default 50)")
    threads.add_argument("--json", action="store_true", help="print JSON (the list, or the transcript)")
    from server.commands.compare import add_arguments as compare_arguments

    compare_arguments(commands.add_parser("compare", parents=[common], help="compare models on your own tasks"))
    stats = commands.add_parser("stats", parents=[common], help="summarise a decision log")
    stats.add_argument("log", type=Path, help="the decision log file (DELEGATE_LOG)")
    stats.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser.parse_args(argv)


def add_file_flag(parser: argparse.ArgumentParser) -> None:
    """--file PATH, repeatable: the tools' `files` on the command line."""
    parser.add_argument(
        "--file",
        action="append",
        default=[],
        dest="files",
        metavar="PATH",
        help="a file or glob pattern the server reads for the specialist, as the tools' `files` (repeatable); "
        "relative to DELEGATE_FILE_ROOTS, default the current folder",
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the delegate-mcp console script."""
    try:
        return run(argv)
    except BrokenPipeError:  # `delegate-mcp specialists | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def run(argv: list[str] | None) -> int:
    """Parse the command line and run the command."""
    args = parse_args(argv)
    environ = dict(os.environ)
    overrides = {
        "specialists_dir": getattr(args, "specialists", None),
        "log_level": getattr(args, "log_level", None),
        "decision_log": getattr(args, "decision_log", None),
        "tools": getattr(args, "tools", None),
        "transport": getattr(args, "transport", None),
        "http_host": getattr(args, "host", None),
        "http_port": getattr(args, "port", None),
    }
    if args.command == "eval" and args.mode != "hybrid":
        overrides.update(classifier=args.mode == "classifier", router_enabled=args.mode == "router")
    try:
        settings = Settings.from_env(environ, **overrides)
        configure_logging(settings.log_level, secret_values(environ))
        catalog = load_catalog(environ, settings.specialists_dir)
        configure_logging(settings.log_level, secret_values(environ, catalog.key_env_names))
        if args.command == "stats":
            return show_stats(args)
        if args.command == "threads":
            return run_threads(settings, environ, args)
        if args.command == "compare":
            from server.commands.compare import run_compare

            return exit_now(run_compare(settings, catalog, environ, args))
        if settings.classifier and settings.classifier_examples:
            from server.delegation import training_examples

            training_examples(catalog, settings.classifier_examples)  # a bad file stops start-up, not a later call
        delegator = Delegator(settings, catalog, environ)
        if args.command in (None, "serve"):
            from server.app import chosen_tools, tool_names

            extra = ["feedback"] if delegator.feedback_on else []
            chosen_tools([*tool_names(catalog), *extra], settings.tools)
            if settings.transport == "http":
                from server.http import exposure_problem

                problem = exposure_problem(settings)
                if problem:
                    raise ConfigError(problem)
        if args.command == "eval":
            return exit_now(run_eval(delegator, args, environ))
    except ConfigError as exc:
        print(f"delegate-mcp: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreError as exc:  # damaged or unreachable state is never silently replaced by an empty one
        print(f"delegate-mcp: state store error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "specialists":
        from server.commands.cli_output import catalog_report, format_catalog_report

        report = catalog_report(catalog, settings, environ)
        print(json.dumps(report, indent=2) if args.json else format_catalog_report(report))
        return EXIT_OK
    if args.command == "ask":
        return exit_now(run_ask(delegator, args))
    if args.command == "doctor":
        return exit_now(run_doctor(delegator, args))
    if args.command == "route":
        return exit_now(run_route(delegator, args))
    if args.command == "feedback":
        return exit_now(run_feedback(delegator, args))
    return exit_now(serve(delegator))


def exit_now(code: int) -> int:
    """Flush and leave without interpreter teardown, which takes about 1 s once litellm is loaded."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def run_eval(delegator: Delegator, args: argparse.Namespace, environ: dict[str, str]) -> int:
    """Route every task of the file, then print the report."""
    from server.commands import evals

    if args.feedback:
        if args.file is not None:
            raise ConfigError("give either an eval FILE or --feedback, not both.")
        cases = evals.feedback_cases(delegator)
    else:
        if args.file is None and delegator.settings.specialists_dir is not None:
            raise ConfigError("give the eval FILE: the shipped set only fits the built-in specialists.")
        path = args.file or Path(str(resources.files("specialists").joinpath(BUILTIN_EVAL)))
        cases = evals.read_cases(path, delegator.catalog.names)
    show = progress_bar(sys.stderr) if sys.stderr.isatty() else lambda done, total: None
    results = anyio.run(
        lambda: evals.run_cases(
            delegator,
            cases,
            full=args.full,
            concurrency=max(1, args.concurrency),
            progress=show,
            remembered=not args.feedback,
        )
    )
    run = evals.classifier_run(delegator, cases)
    threshold = delegator.settings.classifier_threshold if delegator.classifier else None
    summary = evals.summarise(
        results, delegator.catalog, environ, args.output_tokens, run.decision_us, threshold, run.guesses
    )
    summary["mode"] = args.mode
    print(json.dumps(summary, indent=2) if args.json else evals.format_report(summary))
    return EXIT_OK


def progress_bar(stream: TextIO) -> Callable[[int, int], None]:
    """A one-line progress bar redrawn in place on a terminal."""

    def draw(done: int, total: int) -> None:
        filled = done * 30 // total
        stream.write(f"\rrouting {done}/{total} [{'#' * filled}{'.' * (30 - filled)}]")
        if done == total:
            stream.write("\n")
        stream.flush()

    return draw


def run_doctor(delegator: Delegator, args: argparse.Namespace) -> int:
    """Print the diagnosis; exit 1 when a usable model failed its ping or no specialist can answer."""
    from server.commands.doctor import diagnose, format_rows

    rows = anyio.run(diagnose, delegator.catalog, delegator.settings, delegator.environ, args.ping)
    print(json.dumps(rows, indent=2) if args.json else format_rows(rows, delegator.catalog.source))
    failed = any(row["ping"] and not row["ping"]["ok"] for row in rows)
    answerable = any(row["usable"] and set(row["used_by"]) - {"router"} for row in rows)
    return EXIT_CALL_FAILED if failed or not answerable else EXIT_OK


def show_stats(args: argparse.Namespace) -> int:
    """Summarise a decision log."""
    from server.commands.stats import format_stats, read_log_counted, summarise_log

    summary = summarise_log(*read_log_counted(args.log))
    print(json.dumps(summary, indent=2) if args.json else format_stats(summary))
    return EXIT_OK


def run_threads(settings: Settings, environ: dict[str, str], args: argparse.Namespace) -> int:
    """List, show or delete conversations; exit 1 when the thread named does not exist."""
    from server.commands.threads import format_thread_list, format_transcript
    from server.store.factory import open_store
    from server.threads import ThreadBook

    if args.action != "list" and not args.thread_id:
        print(f"delegate-mcp: threads {args.action} needs the thread ID (see `delegate-mcp threads`).", file=sys.stderr)
        return EXIT_CONFIG
    store = open_store(settings, environ)
    book = ThreadBook(store, settings.thread_ttl_days, settings.thread_max_chars)
    try:
        if args.action == "list":
            found = book.recent(max(1, args.limit))
            listing = [thread.summary() for thread in found]
            print(
                json.dumps(listing, indent=2, ensure_ascii=False)
                if args.json
                else format_thread_list(found, store.location)
            )
        elif args.action == "show":
            thread = book.load(args.thread_id)
            print(
                json.dumps(thread.transcript(), indent=2, ensure_ascii=False)
                if args.json
                else format_transcript(thread)
            )
        elif book.delete(args.thread_id):
            print(f"Deleted thread {args.thread_id}.", file=sys.stderr)
        else:
            print(f"delegate-mcp: no thread {args.thread_id!r} in {store.location}.", file=sys.stderr)
            return EXIT_CALL_FAILED
    except (InvalidInputError, UnknownThreadError) as exc:
        print(f"delegate-mcp: {exc}", file=sys.stderr)
        return EXIT_CALL_FAILED
    finally:
        store.close()
    return EXIT_OK


def configure_logging(level: str, secrets: list[str]) -> None:
    """Everything logs to stderr (stdout is the protocol), redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def run_route(delegator: Delegator, args: argparse.Namespace) -> int:
    """The routing decision for one task, explained and priced; no specialist is called."""
    from server.commands.route import explain, format_explanation

    task = sys.stdin.read() if args.task == "-" else args.task
    context = read_context(args.context_file)
    if context is None:
        return EXIT_CONFIG
    try:
        if args.files:  # the files join the context, as they do for the specialist
            from server.delegation import material

            bundle = anyio.run(lambda: delegator.read_files(args.files, context))
            context = material(context, bundle.text)
        outcome = anyio.run(delegator.route_only, task, context)
    except DelegateError as exc:
        print(f"delegate-mcp: {exc}", file=sys.stderr)
        return EXIT_CONFIG if isinstance(exc, InvalidInputError) else EXIT_CALL_FAILED
    report = explain(delegator, outcome, task, context, max(0, args.output_tokens))
    print(json.dumps(report, indent=2) if args.json else format_explanation(report))
    return EXIT_OK


def run_feedback(delegator: Delegator, args: argparse.Namespace) -> int:
    """Record feedback on one call or task, or list the corrections collected so far."""
    from server.feedback import receipt

    try:
        if args.list:
            found = [receipt(c).model_dump() for c in anyio.run(anyio.to_thread.run_sync, delegator.corrections)]
            if args.json:
                print(json.dumps(found, indent=2))
            else:
                for item in found:
                    verdict = "good" if item["good"] else f"{item['routed_to'] or '?'} -> {item['should_be']}"
                    print(f"{item['call_id']}  {verdict}  {item['task']}")
                print(f"{len(found)} corrections", file=sys.stderr)
            return EXIT_OK
        if not (args.good or args.should_be):
            raise InvalidInputError("say --good (well routed) or --should-be NAME (the specialist it should go to).")
        by_thread = args.thread is not None or args.turn is not None
        if [bool(args.call_id), bool(args.task), by_thread].count(True) != 1:
            raise InvalidInputError("give one of: a CALL_ID, --task TEXT, or --thread ID with --turn N.")
        correction = anyio.run(
            lambda: delegator.give_feedback(
                call_id=args.call_id,
                task=args.task,
                thread_id=args.thread,
                turn=args.turn,
                good=args.good,
                should_be=args.should_be,
            )
        )
    except DelegateError as exc:
        print(f"delegate-mcp: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    done = receipt(correction)
    print(done.model_dump_json(indent=2) if args.json else f"Recorded. {done.effect}")
    return EXIT_OK


def read_context(path: Path | None) -> str | None:
    """The text of --context-file ('' when not given); None, with a message, when it cannot be read."""
    if path is None:
        return ""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"delegate-mcp: cannot read --context-file {path}: {exc.__class__.__name__}", file=sys.stderr)
        return None


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
    delegator.hand_off_at_deadline = False  # nothing could collect a job after this process ends: wait for it
    try:
        if args.specialist:
            result = anyio.run(
                lambda: delegator.ask(args.specialist, task, context, files=args.files, thread_id=args.thread)
            )
        else:
            result = anyio.run(lambda: delegator.delegate(task, context, files=args.files, thread_id=args.thread))
    except DelegateError as exc:
        print(f"delegate-mcp: {exc}", file=sys.stderr)
        return EXIT_CONFIG if isinstance(exc, (KeyError, FileRefusedError)) else EXIT_CALL_FAILED
    if args.json:
        print(result.model_dump_json(indent=2))
    else:
        print(result.output)
        for warning in result.warnings:
            print(f"[warning: {warning}]", file=sys.stderr)
        if result.files:
            read = ", ".join(f"{f.path} ({f.chars:,} chars)" for f in result.files)
            print(f"\n[files read: {read}]", file=sys.stderr)
        print(f"\n[{summary_line(result)}]", file=sys.stderr)
        if result.model.startswith("embedded/") and fallback_reasons(result.attempts):
            print(
                "[answered by the small embedded model, which runs on this machine, because the models before it "
                "failed: the line above says why.]",
                file=sys.stderr,
            )
        elif result.model.startswith("embedded/"):
            print(
                "[answered by the small embedded model, which runs on this machine. For better answers set "
                "OPENAI_API_KEY, ANTHROPIC_API_KEY or GEMINI_API_KEY.]",
                file=sys.stderr,
            )
    return EXIT_OK


def serve(delegator: Delegator) -> int:
    """Serve MCP over stdio (until the client closes stdin) or HTTP, until SIGTERM or Ctrl-C."""
    from server.app import build_server

    def warm_up() -> None:
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
            with contextlib.suppress(KeyboardInterrupt):
                run_http(build_server(delegator), delegator.settings, announce)
        except ConfigError as exc:
            print(f"delegate-mcp: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        return EXIT_OK
    server = build_server(delegator, after_handshake=warm_up)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

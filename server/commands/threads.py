"""`delegate-mcp threads`: list, show or delete the conversations kept in the store."""

from __future__ import annotations

import argparse
import json
import sys

from server.commands.base import EXIT_CALL_FAILED, EXIT_CONFIG, EXIT_OK, Command, Invocation, Subcommands
from server.errors import InvalidInputError, UnknownThreadError
from server.threads import Thread, ThreadBook, iso_time

PREVIEW_CHARS = 400


def add(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    """The threads subcommand."""
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


def run(call: Invocation) -> int:
    """List, show or delete conversations; exit 1 when the thread named does not exist."""
    from server.store.factory import open_store

    args, settings = call.args, call.settings
    if args.action != "list" and not args.thread_id:
        print(f"delegate-mcp: threads {args.action} needs the thread ID (see `delegate-mcp threads`).", file=sys.stderr)
        return EXIT_CONFIG
    store = open_store(settings, call.environ)
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


def format_thread_list(threads: list[Thread], location: str) -> str:
    """One line per thread, newest first: id, last turn, turns, specialists, title."""
    if not threads:
        return f"No conversations in {location}."
    rows = [("THREAD", "UPDATED (UTC)", "TURNS", "SPECIALISTS", "TITLE")]
    for thread in threads:
        summary = thread.summary()
        updated = str(summary.get("updated", "?")).replace("T", " ").removesuffix("+00:00")
        rows.append((thread.id, updated, str(summary.get("turns", "?")), ",".join(thread.specialists), thread.title))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[4] for row in rows
    )


def format_transcript(thread: Thread) -> str:
    """The conversation turn by turn: who answered, the task, the material's size, the answer."""
    lines = [
        f"Thread {thread.id}: {thread.title}",
        f"Started {iso_time(thread.created)}, last turn {iso_time(thread.updated)}.",
    ]
    if thread.dropped_turns:
        lines.append(f"({thread.dropped_turns} older turn(s) were dropped to keep it under DELEGATE_THREAD_MAX_CHARS.)")
    for number, turn in enumerate(thread.turns, start=thread.dropped_turns + 1):
        lines += [
            "",
            f"── Turn {number} · {turn.specialist} via {turn.model} · {iso_time(turn.at)}",
            f"Task: {turn.task}",
        ]
        if turn.context:
            lines.append(f"Context: {len(turn.context):,} characters: {_preview(turn.context)}")
        for read in turn.files:
            lines.append(f"File: {read.path} ({read.chars:,} characters)")
        if turn.material_dropped:
            lines.append("(its context and files were dropped to keep the thread under DELEGATE_THREAD_MAX_CHARS)")
        lines += ["Answer:", turn.answer]
    return "\n".join(lines)


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW_CHARS else flat[:PREVIEW_CHARS] + "…"


COMMAND = Command("threads", add, run, needs_delegator=False, leave_at_once=False)

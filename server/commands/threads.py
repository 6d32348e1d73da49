"""What `delegate-mcp threads` prints for people: the list of conversations and one transcript."""

from __future__ import annotations

from server.threads import Thread, iso_time

PREVIEW_CHARS = 400


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

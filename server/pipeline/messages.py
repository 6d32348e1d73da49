"""What a specialist is sent: its instructions, the thread's earlier turns, then this turn's material and task."""

from __future__ import annotations

from collections.abc import Sequence

from server.calling.chain import estimate_tokens
from server.catalog import Specialist
from server.threads import Turn, trim_history


def material(context: str, files_text: str = "") -> str:
    """The context the caller passed, then the files the server read for it."""
    return "\n\n".join(part for part in (context, files_text) if part)


def user_content(task: str, context: str, files_text: str = "", material_dropped: bool = False) -> str:
    """One user message: the context and files (if any), then the task."""
    given = material(context, files_text)
    note = "[The context and files given with this task were left out to save space.]\n\n" if material_dropped else ""
    return f"{note}<context>\n{given}\n</context>\n\n{task}" if given else f"{note}{task}"


def specialist_messages(
    spec: Specialist, task: str, context: str, files_text: str = "", history: Sequence[Turn] = ()
) -> list[dict[str, str]]:
    """The specialist's conversation: its instructions, the thread's earlier turns, then this turn's context and
    files (if any) and its task."""
    messages = [{"role": "system", "content": spec.instructions}]
    for turn in history:
        messages.append(
            {"role": "user", "content": user_content(turn.task, turn.context, turn.files_text, turn.material_dropped)}
        )
        messages.append({"role": "assistant", "content": turn.answer})
    messages.append({"role": "user", "content": user_content(task, context, files_text)})
    return messages


def fit_history(
    window: int | None, spec: Specialist, task: str, context: str, files_text: str, turns: list[Turn]
) -> tuple[list[Turn], bool]:
    """The thread's turns that fit `window` (the specialist's largest usable window) with this turn, and whether
    any material was left out to make them fit (the oldest context and files first, then the oldest turns)."""
    if window is None or not turns:
        return turns, False
    return trim_history(
        turns, lambda kept: estimate_tokens(specialist_messages(spec, task, context, files_text, kept)) <= window
    )

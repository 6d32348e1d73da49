"""Prompts a person picks by hand (slash commands such as /mcp__delegate__delegate), and what completes their
arguments. Plain functions: app.py registers them with the MCP SDK; each returns the message the client's model
is sent, which asks it to call one of our tools with the arguments given."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field

from server.catalog import Catalog
from server.errors import UnknownSpecialistError
from server.threads import ThreadBook

MAX_COMPLETIONS = 100
"""completion/complete returns at most this many values (the protocol's own limit)."""

TaskText = Annotated[str, Field(description="The task, complete and self-contained: the specialist sees nothing else.")]
SpecialistName = Annotated[
    str, Field(description="Optional: the specialist to ask by name (leave empty to let the router choose).")
]
PanelNames = Annotated[
    str, Field(description="Optional: specialists to ask, by name, separated by commas (empty: every usable one).")
]
FileList = Annotated[
    str,
    Field(description='Files or glob patterns under the project folder, separated by commas ("src/*.py, README.md").'),
]
Question = Annotated[str, Field(description="What to ask about the files (a review, a bug to find, a summary).")]
ThreadId = Annotated[str, Field(description="The thread_id of an earlier answer (delegate://threads lists them).")]
FollowUp = Annotated[str, Field(description='Only what is new ("now add tests", "shorter"); the thread has the rest.')]


@dataclass(frozen=True)
class PromptSpec:
    """One prompt: its name, title, description and the function that renders it."""

    name: str
    title: str
    description: str
    fn: Callable[..., str]


def split_names(text: str) -> list[str]:
    """Comma- or newline-separated names, blanks dropped."""
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


def _call(tool: str, arguments: dict[str, Any]) -> str:
    """The sentence asking the model to make exactly this tool call."""
    return (
        f"Call the delegate-mcp tool `{tool}` with these arguments, exactly as given, and show me its answer as it "
        f"is (do not redo the work yourself):\n{json.dumps(arguments, indent=2, ensure_ascii=False)}"
    )


def prompt_specs(catalog: Catalog, refuse: Callable[[str], Exception] = ValueError) -> list[PromptSpec]:
    """The prompts offered: delegate, second-opinion, review-files and continue-thread; `refuse` makes the error
    the client sees of a bad argument (an unknown specialist: the message lists the known ones)."""

    def known(name: str) -> str:
        try:
            return catalog.get(name).tool_name
        except UnknownSpecialistError as exc:
            raise refuse(str(exc)) from None

    def delegate(task: TaskText, specialist: SpecialistName = "") -> str:
        if specialist.strip():
            return _call(known(specialist.strip()), {"task": task})
        return _call("delegate", {"task": task})

    def second_opinion(task: TaskText, specialists: PanelNames = "") -> str:
        names = split_names(specialists)
        for name in names:
            known(name)
        return _call("panel", {"task": task, **({"specialists": names} if names else {})})

    def review_files(files: FileList, question: Question) -> str:
        return _call("delegate", {"task": question, "files": split_names(files)})

    def continue_thread(thread_id: ThreadId, follow_up: FollowUp) -> str:
        return _call("delegate", {"task": follow_up, "thread_id": thread_id.strip()})

    names = ", ".join(catalog.names)
    return [
        PromptSpec("delegate", "Delegate a task", f"Hand a task to a specialist model ({names}).", delegate),
        PromptSpec(
            "second-opinion",
            "Second opinions",
            "The same task to several specialists at once, and a blind synthesis of their answers.",
            second_opinion,
        ),
        PromptSpec(
            "review-files",
            "Ask about files",
            "A question about files the server reads itself (they never pass through this conversation).",
            review_files,
        ),
        PromptSpec("continue-thread", "Continue a thread", "A follow-up in an earlier conversation.", continue_thread),
    ]


class Completions:
    """Values for prompt and resource-template arguments: specialist names and thread ids."""

    def __init__(self, catalog: Catalog, threads: ThreadBook | None) -> None:
        self._catalog = catalog
        self._threads = threads

    def values(self, argument: str, typed: str) -> list[str]:
        """Candidates for `argument` starting with what was typed so far (blocking: the store is read)."""
        if argument == "specialist":
            found = list(self._catalog.names)
        elif argument == "specialists":  # a list: complete its last name, keep the ones before it
            before, _, last = typed.rpartition(",")
            head = ", ".join(split_names(before)) + ", " if split_names(before) else ""
            return [head + name for name in self._catalog.names if name.startswith(last.strip())][:MAX_COMPLETIONS]
        elif argument == "thread_id" and self._threads is not None:
            found = [thread.id for thread in self._threads.recent(MAX_COMPLETIONS)]
        else:
            return []
        return [value for value in found if value.startswith(typed.strip())][:MAX_COMPLETIONS]

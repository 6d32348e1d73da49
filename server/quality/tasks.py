"""The tasks file of a bake-off: one JSON object per line; a bad line stops the run before anything is spent."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.errors import ConfigError
from server.quality.checks import Check, parse_checks

FIELDS = ("task", "context", "files", "specialist", "reference", "checks")
MAX_TASKS = 5_000
MAX_FILE_BYTES = 50_000_000


@dataclass(frozen=True)
class Task:
    """One task of the file, validated."""

    line: int
    task: str
    context: str = ""
    files: tuple[str, ...] = ()
    specialist: str | None = None
    """The specialist whose instructions the candidates answer with (else --specialist, else the default)."""
    reference: str | None = None
    """A known good answer: the judge compares each candidate's answer with it."""
    checks: tuple[Check, ...] = ()


def read_tasks(path: Path, specialists: Sequence[str]) -> list[Task]:
    """Every task of the file; ConfigError naming the file, the line and what is wrong at the first bad line."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ConfigError(f"{path}: the tasks file is over {MAX_FILE_BYTES:,} bytes; split it.")
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the tasks file ({exc.__class__.__name__}).") from None
    tasks = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            tasks.append(parse_task(raw, number, specialists))
        except ValueError as exc:
            raise ConfigError(f"{path}:{number}: {exc}. Nothing was run.") from None
        if len(tasks) > MAX_TASKS:
            raise ConfigError(f"{path}: more than {MAX_TASKS:,} tasks; split the file. Nothing was run.")
    if not tasks:
        raise ConfigError(f'{path}: no tasks in the file; each line is a JSON object such as {{"task": "..."}}.')
    return tasks


def parse_task(raw: str, line: int, specialists: Sequence[str]) -> Task:
    """One line of the file; ValueError says what is wrong with it."""
    try:
        item = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(item, dict):
        raise ValueError('expected a JSON object such as {"task": "..."}')
    unknown = sorted(set(item) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} (the fields are {', '.join(FIELDS)})")
    task = item.get("task")
    if not isinstance(task, str) or not task.strip():
        raise ValueError("'task' must be a non-empty string")
    specialist = item.get("specialist")
    if specialist is not None and specialist not in specialists:
        raise ValueError(f"'specialist' must be one of {', '.join(specialists)}; got {specialist!r}")
    return Task(
        line=line,
        task=task,
        context=_text(item, "context") or "",
        files=tuple(_files(item.get("files"))),
        specialist=specialist,
        reference=_text(item, "reference"),
        checks=tuple(parse_checks(item["checks"])) if "checks" in item else (),
    )


def _text(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"'{name}' must be a string")
    if name == "reference" and value is not None and not value.strip():
        raise ValueError("'reference' must not be empty (leave it out when there is none)")
    return value


def _files(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError("'files' must be a list of paths or glob patterns")
    return value

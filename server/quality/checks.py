"""Deterministic graders for an answer: each check is a one-key object, and every check of a task must pass."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

KINDS = ("contains", "not_contains", "regex", "equals", "json_schema", "max_chars")
_FENCED = re.compile(r"\A```[A-Za-z0-9_-]*[ \t]*\n(.*?)\n?```\Z", re.DOTALL)
REASON_CHARS = 120


@dataclass(frozen=True)
class Check:
    """One grader: its kind and its argument (text, a compiled pattern, a JSON Schema validator or a length)."""

    kind: str
    value: Any
    shown: str
    """The check as the report shows it, e.g. contains 'Paris'."""


@dataclass(frozen=True)
class Grade:
    """Whether an answer passed all of its task's checks, and which failed."""

    passed: bool
    failed: tuple[str, ...] = ()


def parse_checks(raw: Any) -> list[Check]:
    """A task's `checks` list, each validated; ValueError says which check and what is wrong."""
    if not isinstance(raw, list):
        raise ValueError('\'checks\' must be a list of one-key objects, e.g. [{"contains": "Paris"}]')
    return [parse_check(item, number) for number, item in enumerate(raw, start=1)]


def checks_problem(raw: Any) -> str | None:
    """What is wrong with a tool call's `checks` argument, in words; None when every check is valid (or none)."""
    if raw is None:
        return None
    try:
        parse_checks(raw)
    except ValueError as exc:
        return f"'checks': {exc}"
    return None


def parse_check(item: Any, number: int) -> Check:
    """One check; ValueError names it by its position and says what is wrong."""
    where = f"check {number}"
    if not isinstance(item, dict) or len(item) != 1:
        raise ValueError(f'{where}: expected a one-key object such as {{"contains": "..."}}, got {_short(item)}')
    [(kind, value)] = item.items()
    if kind not in KINDS:
        raise ValueError(f"{where}: unknown check {kind!r}; the checks are {', '.join(KINDS)}")
    if kind in ("contains", "not_contains", "equals"):
        if not isinstance(value, str) or (kind != "equals" and not value):
            raise ValueError(f"{where}: {kind} takes a non-empty string")
        return Check(kind, value, f"{kind} {value!r}")
    if kind == "regex":
        return Check(kind, _pattern(value, where), f"regex {value!r}")
    if kind == "max_chars":
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{where}: max_chars takes a whole number above 0")
        return Check(kind, value, f"max_chars {value}")
    return Check(kind, _validator(value, where), "json_schema")


def _pattern(value: Any, where: str) -> re.Pattern[str]:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: regex takes a non-empty string (a Python regular expression)")
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"{where}: regex {value!r} does not compile: {exc}") from None


def _validator(schema: Any, where: str) -> Any:
    """A validator for the schema's own draft ($schema), 2020-12 when it names none; the schema is checked first."""
    import jsonschema  # only for files with a json_schema check: the server's start-up never pays for it
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    if not isinstance(schema, (dict, bool)):
        raise ValueError(f"{where}: json_schema takes a JSON Schema object")
    cls = validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"{where}: json_schema is not a valid JSON Schema: {exc.message}") from None
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def run_check(check: Check, answer: str) -> str | None:
    """None when the answer passes the check; else a short reason."""
    if check.kind == "contains":
        return None if check.value.casefold() in answer.casefold() else f"does not contain {check.value!r}"
    if check.kind == "not_contains":
        return f"contains {check.value!r}" if check.value.casefold() in answer.casefold() else None
    if check.kind == "equals":
        return None if answer.strip() == check.value.strip() else f"is not {_short(check.value.strip())}"
    if check.kind == "regex":
        return None if check.value.search(answer) else f"does not match {check.value.pattern!r}"
    if check.kind == "max_chars":
        return None if len(answer) <= check.value else f"is {len(answer):,} characters, over {check.value:,}"
    return _schema_problem(check.value, answer)


def _schema_problem(validator: Any, answer: str) -> str | None:
    """The answer must be one JSON document (alone, or alone in one fenced code block) that the schema accepts."""
    text = answer.strip()
    fenced = _FENCED.match(text)
    try:
        document = json.loads(fenced[1] if fenced else text)
    except ValueError:
        return "is not JSON"
    error = next(iter(validator.iter_errors(document)), None)
    if error is None:
        return None
    path = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"fails the schema at {path}: {error.message[:REASON_CHARS]}"


def grade(checks: list[Check], answer: str) -> Grade:
    """Run every check; the answer passes when none fails."""
    failed = tuple(f"{check.shown}: {why}" for check in checks if (why := run_check(check, answer)) is not None)
    return Grade(not failed, failed)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:59] + "…"

"""Plain-language argument errors, read from each tool's own input schema (no second table of names and types).

A tool's signature is the one place its arguments are named and typed. The JSON schema built from it says what
each argument takes and what it is for; two optional markers in an argument's Annotated type add what a schema
cannot say: `Words` (its value in words, "a list of file paths") and `Check` (a rule on a well-typed value).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ConfigDict

_KINDS = {
    "string": "a string",
    "boolean": "true or false",
    "number": "a number",
    "integer": "a whole number",
    "object": "an object",
    "array": "a list",
    "null": "null",
}
_PLURALS = {"string": "strings", "number": "numbers", "integer": "whole numbers", "object": "objects"}
_JSON_NAMES = {"dict": "object", "list": "array", "bool": "boolean", "NoneType": "null"}
_CLAUSE_END = re.compile(r"[:;]\s|\.(?:\s|$)")


@dataclass(frozen=True)
class Words:
    """An argument's value in words, where its JSON type alone says too little."""

    text: str


@dataclass(frozen=True)
class Check:
    """A rule on an argument's well-typed value: what is wrong with it, in words, or None."""

    problem: Callable[[Any], str | None]


@dataclass(frozen=True)
class Argument:
    """One argument, as its schema and markers describe it."""

    name: str
    schema: Mapping[str, Any]
    words: str
    """What its value must be ("a string", "true or false")."""
    purpose: str
    """What it is for: the first clause of its description ('' when that says too little)."""
    checks: tuple[Check, ...] = ()


@dataclass(frozen=True)
class ToolArguments:
    """What one tool takes, in the order its signature lists it."""

    arguments: tuple[Argument, ...]
    required: tuple[str, ...]

    @classmethod
    def read(cls, schema: Mapping[str, Any], markers: Mapping[str, Iterable[Any]]) -> ToolArguments:
        """From a tool's input schema, and each argument's Annotated metadata (where Words and Check markers sit)."""
        arguments = []
        for name, prop in schema.get("properties", {}).items():
            found = list(markers.get(name, ()))
            words = next((m.text for m in found if isinstance(m, Words)), None) or words_for(prop)
            checks = tuple(m for m in found if isinstance(m, Check))
            arguments.append(Argument(name, prop, words, purpose(prop.get("description", "")), checks))
        return cls(tuple(arguments), tuple(schema.get("required", ())))

    def problem(self, tool: str, given: Any) -> str | None:
        """What is wrong with a call's arguments, in words a model can act on; None when they are fine."""
        if not isinstance(given, dict):
            return self._shape(tool)
        problems = []
        unknown = sorted(set(given) - {argument.name for argument in self.arguments})
        if unknown:
            names = ", ".join(repr(argument.name) for argument in self.arguments)
            problems.append(
                f"unknown argument{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                f"({tool} takes only {names})"
            )
        required = [argument for argument in self.arguments if argument.name in self.required]
        problems += [_missing(argument) for argument in required if argument.name not in given]
        present = [argument for argument in self.arguments if argument.name in given]
        well_typed = [argument for argument in present if fits(given[argument.name], argument.schema)]
        for argument in well_typed:
            value = given[argument.name]
            problems += [found for check in argument.checks if (found := check.problem(value))]
            problems += _out_of_bounds(argument, value)
        problems += [
            f"'{argument.name}' must be {argument.words}, not {json_type(given[argument.name])}"
            for argument in present
            if argument not in well_typed
        ]
        return f"Invalid arguments for {tool}: " + "; ".join(problems) + "." if problems else None

    def _shape(self, tool: str) -> str:
        needed = ", ".join(f"'{a.name}' (required, {a.words})" for a in self.arguments if a.name in self.required)
        optional = ", ".join(a.name for a in self.arguments if a.name not in self.required)
        return f"{tool} takes an object: {needed}" + (f" and optionally {optional}." if optional else ".")


def _missing(argument: Argument) -> str:
    if argument.purpose:
        return f"'{argument.name}' is required: {argument.purpose}"
    return f"'{argument.name}' is required ({argument.words})"


def _out_of_bounds(argument: Argument, value: Any) -> list[str]:
    """The schema's minimum and maximum, for a number."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return []
    low, high = argument.schema.get("minimum"), argument.schema.get("maximum")
    if low is not None and value < low:
        return [f"'{argument.name}' must be at least {low:g}, not {value:g}"]
    if high is not None and value > high:
        return [f"'{argument.name}' must be at most {high:g}, not {value:g}"]
    return []


def fits(value: Any, schema: Mapping[str, Any]) -> bool:
    """Whether a JSON value has the type a schema names. Strict, as JSON is: true is no number, "1" no integer."""
    if "anyOf" in schema:
        return any(fits(value, option) for option in schema["anyOf"])
    kind = schema.get("type")
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "integer":
        whole = isinstance(value, float) and value.is_integer()
        return whole or (isinstance(value, int) and not isinstance(value, bool))
    if kind == "array":
        return isinstance(value, list) and all(fits(item, schema.get("items", {})) for item in value)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "null":
        return value is None
    return True  # a schema this check does not read: the SDK's own validation decides


def words_for(schema: Mapping[str, Any]) -> str:
    """A schema's type in words: "a string", "a list of strings"; an optional value is described without null."""
    options = [option for option in schema.get("anyOf", [schema]) if option.get("type") != "null"]
    return " or ".join(_one_kind(option) for option in options) or "null"


def _one_kind(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    item = schema.get("items", {}).get("type") if kind == "array" else None
    if item in _PLURALS:
        return f"a list of {_PLURALS[item]}"
    return _KINDS.get(str(kind), "a value of the type its description names")


def purpose(description: str) -> str:
    """The first clause of an argument's description, as a phrase; '' when it is a single word ("true: ...")."""
    head = _CLAUSE_END.split(description.strip(), maxsplit=1)[0].strip()
    if len(head.split()) < 2:
        return ""
    return head[0].lower() + head[1:] if head[1:2].islower() else head


def json_type(value: Any) -> str:
    """A value's type by its JSON name (object, array, boolean, null), or Python's for the rest (str, int)."""
    return _JSON_NAMES.get(type(value).__name__, type(value).__name__)


def strict(tool: Any) -> Any:
    """A tool (mcp's Tool) that rejects unknown arguments instead of silently ignoring them (a misspelt 'context'
    would vanish)."""
    base = tool.fn_metadata.arg_model
    tight = type(base.__name__, (base,), {"model_config": ConfigDict(**base.model_config, extra="forbid")})
    tool.fn_metadata.arg_model = tight
    tool.parameters = untitled(tight.model_json_schema(by_alias=True))
    return tool


def untitled(schema: dict[str, Any]) -> dict[str, Any]:
    """An input schema as clients are shown it: without the titles pydantic derives from names ("Thread Id"), which
    no client or model uses, and with an optional argument's `anyOf [type, null]` as just its type (leaving it out
    is how a client passes nothing; clients that convert typed values, such as the Inspector CLI, need the type)."""
    properties = {name: _lean(p) for name, p in schema["properties"].items()}
    return {k: v for k, v in schema.items() if k != "title"} | {"properties": properties}


def _lean(prop: dict[str, Any]) -> dict[str, Any]:
    kinds = [kind for kind in prop.get("anyOf", []) if kind.get("type") != "null"]
    base = {k: v for k, v in prop.items() if k not in ("title", "anyOf")}
    if "anyOf" in prop and len(kinds) == 1 and len(prop["anyOf"]) == 2:
        return base | kinds[0]
    return base | ({"anyOf": prop["anyOf"]} if "anyOf" in prop else {})


def tool_arguments(tool: Any) -> ToolArguments:
    """What a tool (mcp's Tool) takes, read from its own input schema and its arguments' Annotated markers."""
    model = tool.fn_metadata.arg_model  # its whole schema: an explicit null stays allowed where the type allows it
    markers = {name: field.metadata for name, field in model.model_fields.items()}
    return ToolArguments.read(model.model_json_schema(by_alias=True), markers)


class ArgumentCheck:
    """Middleware that answers malformed calls of our tools with a plain explanation (pydantic's own message,
    with its URLs and input echoes, stays the backstop); `refuse` makes the protocol's error result of it."""

    def __init__(self, tools: dict[str, ToolArguments], refuse: Callable[[str], Any]) -> None:
        self._tools = tools
        self._refuse = refuse

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        """Check tools/call arguments before validation; pass everything else through."""
        params = ctx.params if ctx.method == "tools/call" else None
        if isinstance(params, dict) and params.get("name") in self._tools:
            name = params["name"]
            problem = self._tools[name].problem(name, params.get("arguments") or {})
            if problem:
                return self._refuse(problem)
        return await call_next(ctx)

"""Argument errors read from a tool's own schema: a new argument needs no second table to be checked in words."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

from server.arguments import Check, ToolArguments, Words, fits, purpose, words_for


class Example(BaseModel):
    """Arguments of a made-up tool, declared once, the way the tools declare theirs."""

    query: Annotated[
        str,
        Field(description="The text to look up: a word or a phrase."),
        Check(lambda text: "'query' is empty" if not text.strip() else None),
    ]
    limit: Annotated[int, Field(ge=1, description="How many results to return.")] = 10
    tags: Annotated[list[str] | None, Field(description="Optional tags."), Words("a list of tag names")] = None
    exact: bool = False


def example() -> ToolArguments:
    fields = Example.model_fields
    return ToolArguments.read(Example.model_json_schema(), {name: f.metadata for name, f in fields.items()})


def test_a_new_argument_is_checked_from_its_declaration_alone() -> None:
    problem = example().problem("lookup", {"query": "x", "limit": "3", "exact": 1, "colour": "red"})
    assert problem == (
        "Invalid arguments for lookup: unknown argument 'colour' (lookup takes only 'query', 'limit', 'tags', "
        "'exact'); 'limit' must be a whole number, not str; 'exact' must be true or false, not int."
    )


def test_a_missing_argument_is_named_with_the_start_of_its_description() -> None:
    assert example().problem("lookup", {}) == "Invalid arguments for lookup: 'query' is required: the text to look up."


def test_words_and_checks_come_from_the_annotated_type() -> None:
    assert example().problem("lookup", {"query": " ", "tags": "a"}) == (
        "Invalid arguments for lookup: 'query' is empty; 'tags' must be a list of tag names, not str."
    )
    assert example().problem("lookup", {"query": "x", "tags": None, "limit": 3.0}) is None


def test_arguments_that_are_no_object_are_explained() -> None:
    assert example().problem("lookup", ["x"]) == (
        "lookup takes an object: 'query' (required, a string) and optionally limit, tags, exact."
    )


def test_types_are_matched_as_json_types() -> None:
    number: dict[str, Any] = {"type": "number"}
    assert fits(1, number) and fits(1.5, number) and not fits(True, number) and not fits("1", number)
    assert not fits(1, {"type": "boolean"}) and not fits(1.5, {"type": "integer"})
    strings: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
    assert fits(["a"], strings) and not fits(["a", 3], strings) and not fits("a", strings)
    assert fits(None, {"anyOf": [strings, {"type": "null"}]})


def test_words_for_a_schema() -> None:
    assert words_for({"anyOf": [{"type": "string"}, {"type": "null"}]}) == "a string"
    assert words_for({"type": "array", "items": {"type": "string"}}) == "a list of strings"
    assert words_for({"type": "boolean"}) == "true or false"


def test_purpose_is_the_first_clause_when_it_says_something() -> None:
    assert purpose("The complete, self-contained task: the specialist sees nothing else.") == (
        "the complete, self-contained task"
    )
    assert purpose('The job_id a result returned with status "running".') == (
        'the job_id a result returned with status "running"'
    )
    assert purpose("true: the right specialist answered; false: it was misrouted.") == ""
    assert purpose("URL of the page; no query string.") == "URL of the page"


def test_a_number_outside_the_schema_bounds_is_named() -> None:
    assert example().problem("lookup", {"query": "x", "limit": 0}) == (
        "Invalid arguments for lookup: 'limit' must be at least 1, not 0."
    )

"""What the tools say to the client model: server instructions, tool descriptions, and each argument's type.

The argument types are the single source of what a tool takes: the MCP surface (app.py) builds the input
schemas from them, and the plain-language argument errors (arguments.py) are read from those schemas.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from server.arguments import Check, Words
from server.catalog import Catalog, Specialist
from server.errors import ConfigError
from server.jobs import MAX_WAIT_S
from server.pipeline.prepare import EMPTY_TASK, is_blank
from server.quality.checks import checks_problem

TaskArg = Annotated[
    str,
    Field(
        description="The complete, self-contained task: the specialist sees nothing else "
        "of your conversation, so include what it needs to know."
    ),
    Check(lambda task: EMPTY_TASK if is_blank(task) else None),
]
ContextArg = Annotated[
    str,
    Field(
        description="Optional material the task refers to: code, a document, logs. "
        "Only a short preview of it is used for routing."
    ),
]
AskContextArg = Annotated[
    str, Field(description="Optional material the task refers to: code, a document, logs; the specialist reads it all.")
]
FilesArg = Annotated[
    list[str] | None,
    Field(
        description='Optional files for the specialist, as paths or glob patterns ("src/**/*.py"), relative to '
        "the project folder. The server reads them itself and passes them with the context: do not read them "
        "yourself or paste them into `context`. Credential files (.env, keys, .git internals) are refused."
    ),
    Words("a list of strings (file paths or glob patterns)"),
]
ThreadArg = Annotated[
    str | None,
    Field(
        description="To follow up on an earlier answer, pass that result's thread_id: the specialist then sees "
        'the earlier tasks, material and answers of the conversation, so say only what is new ("now add tests", '
        '"shorter"). Leave it out for an unrelated task; every result carries a new thread_id to continue from.'
    ),
    Words("a string (the thread_id of an earlier result)"),
]
BackgroundArg = Annotated[
    bool,
    Field(
        description='true: start the work and return at once with a job_id (status "running"); '
        "collect the answer later with delegate_result. For work you expect to take minutes."
    ),
]
ChecksArg = Annotated[
    list[dict[str, Any]] | None,
    Field(
        description='Optional graders the answer must pass, each a one-key object: {"contains": "..."}, '
        '{"not_contains": "..."}, {"regex": "..."}, {"equals": "..."}, {"json_schema": {...}}, {"max_chars": N}. '
        "A specialist that escalates verifies its cheap draft with them; otherwise a failed check is a warning."
    ),
    Words('a list of one-key objects, e.g. [{"contains": "Paris"}]'),
    Check(checks_problem),
]
JobIdArg = Annotated[str, Field(description='The job_id a delegate or ask_ result returned with status "running".')]
WaitArg = Annotated[
    float,
    Field(
        ge=0,
        description=f"Seconds to wait for the job to finish before answering (at most {MAX_WAIT_S:g}); "
        "0 answers at once with the text so far.",
    ),
    Words("a number of seconds"),
]
OffsetArg = Annotated[
    int,
    Field(
        ge=0,
        description="Characters of the answer you already have (the previous result's next_offset): only the text "
        "after them is returned. 0 returns the whole answer so far.",
    ),
    Words("a number of characters (the previous result's next_offset)"),
]
CancelArg = Annotated[bool, Field(description="true: stop the job and close its model request; returns what it wrote.")]
CallIdArg = Annotated[
    str, Field(description="The call_id of the delegate result the feedback is about (or give thread_id and turn).")
]
FeedbackThreadArg = Annotated[str, Field(description="Instead of call_id: the thread_id of the conversation...")]
TurnArg = Annotated[int, Field(ge=0, description="...and the turn in it (1 is the first).")]
GoodArg = Annotated[bool, Field(description="true: the right specialist answered; false: it was misrouted.")]
ShouldBeArg = Annotated[
    str,
    Field(
        description="When good is false: the specialist the task should have gone to (named in the tool's description)."
    ),
]
SpecialistsArg = Annotated[
    list[str],
    Field(description="Specialists to ask, by name; empty asks every specialist with a usable model (at least two)."),
    Words("an array of specialist names"),
]
SynthesizeArg = Annotated[
    bool,
    Field(description="true: a judge model compares the answers, blind to who wrote them, and writes a synthesis."),
]


def server_instructions(catalog: Catalog) -> str:
    """Tell the client model what the server is for and when delegating is worth a call."""
    roster = "\n".join(f"- {s.name}: {s.description}" for s in catalog)
    return (
        "delegate-mcp hands a task to the specialist model best suited to it and returns the answer with who "
        "answered, why, tokens, cost and latency.\n"
        "Call `delegate` for self-contained work another model can do well or more cheaply: writing, reviewing or "
        "debugging code; drafting, rewriting or summarising long documents (pass them as `context` rather than "
        "reading them into your own context); everyday questions, extraction and formatting. Call `ask_<name>` "
        "to choose the specialist yourself. Specialists see only the task and context you pass, not this "
        "conversation. Do not delegate what needs your tools, files or conversation history. A result with "
        'status "running" is still being written: call `delegate_result` with its job_id for the rest. Call '
        "`panel` for independent answers from several specialists and a synthesis (design decisions, tricky bugs).\n"
        f"Specialists:\n{roster}"
    )


def delegate_description(catalog: Catalog) -> str:
    """The routed tool's description."""
    return (
        f"Hand a task to the best specialist model ({', '.join(catalog.names)}): a cheap router picks one, it "
        "answers. Returns the answer plus routing metadata: specialist, model, reason, confidence, tokens, cost in "
        "USD, latency and fallbacks tried. Put long material in `context`; name files in `files` and the server "
        "reads them (do not read them yourself). Follow-ups: pass the earlier result's `thread_id`; each turn is "
        "routed afresh and the specialist sees the whole conversation. An answer still coming at the deadline "
        'returns status "running", the text so far and a job_id for delegate_result.'
    )


def ask_description(spec: Specialist) -> str:
    """An ask_<name> tool's description."""
    return (
        f"Ask the {spec.name} specialist directly, with no routing. It handles: {spec.description} Name files in "
        "`files` and the server reads them (do not read them yourself). Follow-ups: pass the earlier result's "
        "`thread_id`."
    )


def feedback_description(catalog: Catalog) -> str:
    """The feedback tool's description."""
    return (
        "Tell delegate-mcp whether a delegate call went to the right specialist, so it routes better: pass the "
        "result's call_id (or its thread_id and turn number), good=true/false and, when false, should_be (one of "
        f"{', '.join(catalog.names)}). The same task then goes to should_be at once, and similar tasks learn from it."
    )


def result_description() -> str:
    """delegate_result's description."""
    return (
        'Get the rest of an answer that was still coming when a delegate or ask_ call returned status "running" '
        'with a job_id. Returns the usual result: status "done" with the whole answer, or "running" with the text '
        f"so far. Pass wait_s (up to {MAX_WAIT_S:g}) to wait for it, and the previous result's next_offset as offset "
        "to receive only the new text; cancel=true stops the job."
    )


def panel_description(catalog: Catalog) -> str:
    """The panel tool's description."""
    return (
        f"Get second opinions: the same task goes to several specialists at once ({', '.join(catalog.names)}; by "
        "default every one with a usable model), each answering independently, then a judge compares the answers "
        "without knowing who wrote which and writes a synthesis naming where they agree and disagree. For design "
        "decisions, tricky bugs, anything worth more than one view. Costs one call per specialist plus the judge."
    )


def chosen_tools(all_names: list[str], wanted: str | None) -> list[str]:
    """The tool names to expose: all, or those listed in DELEGATE_TOOLS (unknown names are a config error)."""
    if not wanted:
        return all_names
    names = [name.strip() for name in wanted.split(",") if name.strip()]
    unknown = [name for name in names if name not in all_names]
    if unknown:
        raise ConfigError(
            f"DELEGATE_TOOLS / --tools: unknown tool {', '.join(map(repr, unknown))}. "
            f"Known tools: {', '.join(all_names)}."
        )
    return [name for name in all_names if name in names]


def tool_names(catalog: Catalog) -> list[str]:
    """Every tool the server can expose (feedback aside, which is offered when it is on), in the listed order."""
    return ["delegate", *(spec.tool_name for spec in catalog), "delegate_result", "panel"]

"""OpenAI Responses API: POST /v1/responses, typed SSE events ending in response.completed (what Codex speaks)."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from typing import Any

from tests.sim.script import Behaviour, Turn, sse
from tests.sim.wire_openai import error as _chat_error
from tests.sim.wire_openai import model as model  # the body names the model, as in chat completions
from tests.sim.wire_openai import streaming as streaming

NAME = "responses"
INCOMPLETE = {"length": "max_output_tokens", "safety": "content_filter"}


def matches(path: str) -> bool:
    """Whether a request path is this format's."""
    return path.split("?")[0].rstrip("/") in ("/v1/responses", "/responses")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _items(body: dict[str, Any]) -> list[dict[str, Any]]:
    given = body.get("input")
    if isinstance(given, str):
        return [{"type": "message", "role": "user", "content": given}]
    return [item for item in given or [] if isinstance(item, dict)]


def user_text(body: dict[str, Any]) -> str:
    """The last user message (input_text parts)."""
    users = [i for i in _items(body) if i.get("role") == "user" and i.get("type", "message") == "message"]
    return _text(users[-1].get("content")) if users else ""


def tool_outputs(body: dict[str, Any]) -> list[str]:
    """The outputs of the tool calls the client sends back (function_call_output items), in order."""
    return [_text(i.get("output")) for i in _items(body) if i.get("type") == "function_call_output"]


def prompt_chars(body: dict[str, Any]) -> int:
    """Characters of the instructions and every input item."""
    items = _items(body)
    return len(_text(body.get("instructions"))) + sum(len(_text(i.get("content") or i.get("output"))) for i in items)


def error(status: int, text: str | None, beh: Behaviour) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The same error body as chat completions (the Responses API shares OpenAI's error object)."""
    return _chat_error(status, text, beh)


def _ids(turn: Turn) -> dict[str, str]:
    """Stable ids for one answer: the response, its message item and its function call (derived once per turn)."""
    key = str(id(turn))
    return {"response": f"resp_{key}", "message": f"msg_{key}", "call": f"fc_{key}", "call_id": f"call_{key}"}


def _usage(turn: Turn) -> dict[str, Any]:
    output = turn.output_tokens + turn.thinking_tokens
    return {
        "input_tokens": turn.input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": turn.thinking_tokens},
        "total_tokens": turn.input_tokens + output,
    }


def _message(turn: Turn, text: str, status: str) -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": []}
    return {"id": _ids(turn)["message"], "type": "message", "status": status, "role": "assistant", "content": [part]}


def _function_call(turn: Turn, arguments: str, status: str) -> dict[str, Any]:
    call = turn.behaviour.tool_call or {}
    ids = _ids(turn)
    return {
        "id": ids["call"],
        "type": "function_call",
        "status": status,
        "call_id": ids["call_id"],
        "name": str(call.get("name", "")),
        "arguments": arguments,
    }


def _arguments(turn: Turn) -> str:
    return json.dumps((turn.behaviour.tool_call or {}).get("arguments", {}))


def _output(turn: Turn) -> list[dict[str, Any]]:
    if turn.behaviour.tool_call:
        return [_function_call(turn, _arguments(turn), "completed")]
    return [_message(turn, turn.reply, "completed")]


def _response(turn: Turn, status: str, *, done: bool) -> dict[str, Any]:
    finish = turn.behaviour.finish
    incomplete = status == "incomplete"
    return {
        "id": _ids(turn)["response"],
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": turn.model,
        "output": _output(turn) if done else [],
        "incomplete_details": {"reason": INCOMPLETE[finish]} if incomplete else None,
        "error": None,
        "usage": _usage(turn) if done else None,
    }


def _final_status(turn: Turn) -> str:
    return "completed" if turn.behaviour.finish == "stop" or turn.behaviour.tool_call else "incomplete"


def answer(turn: Turn) -> dict[str, Any]:
    """The whole response object (stream: false)."""
    return _response(turn, _final_status(turn), done=True)


_SEQUENCE = itertools.count(1)  # sequence_number only has to grow; one counter for every stream keeps it simple


def _event(turn: Turn, kind: str, **fields: Any) -> str:
    return sse(json.dumps({"type": kind, "sequence_number": next(_SEQUENCE), **fields}), event=kind)


def stream_open(turn: Turn) -> list[str]:
    """response.created and .in_progress, then the item the answer streams into."""
    frames = [
        _event(turn, "response.created", response=_response(turn, "in_progress", done=False)),
        _event(turn, "response.in_progress", response=_response(turn, "in_progress", done=False)),
    ]
    if turn.behaviour.tool_call:
        item = _function_call(turn, "", "in_progress")
        return [*frames, _event(turn, "response.output_item.added", output_index=0, item=item)]
    item = {**_message(turn, "", "in_progress"), "content": []}
    part = {"type": "output_text", "text": "", "annotations": []}
    return [
        *frames,
        _event(turn, "response.output_item.added", output_index=0, item=item),
        _event(turn, "response.content_part.added", item_id=item["id"], output_index=0, content_index=0, part=part),
    ]


def stream_piece(turn: Turn, piece: str, index: int) -> list[str]:
    """One output_text delta (or, for a tool call, one piece of its arguments)."""
    ids = _ids(turn)
    if turn.behaviour.tool_call:
        arguments = _arguments(turn)
        if index:
            return []
        return [
            _event(turn, "response.function_call_arguments.delta", item_id=ids["call"], output_index=0, delta=arguments)
        ]
    return [
        _event(turn, "response.output_text.delta", item_id=ids["message"], output_index=0, content_index=0, delta=piece)
    ]


def stream_close(turn: Turn) -> list[str]:
    """The done events of the item, then response.completed (or .incomplete) with the usage."""
    ids = _ids(turn)
    if turn.behaviour.tool_call:
        arguments = _arguments(turn)
        done = [
            _event(
                turn, "response.function_call_arguments.done", item_id=ids["call"], output_index=0, arguments=arguments
            ),
            _event(
                turn, "response.output_item.done", output_index=0, item=_function_call(turn, arguments, "completed")
            ),
        ]
    else:
        part = {"type": "output_text", "text": turn.reply, "annotations": []}
        where = {"item_id": ids["message"], "output_index": 0, "content_index": 0}
        done = [
            _event(turn, "response.output_text.done", **where, text=turn.reply),
            _event(turn, "response.content_part.done", **where, part=part),
            _event(turn, "response.output_item.done", output_index=0, item=_message(turn, turn.reply, "completed")),
        ]
    status = _final_status(turn)
    kind = "response.completed" if status == "completed" else "response.incomplete"
    return [*done, _event(turn, kind, response=_response(turn, status, done=True))]


def stream_error(status: int, text: str | None, beh: Behaviour) -> list[str]:
    """response.failed, as the Responses API ends a stream that fails midway (its error names a code)."""
    _, body, _ = _chat_error(status, text, beh)
    failure = {"code": body["error"]["code"], "message": body["error"]["message"]}
    response = {"id": f"resp_{uuid.uuid4().hex[:12]}", "object": "response", "status": "failed", "error": failure}
    payload = {"type": "response.failed", "sequence_number": 1, "response": response}
    return [sse(json.dumps(payload), event="response.failed")]


def malformed_stream() -> str:
    """A frame that is not valid JSON."""
    return sse('{"type": "response.created", "response": {', event="response.created")

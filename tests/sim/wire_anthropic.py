"""Anthropic Messages: POST /v1/messages, x-api-key, SSE events, {"type": "error"} bodies."""

from __future__ import annotations

import json
import uuid
from typing import Any

from tests.sim.script import Behaviour, Turn, sse
from tests.sim.wire_openai import _text
from tests.sim.wire_openai import model as model  # the same in both formats: the request body names it
from tests.sim.wire_openai import streaming as streaming
from tests.sim.wire_openai import user_text as user_text

NAME = "anthropic"
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
FINISH = {"stop": "end_turn", "length": "max_tokens", "safety": "refusal"}
MESSAGES = {  # what the real API says, so tests cannot pass on our own wording
    "authentication_error": "invalid x-api-key",
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit",
    "overloaded_error": "Overloaded",
    "api_error": "Internal server error",
}


def matches(path: str) -> bool:
    """Whether a request path is this format's."""
    return path.split("?")[0].rstrip("/") == "/v1/messages"


def prompt_chars(body: dict[str, Any]) -> int:
    """Characters of the system blocks and every message."""
    messages = body.get("messages") or []
    return len(_text(body.get("system"))) + sum(len(_text(m.get("content"))) for m in messages if isinstance(m, dict))


def error(status: int, text: str | None, beh: Behaviour) -> tuple[int, dict[str, Any], dict[str, str]]:
    """An Anthropic error body; Retry-After as a header (as the real API sends on 429 and 529)."""
    kind = ERROR_TYPES.get(status, "api_error")
    headers = {"retry-after": f"{beh.retry_after:g}"} if beh.retry_after is not None else {}
    body = {"type": "error", "error": {"type": kind, "message": text or MESSAGES.get(kind, f"simulated {kind}")}}
    return status, body, headers


def _forced_tool(turn: Turn) -> str | None:
    """The tool the script calls, or the one the client forces (litellm's json_tool_call for JSON output on
    unknown ids), if any."""
    if turn.behaviour.tool_call:
        return str(turn.behaviour.tool_call["name"])
    choice = turn.request.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "tool":
        return str(choice.get("name"))
    return None


def _tool_input(turn: Turn) -> dict[str, Any] | None:
    """The reply as a tool input, when a tool is forced and the reply is a JSON object."""
    if _forced_tool(turn) is None:
        return None
    if turn.behaviour.tool_call:
        return dict(turn.behaviour.tool_call.get("arguments", {}))
    try:
        value = json.loads(turn.reply)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _blocks(turn: Turn) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if turn.thinking_tokens:
        blocks.append({"type": "thinking", "thinking": "Let me think.", "signature": "sig-sim"})
    tool_input = _tool_input(turn)
    if tool_input is not None:
        blocks.append(
            {
                "type": "tool_use",
                "id": f"toolu_{uuid.uuid4().hex[:20]}",
                "name": _forced_tool(turn),
                "input": tool_input,
            }
        )
    else:
        blocks.append({"type": "text", "text": turn.reply})
    return blocks


def _stop_reason(turn: Turn) -> str:
    return "tool_use" if turn.behaviour.tool_call else FINISH[turn.behaviour.finish]


def tool_outputs(body: dict[str, Any]) -> list[str]:
    """The tool results the client sends back (tool_result blocks of user turns), in order."""
    found = []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                found.append(_text(block.get("content")))
    return found


def _output_tokens(turn: Turn) -> int:
    return turn.output_tokens + turn.thinking_tokens  # Anthropic bills thinking as output, with no separate count


def answer(turn: Turn) -> dict[str, Any]:
    """The whole message as one JSON body."""
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": turn.model,
        "content": _blocks(turn),
        "stop_reason": _stop_reason(turn),
        "stop_sequence": None,
        "usage": {"input_tokens": turn.input_tokens, "output_tokens": _output_tokens(turn)},
    }


def _event(kind: str, **fields: Any) -> str:
    return sse(json.dumps({"type": kind, **fields}), event=kind)


def _main_index(turn: Turn) -> int:
    return 1 if turn.thinking_tokens else 0


def stream_open(turn: Turn) -> list[str]:
    """message_start, a thinking block when the model thought, and the start of the answer block."""
    message = {
        **answer(turn),
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": turn.input_tokens, "output_tokens": 1},
    }
    frames = [_event("message_start", message=message), _event("ping")]
    if turn.thinking_tokens:
        frames += [
            _event("content_block_start", index=0, content_block={"type": "thinking", "thinking": ""}),
            _event("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "Let me think."}),
            _event("content_block_delta", index=0, delta={"type": "signature_delta", "signature": "sig-sim"}),
            _event("content_block_stop", index=0),
        ]
    index = _main_index(turn)
    if _tool_input(turn) is not None:
        block = {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:20]}", "name": _forced_tool(turn), "input": {}}
    else:
        block = {"type": "text", "text": ""}
    return [*frames, _event("content_block_start", index=index, content_block=block)]


def stream_piece(turn: Turn, piece: str, index: int) -> list[str]:
    """A text_delta, or an input_json_delta when the answer is a forced tool call."""
    if turn.behaviour.tool_call:
        delta = {"type": "input_json_delta", "partial_json": json.dumps(_tool_input(turn))}
    elif _tool_input(turn) is not None:
        delta = {"type": "input_json_delta", "partial_json": piece}
    else:
        delta = {"type": "text_delta", "text": piece}
    return [_event("content_block_delta", index=_main_index(turn), delta=delta)]


def stream_close(turn: Turn) -> list[str]:
    """content_block_stop, message_delta with the stop reason and usage, message_stop."""
    return [
        _event("content_block_stop", index=_main_index(turn)),
        _event(
            "message_delta",
            delta={"stop_reason": _stop_reason(turn), "stop_sequence": None},
            usage={"output_tokens": _output_tokens(turn)},
        ),
        _event("message_stop"),
    ]


def stream_error(status: int, text: str | None, beh: Behaviour) -> list[str]:
    """An `event: error` inside the stream, as Anthropic sends when it overloads midway."""
    return [sse(json.dumps(error(status, text, beh)[1]), event="error")]


def malformed_stream() -> str:
    """A frame that is not valid JSON."""
    return sse('{"type": "message_start", "message": {', event="message_start")

"""OpenAI chat completions: POST /v1/chat/completions."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from tests.sim.script import Behaviour, Turn, sse

NAME = "openai"
ERROR_KINDS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("not_found_error", "model_not_found"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}
FINISH = {"stop": "stop", "length": "length", "safety": "content_filter"}


def matches(path: str) -> bool:
    """Whether a request path is this format's."""
    return path.split("?")[0].rstrip("/") in ("/v1/chat/completions", "/chat/completions")


def model(path: str, body: dict[str, Any]) -> str:
    """The model a request names."""
    return str(body.get("model", ""))


def streaming(path: str, body: dict[str, Any]) -> bool:
    """Whether the client asked for a stream."""
    return bool(body.get("stream"))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def user_text(body: dict[str, Any]) -> str:
    """The last user message."""
    users = [m for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"]
    return _text(users[-1].get("content")) if users else ""


def prompt_chars(body: dict[str, Any]) -> int:
    """Characters of every message."""
    return sum(len(_text(m.get("content"))) for m in body.get("messages") or [] if isinstance(m, dict))


def error(status: int, text: str | None, beh: Behaviour) -> tuple[int, dict[str, Any], dict[str, str]]:
    """An OpenAI error body; Retry-After as a header."""
    fallback = ("server_error" if status >= 500 else "invalid_request_error", str(status))
    kind, code = ERROR_KINDS.get(status, fallback)
    headers = {"Retry-After": f"{beh.retry_after:g}"} if beh.retry_after is not None else {}
    body = {"error": {"message": text or "simulated error", "type": kind, "param": None, "code": code}}
    return status, body, headers


def _envelope(turn: Turn, kind: str) -> dict[str, Any]:
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": kind, "created": int(time.time()), "model": turn.model}


def _usage(turn: Turn) -> dict[str, Any]:
    output = turn.output_tokens + turn.thinking_tokens
    usage: dict[str, Any] = {
        "prompt_tokens": turn.input_tokens,
        "completion_tokens": output,
        "total_tokens": turn.input_tokens + output,
    }
    if turn.thinking_tokens:
        usage["completion_tokens_details"] = {"reasoning_tokens": turn.thinking_tokens}
    return usage


def answer(turn: Turn) -> dict[str, Any]:
    """The whole answer as one JSON body."""
    message = {"role": "assistant", "content": turn.reply}
    choice = {"index": 0, "message": message, "finish_reason": FINISH[turn.behaviour.finish]}
    return {**_envelope(turn, "chat.completion"), "choices": [choice], "usage": _usage(turn)}


def stream_open(turn: Turn) -> list[str]:
    """Frames before the first piece of text."""
    return []


def stream_piece(turn: Turn, piece: str, index: int) -> list[str]:
    """Frames carrying one piece of the answer."""
    delta = {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
    choice = {"index": 0, "delta": delta, "finish_reason": None}
    return [sse(json.dumps({**_envelope(turn, "chat.completion.chunk"), "choices": [choice]}))]


def stream_close(turn: Turn) -> list[str]:
    """Frames after the last piece: the finish reason, the usage when asked for, [DONE]."""
    base = _envelope(turn, "chat.completion.chunk")
    frames = [
        sse(
            json.dumps({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": FINISH[turn.behaviour.finish]}]})
        )
    ]
    if turn.stream_usage:
        frames.append(sse(json.dumps({**base, "choices": [], "usage": _usage(turn)})))
    return [*frames, sse("[DONE]")]


def stream_error(status: int, text: str | None, beh: Behaviour) -> list[str]:
    """An error object sent as a stream event, as OpenAI-compatible servers do when a stream fails midway."""
    return [sse(json.dumps(error(status, text, beh)[1]))]


def malformed_stream() -> str:
    """A frame that is not valid JSON."""
    return sse('{"choices": [')

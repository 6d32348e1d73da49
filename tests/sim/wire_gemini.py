"""Gemini: POST /v1beta/models/<model>:generateContent and :streamGenerateContent?alt=sse, x-goog-api-key."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.sim.script import Behaviour, Turn, sse

NAME = "gemini"
_PATH = re.compile(r"/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)$")
STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "safety": "SAFETY"}
_TYPE = "type.googleapis.com/google.rpc."


def _match(path: str) -> re.Match[str] | None:
    return _PATH.search(path.split("?")[0])


def matches(path: str) -> bool:
    """Whether a request path is this format's."""
    return _match(path) is not None


def model(path: str, body: dict[str, Any]) -> str:
    """The model named in the path."""
    found = _match(path)
    return found["model"] if found else ""


def streaming(path: str, body: dict[str, Any]) -> bool:
    """streamGenerateContent streams (litellm adds ?alt=sse)."""
    found = _match(path)
    return bool(found and found["method"] == "streamGenerateContent")


def _parts_text(content: Any) -> str:
    parts = content.get("parts") if isinstance(content, dict) else None
    return "".join(p.get("text", "") for p in parts or [] if isinstance(p, dict))


def user_text(body: dict[str, Any]) -> str:
    """The last user turn."""
    users = [c for c in body.get("contents") or [] if isinstance(c, dict) and c.get("role") == "user"]
    return _parts_text(users[-1]) if users else ""


def prompt_chars(body: dict[str, Any]) -> int:
    """Characters of the system instruction and every turn."""
    turns = body.get("contents") or []
    return len(_parts_text(body.get("system_instruction"))) + sum(len(_parts_text(c)) for c in turns)


def error(status: int, text: str | None, beh: Behaviour) -> tuple[int, dict[str, Any], dict[str, str]]:
    """A google.rpc.Status body. A rejected key is a 400 API_KEY_INVALID, as Gemini really answers; a wait is a
    RetryInfo retryDelay in the body, never a header."""
    details: list[dict[str, Any]] = []
    if status == 401:
        status, text = 400, text or "API key not valid. Please pass a valid API key."
        details.append({"@type": _TYPE + "ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"})
    if status == 429:
        text = text or "You exceeded your current quota, please check your plan and billing details."
        details.append({"@type": _TYPE + "QuotaFailure", "violations": [{"quotaMetric": "generate_content_requests"}]})
    if beh.retry_after is not None:
        details.append({"@type": _TYPE + "RetryInfo", "retryDelay": f"{beh.retry_after:g}s"})
    kind = STATUSES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
    body: dict[str, Any] = {"error": {"code": status, "message": text or f"simulated {kind}", "status": kind}}
    if details:
        body["error"]["details"] = details
    return status, body, {}


def _usage(turn: Turn) -> dict[str, int]:
    usage = {
        "promptTokenCount": turn.input_tokens,
        "candidatesTokenCount": turn.output_tokens,
        "totalTokenCount": turn.input_tokens + turn.output_tokens + turn.thinking_tokens,
    }
    if turn.thinking_tokens:
        usage["thoughtsTokenCount"] = turn.thinking_tokens
    return usage


def _chunk(turn: Turn, parts: list[dict[str, Any]], finish: str | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "usageMetadata": _usage(turn), "modelVersion": turn.model}


def _answer_part(turn: Turn, text: str) -> dict[str, Any]:
    call = turn.behaviour.tool_call
    if call:
        return {"functionCall": {"name": call["name"], "args": call.get("arguments", {})}}
    return {"text": text}


def tool_outputs(body: dict[str, Any]) -> list[str]:
    """The function responses the client sends back, as JSON text, in order."""
    found = []
    for content in body.get("contents") or []:
        parts = content.get("parts") if isinstance(content, dict) else None
        for part in parts or []:
            if isinstance(part, dict) and "functionResponse" in part:
                found.append(json.dumps(part["functionResponse"].get("response")))
    return found


def answer(turn: Turn) -> dict[str, Any]:
    """The whole answer as one GenerateContentResponse."""
    parts: list[dict[str, Any]] = [{"text": "Let me think.", "thought": True}] if turn.thinking_tokens else []
    return _chunk(turn, [*parts, _answer_part(turn, turn.reply)], FINISH[turn.behaviour.finish])


def _frame(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\r\n\r\n"


def stream_open(turn: Turn) -> list[str]:
    """A thought summary first, when the model thought."""
    return [_frame(_chunk(turn, [{"text": "Let me think.", "thought": True}], None))] if turn.thinking_tokens else []


def stream_piece(turn: Turn, piece: str, index: int) -> list[str]:
    """One chunk of answer text (or the function call)."""
    return [_frame(_chunk(turn, [_answer_part(turn, piece)], None))]


def stream_close(turn: Turn) -> list[str]:
    """The finish reason and the final usage (Gemini sends no [DONE])."""
    return [_frame(_chunk(turn, [{"text": ""}], FINISH[turn.behaviour.finish]))]


def stream_error(status: int, text: str | None, beh: Behaviour) -> list[str]:
    """A google.rpc.Status sent as a stream event."""
    return [_frame(error(status, text, beh)[1])]


def malformed_stream() -> str:
    """A frame that is not valid JSON."""
    return sse('{"candidates": [')

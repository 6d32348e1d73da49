"""Malformed JSON-RPC on stdio is answered (-32700 / -32600), so a client never waits for ever on an id."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from server.stdio_check import INVALID_REQUEST, PARSE_ERROR, line_replies
from tests.simulator import ProviderSimulator
from tests.test_console_script import HANDSHAKE, script, server_env


def reply(code: int, request_id: object) -> tuple[int, object]:
    return code, request_id


@pytest.mark.subprocess
def test_every_malformed_line_gets_an_error_reply_and_the_session_goes_on(
    sim: ProviderSimulator, specialists_dir: Path
) -> None:
    lines = [
        "garbage",
        "[]",
        json.dumps([{"jsonrpc": "2.0", "id": 11, "method": "ping"}, {"jsonrpc": "2.0", "id": 12, "method": "ping"}]),
        json.dumps({"jsonrpc": "1.0", "id": 13, "method": "ping"}),
        json.dumps({"jsonrpc": "2.0", "id": {"an": "object"}, "method": "ping"}),
        json.dumps({"jsonrpc": "2.0", "id": 15, "method": "ping", "params": [1, 2]}),
        json.dumps({"jsonrpc": "2.0", "id": 16}),
        "",
        json.dumps({"jsonrpc": "2.0", "id": 17, "method": "ping"}),
    ]
    stdin = "".join(json.dumps(m) + "\n" for m in HANDSHAKE) + "\n".join(lines) + "\n"
    completed = subprocess.run(
        [script()], env=server_env(sim, specialists_dir), input=stdin, capture_output=True, text=True, timeout=60
    )
    answers: list[dict[str, Any]] = [json.loads(line) for line in completed.stdout.splitlines()]
    assert answers[0]["id"] == 1 and "result" in answers[0]
    errors = [(a["error"]["code"], a["id"]) for a in answers[1:] if "error" in a]
    assert errors == [
        reply(PARSE_ERROR, None),  # garbage
        reply(INVALID_REQUEST, None),  # []
        reply(INVALID_REQUEST, 11),  # a batch: every request in it is answered
        reply(INVALID_REQUEST, 12),
        reply(INVALID_REQUEST, 13),  # "jsonrpc": "1.0"
        reply(INVALID_REQUEST, None),  # an id that is an object
        reply(INVALID_REQUEST, 15),  # params that are not an object
        reply(INVALID_REQUEST, 16),  # neither a request nor a response
    ]
    assert answers[-1] == {"jsonrpc": "2.0", "id": 17, "result": {}}, "the blank line is skipped, the session lives"
    assert all(a["error"]["message"].startswith(("Parse error", "Invalid Request")) for a in answers[1:-1])
    assert "Traceback" not in completed.stderr


@pytest.mark.parametrize(
    "line",
    [
        '{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}',
        '{"jsonrpc": "2.0", "id": "a", "method": "tools/call", "params": {"name": "x"}}',
        '{"jsonrpc": "2.0", "method": "notifications/initialized"}',
        '{"jsonrpc": "2.0", "id": 3, "result": {"roots": []}}',
        '{"jsonrpc": "2.0", "id": 4, "error": {"code": -1, "message": "no"}}',
    ],
)
def test_well_formed_messages_pass_to_the_sdk(line: str) -> None:
    assert line_replies(line) is None


@pytest.mark.parametrize("request_id", [True, 1.5, None, [1]])
def test_an_id_that_is_no_string_or_integer_is_answered_with_a_null_id(request_id: object) -> None:
    line = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/list"})
    assert line_replies(line) == [
        {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": INVALID_REQUEST, "message": 'Invalid Request: "id" must be a string or an integer.'},
        }
    ]

"""HTTP hardening: no exposed server without a token, forged Host headers, bearer scheme case, body size cap."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from server.app import build_server
from server.delegation import Delegator
from server.http import http_app, is_loopback, max_body_bytes
from tests.simulator import ProviderSimulator
from tests.test_console_script import script, server_env
from tests.test_http import HEADERS, INITIALIZE, TOKEN, free_port

REMOTE_PEER = ("192.0.2.7", 50000)
LOCAL_PEER = ("127.0.0.1", 50000)


def serve_briefly(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str] | None:
    """Run `delegate-mcp --transport http ...`; None when it was still serving after 15 s (it started)."""
    try:
        return subprocess.run(
            [script(), "--transport", "http", *args], env=env, capture_output=True, text=True, timeout=15
        )
    except subprocess.TimeoutExpired:
        return None


@pytest.mark.subprocess
def test_an_exposed_http_server_without_a_token_refuses_to_start(sim: ProviderSimulator, specialists_dir: Path) -> None:
    completed = serve_briefly(server_env(sim, specialists_dir), "--host", "0.0.0.0", "--port", str(free_port()))
    assert completed is not None, "it served on 0.0.0.0 with no token"
    assert completed.returncode == 2 and completed.stdout == ""
    message = completed.stderr.strip()
    assert "DELEGATE_HTTP_TOKEN" in message and "DELEGATE_HTTP_ALLOW_NO_TOKEN=1" in message
    assert message.count("\n") == 0 and "Traceback" not in message


@pytest.mark.subprocess
def test_a_token_too_short_is_refused_without_echoing_it(sim: ProviderSimulator, specialists_dir: Path) -> None:
    env = server_env(sim, specialists_dir, DELEGATE_HTTP_TOKEN="hunter2-secret")
    completed = serve_briefly(env, "--port", str(free_port()))
    assert completed is not None and completed.returncode == 2
    assert "DELEGATE_HTTP_TOKEN" in completed.stderr and "hunter2-secret" not in completed.stderr


def client(delegator: Delegator, peer: tuple[str, int]) -> TestClient:
    app = http_app(build_server(delegator), delegator.settings)
    return TestClient(app, base_url="http://127.0.0.1:8765", client=peer)


def test_a_forged_loopback_host_from_a_remote_peer_is_refused(make_delegator: Callable[..., Delegator]) -> None:
    delegator = make_delegator(http_host="0.0.0.0")  # served so with DELEGATE_HTTP_ALLOW_NO_TOKEN=1
    headers = {**HEADERS, "host": "127.0.0.1:8765"}
    with client(delegator, REMOTE_PEER) as remote:
        assert remote.post("/mcp", json=INITIALIZE, headers=headers).status_code == 421
    with client(delegator, LOCAL_PEER) as local:
        assert local.post("/mcp", json=INITIALIZE, headers=headers).status_code == 200


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_bearer_scheme_is_case_insensitive(make_delegator: Callable[..., Delegator], scheme: str) -> None:
    delegator = make_delegator(http_token=TOKEN)
    with client(delegator, LOCAL_PEER) as local:
        response = local.post("/mcp", json=INITIALIZE, headers={**HEADERS, "authorization": f"{scheme} {TOKEN}"})
        assert response.status_code == 200
        wrong = local.post("/mcp", json=INITIALIZE, headers={**HEADERS, "authorization": f"{scheme} x{TOKEN}"})
        assert wrong.status_code == 401 and TOKEN not in wrong.text


def test_a_context_at_the_limit_in_multi_byte_text_is_admitted(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    delegator = make_delegator(max_context_chars=1_500_000)
    context = "日本語の文脈" * 250_000  # 1.5 M characters: 4.5 MB as UTF-8, 9 MB escaped as \uXXXX
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "ask_coder", "arguments": {"task": "Summarise", "context": context}},
    }
    body = json.dumps(call).encode()  # ensure_ascii: the worst case, 6 bytes per character
    assert len(body) > 9_000_000
    with client(delegator, LOCAL_PEER) as local:
        response = local.post("/mcp", content=body, headers=HEADERS)
    assert response.status_code == 200, response.text[:300]
    assert sim.count("sim-coder") == 1


def test_a_too_large_body_gets_a_json_rpc_error_naming_the_limit(make_delegator: Callable[..., Delegator]) -> None:
    delegator = make_delegator(max_context_chars=1000, max_task_chars=1000)
    limit = max_body_bytes(delegator.settings)
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "delegate"}}
    call["params"]["arguments"] = {"task": "x", "context": "y" * (limit + 1)}
    with client(delegator, LOCAL_PEER) as local:
        response = local.post("/mcp", json=call, headers=HEADERS)
    assert response.status_code == 413
    error = response.json()["error"]
    assert f"{limit:,} bytes" in error["message"] and "DELEGATE_MAX_CONTEXT_CHARS" in error["message"]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("192.0.2.7", False),
        ("localhost.example", False),
    ],
)
def test_loopback_addresses_are_recognised(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback

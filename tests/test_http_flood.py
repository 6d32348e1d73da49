"""Slow clients against the HTTP transport: a real socket flood on 127.0.0.1, with the usual 1,024 descriptors."""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.simulator import ProviderSimulator
from tests.test_console_script import script, server_env
from tests.test_http import TOKEN, free_port

pytestmark = [pytest.mark.subprocess, pytest.mark.faults]
SLOW_CLIENTS = 1_500
SERVER_FILES = 1_024  # the default `ulimit -n` of most Linux systems


def wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    give_up = time.monotonic() + 30
    while time.monotonic() < give_up and process.poll() is None:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("the HTTP server did not start listening")


def _tools_list(port: int) -> bytes:
    """An authorised tools/list over a fresh connection; the whole response (the server closes it)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}).encode()
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
        f"MCP-Protocol-Version: 2025-11-25\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        conn.sendall(head.encode() + body)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    return received


def _closed_by_server(conn: socket.socket, until: float) -> bool:
    """Whether the server closes this connection before `until` (whatever it writes first)."""
    try:
        while True:
            conn.settimeout(max(0.01, until - time.monotonic()))
            if not conn.recv(4096):
                return True
    except TimeoutError:
        return False
    except OSError:
        return True  # reset


def test_slow_unauthenticated_connections_cannot_starve_an_authorised_caller(
    sim: ProviderSimulator, specialists_dir: Path
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = SLOW_CLIENTS + 512
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"this test opens {SLOW_CLIENTS} sockets; the hard file limit here is {hard}")
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    port = free_port()
    env = server_env(sim, specialists_dir, DELEGATE_HTTP_TOKEN=TOKEN, DELEGATE_HTTP_HEADER_TIMEOUT_S="2")
    process = subprocess.Popen(
        [script(), "--transport", "http", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (SERVER_FILES, SERVER_FILES)),
    )
    slow: list[socket.socket] = []
    try:
        wait_for_port(port, process)
        for _ in range(SLOW_CLIENTS):  # each sends half a request head, then nothing
            conn = socket.create_connection(("127.0.0.1", port), timeout=10)
            conn.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            slow.append(conn)
        answer = _tools_list(port)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert b'"delegate_result"' in answer
        until = time.monotonic() + 30
        still_open = sum(not _closed_by_server(conn, until) for conn in slow)
        assert still_open == 0, f"{still_open} slow connections were still open after 30 s"
    finally:
        for conn in slow:
            conn.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    stderr = process.stderr.read().decode() if process.stderr else ""
    assert "Traceback" not in stderr, stderr[:2000]
    assert len(stderr) < 2_000, "stderr was flooded"

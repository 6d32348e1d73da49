"""Shared fixtures: the provider simulator, specialist folders pointing at it, and a delegator factory."""

from __future__ import annotations

import compileall
import fcntl
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from server.calling import llm
from server.catalog import load_catalog
from server.delegation import Delegator
from server.settings import Settings
from tests.simulator import WIRE_NAMES, ProviderSimulator

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")

ROUTER = "openai/sim-router"


@pytest.fixture(scope="session", autouse=True)
def _litellm_imported() -> None:
    """Import litellm once up front, so its ~3 s import does not land inside a timed test."""
    llm.warm_up_in_background().join()


@pytest.fixture(scope="session", autouse=True)
def _byte_compiled() -> None:
    """Byte-compile our modules once, as a regular install does. With PYTHONDONTWRITEBYTECODE set (as on some
    machines and CIs), each console script a test starts would otherwise compile all of server/ again."""
    compileall.compile_dir(Path(__file__).resolve().parent.parent / "server", quiet=1)


@pytest.fixture(autouse=True)
def _no_real_providers(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Any connection outside 127.0.0.1 fails the test: tests never reach a real provider."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("/"):
            raise AssertionError(f"test tried to reach {host}: use the provider simulator")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    # Console scripts started by tests inherit this: they never touch the real user's data directory.
    monkeypatch.setenv("DELEGATE_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    for name in (
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "OPENAI_API_BASE",
        "OPENAI_BASE_URL",
        "ANTHROPIC_API_BASE",
        "ANTHROPIC_BASE_URL",
        "GEMINI_API_BASE",
    ):
        monkeypatch.delenv(name, raising=False)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def once_per_run(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """A folder that `build` fills once per test run, however many xdist workers ask: the first builds it
    under a lock, the others wait and reuse it. Without xdist, a session temp folder built the usual way."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    shared = tmp_path_factory.getbasetemp().parent  # one folder per run, above each worker's own
    folder = shared / name
    with (shared / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if `build` fails
        if not (folder / ".built").exists():
            shutil.rmtree(folder, ignore_errors=True)  # a half-built folder from a worker whose build failed
            folder.mkdir()
            build(folder)
            (folder / ".built").touch()
    return folder


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port for the whole session (no persistence); its URL.

    Under xdist each worker has its own session, so its own server: tests that empty it never race."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not on PATH: install it (apt-get install -y redis-server) to run Redis tests")
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_redis(port, process)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_for_redis(port: int, process: subprocess.Popen[bytes]) -> None:
    give_up = time.monotonic() + 20
    while time.monotonic() < give_up:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode} before answering")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("redis-server did not answer within 20 s")


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The session's Redis server, emptied for this test (skipped when redis-server is not installed)."""
    import redis

    with redis.Redis.from_url(redis_server) as client:
        client.flushall()
    return redis_server


@pytest.fixture
def sim() -> Iterator[ProviderSimulator]:
    """A fresh provider simulator on 127.0.0.1."""
    with ProviderSimulator() as simulator:
        yield simulator


@dataclass(frozen=True)
class Wire:
    """One provider wire format on the simulator: how to name its models and where litellm finds them."""

    name: str
    """openai | anthropic | gemini (also the litellm provider prefix)."""
    api_base: str
    """The api_base that reaches the simulator in this format."""
    dead_base: str
    """An api_base in this format where nothing listens (connection refused)."""
    key_env: str
    """The env var named when this provider rejects a key."""

    def model(self, name: str) -> str:
        """A model id in this format, e.g. anthropic/sim-coder (the simulator scripts it as sim-coder)."""
        return f"{MODEL_PREFIXES.get(self.name, self.name)}/{name}"


KEY_ENVS = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY / GOOGLE_API_KEY",
    "responses": "OPENAI_API_KEY",
}
# litellm sends openai/responses/<model> through OpenAI's Responses API (POST /v1/responses) instead of chat.
MODEL_PREFIXES = {"responses": "openai/responses"}


@pytest.fixture
def wire(request: pytest.FixtureRequest, sim: ProviderSimulator) -> Wire:
    """The wire format the specialists speak: OpenAI unless a test parametrizes it (indirect=True, WIRES)."""
    name = getattr(request, "param", "openai")
    dead = {
        "openai": "http://127.0.0.1:9/v1",
        "anthropic": "http://127.0.0.1:9",
        "gemini": "http://127.0.0.1:9/v1beta",
        "responses": "http://127.0.0.1:9/v1",
    }
    return Wire(name, sim.api_base(name), dead[name], KEY_ENVS[name])


WIRES = (*WIRE_NAMES, "responses")
"""Pass to @pytest.mark.parametrize("wire", WIRES, indirect=True) to run a test over every wire format (the
OpenAI Responses API included: litellm uses it for openai/responses/... models, Codex for everything)."""


def specialist_file(
    name: str, model: str, base: str, *, fallbacks: list[str] | None = None, default: bool = False, extra: str = ""
) -> str:
    """The text of a specialist file whose models all live on the simulator at `base`."""
    chain = "".join(f"\n  - {{model: {m}, api_base: '{base}'}}" for m in fallbacks or []) or " []"
    return (
        f"---\nname: {name}\ndescription: The {name} specialist.\nmodel: {model}\napi_base: '{base}'\n"
        f"fallbacks:{chain}\ndefault: {str(default).lower()}\n{extra}---\nYou are the {name}.\n"
    )


@pytest.fixture
def specialists_dir(tmp_path: Path, wire: Wire) -> Path:
    """coder, writer and generalist (the default), each with one fallback, all on the simulator in `wire`'s format."""
    folder = tmp_path / "specialists"
    folder.mkdir()
    base, backup = wire.api_base, [wire.model("sim-backup")]
    (folder / "coder.md").write_text(specialist_file("coder", wire.model("sim-coder"), base, fallbacks=backup))
    (folder / "writer.md").write_text(specialist_file("writer", wire.model("sim-writer"), base, fallbacks=backup))
    (folder / "generalist.md").write_text(
        specialist_file("generalist", wire.model("sim-general"), base, fallbacks=backup, default=True)
    )
    return folder


@pytest.fixture
def make_delegator(specialists_dir: Path, sim: ProviderSimulator) -> Callable[..., Delegator]:
    """Build a Delegator over the simulator; keyword arguments override settings."""

    def build(environ: dict[str, str] | None = None, **overrides: Any) -> Delegator:
        overrides.setdefault("retries", 0)  # one failure, one fallback: the fault suite tests retries explicitly
        overrides.setdefault("cooldown_s", 0)
        overrides.setdefault("classifier", False)  # the router path is what these tests exercise
        env = {"ROUTER_MODEL": ROUTER, "ROUTER_API_BASE": sim.base_url, **(environ or {})}
        overrides.setdefault("specialists_dir", specialists_dir)
        overrides.setdefault("data_dir", specialists_dir.parent / "data")  # never the real user's data dir
        settings = Settings.from_env(env, **overrides)
        return Delegator(settings, load_catalog(env, settings.specialists_dir), env)

    return build


def cloud_only_builtins(folder: Path) -> Path:
    """The built-in specialist files without the embedded model, for tests of what happens with no usable model."""
    from importlib import resources

    folder.mkdir(parents=True, exist_ok=True)
    for source in resources.files("specialists").iterdir():
        if source.name.endswith(".md"):
            (folder / source.name).write_text(source.read_text().replace(", embedded/smollm2]", "]"))
    return folder


def route_to(name: str, confidence: float = 0.9, reason: str = "fits the task") -> str:
    """A router reply choosing `name`."""
    return f'{{"specialist": "{name}", "reason": "{reason}", "confidence": {confidence}}}'

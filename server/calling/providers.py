"""Which provider a model id belongs to, which env vars unlock it, and whether it is usable now."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from server.calling import embedded

# Provider -> env vars, any one of which is enough (litellm reads them itself).
PROVIDER_KEYS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "vertex_ai": ("GOOGLE_APPLICATION_CREDENTIALS", "VERTEXAI_PROJECT"),
    "bedrock": ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_BEARER_TOKEN_BEDROCK"),
    "azure": ("AZURE_API_KEY", "AZURE_OPENAI_API_KEY"),
    "mistral": ("MISTRAL_API_KEY",),
    "groq": ("GROQ_API_KEY",),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "xai": ("XAI_API_KEY",),
    "openrouter": ("OPENROUTER_API_KEY",),
    "together_ai": ("TOGETHERAI_API_KEY", "TOGETHER_API_KEY"),
    "fireworks_ai": ("FIREWORKS_AI_API_KEY", "FIREWORKS_API_KEY"),
    "cohere": ("COHERE_API_KEY",),
    "cohere_chat": ("COHERE_API_KEY",),
    "perplexity": ("PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY"),
    "cerebras": ("CEREBRAS_API_KEY",),
    "huggingface": ("HF_TOKEN", "HUGGINGFACE_API_KEY"),
}
# Providers that run on the user's machine or network and need no key.
LOCAL_PROVIDERS = frozenset({"ollama", "ollama_chat", "lm_studio", "hosted_vllm", "vllm", "llamafile", "xinference"})
# Env vars that point OpenAI-style models at another OpenAI-compatible server.
OPENAI_BASE_ENVS = ("OPENAI_API_BASE", "OPENAI_BASE_URL")


@dataclass(frozen=True)
class Availability:
    """Whether a model can be called now, and if not, what would enable it."""

    usable: bool
    reason: str
    enable_with: tuple[str, ...] = ()


def provider_of(model: str) -> str:
    """The litellm provider of a model id: its prefix, or a guess from well-known bare names."""
    if "/" in model:
        return model.split("/", 1)[0].lower()
    bare = model.lower()
    if bare.startswith(("gpt-", "o1", "o3", "o4", "chatgpt-")):
        return "openai"
    if bare.startswith("claude"):
        return "anthropic"
    return "unknown"


def availability(
    model: str, environ: Mapping[str, str], api_base: str | None = None, api_key_env: str | None = None
) -> Availability:
    """Decide whether `model` is callable with this environment, without importing litellm."""
    if api_key_env:
        if environ.get(api_key_env):
            return Availability(True, f"key from {api_key_env}")
        return Availability(False, f"{api_key_env} is not set", (api_key_env,))
    if api_base:
        return Availability(True, "custom endpoint (api_base)")
    provider = provider_of(model)
    if provider == embedded.PROVIDER:
        if embedded.available():
            return Availability(True, "embedded model (SmolLM2-135M, runs here: small and weak, but no key needed)")
        return Availability(False, f"embedded model not installed ({embedded.install_hint()})")
    if provider in LOCAL_PROVIDERS:
        return Availability(True, f"local provider {provider}")
    if provider == "openai" and any(environ.get(name) for name in OPENAI_BASE_ENVS):
        return Availability(True, "OpenAI-compatible endpoint from OPENAI_API_BASE")
    keys = PROVIDER_KEYS.get(provider)
    if keys is None:
        return Availability(True, f"provider {provider!r}: key requirements unknown, litellm decides at call time")
    present = [name for name in keys if environ.get(name)]
    if present:
        return Availability(True, f"key from {present[0]}")
    return Availability(False, f"{' or '.join(keys)} not set", keys)


def needs_placeholder_key(model: str, environ: Mapping[str, str], api_base: str | None) -> bool:
    """Whether litellm needs a dummy api_key: an endpoint that takes none, where no real key is set."""
    if not api_base and not (provider_of(model) == "openai" and any(environ.get(n) for n in OPENAI_BASE_ENVS)):
        return False
    keys = PROVIDER_KEYS.get(provider_of(model), ())
    return not any(environ.get(name) for name in keys)

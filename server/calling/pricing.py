"""What a model call costs: the chain entry's own price, else litellm's list price, but the list price only where
the vendor itself serves the model. A model served from another base URL (Ollama, vLLM, a proxy) has an unknown
cost unless its entry gives a price: a list price there would be invented, and would count against the budget."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from server.calling import embedded, llm
from server.calling.providers import LOCAL_PROVIDERS, provider_of
from server.catalog import ModelRef, Price

# The hosts where each provider's list price is the price (a leading dot: any host under that domain).
VENDOR_HOSTS: dict[str, tuple[str, ...]] = {
    "openai": ("api.openai.com",),
    "anthropic": ("api.anthropic.com",),
    "gemini": ("generativelanguage.googleapis.com",),
    "azure": (".openai.azure.com", ".cognitiveservices.azure.com"),
    "mistral": ("api.mistral.ai",),
    "groq": ("api.groq.com",),
    "deepseek": ("api.deepseek.com",),
    "xai": ("api.x.ai",),
    "openrouter": ("openrouter.ai",),
    "together_ai": ("api.together.xyz", "api.together.ai"),
    "fireworks_ai": ("api.fireworks.ai",),
    "cohere": ("api.cohere.ai", "api.cohere.com"),
    "cohere_chat": ("api.cohere.ai", "api.cohere.com"),
    "perplexity": ("api.perplexity.ai",),
    "cerebras": ("api.cerebras.ai",),
}
# The env vars litellm reads to send a provider's models to another server.
BASE_ENVS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_BASE", "OPENAI_BASE_URL"),
    "anthropic": ("ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL"),
    "gemini": ("GEMINI_API_BASE",),
}

Rates = tuple[float, float]
"""USD per input token and per output token."""


def endpoint(model: str, api_base: str | None, environ: Mapping[str, str]) -> str | None:
    """The base URL a call to `model` goes to when it is not the provider's default: api_base, else the env var."""
    if api_base:
        return api_base
    return next((environ[name] for name in BASE_ENVS.get(provider_of(model), ()) if environ.get(name)), None)


def served_elsewhere(model: str, api_base: str | None, environ: Mapping[str, str]) -> bool:
    """Whether the model is served from a base URL other than its vendor's API, where its list price means nothing.

    Local providers (ollama, vllm, ...) and the embedded model keep litellm's figure: it describes them, not a
    vendor they imitate."""
    provider = provider_of(model)
    if provider in LOCAL_PROVIDERS or provider == embedded.PROVIDER:
        return False
    base = endpoint(model, api_base, environ)
    if base is None:
        return False
    host = (urlsplit(base).hostname or "").lower()
    return not any(host == h or (h.startswith(".") and host.endswith(h)) for h in VENDOR_HOSTS.get(provider, ()))


def rates(model: str, price: Price | None, api_base: str | None, environ: Mapping[str, str]) -> Rates | None:
    """USD per token for a model: its own price, else the list price where the vendor serves it, else None."""
    if price is not None:
        return price.per_token
    if served_elsewhere(model, api_base, environ):
        return None
    return llm.price(model)


def ref_rates(ref: ModelRef, environ: Mapping[str, str]) -> Rates | None:
    """USD per token for a chain entry (None: unknown)."""
    return rates(ref.model, ref.price, ref.api_base, environ)


def call_cost(
    model: str, price: Price | None, api_base: str | None, environ: Mapping[str, str], completion: llm.Completion
) -> float | None:
    """What one answered call cost: by the entry's price; None on someone else's server; else litellm's figure."""
    if price is not None:
        per_input, per_output = price.per_token
        return round(completion.input_tokens * per_input + completion.output_tokens * per_output, 10)
    if served_elsewhere(model, api_base, environ):
        return None
    return completion.cost_usd


def describe(ref: ModelRef, environ: Mapping[str, str]) -> str:
    """Where a model's price comes from, for people: 'given', 'list', or why it is unknown."""
    if ref.price is not None:
        return f"${ref.price.input_per_mtok:g}/${ref.price.output_per_mtok:g} per M tokens (given)"
    if served_elsewhere(ref.model, ref.api_base, environ):
        return "unknown: served from a custom base URL; give it a price (MODEL@IN/OUT)"
    found = llm.price(ref.model)
    if found is None:
        return "unknown: not in litellm's price map; give it a price (MODEL@IN/OUT)"
    return f"${found[0] * 1e6:g}/${found[1] * 1e6:g} per M tokens (list)"

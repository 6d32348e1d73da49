"""Calling models: the litellm boundary, model chains, providers, cooldowns, the embedded model."""

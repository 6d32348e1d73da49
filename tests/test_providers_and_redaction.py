"""Key availability per provider, secret redaction, and settings from the environment."""

from __future__ import annotations

import pytest

from server.calling.providers import availability, needs_placeholder_key, provider_of
from server.errors import ConfigError
from server.redact import redact, secret_values
from server.settings import Settings


def test_provider_of_prefixed_and_bare_names() -> None:
    assert provider_of("anthropic/claude-sonnet-4-5") == "anthropic"
    assert provider_of("gpt-5-mini") == "openai"
    assert provider_of("claude-haiku-4-5") == "anthropic"
    assert provider_of("mystery-model") == "unknown"


def test_missing_key_names_the_env_vars_to_set() -> None:
    found = availability("gemini/gemini-2.5-pro", {})
    assert not found.usable and found.enable_with == ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    assert availability("gemini/gemini-2.5-pro", {"GOOGLE_API_KEY": "x"}).usable


def test_local_endpoints_need_no_key() -> None:
    assert availability("openai/llama", {}, api_base="http://127.0.0.1:8000/v1").usable
    assert availability("ollama/llama3", {}).usable
    assert availability("openai/llama", {"OPENAI_API_BASE": "http://127.0.0.1:1/v1"}).usable
    assert needs_placeholder_key("openai/llama", {}, "http://127.0.0.1:8000/v1")
    assert not needs_placeholder_key("openai/llama", {"OPENAI_API_KEY": "sk-real"}, "http://127.0.0.1:8000/v1")


def test_api_key_env_must_be_set() -> None:
    found = availability("openai/x", {}, api_base="http://proxy/v1", api_key_env="PROXY_KEY")
    assert not found.usable and found.enable_with == ("PROXY_KEY",)
    assert availability("openai/x", {"PROXY_KEY": "k"}, api_base="http://proxy/v1", api_key_env="PROXY_KEY").usable


@pytest.mark.parametrize(
    "secret",
    [
        "sk-ant-api03-abcdefghijklmnop",
        "sk-proj-abcdefghijklmnop",
        "AIzaSyA1234567890abcdefghijklmn",
        "Bearer abcdefghijklmnop",
        "https://host/v1/models?key=abcdef123",
    ],
)
def test_redact_removes_keys_tokens_and_urls(secret: str) -> None:
    cleaned = redact(f"upstream said: {secret} is invalid")
    assert "abcdef" not in cleaned and "1234567890" not in cleaned
    assert cleaned.startswith("upstream said: ")


def test_redact_removes_the_values_of_secret_env_vars() -> None:
    secrets = secret_values({"MY_PROXY_KEY": "plain-secret-value", "HOME": "/root"})
    assert redact("echo plain-secret-value back", secrets) == "echo [redacted] back"


def test_settings_read_env_and_flags_win() -> None:
    env = {"DELEGATE_MAX_TASK_CHARS": "500", "ROUTER_MODEL": "openai/r", "DELEGATE_LOG_LEVEL": "info"}
    settings = Settings.from_env(env, log_level="ERROR")
    assert settings.max_task_chars == 500 and settings.log_level == "ERROR"
    assert settings.router_models[0] == "openai/r" and len(settings.router_models) == 4


def test_bad_setting_names_the_env_var() -> None:
    with pytest.raises(ConfigError, match="DELEGATE_MAX_CONTEXT_CHARS"):
        Settings.from_env({"DELEGATE_MAX_CONTEXT_CHARS": "lots"})

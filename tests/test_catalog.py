"""Specialist files: parsing, model chains, and every configuration error naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.catalog import load_catalog, parse_specialist
from server.errors import ConfigError, UnknownSpecialistError

GOOD = """---
name: coder
description: Writes code.
model: anthropic/claude-sonnet-4-5
model_env: CODE_MODEL
fallbacks: [openai/gpt-5.2, {model: openai/local, api_base: "http://127.0.0.1:9/v1"}]
temperature: 0.2
max_output_tokens: 1000
examples: ["Sort a list"]
default: true
---
You write code.
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_parses_settings_chain_and_instructions() -> None:
    spec = parse_specialist(GOOD, "coder.md", {})
    assert spec.name == "coder" and spec.tool_name == "ask_coder"
    assert [ref.model for ref in spec.chain] == ["anthropic/claude-sonnet-4-5", "openai/gpt-5.2", "openai/local"]
    assert spec.chain[2].api_base == "http://127.0.0.1:9/v1"
    assert spec.instructions == "You write code."
    assert spec.temperature == 0.2 and spec.max_output_tokens == 1000 and spec.default


def test_model_env_replaces_the_primary_model() -> None:
    spec = parse_specialist(GOOD, "coder.md", {"CODE_MODEL": "ollama/qwen2.5-coder"})
    assert [ref.model for ref in spec.chain][:2] == ["ollama/qwen2.5-coder", "openai/gpt-5.2"]


def test_builtins_load_with_generalist_as_default() -> None:
    catalog = load_catalog({})
    assert sorted(catalog.names) == ["coder", "generalist", "writer"]
    assert catalog.default.name == "generalist"
    assert all(len(spec.chain) >= 3 for spec in catalog), "each built-in needs fallbacks on other providers"
    providers = {ref.model.split("/")[0] for spec in catalog for ref in spec.chain}
    assert providers == {"openai", "anthropic", "gemini", "embedded"}, "cloud fallbacks, then the offline model"


def test_builtins_honour_the_documented_env_vars() -> None:
    env = {"CODE_MODEL": "openai/a", "LONG_CONTEXT_MODEL": "openai/b", "GENERAL_MODEL": "openai/c"}
    catalog = load_catalog(env)
    assert [catalog.get(n).chain[0].model for n in ("coder", "writer", "generalist")] == [
        "openai/a",
        "openai/b",
        "openai/c",
    ]


def test_unknown_specialist_error_lists_known_names() -> None:
    with pytest.raises(UnknownSpecialistError, match="Known specialists: coder, generalist, writer"):
        load_catalog({}).get("poet")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: coder\n", "no YAML front matter"),
        ("---\nname: [coder\n---\nbody\n", "invalid YAML in the front matter at line"),
        ("---\n- a\n- b\n---\nbody\n", "must be a mapping"),
        ("---\nname: coder\ndescription: d\n---\nbody\n", "field 'model': Field required"),
        ("---\nname: Coder!\ndescription: d\nmodel: m\n---\nbody\n", "field 'name'"),
        ("---\nname: coder\ndescription: d\nmodel: m\nfallback: [x]\n---\nbody\n", "field 'fallback': unknown field"),
        ("---\nname: coder\ndescription: d\nmodel: m\ntemperature: 7\n---\nbody\n", "field 'temperature'"),
        ("---\nname: coder\ndescription: d\nmodel: m\napi_base: ftp://x\n---\nbody\n", "field 'api_base'"),
        ("---\nname: coder\ndescription: d\nmodel: m\n---\n\n  \n", "instructions"),
    ],
)
def test_bad_file_names_the_file_and_the_problem(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_specialist(text, "my/coder.md", {})
    assert str(caught.value).startswith("my/coder.md: ")
    assert expected in str(caught.value)


def test_duplicate_names_are_rejected(tmp_path: Path) -> None:
    write(tmp_path, "a.md", GOOD)
    write(tmp_path, "b.md", GOOD.replace("default: true", "default: false"))
    with pytest.raises(ConfigError, match=r"b\.md: field 'name': 'coder' is already used by .*a\.md"):
        load_catalog({}, tmp_path)


def test_no_default_is_rejected(tmp_path: Path) -> None:
    write(tmp_path, "a.md", GOOD.replace("default: true", "default: false"))
    write(tmp_path, "b.md", GOOD.replace("default: true", "default: false").replace("name: coder", "name: other"))
    with pytest.raises(ConfigError, match="no specialist is the default"):
        load_catalog({}, tmp_path)


def test_two_defaults_are_rejected(tmp_path: Path) -> None:
    write(tmp_path, "a.md", GOOD)
    write(tmp_path, "b.md", GOOD.replace("name: coder", "name: other"))
    with pytest.raises(ConfigError, match="field 'default': more than one"):
        load_catalog({}, tmp_path)


def test_a_single_specialist_is_the_default_without_saying_so(tmp_path: Path) -> None:
    write(tmp_path, "a.md", GOOD.replace("default: true", "default: false"))
    assert load_catalog({}, tmp_path).default.name == "coder"


def test_missing_or_empty_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_catalog({}, tmp_path / "nope")
    with pytest.raises(ConfigError, match=r"no specialist files \(\*\.md\)"):
        load_catalog({}, tmp_path)


def test_a_new_file_is_a_new_specialist(tmp_path: Path) -> None:
    write(tmp_path, "coder.md", GOOD)
    write(tmp_path, "sql.md", GOOD.replace("name: coder", "name: sql_expert").replace("default: true", ""))
    catalog = load_catalog({}, tmp_path)
    assert catalog.names == ["coder", "sql_expert"]
    assert catalog.get("sql_expert").tool_name == "ask_sql_expert"


def test_a_file_over_the_size_limit_is_refused_naming_it(tmp_path: Path) -> None:
    write(tmp_path, "coder.md", GOOD + "x" * 1_000_001)
    with pytest.raises(ConfigError, match=r"coder\.md: the file is over 1,000,000 bytes"):
        load_catalog({}, tmp_path)

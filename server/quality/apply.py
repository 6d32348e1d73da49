"""--apply: write a recommended model chain into a specialist file, changing only the chain's keys, after showing
the diff; the old file is kept as a backup, and the new one must load with exactly that chain."""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from server.catalog import ModelRef, parse_specialist
from server.errors import ConfigError

CHAIN_KEYS = ("model", "api_base", "api_key_env", "price", "fallbacks")
_FRONT = re.compile(r"\A(\ufeff?---[ \t]*\r?\n)(.*?)(^---[ \t]*(?:\r?\n|\Z).*)\Z", re.DOTALL | re.MULTILINE)
_TOP_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)[ \t]*:")


@dataclass(frozen=True)
class Change:
    """A specialist file's new text, the unified diff from the old, and where the backup will go."""

    path: Path
    old: str
    new: str
    diff: str
    backup: Path


def _number(value: float) -> str:
    """A price as plain digits (never 1e-05, which MODEL@IN/OUT would not read)."""
    text = format(Decimal(repr(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _id(ref: ModelRef) -> str:
    """The model id with its price after it (MODEL@IN/OUT) when it has one."""
    if ref.price is None:
        return ref.model
    return f"{ref.model}@{_number(ref.price.input_per_mtok)}/{_number(ref.price.output_per_mtok)}"


def chain_block(chain: list[ModelRef]) -> list[str]:
    """The front-matter lines for a chain; values written as JSON strings and mappings (valid YAML, and nothing
    in them is reinterpreted), prices after the ids."""
    first = chain[0]
    lines = [f"model: {json.dumps(_id(first))}"]
    lines += [f"{name}: {json.dumps(value)}" for name in ("api_base", "api_key_env") if (value := getattr(first, name))]
    lines.append("fallbacks:" + ("" if chain[1:] else " []"))
    for ref in chain[1:]:
        where = {name: value for name in ("api_base", "api_key_env") if (value := getattr(ref, name))}
        lines.append(f"  - {json.dumps({'model': _id(ref), **where} if where else _id(ref))}")
    return lines


def rewrite(text: str, chain: list[ModelRef], source: str) -> str:
    """The file's text with its chain keys replaced by `chain`, where `model:` was; everything else as it was."""
    found = _FRONT.match(text)
    if not found or not chain:
        raise ConfigError(f"{source}: no front matter to rewrite (or no chain to write).")
    opening, header, rest = found.groups()
    kept: list[str] = []
    at: int | None = None
    skipping = False
    for line in header.splitlines():
        top = _TOP_KEY.match(line)
        if top or (line and not line[0].isspace() and not line.startswith("-")):
            skipping = bool(top) and top[1] in CHAIN_KEYS
            if skipping and top and top[1] == "model":
                at = len(kept)
        if not skipping:
            kept.append(line)
    if at is None:
        raise ConfigError(f"{source}: no 'model:' line at the top level of the front matter; edit the file by hand.")
    header = "\n".join([*kept[:at], *chain_block(chain), *kept[at:]]) + "\n"
    return opening + header + rest


def plan_change(path: Path, chain: list[ModelRef]) -> Change:
    """The change --apply would make; ConfigError when the file cannot be rewritten to load with exactly `chain`."""
    try:
        old = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the specialist file ({exc.__class__.__name__}).") from None
    new = rewrite(old, chain, str(path))
    loaded = parse_specialist(new, str(path), {})  # model_env left out: the file's own chain is what is checked
    if list(loaded.chain) != chain:
        raise ConfigError(f"{path}: the rewritten file would not load with the recommended chain; edit it by hand.")
    diff = "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), str(path), f"{path} (recommended chain)"
        )
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Change(path, old, new, diff, path.with_name(f"{path.name}.{stamp}.bak"))


def write_change(change: Change) -> None:
    """Keep the old file as the backup, then replace the file in one step (a crash leaves one or the other)."""
    try:
        change.backup.write_text(change.old, encoding="utf-8")
        temporary = change.path.with_name(f".{change.path.name}.new")
        temporary.write_text(change.new, encoding="utf-8")
        os.replace(temporary, change.path)
    except OSError as exc:
        raise ConfigError(f"{change.path}: cannot write the specialist file ({exc.__class__.__name__}).") from None

"""Specialists: loading and validating their Markdown files, and the catalogue that holds them."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from server.calling.cli.presets import cli_entry_problem, installed
from server.errors import ConfigError, UnknownSpecialistError

MAX_FILE_BYTES = 1_000_000  # a specialist file is a page of instructions; more is a mistake or a trap
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)^---[ \t]*(?:\r?\n|\Z)(.*)\Z", re.DOTALL | re.MULTILINE)

NonEmpty = Annotated[str, Field(min_length=1)]
# The built-in files' front matter, already parsed, keyed by the SHA-256 of its text: start-up then needs neither
# PyYAML's import nor a parse of some 400 examples. Any other text (your own files, an edited built-in) is parsed.
PARSED_FRONT_MATTER = "front-matter.json"
INVESTIGATOR = "examples/investigator.md"


MAX_RUBRIC_CHARS = 4_000
CASCADE_ONLY = ("verifier", "rubric", "show_draft", "on_verifier_error")
MAX_PRICE_PER_MTOK = 10_000.0  # USD per million tokens; more is a typo (a price per token written per million)
# A price written after a model id: MODEL@INPUT/OUTPUT in USD per million tokens (openai/qwen@0.15/0.60). Both
# numbers are required, so a Vertex id's own @version (claude-3-5-sonnet@20240620) is never mistaken for one.
_PRICE_SUFFIX = re.compile(r"\A(.+?)@(\d+(?:\.\d+)?)/(\d+(?:\.\d+)?)\Z")


class Price(BaseModel):
    """What a model costs in USD per million input and output tokens, given where litellm cannot know it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_per_mtok: float = Field(ge=0, le=MAX_PRICE_PER_MTOK)
    output_per_mtok: float = Field(ge=0, le=MAX_PRICE_PER_MTOK)

    @property
    def per_token(self) -> tuple[float, float]:
        """USD per input token and per output token."""
        return self.input_per_mtok / 1e6, self.output_per_mtok / 1e6


def split_price(text: str) -> tuple[str, Price | None]:
    """A model id and the price written after it (MODEL@IN/OUT, USD per million tokens), or None."""
    found = _PRICE_SUFFIX.match(text.strip())
    if not found:
        return text, None
    return found[1], Price(input_per_mtok=float(found[2]), output_per_mtok=float(found[3]))


class ModelRef(BaseModel):
    """One model of a chain, where to reach it and, optionally, its price."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: NonEmpty
    api_base: str | None = Field(None, pattern=r"^https?://")
    api_key_env: str | None = Field(None, pattern=ENV_NAME_PATTERN)
    price: Price | None = None
    """Its own price; without one, litellm's list price applies, and only at the vendor's own endpoint."""
    cli_model: str | None = Field(None, min_length=1, max_length=200)
    """cli/ entries: the CLI's own model name (its --model)."""
    flags: tuple[str, ...] = ()
    """cli/ entries: extra flags, each on the CLI's allow-list (docs/cli-agents.md)."""
    command: tuple[NonEmpty, ...] = ()
    """cli/custom: the program and its arguments; the prompt goes on stdin."""

    @model_validator(mode="before")
    @classmethod
    def _price_after_the_id(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("model"), str):
            model, price = split_price(value["model"])
            if price is not None:
                if value.get("price") is not None:
                    raise ValueError("give the price once: either MODEL@IN/OUT or price: {...}, not both")
                return {**value, "model": model, "price": price}
        return value

    @property
    def label(self) -> str:
        """The id as written in a chain, with its price when it has one (MODEL@IN/OUT)."""
        if self.price is None:
            return self.model
        return f"{self.model}@{self.price.input_per_mtok:g}/{self.price.output_per_mtok:g}"

    @model_validator(mode="after")
    def _cli_settings_fit_the_entry(self) -> ModelRef:
        problem = cli_entry_problem(self.model, self.cli_model, self.flags, self.command)
        if problem:
            raise ValueError(problem)
        return self


class SpecialistFile(BaseModel):
    """The YAML front matter of a specialist file, validated strictly (unknown keys are typos)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    description: str = Field(min_length=1, max_length=1024)
    model: NonEmpty
    model_env: str | None = Field(None, pattern=ENV_NAME_PATTERN)
    fallbacks: list[ModelRef] = Field(default_factory=list)
    temperature: float | None = Field(None, ge=0, le=2)
    max_output_tokens: int = Field(4096, gt=0, le=1_000_000)
    examples: list[NonEmpty] = Field(default_factory=list)
    api_base: str | None = Field(None, pattern=r"^https?://")
    api_key_env: str | None = Field(None, pattern=ENV_NAME_PATTERN)
    price: Price | None = None
    """The price of `model` (not of a model_env replacement, which may carry its own as MODEL@IN/OUT)."""
    default: bool = False
    cli_model: str | None = Field(None, min_length=1, max_length=200)
    flags: list[str] = Field(default_factory=list)
    command: list[NonEmpty] = Field(default_factory=list)
    allow_edits: bool = False
    """The only way to let a cli/ model change files (a tool argument never can)."""
    escalate: bool = False
    """The chain is a cascade: each model's answer is verified, and a failed one escalates to the next model."""
    verifier: ModelRef | None = None
    rubric: str | None = Field(None, min_length=1, max_length=MAX_RUBRIC_CHARS)
    show_draft: bool = False
    on_verifier_error: Literal["accept", "escalate"] = "accept"

    @field_validator("fallbacks", mode="before")
    @classmethod
    def _fallback_strings_are_models(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"model": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("verifier", mode="before")
    @classmethod
    def _verifier_string_is_a_model(cls, value: Any) -> Any:
        return {"model": value} if isinstance(value, str) else value


@dataclass(frozen=True)
class Cascade:
    """How a specialist with `escalate: true` verifies each model's answer before it escalates to the next."""

    verifier: ModelRef | None
    """The model that judges a draft; None: the router's cheap models."""
    rubric: str | None
    """What a good answer must do, for the verifier (besides being complete and correct)."""
    show_draft: bool
    """Whether the next model sees the rejected draft and the verifier's reason."""
    on_verifier_error: str
    """accept: a verifier that fails or times out lets the draft through (and says so); escalate: it does not."""


@dataclass(frozen=True)
class Specialist:
    """A loaded specialist: its settings, its instructions and its resolved model chain."""

    name: str
    description: str
    instructions: str
    chain: tuple[ModelRef, ...]
    examples: tuple[str, ...]
    temperature: float | None
    max_output_tokens: int
    default: bool
    model_env: str | None
    source: str
    allow_edits: bool = False
    """cli/ models may change files in their working directory (the specialist file said allow_edits: true)."""
    cascade: Cascade | None = None
    """Set when the file says `escalate: true`."""

    @property
    def tool_name(self) -> str:
        """The MCP tool that calls this specialist directly."""
        return f"ask_{self.name}"


class Catalog:
    """The specialists the server offers; exactly one of them is the default."""

    def __init__(self, specialists: Iterable[Specialist], source: str) -> None:
        self.source = source
        self._by_name = {s.name: s for s in specialists}
        self.default = next(s for s in self._by_name.values() if s.default)

    @property
    def names(self) -> list[str]:
        """Specialist names in load order."""
        return list(self._by_name)

    def __iter__(self) -> Iterator[Specialist]:
        """The specialists, in load order."""
        return iter(self._by_name.values())

    @property
    def key_env_names(self) -> set[str]:
        """The env vars the specialists name as api_key_env: their values are keys, whatever they are called."""
        return {ref.api_key_env for spec in self for ref in spec.chain if ref.api_key_env}

    def get(self, name: str) -> Specialist:
        """The specialist called `name`; the error lists the known names."""
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownSpecialistError(name, self.names) from None


def parse_specialist(text: str, source: str, environ: Mapping[str, str]) -> Specialist:
    """Parse one specialist file's text; errors name the file and the field."""
    match = _FRONT_MATTER.match(text.lstrip("\ufeff"))
    if not match:
        raise ConfigError(
            f"{source}: no YAML front matter. The file must start with a '---' line, then the settings, "
            "then a closing '---' line, then the instructions."
        )
    header, body = match.groups()
    known = _parsed_builtins().get(header_key(header))
    data = json.loads(known) if known is not None else parse_front_matter(header, source)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the front matter must be a mapping of settings (name: ..., model: ...).")
    try:
        spec = SpecialistFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: " + _describe(exc)) from None
    instructions = body.strip()
    if not instructions:
        raise ConfigError(f"{source}: the instructions (the Markdown body after the front matter) are empty.")
    primary = environ.get(spec.model_env, "").strip() if spec.model_env else ""
    try:
        first = ModelRef(
            model=primary or spec.model,
            api_base=spec.api_base,
            api_key_env=spec.api_key_env,
            price=None if primary else spec.price,
            cli_model=spec.cli_model,
            flags=tuple(spec.flags),
            command=tuple(spec.command),
        )
    except ValidationError as exc:
        where = f"{spec.model_env} (replacing 'model')" if primary else "field 'model'"
        raise ConfigError(f"{source}: {where}: " + "; ".join(e["msg"] for e in exc.errors())) from None
    chain = [first]
    chain += [ref for ref in spec.fallbacks if ref not in chain]
    cascade = cascade_of(spec, data, len(chain), source)
    return Specialist(
        name=spec.name,
        description=" ".join(spec.description.split()),
        instructions=instructions,
        chain=tuple(chain),
        examples=tuple(spec.examples),
        temperature=spec.temperature,
        max_output_tokens=spec.max_output_tokens,
        default=spec.default,
        model_env=spec.model_env,
        source=source,
        allow_edits=spec.allow_edits,
        cascade=cascade,
    )


def cascade_of(spec: SpecialistFile, data: dict[str, Any], models: int, source: str) -> Cascade | None:
    """The cascade a file asks for with `escalate: true`; its keys without it, or a one-model chain, are errors."""
    if not spec.escalate:
        given = [key for key in CASCADE_ONLY if key in data]
        if given:
            raise ConfigError(f"{source}: field '{given[0]}': it only takes effect with 'escalate: true'; add that.")
        return None
    if models < 2:
        raise ConfigError(
            f"{source}: field 'escalate': a cascade needs at least two models (model and fallbacks) to escalate to."
        )
    return Cascade(spec.verifier, spec.rubric, spec.show_draft, spec.on_verifier_error)


def header_key(header: str) -> str:
    """The key of a front matter's text in the parsed built-ins."""
    return hashlib.sha256(header.encode()).hexdigest()


def parse_front_matter(header: str, source: str) -> Any:
    """Parse YAML front matter (safely; with libyaml when present, about 10x faster)."""
    import yaml

    try:
        return yaml.load(header, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 2}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}: invalid YAML in the front matter{where}: {problem}") from None


@lru_cache(maxsize=1)
def _parsed_builtins() -> dict[str, str]:
    """Key -> JSON text of each built-in file's parsed front matter (a fresh copy is decoded per use)."""
    try:
        index = json.loads(resources.files("specialists").joinpath(PARSED_FRONT_MATTER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {key: json.dumps(value) for key, value in index.items()}


def front_matter_index(folder: Path) -> dict[str, Any]:
    """What PARSED_FRONT_MATTER holds for the specialist files in a folder (a test keeps it current)."""
    index = {}
    for path in sorted(folder.glob("*.md")):
        match = _FRONT_MATTER.match(path.read_text(encoding="utf-8").lstrip("\ufeff"))
        if match:
            index[header_key(match.group(1))] = parse_front_matter(match.group(1), str(path))
    return index


def _describe(exc: ValidationError) -> str:
    """Turn pydantic errors into 'field X: problem' phrases."""
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "front matter"
        message = "unknown field (check its spelling)" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"field '{field}': {message}")
    return "; ".join(parts)


def load_catalog(environ: Mapping[str, str], directory: Path | None = None) -> Catalog:
    """Load the specialists from `directory`, or the built-in ones when it is None."""
    if directory is None:
        folder = resources.files("specialists")
        files = sorted((f for f in folder.iterdir() if f.name.endswith(".md")), key=lambda f: f.name)
        texts = [(f"specialists/{f.name}", f.read_text(encoding="utf-8")) for f in files]
        if installed(environ):  # the investigator runs a coding-agent CLI first: offered only when one is here
            example = folder.joinpath(INVESTIGATOR)
            texts.append((f"specialists/{INVESTIGATOR}", example.read_text(encoding="utf-8")))
        source = "built-in"
    else:
        if not directory.is_dir():
            raise ConfigError(
                f"{directory}: the specialists folder does not exist (--specialists / DELEGATE_SPECIALISTS_DIR)."
            )
        texts = [(str(p), _read(p)) for p in sorted(directory.glob("*.md"))]
        source = str(directory)
        if not texts:
            raise ConfigError(f"{directory}: no specialist files (*.md) in this folder.")
    return build_catalog([parse_specialist(text, name, environ) for name, text in texts], source)


def _read(path: Path) -> str:
    """A specialist file's text; only regular files up to MAX_FILE_BYTES (a FIFO would hang start-up, a link to
    /dev/zero would fill memory)."""
    try:
        info = os.stat(path)  # follows symlinks: what matters is what would be read
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(
                f"{path}: not a regular file (a FIFO, device, folder or a link to one); a specialist must be a "
                "plain Markdown file."
            )
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)  # bounded even if the file grows after the check
        if len(data) > MAX_FILE_BYTES:
            raise ConfigError(f"{path}: the file is over {MAX_FILE_BYTES:,} bytes, the limit for a specialist file.")
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the file ({exc.__class__.__name__}).") from None


def build_catalog(specialists: list[Specialist], source: str) -> Catalog:
    """Check names are unique and exactly one specialist is the default, then build the catalogue."""
    seen: dict[str, Specialist] = {}
    for spec in specialists:
        if spec.name in seen:
            raise ConfigError(
                f"{spec.source}: field 'name': {spec.name!r} is already used by {seen[spec.name].source}."
            )
        seen[spec.name] = spec
    defaults = [s for s in specialists if s.default]
    if len(specialists) == 1 and not defaults:
        specialists = [replace(specialists[0], default=True)]
    elif not defaults:
        raise ConfigError(
            f"{source}: no specialist is the default. Add 'default: true' to the front matter of "
            "exactly one file; routing failures go to it."
        )
    elif len(defaults) > 1:
        raise ConfigError(
            f"{source}: field 'default': more than one specialist is the default "
            f"({', '.join(s.source for s in defaults)}). Keep 'default: true' in exactly one file."
        )
    return Catalog(specialists, source)

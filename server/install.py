"""How this copy of delegate-mcp was installed, and the command that adds an extra to that installation."""

from __future__ import annotations

import json
import os
import shlex
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

DIST = "delegate-mcp"


def _source_dir(dist: metadata.Distribution) -> Path | None:
    """The folder of an editable install (a clone), from the PEP 610 direct_url.json; None otherwise."""
    try:
        info = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        return None
    if not info.get("dir_info", {}).get("editable"):
        return None
    url = urlparse(info.get("url", ""))
    return Path(unquote(url.path)) if url.scheme == "file" else None


def _extra_requirements(dist: metadata.Distribution, extra: str) -> list[str]:
    """The requirements an extra adds, as written in the package metadata (markers dropped)."""
    marker = f'extra == "{extra}"'
    return [req.split(";")[0].strip() for req in dist.requires or [] if marker in req.replace("'", '"')]


def _is_uv_managed(prefix: Path) -> bool:
    """Whether the environment is one uv made for `uvx` or `uv tool` (they live under a folder named uv)."""
    return "uv" in prefix.parts


@lru_cache(maxsize=4)
def install_extra_command(extra: str, prefix: str = sys.prefix, base_prefix: str = sys.base_prefix) -> str:
    """The command that adds `extra` to this installation: venv pip, uvx, or plain pip, whichever fits."""
    try:
        dist = metadata.distribution(DIST)
    except metadata.PackageNotFoundError:
        return f"pip install '{DIST}[{extra}]'"
    source = _source_dir(dist)
    if _is_uv_managed(Path(prefix)):
        withs = " ".join(f"--with {shlex.quote(req)}" for req in _extra_requirements(dist, extra))
        origin = shlex.quote(str(source)) if source else DIST
        return f"uvx {withs} --from {origin} delegate-mcp".replace("  ", " ")
    target = f"-e {shlex.quote(f'{source}[{extra}]')}" if source else shlex.quote(f"{DIST}[{extra}]")
    if prefix != base_prefix:  # a virtual environment: its own pip, by absolute path
        return f"{Path(prefix) / ('Scripts' if os.name == 'nt' else 'bin') / 'pip'} install {target}"
    return f"{Path(sys.executable).name} -m pip install {target}"

"""Which folders files may be read from: configured roots, the working directory, the client's MCP roots."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

logger = logging.getLogger(__name__)

NEVER_READ = ("/proc", "/sys", "/dev") if os.name == "posix" else ()
"""Kernel and device trees: never read, whatever the roots say (reading them could hang or show the process)."""
WIDE_WHAT = "/, the home folder or a folder above it"
"""What a wide root is, as messages say it."""


def split_list(value: str | None, sep: str) -> list[str]:
    """The non-empty items of a separated setting."""
    return [item.strip() for item in (value or "").split(sep) if item.strip()]


def forbidden(real: str) -> bool:
    """Whether a resolved path lies under /proc, /sys or /dev."""
    return any(real == top or real.startswith(top + "/") for top in NEVER_READ)


def is_wide(real: Path, home: Path) -> bool:
    """Whether a resolved folder is /, the home folder, or a folder that holds the home folder: never a root by
    default, since it would open every project, key and browser profile on the machine."""
    return real == Path(real.anchor) or real == home or real in home.parents


def _unusable(path: Path, home: Path, allow_wide: bool) -> str:
    """Why a would-be root is never used ('' when it may be)."""
    real = Path(os.path.realpath(path))
    if forbidden(str(real)):
        return "it is under /proc, /sys or /dev, which are never read"
    if is_wide(real, home.resolve()) and not allow_wide:
        return f"it is {WIDE_WHAT}"
    return ""


def configured_roots(file_roots: str | None, cwd: Path, home: Path, allow_wide: bool = False) -> tuple[list[Path], str]:
    """DELEGATE_FILE_ROOTS (without wide folders unless allowed), else the working directory unless it is wide;
    and why there is no root at all."""
    if file_roots:
        kept = []
        for path in [Path(p).expanduser() for p in split_list(file_roots, os.pathsep)]:
            why = _unusable(path, home, allow_wide)
            if why:
                logger.warning(
                    "DELEGATE_FILE_ROOTS names %s, which is never a root (%s); no file is read from it", path, why
                )
            else:
                kept.append(path)
        if kept:
            return kept, ""
        return [], (
            f"no folder is readable: DELEGATE_FILE_ROOTS names only folders that are never roots ({WIDE_WHAT}, or "
            "under /proc, /sys or /dev). Name your project folder; DELEGATE_FILE_ROOTS_ALLOW_WIDE=1 allows a wide one"
        )
    here = cwd.resolve()
    if is_wide(here, home.resolve()):
        where = "/" if here == Path(here.anchor) else "your home folder" if here == home.resolve() else str(here)
        return [], (
            f"no folder is readable: the server was started in {where}, which is never a default root. Set "
            "DELEGATE_FILE_ROOTS to your project folder (or use a client that sends MCP roots naming it)"
        )
    return [here], ""


def listed_roots(listed: Any) -> list[Path]:
    """Folders named by a client's roots/list answer (the SDK's ListRootsResult; none when it was not asked)."""
    return root_paths([str(root.uri) for root in listed.roots]) if listed else []


def root_paths(uris: list[str], home: Path | None = None) -> list[Path]:
    """Folders from a client's MCP roots (file:// URIs only; others are ignored). A root that is /, the home folder
    or above it, or under /proc, /sys or /dev is dropped (logged): a client cannot open the whole disk."""
    home = Path.home() if home is None else home
    paths = []
    for uri in uris:
        parsed = urlparse(uri)
        if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
            path = Path(unquote(parsed.path))
            why = _unusable(path, home, allow_wide=False)
            if why:
                logger.warning("the client's root %s is never used (%s); name a project folder instead", uri[:200], why)
            else:
                paths.append(path)
    return paths


def resolved_roots(paths: list[Path]) -> tuple[Path, ...]:
    """Existing folders among `paths`, symlinks resolved, without duplicates (never under /proc, /sys or /dev)."""
    roots: list[Path] = []
    for path in paths:
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if real.is_dir() and real not in roots and not forbidden(str(real)):
            roots.append(real)
    return tuple(roots)


def within(path: Path, roots: tuple[Path, ...]) -> Path | None:
    """The root that holds `path` (both resolved), if any."""
    for root in roots:
        if path == root or root in path.parents:
            return root
    return None


def inside(real: str, roots: tuple[Path, ...]) -> bool:
    """Whether a resolved path (a string, for the walk's speed) lies under a root and not under /proc, /sys, /dev."""
    return not forbidden(real) and any(real == str(r) or real.startswith(os.path.join(r, "")) for r in roots)

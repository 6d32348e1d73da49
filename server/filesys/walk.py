"""A bounded glob walk: the folders it opens, how deep it goes and how long it takes are capped for the whole call.

Our own walker rather than pathlib's glob: pathlib cannot be stopped part way (no deadline, no count of folders
opened), follows symlinked folders round a loop for ever under `*/*/…`, and recurses in Python, so a tree 1,500
folders deep ends in a RecursionError. This one keeps an explicit stack, opens each (folder, pattern position) once,
and never follows a symlinked folder back into one of its own ancestors.
"""

from __future__ import annotations

import fnmatch
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

GLOB_CHARS = re.compile(r"[*?\[]")
_TICK = 1024  # entries between two looks at the clock inside one big folder


@dataclass(frozen=True)
class WalkLimits:
    """How far the globs of one call may walk, all patterns together."""

    max_folders: int = 20_000
    """Most folders one call's globs may open."""
    max_depth: int = 64
    """Deepest folder, counted from where the pattern starts, a glob may enter."""
    seconds: float = 5.0
    """Longest time one call's globs may walk (less when the call's deadline comes first)."""


class WalkStopped(Exception):
    """A walk limit was reached; the message names the limit and what to do."""


@dataclass(frozen=True)
class Hit:
    """One thing a pattern found: a file to check, or a folder the walk would not enter (`skipped` says why)."""

    shown: str
    """The path as the result shows it: relative to the root, or absolute for an absolute pattern."""
    path: str
    """The path as walked (symlinks not resolved)."""
    real: str
    """The path with every symlink resolved."""
    skipped: str = ""
    """'' for a file; 'outside', 'loop' or 'secret' for a folder the walk did not enter."""
    regular: bool = True
    """Whether it is a regular file (following a final symlink); FIFOs, sockets and devices are not."""


@dataclass(frozen=True)
class _Part:
    text: str
    match: Callable[[str], object] | None  # None: a literal name

    @property
    def recursive(self) -> bool:
        return self.text == "**"


@dataclass(frozen=True)
class _State:
    path: str
    real: str
    shown: str
    index: int
    depth: int


def split_pattern(pattern: str) -> list[str]:
    """A pattern's parts: '.' and empty parts dropped, runs of '**' made one, and a final '**' meaning every file
    below. Raises ValueError for '**' inside a part (such as 'a**')."""
    parts: list[str] = []
    for part in pattern.replace(os.sep, "/").split("/"):
        if part in ("", ".") or (part == "**" and parts[-1:] == ["**"]):
            continue
        if "**" in part and part != "**":
            raise ValueError("'**' must be a whole part of the path, as in 'src/**/*.py'")
        parts.append(part)
    return [*parts, "*"] if parts[-1:] == ["**"] else parts


class Walker:
    """Walks the glob patterns of one call within one budget of folders, depth and time."""

    def __init__(
        self,
        limits: WalkLimits,
        allowed: Callable[[str], bool],
        expires: float,
        late: str,
        skip_folders: frozenset[str] = frozenset(),
    ) -> None:
        self.limits = limits
        self.allowed = allowed
        """Whether a resolved path may be read (under a root, not under /proc, /sys or /dev)."""
        self.expires = expires
        """time.monotonic() at which the walk stops."""
        self.late = late
        """What to say when the time runs out (the walk's own limit, or the call's deadline)."""
        self.skip_folders = skip_folders
        """Folder names (lower case) never entered: everything in them is refused anyway."""
        self.folders = 0

    def hits(self, base: str, base_real: str, parts: list[str], shown_base: str = "") -> Iterator[Hit]:
        """What the pattern `parts` finds under `base` (a folder; `base_real` is it resolved)."""
        compiled = [
            _Part(p, None if not GLOB_CHARS.search(p) else re.compile(fnmatch.translate(p)).match) for p in parts
        ]
        stack = [_State(base, base_real, shown_base, 0, 0)]
        done: set[tuple[str, int]] = set()
        while stack:
            state = stack.pop()
            if (state.real, state.index) in done:
                continue
            done.add((state.real, state.index))
            self._count()
            part, last = compiled[state.index], state.index == len(compiled) - 1
            if part.recursive:
                stack.append(_State(state.path, state.real, state.shown, state.index + 1, state.depth))
                yield from self._below(state, stack)
            elif part.match is None:
                yield from self._named(state, part.text, last, stack)
            else:
                yield from self._matching(state, part.match, last, stack)

    def _count(self) -> None:
        self.folders += 1
        if self.folders > self.limits.max_folders:
            raise WalkStopped(
                f"the walk opened {self.limits.max_folders:,} folders, the most one call's globs may open; name a "
                "narrower pattern (such as 'src/**/*.py' rather than '**/*.py')"
            )
        self._clock()

    def _clock(self) -> None:
        if time.monotonic() >= self.expires:
            raise WalkStopped(self.late)

    def _entries(self, path: str) -> Iterator[os.DirEntry[str]]:
        try:
            with os.scandir(path) as listing:
                for number, entry in enumerate(listing):
                    if number % _TICK == _TICK - 1:
                        self._clock()
                    yield entry
        except OSError:
            return  # a folder that vanished or cannot be listed holds nothing this walk can give

    def _below(self, state: _State, stack: list[_State]) -> Iterator[Hit]:
        """'**' goes one folder further: every real subfolder (symlinked folders are not followed, as in pathlib)."""
        for entry in self._entries(state.path):
            if entry.is_dir(follow_symlinks=False):
                yield from self._enter(state, entry.name, False, state.index, stack)

    def _named(self, state: _State, name: str, last: bool, stack: list[_State]) -> Iterator[Hit]:
        path = os.path.join(state.path, name)
        if not os.path.lexists(path):
            return
        if not last:
            if os.path.isdir(path):
                yield from self._enter(state, name, os.path.islink(path), state.index + 1, stack)
        elif not os.path.isdir(path):
            yield self._file(state, name, os.path.islink(path), os.path.isfile(path))

    def _matching(
        self, state: _State, match: Callable[[str], object], last: bool, stack: list[_State]
    ) -> Iterator[Hit]:
        for entry in self._entries(state.path):
            if not match(entry.name):
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:
                continue
            if not last and is_dir:
                yield from self._enter(state, entry.name, entry.is_symlink(), state.index + 1, stack)
            elif last and not is_dir:
                yield self._file(state, entry.name, entry.is_symlink(), _is_file(entry))

    def _file(self, state: _State, name: str, link: bool, regular: bool) -> Hit:
        path = os.path.join(state.path, name)
        real = os.path.realpath(path) if link else os.path.join(state.real, name)
        return Hit(os.path.join(state.shown, name), path, real, regular=regular)

    def _enter(self, state: _State, name: str, link: bool, index: int, stack: list[_State]) -> Iterator[Hit]:
        """Push a subfolder, unless it leaves the roots, loops back, or holds only credentials."""
        path, shown = os.path.join(state.path, name), os.path.join(state.shown, name)
        real = os.path.realpath(path) if link else os.path.join(state.real, name)
        if not self.allowed(real):
            yield Hit(shown + "/", path, real, skipped="outside")
        elif link and (real == state.real or state.real.startswith(os.path.join(real, ""))):
            yield Hit(shown + "/", path, real, skipped="loop")
        elif name.lower() in self.skip_folders:
            yield Hit(shown + "/", path, real, skipped="secret")
        elif state.depth + 1 > self.limits.max_depth:
            raise WalkStopped(
                f"it reaches folders more than {self.limits.max_depth} levels deep, the deepest a glob goes; start "
                "the pattern further down, or name the files"
            )
        else:
            stack.append(_State(path, real, shown, index, state.depth + 1))


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False

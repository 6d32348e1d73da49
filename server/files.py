"""Files by reference: resolve paths and globs under the allowed roots, refuse secrets, read bounded text."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath

from server.clock import Deadline
from server.errors import FileRefusedError
from server.filesys.choices import WHY, Choice, Choices, cut, some, warnings
from server.filesys.opening import Unreadable, read_text
from server.filesys.roots import (
    configured_roots,
    forbidden,
    inside,
    listed_roots,
    resolved_roots,
    root_paths,
    split_list,
    within,
)
from server.filesys.secrets import SECRET_FOLDERS, allowed, credential_in, is_secret
from server.filesys.walk import GLOB_CHARS, Walker, WalkLimits, WalkStopped, split_pattern
from server.results import FileRead

__all__ = [
    "FileBundle",
    "FileReader",
    "FileRules",
    "WalkLimits",
    "configured_roots",
    "is_secret",
    "listed_roots",
    "render",
    "resolved_roots",
    "root_paths",
    "split_list",
    "within",
]

SHORT = {"size": "too big", "binary": "binary", "special": "not a regular file", "open": "cannot be opened"}
SHORT["changed"] = "changed while being read"


@dataclass(frozen=True)
class FileRules:
    """Where files may be read from and how much of them."""

    roots: tuple[Path, ...]
    """Folders (already resolved) that files must lie under, after resolving `..` and symlinks."""
    allow: tuple[str, ...] = ()
    """Glob patterns of secret-looking files that may be read anyway (DELEGATE_FILE_ALLOW)."""
    max_file_chars: int = 500_000
    """Longest file accepted, in characters."""
    max_total_chars: int = 2_000_000
    """Most characters of context and files together."""
    max_files: int = 100
    """Most files one call may read; a call is refused as soon as its names and globs find one more."""
    no_roots_reason: str = ""
    """Why there is no root at all, said when a call names files."""
    walk: WalkLimits = field(default_factory=WalkLimits)
    """How far one call's globs may walk: folders opened, depth, time."""


@dataclass
class FileBundle:
    """The files read for one call: their text for the specialist, what the result lists, what was skipped."""

    contents: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def reads(self) -> list[FileRead]:
        """The result's `files` list."""
        return [FileRead(path=path, chars=len(text)) for path, text in self.contents]

    @property
    def chars(self) -> int:
        """Characters of file content (what counts against the limits)."""
        return sum(len(text) for _, text in self.contents)

    @cached_property
    def text(self) -> str:
        """The files as the specialist sees them, each marked with its path (built once, when complete)."""
        return render(self.contents)


def render(contents: list[tuple[str, str]]) -> str:
    """Each file in a fence longer than any backtick run inside it, so no content can close it early."""
    if not contents:
        return ""
    blocks = ["The server read these files for this task. Each is shown whole, between fences, under its path."]
    for path, text in contents:
        longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
        fence = "`" * max(3, longest + 1)
        ending = "" if text.endswith("\n") or not text else "\n"
        blocks.append(f"File: {json.dumps(path)} ({len(text):,} characters)\n{fence}\n{text}{ending}{fence}")
    return "\n\n".join(blocks)


class FileReader:
    """Resolves a call's `files` against the rules and reads them; blocking, so run it on a worker thread."""

    def __init__(self, rules: FileRules) -> None:
        self.rules = rules
        self._roots = [str(root) for root in rules.roots]

    def read(self, requests: list[str], context_chars: int = 0, deadline: Deadline | None = None) -> FileBundle:
        """Every requested file, or a FileRefusedError naming the first path that cannot be given and why. The walk
        and the reading stop at the call's deadline (when given) and within the walk's own time limit."""
        bundle = FileBundle()
        if not requests:
            return bundle
        if not self.rules.roots:
            raise FileRefusedError(self._refusal(requests[0], self.rules.no_roots_reason or "no root is configured"))
        choices = Choices(self.rules.max_files)
        walker = self._walker(deadline)
        for request in requests:
            if not request.strip():
                raise FileRefusedError("files: an entry is empty; give a path or a glob pattern such as 'src/**/*.py'.")
            if "\x00" in request:
                raise FileRefusedError(self._refusal(request, "a path cannot contain a NUL character"))
            if self._is_glob(request):
                self._glob(request, walker, choices)
            else:
                choices.add(self._named(request), request)
        self._read_all(choices, context_chars, deadline, bundle)
        bundle.warnings += warnings(choices)
        return bundle

    def _walker(self, deadline: Deadline | None) -> Walker:
        limits = self.rules.walk
        late = (
            f"looking for its files took over {limits.seconds:g} s, the longest one call's globs may walk; name a "
            "narrower pattern"
        )
        seconds = limits.seconds
        if deadline is not None and deadline.remaining() < seconds:
            seconds = deadline.remaining()
            late = "the call's deadline (DELEGATE_DEADLINE_S) came while looking for its files; name a narrower pattern"
        skip = frozenset() if self.rules.allow else SECRET_FOLDERS
        return Walker(limits, self._allowed, time.monotonic() + seconds, late, skip)

    def _allowed(self, real: str) -> bool:
        return inside(real, self.rules.roots)

    def _root_of(self, real: str) -> str | None:
        """The root (as a string) holding a resolved path, if any and if it may be read."""
        if forbidden(real):
            return None
        return next((r for r in self._roots if real == r or real.startswith(os.path.join(r, ""))), None)

    def _is_glob(self, request: str) -> bool:
        return bool(GLOB_CHARS.search(request)) and not any((r / request).exists() for r in self.rules.roots)

    def _refusal(self, path: str, why: str) -> str:
        return f"files: cannot read {cut(path)!r}: {why}. No provider was called."

    def _outside(self, request: str, real: str) -> FileRefusedError:
        """One answer for every path outside the roots, whether or not it exists, so none can be probed."""
        if forbidden(real):
            return FileRefusedError(self._refusal(request, "it is under /proc, /sys or /dev, which are never read"))
        roots = ", ".join(map(str, self.rules.roots))
        why = f"it is outside the allowed roots ({roots}), after resolving '..' and symlinks"
        return FileRefusedError(self._refusal(request, why))

    def _named(self, request: str) -> Choice:
        """One named file: it must lie under a root (decided before anything is said about whether it exists), exist,
        be a regular file and not look secret."""
        candidates = [Path(request)] if Path(request).is_absolute() else [root / request for root in self.rules.roots]
        placed = []
        for candidate in candidates:
            real = os.path.realpath(candidate)
            root = self._root_of(real)
            if root is not None:
                placed.append((candidate, real, root))
        if not placed:
            raise self._outside(request, os.path.realpath(candidates[0]))
        existing = [place for place in placed if os.path.lexists(place[0])]
        if not existing:
            where = ", ".join(map(str, self.rules.roots))
            raise FileRefusedError(self._refusal(request, f"it does not exist (looked under: {where})"))
        path, real, root = existing[0]
        if not os.path.exists(real):
            raise FileRefusedError(self._refusal(request, "it is a broken or looping symlink"))
        if os.path.isdir(real):
            raise FileRefusedError(
                self._refusal(request, f"it is a folder; name files, or a pattern such as '{request.rstrip('/')}/*'")
            )
        if not os.path.isfile(real):
            raise FileRefusedError(self._refusal(request, "it is not a regular file"))
        if self._secret(str(path), real, root):
            raise FileRefusedError(
                self._refusal(
                    request,
                    "it looks like it holds credentials (keys, tokens, .env, .git internals), which are never sent "
                    "to a model unless the server's DELEGATE_FILE_ALLOW lists them",
                )
            )
        shown = os.path.normpath(request) if not Path(request).is_absolute() else str(path)
        return Choice(shown, real, root, None)

    def _secret(self, path: str, real: str, root: str) -> bool:
        """Secret by the name it was asked for or by what it resolves to (a symlink cannot launder a key)."""
        names = [real[len(os.path.join(root, "")) :]]
        lexical = os.path.normpath(os.path.abspath(path))
        lexical_root = next((r for r in self._roots if lexical.startswith(os.path.join(r, ""))), None)
        names.append(lexical[len(os.path.join(lexical_root, "")) :] if lexical_root else os.path.basename(lexical))
        return any(is_secret(PurePosixPath(name.replace(os.sep, "/")), self.rules.allow) for name in names)

    def _glob(self, pattern: str, walker: Walker, choices: Choices) -> None:
        """The readable files a pattern matches under the roots; secrets and escapes are skipped, and said."""
        found, start = 0, len(choices.items)
        try:
            for base, real, shown in self._glob_bases(pattern):
                for hit in walker.hits(base, real, self._parts(pattern, base), shown):
                    root = None if hit.skipped else self._root_of(hit.real)
                    if hit.skipped or root is None:
                        choices.skip(pattern, hit.skipped or "outside", hit.shown)
                    elif self._secret(hit.path, hit.real, root):
                        choices.skip(pattern, "secret", hit.shown)
                    elif not hit.regular:
                        choices.skip(pattern, "unreadable", f"{hit.shown}: {SHORT['special']}")
                    else:
                        found += 1
                        choices.add(Choice(hit.shown, hit.real, root, pattern), pattern)
        except WalkStopped as stop:
            raise FileRefusedError(self._refusal(pattern, str(stop))) from None
        choices.items[start:] = sorted(choices.items[start:], key=lambda choice: choice.shown)
        if not found:
            where = ", ".join(map(str, self.rules.roots))
            said = [f"{path} ({WHY[kind]})" for kind, paths in choices.skips.get(pattern, {}).items() for path in paths]
            skipped = f"; skipped {some(sorted(said))}" if said else ""
            why = f"the pattern matches no readable file (looked under: {where}{skipped})"
            raise FileRefusedError(self._refusal(pattern, why))

    def _parts(self, pattern: str, base: str) -> list[str]:
        relative = os.path.relpath(pattern, base) if Path(pattern).is_absolute() else pattern
        try:
            return split_pattern(relative)
        except ValueError as exc:
            raise FileRefusedError(self._refusal(pattern, str(exc))) from None

    def _glob_bases(self, pattern: str) -> list[tuple[str, str, str]]:
        """Where to start a glob (as walked, resolved, as shown): each root for a relative pattern; the fixed head
        of an absolute one, which must lie under a root."""
        if ".." in PurePosixPath(pattern.replace(os.sep, "/")).parts:
            raise FileRefusedError(self._refusal(pattern, "a pattern may not climb out of its root with '..'"))
        if not Path(pattern).is_absolute():
            return [(str(root), str(root), "") for root in self.rules.roots]
        parts = Path(pattern).parts
        head = next(i for i, part in enumerate(parts) if GLOB_CHARS.search(part))
        base = str(Path(*parts[:head]))
        real = os.path.realpath(base)
        if self._root_of(real) is None:
            raise self._outside(pattern, real)
        return [(base, real, base)]

    def _read_all(self, choices: Choices, context_chars: int, deadline: Deadline | None, bundle: FileBundle) -> None:
        """Read the chosen files in order; a glob skips what it cannot give, a named file is refused instead."""
        budget = self.rules.max_total_chars - context_chars
        empty = {choice.pattern for choice in choices.items if choice.pattern is not None}
        for number, choice in enumerate(choices.items):
            if deadline is not None and deadline.remaining() <= 0:
                raise FileRefusedError(
                    f"files: the call's deadline (DELEGATE_DEADLINE_S) came while reading its files ({number} of "
                    f"{len(choices.items)} read); name fewer or smaller files. No provider was called."
                )
            try:
                text = self._text(choice, budget)
            except _Skip as skip:
                choices.skip(str(choice.pattern), skip.kind, f"{choice.shown}: {skip}")
                continue
            budget -= len(text)
            bundle.contents.append((choice.shown, text))
            empty.discard(choice.pattern)
        for pattern in [p for p in choices.skips if p in empty]:  # every file this pattern found was skipped
            skipped = [shown for kind in ("unreadable", "credential") for shown in choices.skips[pattern].get(kind, [])]
            why = f"the pattern matches no readable file (it skipped {some(skipped)})"
            raise FileRefusedError(self._refusal(pattern, why))

    def _text(self, choice: Choice, budget: int) -> str:
        """The file's text. What cannot be given raises _Skip for a glob's file, FileRefusedError for a named one.
        Never reads more than the limits allow; the size on disk is checked first."""
        limit = self.rules.max_file_chars
        try:
            text = read_text(choice.root, choice.real, limit, min(limit, budget))
        except Unreadable as exc:
            why = self._too_big(str(exc), limit) if exc.kind == "size" else str(exc)
            raise self._cannot(choice, "unreadable", SHORT[exc.kind], why) from None
        if len(text) > limit:
            raise self._cannot(choice, "unreadable", SHORT["size"], self._too_big(f"over {limit:,} characters", limit))
        if len(text) > budget:
            raise FileRefusedError(
                self._refusal(
                    choice.shown,
                    f"context and files together exceed {self.rules.max_total_chars:,} characters "
                    "(DELEGATE_MAX_CONTEXT_CHARS); send fewer or smaller files",
                )
            )
        name, under_root = os.path.basename(choice.real), choice.real[len(os.path.join(choice.root, "")) :]
        allow = self.rules.allow
        let = allowed(under_root, name, allow) or allowed(choice.shown, os.path.basename(choice.shown), allow)
        kind = None if let else credential_in(name, text)
        if kind is not None:
            why = f"it holds what looks like {kind}, which is never sent to a model; DELEGATE_FILE_ALLOW can allow it"
            raise self._cannot(choice, "credential", kind, why)
        return text

    def _cannot(self, choice: Choice, kind: str, short: str, why: str) -> Exception:
        """A glob's file is skipped (said in the warnings); a named file refuses the call."""
        return FileRefusedError(self._refusal(choice.shown, why)) if choice.pattern is None else _Skip(short, kind)

    def _too_big(self, size: str, limit: int) -> str:
        return f"it is {size}; the limit is {limit:,} (DELEGATE_MAX_FILE_CHARS). Send a part"


class _Skip(Exception):
    """A file a glob found but cannot give; the message is the short reason."""

    def __init__(self, why: str, kind: str) -> None:
        super().__init__(why)
        self.kind = kind

"""Files by reference: resolve paths and globs under the allowed roots, refuse secrets, read bounded text."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import stat
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

from server.errors import FileRefusedError
from server.results import FileRead

GLOB_CHARS = re.compile(r"[*?\[]")
MAX_GLOB_MATCHES = 100_000
"""Most paths one glob may match before it is refused as too broad."""

# Secret-bearing files, refused unless DELEGATE_FILE_ALLOW lists them. Names match the file's own name;
# folders match any folder on its path; nested entries match the end of its path.
SECRET_NAMES = (".env*", "*.pem", "*.key", "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", ".netrc", "_netrc")
SECRET_NAMES += ("*.p12", "*.pfx", "*.jks", "*.keystore", ".git-credentials", ".pgpass", "*.kdbx")
SECRET_FOLDERS = (".git", ".ssh", ".gnupg", ".azure")
SECRET_NESTED = (
    (".aws", "credentials"),
    (".aws", "config"),
    (".config", "gcloud"),
    (".kube", "config"),
    (".docker", "config.json"),
)
TOKEN_FILES = {".npmrc": re.compile(r"_auth|token", re.I), ".pypirc": re.compile(r"password|token", re.I)}


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
    """Most files one call may read."""
    no_roots_reason: str = ""
    """Why there is no root at all, said when a call names files."""


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


def split_list(value: str | None, sep: str) -> list[str]:
    """The non-empty items of a separated setting."""
    return [item.strip() for item in (value or "").split(sep) if item.strip()]


def configured_roots(file_roots: str | None, cwd: Path, home: Path) -> tuple[list[Path], str]:
    """DELEGATE_FILE_ROOTS, else the working directory unless it is / or the home folder; and why there is none."""
    if file_roots:
        return [Path(p).expanduser() for p in split_list(file_roots, os.pathsep)], ""
    here = cwd.resolve()
    if here == Path(here.anchor) or here == home.resolve():
        where = "/" if here == Path(here.anchor) else "your home folder"
        return [], (
            f"no folder is readable: the server was started in {where}, which is never a default root. Set "
            "DELEGATE_FILE_ROOTS to your project folder (or use a client that sends MCP roots)"
        )
    return [here], ""


def root_paths(uris: list[str]) -> list[Path]:
    """Folders from a client's MCP roots (file:// URIs only; others are ignored)."""
    paths = []
    for uri in uris:
        parsed = urlparse(uri)
        if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
            paths.append(Path(unquote(parsed.path)))
    return paths


def resolved_roots(paths: list[Path]) -> tuple[Path, ...]:
    """Existing folders among `paths`, symlinks resolved, without duplicates."""
    roots: list[Path] = []
    for path in paths:
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if real.is_dir() and real not in roots:
            roots.append(real)
    return tuple(roots)


def is_secret(relative: PurePosixPath, allow: tuple[str, ...]) -> bool:
    """Whether a path (relative to its root) looks like it holds credentials and is not allowed explicitly. Case
    does not matter (on macOS and Windows `.ENV` is the same file as `.env`)."""
    text = str(relative)
    if any(fnmatch.fnmatchcase(text, p) or fnmatch.fnmatchcase(relative.name, p) for p in allow):
        return False
    lowered = PurePosixPath(text.lower())
    parts = lowered.parts
    if any(fnmatch.fnmatchcase(lowered.name, p) for p in SECRET_NAMES):
        return True
    if any(part in SECRET_FOLDERS for part in parts[:-1]):
        return True
    return any(parts[i : i + len(n)] == n for n in SECRET_NESTED for i in range(len(parts)))


def within(path: Path, roots: tuple[Path, ...]) -> Path | None:
    """The root that holds `path` (both resolved), if any."""
    for root in roots:
        if path == root or root in path.parents:
            return root
    return None


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

    def read(self, requests: list[str], context_chars: int = 0) -> FileBundle:
        """Every requested file, or a FileRefusedError naming the first path that cannot be given and why."""
        bundle = FileBundle()
        if not requests:
            return bundle
        if not self.rules.roots:
            raise FileRefusedError(self._refusal(requests[0], self.rules.no_roots_reason or "no root is configured"))
        chosen: list[tuple[str, Path, str | None]] = []
        seen: set[Path] = set()
        for request in requests:
            if not request.strip():
                raise FileRefusedError("files: an entry is empty; give a path or a glob pattern such as 'src/**/*.py'.")
            pattern = request if self._is_glob(request) else None
            found = self._glob(request, bundle) if pattern else [self._named(request)]
            chosen += [(shown, real, pattern) for shown, real in found if real not in seen]
            seen.update(real for _, real in found)
            if len(chosen) > self.rules.max_files:
                raise FileRefusedError(
                    f"files: more than {self.rules.max_files} files requested (at {request!r}); the limit is "
                    f"{self.rules.max_files} (DELEGATE_MAX_FILES). Name fewer files or a narrower pattern. "
                    "No provider was called."
                )
        budget = self.rules.max_total_chars - context_chars
        for shown, real, pattern in chosen:
            text = self._text(shown, real, budget)
            if self._holds_token(shown, real, text):
                if pattern is None:
                    raise FileRefusedError(
                        self._refusal(shown, "it holds a registry token or password; DELEGATE_FILE_ALLOW can allow it")
                    )
                bundle.warnings.append(f"files: {pattern!r} skipped {shown!r}: it holds a registry token or password")
                continue
            budget -= len(text)
            bundle.contents.append((shown, text))
        return bundle

    def _holds_token(self, shown: str, real: Path, text: str) -> bool:
        """An .npmrc or .pypirc with credentials in it (most hold only registry URLs) that is not allowed."""
        check = TOKEN_FILES.get(real.name.lower())
        if check is None or not check.search(text):
            return False
        return not any(fnmatch.fnmatchcase(shown, p) or fnmatch.fnmatchcase(real.name, p) for p in self.rules.allow)

    def _is_glob(self, request: str) -> bool:
        return bool(GLOB_CHARS.search(request)) and not any((r / request).exists() for r in self.rules.roots)

    def _refusal(self, path: str, why: str) -> str:
        return f"files: cannot read {path!r}: {why}. No provider was called."

    def _named(self, request: str) -> tuple[str, Path]:
        """One named file: it must exist under a root, be a regular file and not look secret."""
        candidates = [Path(request)] if Path(request).is_absolute() else [root / request for root in self.rules.roots]
        existing = [c for c in candidates if os.path.lexists(c)]
        if not existing:
            where = ", ".join(map(str, self.rules.roots))
            raise FileRefusedError(self._refusal(request, f"it does not exist (looked under: {where})"))
        path = existing[0]
        real, root = self._place(request, path)
        if real.is_dir():
            raise FileRefusedError(
                self._refusal(request, f"it is a folder; name files, or a pattern such as '{request.rstrip('/')}/*'")
            )
        if not stat.S_ISREG(real.stat().st_mode):
            raise FileRefusedError(self._refusal(request, "it is not a regular file"))
        if self._secret(path, real, root):
            raise FileRefusedError(
                self._refusal(
                    request,
                    "it looks like it holds credentials (keys, tokens, .env, .git internals), which are never sent "
                    "to a model unless the server's DELEGATE_FILE_ALLOW lists them",
                )
            )
        return self._shown(request, path), real

    def _place(self, request: str, path: Path) -> tuple[Path, Path]:
        """The resolved path and its root; refused when it lies outside every root."""
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            raise FileRefusedError(self._refusal(request, "it is a broken or looping symlink")) from None
        root = within(real, self.rules.roots)
        if root is None:
            roots = ", ".join(map(str, self.rules.roots))
            raise FileRefusedError(
                self._refusal(request, f"it is outside the allowed roots ({roots}), after resolving '..' and symlinks")
            )
        return real, root

    def _secret(self, path: Path, real: Path, root: Path) -> bool:
        """Secret by the name it was asked for or by what it resolves to (a symlink cannot launder a key)."""
        names = [PurePosixPath(real.relative_to(root).as_posix())]
        lexical = within(Path(os.path.normpath(path.absolute())), self.rules.roots)
        if lexical is not None:
            names.append(PurePosixPath(Path(os.path.normpath(path.absolute())).relative_to(lexical).as_posix()))
        else:
            names.append(PurePosixPath(path.name))
        return any(is_secret(name, self.rules.allow) for name in names)

    def _shown(self, request: str, path: Path) -> str:
        """How a file is named in the result and to the specialist: relative to its root when asked so."""
        return os.path.normpath(request) if not Path(request).is_absolute() else str(path)

    def _glob(self, pattern: str, bundle: FileBundle) -> list[tuple[str, Path]]:
        """The readable files a pattern matches under the roots; secrets and escapes are skipped, and said."""
        found: list[tuple[str, Path]] = []
        skipped_secret, skipped_outside, visited = [], [], 0
        for base, relative in self._glob_bases(pattern):
            for match in base.glob(relative):
                visited += 1
                if visited > MAX_GLOB_MATCHES:
                    raise FileRefusedError(
                        self._refusal(pattern, f"the pattern matches more than {MAX_GLOB_MATCHES:,} paths; narrow it")
                    )
                if match.is_dir():
                    continue
                shown = self._shown(pattern, match) if Path(pattern).is_absolute() else str(match.relative_to(base))
                try:
                    real, root = self._place(shown, match)
                except FileRefusedError:
                    skipped_outside.append(shown)
                    continue
                if self._secret(match, real, root):
                    skipped_secret.append(shown)
                    continue
                if stat.S_ISREG(real.stat().st_mode) and all(real != r for _, r in found):
                    found.append((shown, real))
        if skipped_secret:
            bundle.warnings.append(
                f"files: {pattern!r} skipped {len(skipped_secret)} credential-like file(s) "
                f"({_some(skipped_secret)}); DELEGATE_FILE_ALLOW can allow them"
            )
        if skipped_outside:
            bundle.warnings.append(
                f"files: {pattern!r} skipped {len(skipped_outside)} file(s) that resolve outside the allowed roots "
                f"({_some(skipped_outside)})"
            )
        if not found:
            where = ", ".join(map(str, self.rules.roots))
            why = f"the pattern matches no readable file (looked under: {where})"
            raise FileRefusedError(self._refusal(pattern, why))
        return sorted(found)

    def _glob_bases(self, pattern: str) -> list[tuple[Path, str]]:
        """Where to start a glob: each root for a relative pattern; the fixed head of an absolute one."""
        if ".." in PurePosixPath(pattern.replace(os.sep, "/")).parts:
            raise FileRefusedError(self._refusal(pattern, "a pattern may not climb out of its root with '..'"))
        if not Path(pattern).is_absolute():
            return [(root, pattern) for root in self.rules.roots]
        parts = Path(pattern).parts
        head = next(i for i, part in enumerate(parts) if GLOB_CHARS.search(part))
        base = Path(*parts[:head])
        if within(base.resolve(), self.rules.roots) is None:
            roots = ", ".join(map(str, self.rules.roots))
            raise FileRefusedError(self._refusal(pattern, f"it is outside the allowed roots ({roots})"))
        return [(base, str(PurePosixPath(*parts[head:])))]

    def _text(self, shown: str, real: Path, budget: int) -> str:
        """The file's text, never reading more than the limits allow (size is checked before reading)."""
        limit = self.rules.max_file_chars
        size = real.stat().st_size
        if size > 4 * (limit + 1):  # even all 4-byte characters would exceed the limit
            raise FileRefusedError(self._too_big(shown, f"{size:,} bytes", limit))
        try:
            with open(real, encoding="utf-8", newline="") as handle:
                text = handle.read(min(limit, max(budget, 0)) + 1)
        except UnicodeDecodeError:
            raise FileRefusedError(self._refusal(shown, "it is not UTF-8 text (a binary file?)")) from None
        except OSError as exc:
            raise FileRefusedError(self._refusal(shown, f"it cannot be opened ({exc.strerror or exc})")) from None
        if "\x00" in text:
            raise FileRefusedError(self._refusal(shown, "it is a binary file (it contains NUL bytes)"))
        if len(text) > limit:
            raise FileRefusedError(self._too_big(shown, f"over {limit:,} characters", limit))
        if len(text) > budget:
            raise FileRefusedError(
                self._refusal(
                    shown,
                    f"context and files together exceed {self.rules.max_total_chars:,} characters "
                    "(DELEGATE_MAX_CONTEXT_CHARS); send fewer or smaller files",
                )
            )
        return text

    def _too_big(self, shown: str, size: str, limit: int) -> str:
        return self._refusal(shown, f"it is {size}; the limit is {limit:,} (DELEGATE_MAX_FILE_CHARS). Send a part")


def _some(paths: list[str], shown: int = 3) -> str:
    more = f", and {len(paths) - shown} more" if len(paths) > shown else ""
    return ", ".join(paths[:shown]) + more

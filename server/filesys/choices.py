"""What one call's files come to: the files chosen (each once, counted as found), and what each glob skipped."""

from __future__ import annotations

from dataclasses import dataclass, field

from server.errors import FileRefusedError

KEEP_SKIPPED = 50
WHY = {"secret": "credentials", "outside": "outside the roots", "loop": "a symlink loop", "unreadable": "unreadable"}


@dataclass(frozen=True)
class Choice:
    """One file a call will read: as shown, resolved, its root, and the glob that found it (None: named)."""

    shown: str
    real: str
    root: str
    pattern: str | None


@dataclass
class Choices:
    """The files a call will read, in order, each once; the count is checked as each one is found."""

    limit: int
    items: list[Choice] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    skips: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    """pattern -> what kind of skip -> the first paths skipped (said in the result's warnings)."""
    skipped: dict[tuple[str, str], int] = field(default_factory=dict)
    """(pattern, kind of skip) -> how many were skipped."""

    def add(self, choice: Choice, request: str) -> None:
        """Choose a file unless it is chosen already; refused the moment the call has one file too many."""
        if choice.real in self.seen:
            return
        self.seen.add(choice.real)
        self.items.append(choice)
        if len(self.items) > self.limit:
            raise FileRefusedError(
                f"files: more than {self.limit} files requested (at {cut(request)!r}); the limit is {self.limit} "
                "(DELEGATE_MAX_FILES). Name fewer files or a narrower pattern. No provider was called."
            )

    def skip(self, pattern: str, kind: str, shown: str) -> None:
        """Remember a file or folder a glob did not give, to say so in the warnings."""
        paths = self.skips.setdefault(pattern, {}).setdefault(kind, [])
        if len(paths) < KEEP_SKIPPED:  # a glob over a million dotfiles keeps a count, not a million names
            paths.append(shown)
        self.skipped[pattern, kind] = self.skipped.get((pattern, kind), 0) + 1


def warnings(choices: Choices) -> list[str]:
    """What each glob skipped, one sentence per kind of skip."""
    said = {
        "secret": "skipped {n} credential-like file(s) ({some}); DELEGATE_FILE_ALLOW can allow them",
        "outside": "skipped {n} file(s) that resolve outside the allowed roots ({some})",
        "loop": "did not follow {n} symlinked folder(s) that loop back to a folder above them ({some})",
        "unreadable": "skipped {n} file(s) too big, binary or unreadable ({some})",
        "credential": "skipped {n} file(s) holding what looks like a credential ({some}); DELEGATE_FILE_ALLOW can "
        "allow them",
    }
    return [
        f"files: {pattern!r} " + said[kind].format(n=count, some=some(sorted(paths), count))
        for pattern, kinds in choices.skips.items()
        for kind, paths in kinds.items()
        for count in [choices.skipped[pattern, kind]]
    ]


def cut(text: str, most: int = 200) -> str:
    """A caller's path as echoed in a message: at most `most` characters."""
    return text if len(text) <= most else text[:most] + "…"


def some(paths: list[str], total: int | None = None, shown: int = 3) -> str:
    """A few of the paths, and how many more of `total` there are."""
    total = len(paths) if total is None else total
    more = f", and {total - shown} more" if total > shown else ""
    return ", ".join(paths[:shown]) + more

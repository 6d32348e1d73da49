"""Open a checked file without following links, then check what was opened, then read a bounded amount of text.

Checking a path and then opening it leaves a gap in which a symlink can be swapped in. So the file is opened one
folder at a time from its root, every step with O_NOFOLLOW (a link anywhere on the way fails the open), with
O_NONBLOCK (a FIFO put in its place cannot hang the open), and the opened file itself is checked with fstat.
"""

from __future__ import annotations

import errno
import os
import stat

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_FILE_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


class Unreadable(Exception):
    """Why a file cannot be given; `kind` is 'size', 'binary', 'special', 'changed' or 'open'."""

    def __init__(self, why: str, kind: str) -> None:
        super().__init__(why)
        self.kind = kind


def open_below(root: str, real: str) -> int:
    """A read-only descriptor for `real` (a resolved path under the resolved folder `root`), no link followed."""
    relative = os.path.relpath(real, root)
    if relative == "." or relative.startswith(".."):
        raise Unreadable("it is not a file under its root", "special")
    parts = relative.split(os.sep)
    try:
        if os.open not in os.supports_dir_fd:
            return os.open(real, _FILE_FLAGS)
        folder = os.open(root, _DIR_FLAGS)
        try:
            for part in parts[:-1]:
                below = os.open(part, _DIR_FLAGS | _NOFOLLOW, dir_fd=folder)
                os.close(folder)
                folder = below
            return os.open(parts[-1], _FILE_FLAGS, dir_fd=folder)
        finally:
            os.close(folder)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            raise Unreadable("it was replaced by a symlink after it was checked; not read", "changed") from None
        if exc.errno == errno.ENOENT:
            raise Unreadable("it was removed after it was checked", "changed") from None
        raise Unreadable(f"it cannot be opened ({exc.strerror or exc})", "open") from None


def read_text(root: str, real: str, max_chars: int, most: int) -> str:
    """The file's UTF-8 text, at most `most` + 1 characters of it; refused when it is not a regular file, its size
    on disk shows it cannot fit `max_chars`, or it is not text."""
    descriptor = open_below(root, real)
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise Unreadable("it is not a regular file", "special")
        if status.st_size > 4 * (max_chars + 1):  # even all 4-byte characters would exceed the limit
            raise Unreadable(f"{status.st_size:,} bytes", "size")
        handle = os.fdopen(descriptor, encoding="utf-8", newline="")
        descriptor = -1  # the handle owns it now
        with handle:
            text = handle.read(max(most, 0) + 1)
    except UnicodeDecodeError:
        raise Unreadable("it is not UTF-8 text (a binary file?)", "binary") from None
    except OSError as exc:
        raise Unreadable(f"it cannot be read ({exc.strerror or exc})", "open") from None
    finally:
        if descriptor >= 0:
            os.close(descriptor)
    if "\x00" in text:
        raise Unreadable("it is a binary file (it contains NUL bytes)", "binary")
    return text

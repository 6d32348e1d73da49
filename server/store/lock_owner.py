"""Who holds a write lock on a file, for messages: Linux lists every POSIX lock in /proc/locks."""

from __future__ import annotations

import os
from pathlib import Path

PROC_LOCKS = Path("/proc/locks")


def lock_holders(paths: list[Path]) -> list[int]:
    """Ids of the processes holding a write lock on any of these files (empty where /proc/locks is missing)."""
    wanted = set()
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            continue
        wanted.add((f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}", info.st_ino))
    try:
        lines = PROC_LOCKS.read_text().splitlines()
    except OSError:
        return []
    holders: list[int] = []
    for line in lines:
        fields = line.split()
        # "N: POSIX ADVISORY WRITE pid maj:min:inode start end"; lines with "->" are waiters, not holders
        if len(fields) < 6 or "->" in fields or fields[3] != "WRITE":
            continue
        device, _, inode = fields[5].rpartition(":")
        pid = int(fields[4]) if fields[4].isdigit() else 0
        if inode.isdigit() and (device, int(inode)) in wanted and pid and pid not in holders:
            holders.append(pid)
    return holders


def describe_holder(path: Path) -> str:
    """Who holds the SQLite file at `path` locked for writing, in words: "process 123 (sqlite3 state.sqlite3)", or
    how to find out where that cannot be read."""
    files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
    pids = lock_holders(files)
    if not pids:
        return f"another process (`fuser {path}` or `lsof {path}` shows which)"
    return ", ".join(f"process {pid} ({_command(pid)})" for pid in pids)


def _command(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "command unknown"
    words = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    text = " ".join(" ".join(words).split()) or "command unknown"
    return text if len(text) <= 120 else text[:119] + "…"

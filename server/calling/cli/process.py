"""Running one CLI: its own process group, the prompt on stdin, output read line by line within bounds, and the
whole group killed when the call ends early (cancel, deadline), so no agent or tool it started is left running."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.abc import ByteReceiveStream, Process

MAX_LINE_BYTES = 4_000_000  # one event line (a tool result can hold a whole file); longer lines are dropped
MAX_STDOUT_BYTES = 64_000_000  # a runaway agent cannot fill our memory: past this, the rest is not read
STDERR_TAIL_BYTES = 8_000  # enough for the CLI's last error message
KILL_GRACE_S = 2.0  # after SIGTERM, the group gets this long to exit before SIGKILL
OnLine = Callable[[str], Awaitable[None]]


@dataclass
class Exit:
    """How the process ended."""

    code: int | None
    """The exit status; None when we killed it (deadline or cancel)."""
    stderr: str
    """The last STDERR_TAIL_BYTES of its error output."""
    timed_out: bool = False
    overflowed: bool = False
    """It wrote more than MAX_STDOUT_BYTES; the rest was discarded."""


def kill_group(process: Process) -> None:
    """SIGKILL the process and everything in its group (the agent's shells and tools too)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


async def _stop(process: Process) -> None:
    """Ask the whole group to stop, then force it; wait for the process itself to be reaped."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    with anyio.move_on_after(KILL_GRACE_S):
        await process.wait()
    kill_group(process)  # also ends children that ignored SIGTERM or outlived their parent
    await process.wait()


async def _lines(process: Process, on_line: OnLine, exit: Exit) -> None:
    """Hand each complete stdout line to on_line; bounded per line and in total (past the total, it is killed)."""
    assert process.stdout is not None
    buffer, total, skipping = b"", 0, False
    async for chunk in process.stdout:
        total += len(chunk)
        if total > MAX_STDOUT_BYTES:
            exit.overflowed = True
            kill_group(process)
            return
        buffer += chunk
        while (end := buffer.find(b"\n")) >= 0:
            line, buffer = buffer[:end], buffer[end + 1 :]
            if not skipping:
                await on_line(line.decode("utf-8", errors="replace"))
            skipping = False
        if len(buffer) > MAX_LINE_BYTES:
            buffer, skipping = b"", True  # drop this line's rest too, up to its newline
    if buffer and not skipping:
        await on_line(buffer.decode("utf-8", errors="replace"))


async def _tail(stream: ByteReceiveStream, exit: Exit) -> None:
    kept = b""
    async for chunk in stream:
        kept = (kept + chunk)[-STDERR_TAIL_BYTES:]
    exit.stderr = kept.decode("utf-8", errors="replace")


async def run(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    prompt: str,
    timeout_s: float,
    on_line: OnLine,
) -> Exit:
    """Run argv in its own session (a new process group) with `prompt` on stdin; every stdout line goes to
    on_line. At the timeout, or if the caller is cancelled, the group is killed before this returns or raises."""
    exit = Exit(code=None, stderr="")
    process = await anyio.open_process(
        list(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=dict(env),
        start_new_session=True,
    )
    try:
        with anyio.move_on_after(timeout_s) as scope:
            async with anyio.create_task_group() as group:
                assert process.stdout is not None and process.stderr is not None and process.stdin is not None
                group.start_soon(_lines, process, on_line, exit)
                group.start_soon(_tail, process.stderr, exit)
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await process.stdin.send(prompt.encode("utf-8"))
                await process.stdin.aclose()
                exit.code = await process.wait()
                kill_group(process)  # what it left in its group would hold our pipes open, and must not outlive it
        exit.timed_out = scope.cancelled_caught
        return exit
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                await _stop(process)
            kill_group(process)
            await process.aclose()

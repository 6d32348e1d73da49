"""How long a call takes to be answered when its `files` glob is far too broad, or walks a trap.

Usage: python bench/files_walk.py [--cap SECONDS]
Builds each tree in a temporary folder, then reads it in a child process (so a run that never ends can be
stopped at --cap seconds, default 20) through FileReader with the default limits (100 files a call). The cases are
the ones an outside review reported: a glob matching 10,000 files; `**/*` over 100,100 entries; three symlinks to
`.` under a 14-level pattern; and `**` over a folder tree 1,500 levels deep. Each should be refused in well under
a second. Prints the time to the answer, the CPU the child used, and the answer's first words.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = """
import resource, sys, time
from pathlib import Path
from server.errors import FileRefusedError
from server.files import FileReader, FileRules
root, pattern = Path(sys.argv[1]), sys.argv[2]
start = time.perf_counter()
try:
    bundle = FileReader(FileRules(roots=(root.resolve(),))).read([pattern])
    answer = f"read {len(bundle.contents)} files"
except FileRefusedError as exc:
    answer = f"refused: {exc}"
except Exception as exc:
    answer = f"failed: {type(exc).__name__}: {str(exc)[:80]}"
elapsed = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_SELF)
print(f"{elapsed:.3f}\\t{usage.ru_utime + usage.ru_stime:.3f}\\t{answer}")
"""


def many_files(root: Path, folders: int, per_folder: int, prefix: str) -> None:
    """`folders` folders of `per_folder` small files each."""
    for number in range(folders):
        folder = root / f"{prefix}{number}"
        folder.mkdir()
        for index in range(per_folder):
            os.close(os.open(folder / f"f{index}.txt", os.O_WRONLY | os.O_CREAT, 0o644))


def symlink_loop(root: Path) -> None:
    """Three symlinks to `.` (git can carry them) beside one ordinary file."""
    (root / "README.md").write_text("# a project\n")
    for name in ("a", "b", "c"):
        (root / name).symlink_to(".")


def deep_tree(root: Path, levels: int) -> None:
    """One chain of folders `levels` deep with a file at the bottom (made with relative mkdirs: paths get long)."""
    here = os.open(root, os.O_RDONLY)
    try:
        for _ in range(levels):
            os.mkdir("d", dir_fd=here)
            below = os.open("d", os.O_RDONLY, dir_fd=here)
            os.close(here)
            here = below
        with os.fdopen(os.open("end.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=here), "w") as handle:
            handle.write("bottom\n")
    finally:
        os.close(here)


CASES = [
    ("10,000 matches, 'd1?/*'", lambda r: many_files(r, 10, 1_000, "d1"), "d1?/*"),
    ("100,100 entries, '**/*'", lambda r: many_files(r, 100, 1_000, "p"), "**/*"),
    ("3 symlinks to '.', 14-level pattern", symlink_loop, "/".join(["*"] * 14)),
    ("1,500-level tree, '**/*.txt'", lambda r: deep_tree(r, 1_500), "**/*.txt"),
]


def run_case(label: str, build: object, pattern: str, cap: float) -> None:
    """Build one tree, read it in a child process, print the figures."""
    root = Path(tempfile.mkdtemp(prefix="files-walk-"))
    try:
        made = time.perf_counter()
        build(root)  # type: ignore[operator]
        made = time.perf_counter() - made
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        start = time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, "-c", CHILD, str(root), pattern], capture_output=True, text=True, timeout=cap, env=env
            )
            elapsed, cpu, answer = (done.stdout.strip() or f"-\t-\tno answer: {done.stderr[-200:]}").split("\t", 2)
        except subprocess.TimeoutExpired:
            elapsed, cpu, answer = f">{cap:.0f}", "-", f"no answer within {cap:.0f} s (stopped)"
        wall = time.perf_counter() - start
        print(f"{label:40} {elapsed:>8} s  cpu {cpu:>7} s  (child {wall:.2f} s, tree built in {made:.1f} s)")
        print(f"{'':40} {answer[:150]}")
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)  # rm copes with 1,500 levels; shutil.rmtree does not


def main() -> None:
    """Run every case once and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", type=float, default=20.0, help="stop a case after this many seconds (default 20)")
    args = parser.parse_args()
    print(f"files_walk: python {sys.version.split()[0]}, {os.cpu_count()} cores; time to the answer, per case")
    for label, build, pattern in CASES:
        run_case(label, build, pattern, args.cap)


if __name__ == "__main__":
    main()

"""Run every benchmark against the provider simulator; print a table and save it to bench/RESULTS.md.

Usage: python bench/run.py [--quick] [--only NAME]   (about 3 minutes; --quick: fewer runs, nothing saved)
Absolute times are noisy on a shared 2-core machine: compare the ratios, each measured in the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")

from bench.rawclient import RawClient, server_env  # noqa: E402
from tests.simulator import ProviderSimulator  # noqa: E402

QUICK = "--quick" in sys.argv
KEPT_SECTION = "## The README's commands"  # measured by bench/readme_commands.sh: a run of this script keeps it
PYTHON = sys.executable
SCRIPT = shutil.which("delegate-mcp", path=str(Path(PYTHON).parent)) or "delegate-mcp"
ROUTE = '{"specialist": "coder", "reason": "bench", "confidence": 0.9}'
Row = dict[str, Any]


def stats(values: list[float]) -> dict[str, float]:
    """Median, p95 and range of a list of measurements."""
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered) + 0.5) - 1))]
    return {"median": statistics.median(ordered), "p95": p95, "min": ordered[0], "max": ordered[-1], "n": len(values)}


def row(name: str, unit: str, ours: list[float], baseline: list[float] | None, baseline_name: str, goal: str) -> Row:
    """One line of the results table."""
    mine = stats(ours)
    base = stats(baseline) if baseline else None
    ratio = mine["median"] / base["median"] if base and base["median"] else None
    return {
        "name": name,
        "unit": unit,
        "ours": mine,
        "base": base,
        "baseline": baseline_name,
        "ratio": ratio,
        "goal": goal,
    }


async def cold_start(command: list[str], env: dict[str, str]) -> float:
    """Spawn → initialize answered → tools/list answered, in ms."""
    client, started = await RawClient.spawn(command, env)
    await client.handshake()
    await client.request("tools/list")
    elapsed = (time.monotonic() - started) * 1000
    await client.close()
    return elapsed


def compile_bytecode() -> None:
    """Byte-compile the project, as a regular pip install does: the minimal server's imports (site-packages) are
    compiled already, and with PYTHONDONTWRITEBYTECODE set ours would be compiled again on every start."""
    import compileall

    for folder in ("server", "specialists"):
        compileall.compile_dir(ROOT / folder, quiet=1)


async def bench_cold_start(sim: ProviderSimulator, runs: int) -> Row:
    compile_bytecode()
    ours, base = [], []
    env = server_env(sim.base_url)
    for _ in range(runs):  # interleaved, so drift hits both sides alike
        ours.append(await cold_start([SCRIPT], env))
        base.append(await cold_start([PYTHON, str(ROOT / "bench" / "minimal_server.py")], env))
    return row(
        "cold start: spawn → initialize → tools/list", "ms", ours, base, "minimal MCPServer, one tool", "≤ 1.05×"
    )


async def first_call(env: dict[str, str]) -> float:
    client, started = await RawClient.spawn([SCRIPT], env)
    await client.handshake()
    await client.call("delegate", {"task": "Summarise why the build is red and propose a fix"})
    elapsed = (time.monotonic() - started) * 1000
    await client.close()
    return elapsed


def import_litellm_ms() -> float:
    code = "import time; t = time.perf_counter(); import litellm; print((time.perf_counter() - t) * 1000)"
    started = time.monotonic()
    subprocess.run([PYTHON, "-c", code], check=True, capture_output=True, env=os.environ.copy())
    return (time.monotonic() - started) * 1000


async def bench_first_call(sim: ProviderSimulator, runs: int) -> Row:
    sim.set_default("bench-router", ROUTE)
    ours, base = [], []
    for _ in range(runs):
        ours.append(await first_call(server_env(sim.base_url)))
        base.append(import_litellm_ms())
    return row(
        "first call: spawn → first delegate result",
        "ms",
        ours,
        base,
        "`python -c 'import litellm'` (fresh interpreter)",
        "≤ 1.1×",
    )


async def direct_pair(litellm: Any, base_url: str, index: int) -> None:
    """The same two calls delegate makes: a JSON router call, then a streamed specialist call."""
    from server.routing.router import response_format

    common = {
        "api_base": base_url,
        "api_key": "sk-bench-000000000000",
        "num_retries": 0,
        "max_retries": 0,
        "timeout": 30,
    }
    await litellm.acompletion(
        model="openai/bench-router",
        temperature=0.0,
        max_tokens=300,
        messages=[{"role": "system", "content": "route"}, {"role": "user", "content": f"task {index}"}],
        response_format=response_format(["coder", "writer", "generalist"]),
        **common,
    )
    stream = await litellm.acompletion(
        model="openai/bench-coder",
        temperature=0.2,
        max_tokens=8192,
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "system", "content": "code"}, {"role": "user", "content": f"task {index}"}],
        **common,
    )
    async for _ in stream:
        pass


async def bench_per_call(sim: ProviderSimulator, calls: int) -> Row:
    import litellm

    litellm.suppress_debug_info = True
    sim.set_default("bench-router", ROUTE)
    client, _ = await RawClient.spawn([SCRIPT], server_env(sim.base_url, DELEGATE_CLASSIFIER="off"))
    await client.handshake()
    for i in range(20):  # warm-up, both sides
        await client.call("delegate", {"task": f"warm-up task {i}"})
        await direct_pair(litellm, sim.base_url, i)
    ours, base = [], []
    for i in range(calls):
        started = time.perf_counter()
        await client.call("delegate", {"task": f"bench task {i}"})  # unique tasks: no routing cache hits
        ours.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        await direct_pair(litellm, sim.base_url, i)
        base.append((time.perf_counter() - started) * 1000)
    await client.close()
    floor = await mcp_floor(sim, calls)
    return row(
        "per-call: delegate round trip over stdio (router + specialist)",
        "ms",
        ours,
        base,
        "the same 2 litellm.acompletion calls in-process",
        "≤ 1.2×",
    ) | {"note": f"MCP stdio floor (echo tool, minimal server): {statistics.median(floor):.1f} ms"}


async def mcp_floor(sim: ProviderSimulator, calls: int) -> list[float]:
    """Round trips of a trivial tool on the minimal server: what MCP over stdio costs by itself."""
    client, _ = await RawClient.spawn([PYTHON, str(ROOT / "bench" / "minimal_server.py")], server_env(sim.base_url))
    await client.handshake()
    timings = []
    for i in range(calls):
        started = time.perf_counter()
        await client.call("echo", {"text": f"call {i}"})
        timings.append((time.perf_counter() - started) * 1000)
    await client.close()
    return timings


async def bench_concurrency(sim: ProviderSimulator, sizes: list[int], runs: int) -> list[Row]:
    import litellm

    sim.set_default("bench-router", ROUTE, delay=0.2)
    sim.set_default("bench-coder", delay=0.2)
    env = server_env(sim.base_url, DELEGATE_CLASSIFIER="off", DELEGATE_MAX_CONCURRENCY="512")
    client, _ = await RawClient.spawn([SCRIPT], env)
    await client.handshake()
    await client.call("delegate", {"task": "warm-up"})
    await direct_pair(litellm, sim.base_url, 0)
    rows, counter = [], 0
    for size in sizes:
        ours, base = [], []
        for _ in range(runs):
            counter += size
            started = time.perf_counter()
            await asyncio.gather(*(client.call("delegate", {"task": f"c{counter} {i}"}) for i in range(size)))
            ours.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            await asyncio.gather(*(direct_pair(litellm, sim.base_url, i) for i in range(size)))
            base.append((time.perf_counter() - started) * 1000)
        goal = "≤ 1.25×" if size == max(sizes) else "-"
        rows.append(
            row(
                f"concurrency: {size} delegate calls at once, 200 ms per model call",
                "ms wall",
                ours,
                base,
                f"{size} call pairs via asyncio.gather",
                goal,
            )
        )
    await client.close()
    sim.set_default("bench-router", ROUTE)
    sim.set_default("bench-coder")
    return rows


async def bench_memory(sim: ProviderSimulator, calls: int) -> Row:
    sim.set_default("bench-router", ROUTE)
    client, _ = await RawClient.spawn([SCRIPT], server_env(sim.base_url, DELEGATE_CLASSIFIER="off"))
    await client.handshake()
    started_kib = client.rss_kib()
    warm = 200
    for i in range(warm):
        await client.call("delegate", {"task": f"memory warm-up {i}"})
    warm_kib = client.rss_kib()
    samples = []
    for i in range(calls):
        await client.call("delegate", {"task": f"memory task {i}"})
        if i % 250 == 249:
            samples.append(client.rss_kib())
    await client.close()
    growth = (samples[-1] - warm_kib) / warm_kib * 100
    result = row(
        f"memory: RSS after {warm} warm-up calls → after {calls} more",
        "MiB",
        [s / 1024 for s in samples],
        [warm_kib / 1024],
        f"RSS after warm-up (at start: {started_kib / 1024:.0f} MiB)",
        "growth < 10%",
    )
    result["note"] = f"growth {growth:+.1f}%"
    return result


def bench_classifier() -> Row:
    import json

    from server.catalog import load_catalog
    from server.routing.classifier import Classifier
    from server.routing.lifecycle import training_examples

    classifier = Classifier(training_examples(load_catalog({}), None), 0.75)
    tasks = [
        json.loads(line)["task"] for line in (ROOT / "specialists" / "routing-eval.jsonl").read_text().splitlines()
    ]
    timings = []
    for _ in range(3):
        for task in tasks:
            started = time.perf_counter()
            classifier.decide(task)
            timings.append((time.perf_counter() - started) * 1e6)
    result = row("classifier decision (shipped eval set, 3 passes)", "µs", timings, None, "-", "well under 1 ms")
    result["note"] = f"p99 {sorted(timings)[int(0.99 * len(timings))]:.0f} µs"
    return result


def bench_streaming(calls: int) -> list[Row]:
    """bench/streaming.py (its simulator in another process): a 2,000-character answer in 250 chunks, client CPU
    per call streamed against unstreamed, per wire format; and streamed calls per second per core."""
    done = subprocess.run(
        [PYTHON, str(ROOT / "bench" / "streaming.py"), "--calls", str(calls), "--json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    rows = []
    for wire, figures in json.loads(done.stdout).items():
        rows.append(
            row(
                f"streamed answer, 2,000 chars in 250 chunks, client CPU per call ({wire} wire)",
                "ms CPU",
                figures["streamed_samples"],
                figures["unstreamed_samples"],
                "the same answer unstreamed",
                "≤ 2×",
            )
        )
        rows[-1]["note"] = f"{figures['calls_per_s_per_core']:.0f} streamed calls/s per core, 8 in flight"
    return rows


ISSUE_13 = [  # (the issue's figure, the start of this run's row name, the goal as the issue states it)
    ("cold start vs a bare MCPServer", "cold start", "≤ 1.05×"),
    ("first call vs `import litellm`", "first call", "keep (1.02×)"),
    ("delegate vs the same two litellm calls", "per-call", "keep ≤ 1.2×"),
    ("128 concurrent vs direct", "concurrency: 128", "keep (1.01×)"),
    (
        "2,000-char answer streamed vs not, client CPU per call (OpenAI)",
        "streamed answer, 2,000 chars in 250 chunks, client CPU per call (openai",
        "≤ 2×",
    ),
    ("… Anthropic wire", "streamed answer, 2,000 chars in 250 chunks, client CPU per call (anthropic", "≤ 2×"),
    ("… Gemini wire", "streamed answer, 2,000 chars in 250 chunks, client CPU per call (gemini", "≤ 2×"),
]


def issue_table(rows: list[Row]) -> str:
    """Issue 13's table with this run's figures: each row's ratio, its two medians, and the goal."""
    lines = ["| figure | this run | goal |", "|---|---|---|"]
    for label, prefix, goal in ISSUE_13:
        found = next((r for r in rows if r["name"].startswith(prefix)), None)
        if found is None or not found["ratio"]:
            lines.append(f"| {label} | not measured in this run | {goal} |")
            continue
        base = found["base"]["median"] if found["base"] else 0
        figure = f"{found['ratio']:.2f}× ({fmt(found['ours']['median'])} vs {fmt(base)} {found['unit']})"
        if found.get("note"):
            figure += f"; {found['note']}"
        lines.append(f"| {label} | {figure} | {goal} |")
    return "\n".join(lines)


def misses(rows: list[Row]) -> str:
    """One line per ratio goal that this run missed, and by how much."""
    lines = []
    for r in rows:
        try:
            limit = float(r["goal"].replace("≤", "").replace("×", "").strip())
        except ValueError:
            continue
        if r["ratio"] and r["ratio"] > limit:
            lines.append(
                f"- {r['name']}: {r['ratio']:.2f}× against ≤ {limit}×, a miss by {(r['ratio'] / limit - 1) * 100:.0f}%"
            )
    if not lines:
        return "Every ratio goal was met in this run.\n"
    return "Missed in this run (why: see docs/performance.md):\n" + "\n".join(lines) + "\n"


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def fmt(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def table(rows: list[Row]) -> str:
    lines = [
        "| benchmark | ours: median (p95, min–max, n) | baseline: median (p95, min–max) | ratio | goal |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        o = r["ours"]
        ours = f"{fmt(o['median'])} {r['unit']} ({fmt(o['p95'])}, {fmt(o['min'])}–{fmt(o['max'])}, n={o['n']})"
        b = r["base"]
        base = f"{r['baseline']}: {fmt(b['median'])} ({fmt(b['p95'])}, {fmt(b['min'])}–{fmt(b['max'])})" if b else "-"
        ratio = f"{r['ratio']:.2f}×" if r["ratio"] else (r.get("note") or "-")
        if r.get("note") and r["ratio"]:
            ratio += f"; {r['note']}"
        lines.append(f"| {r['name']} | {ours} | {base} | {ratio} | {r['goal']} |")
    return "\n".join(lines)


async def main() -> None:
    started = time.monotonic()
    rows: list[Row] = []
    steps: list[tuple[str, Callable[[ProviderSimulator], Awaitable[Any]]]] = [
        ("cold start", lambda sim: bench_cold_start(sim, 6 if QUICK else 12)),
        ("first call", lambda sim: bench_first_call(sim, 3 if QUICK else 5)),
        ("per-call overhead", lambda sim: bench_per_call(sim, 60 if QUICK else 200)),
        ("concurrency", lambda sim: bench_concurrency(sim, [1, 8, 32, 128], 2 if QUICK else 3)),
        ("memory", lambda sim: bench_memory(sim, 600 if QUICK else 2000)),
    ]
    with ProviderSimulator() as sim:
        only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
        for label, step in steps:
            if only and only not in label:
                continue
            print(f"running {label}...", file=sys.stderr, flush=True)
            result = await step(sim)
            rows += result if isinstance(result, list) else [result]
    if not only or "streaming" in only:
        print("running streaming...", file=sys.stderr, flush=True)
        rows += bench_streaming(10 if QUICK else 40)
    if not only or "classifier" in only:
        rows.append(bench_classifier())
    report = (
        f"Machine: {machine()}\n\nRun: `python bench/run.py{' --quick' if QUICK else ''}`, "
        f"{time.monotonic() - started:.0f} s, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n"
        f"{table(rows)}\n\n{misses(rows)}\nIssue 13's figures:\n\n{issue_table(rows)}\n"
    )
    print(report)
    if not QUICK and not only:
        saved = ROOT / "bench" / "RESULTS.md"
        kept = saved.read_text().partition(KEPT_SECTION)[1:] if saved.exists() else ("", "")
        saved.write_text("# Benchmark results\n\n" + report + ("\n" + "".join(kept) if kept[0] else ""))


if __name__ == "__main__":
    asyncio.run(main())

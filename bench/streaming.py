"""Client CPU of a long streamed answer against the same answer unstreamed, on every wire format.

Usage: python bench/streaming.py [--calls N] [--wire openai|anthropic|gemini] [--profile]
The provider simulator runs in another process, so the CPU measured here is the client's alone: a 2,000-character
answer in 250 chunks through llm.complete (streamed, as specialists are called) and without streaming, and the
throughput in calls per second per core of streamed calls, 8 in flight at once.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")

from server.calling import llm  # noqa: E402

ANSWER = ("The quick brown fox jumps over the lazy dog. " * 50)[:2000]  # 2,000 chars: 250 chunks of 8
WIRES = ("openai", "anthropic", "gemini")
SIMULATOR = """
import sys
from tests.sim import ProviderSimulator
sim = ProviderSimulator().start()
sim.set_default("sim-long", sys.argv[1], chunk_delay=float(sys.argv[2]))
print(sim.url, flush=True)
sys.stdin.read()
"""


def start_simulator(chunk_delay: float) -> tuple[subprocess.Popen[str], str]:
    """The simulator in its own process, so its CPU is not counted as the client's."""
    process = subprocess.Popen(
        [sys.executable, "-c", SIMULATOR, ANSWER, str(chunk_delay)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def request(url: str, wire: str, streamed: bool) -> llm.CompletionRequest:
    """One specialist-like call of the long answer, in a wire format."""
    base = {"openai": url + "/v1", "anthropic": url, "gemini": url + "/v1beta"}[wire]
    return llm.CompletionRequest(
        model=f"{wire}/sim-long",
        messages=[{"role": "user", "content": "Write the long answer."}],
        max_output_tokens=1024,
        timeout_s=60,
        api_base=base,
        api_key="sim-key",
        first_token_timeout_s=20 if streamed else None,
        stall_timeout_s=10 if streamed else None,
    )


async def one(req: llm.CompletionRequest) -> None:
    chars: list[int] = []

    async def on_text(n: int) -> None:
        chars.append(n)

    completion = await llm.complete(req, on_text if req.first_token_timeout_s else None)
    assert completion.text == ANSWER, f"{req.model}: got {len(completion.text)} characters"


async def cpu_per_call(req: llm.CompletionRequest, calls: int) -> list[float]:
    """Client CPU of each call, in ms, sorted (each call measured alone)."""
    for _ in range(3):
        await one(req)  # warm: first-call lazy imports, connection pool
    samples = []
    for _ in range(calls):
        started = time.process_time()
        await one(req)
        samples.append((time.process_time() - started) * 1000)
    return sorted(samples)


async def throughput(req: llm.CompletionRequest, calls: int, in_flight: int = 8) -> float:
    """Streamed calls completed per CPU-second of the client: calls per second per core."""
    gate = asyncio.Semaphore(in_flight)

    async def gated() -> None:
        async with gate:
            await one(req)

    started = time.process_time()
    await asyncio.gather(*(gated() for _ in range(calls)))
    return calls / (time.process_time() - started)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--wire", choices=WIRES, action="append")
    parser.add_argument("--profile", action="store_true", help="print where a streamed call's CPU goes")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--chunk-delay", type=float, default=0.0, help="seconds between chunks (a real model: 0.01-0.03; default 0)"
    )
    args = parser.parse_args()
    process, url = start_simulator(args.chunk_delay)
    results: dict[str, Any] = {}
    try:
        await llm.ready()
        for wire in args.wire or WIRES:
            streamed_samples = await cpu_per_call(request(url, wire, True), args.calls)
            plain_samples = await cpu_per_call(request(url, wire, False), args.calls)
            streamed, plain = streamed_samples[len(streamed_samples) // 2], plain_samples[len(plain_samples) // 2]
            rate = await throughput(request(url, wire, True), args.calls * 2)
            results[wire] = {
                "streamed_ms": streamed,
                "unstreamed_ms": plain,
                "ratio": streamed / plain,
                "calls_per_s_per_core": rate,
                "streamed_samples": streamed_samples,
                "unstreamed_samples": plain_samples,
            }
            print(
                f"{wire:9} streamed {streamed:6.1f} ms CPU/call   unstreamed {plain:5.1f} ms   "
                f"ratio {streamed / plain:4.1f}×   throughput {rate:5.1f} calls/s/core (streamed, 8 in flight)",
                file=sys.stderr,
                flush=True,
            )
            if args.profile:
                profile = cProfile.Profile()
                profile.enable()
                for _ in range(10):
                    await one(request(url, wire, True))
                profile.disable()
                pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    finally:
        process.kill()
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())

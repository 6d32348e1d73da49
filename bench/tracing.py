"""What the spans and metrics of server/tracing.py cost: per span in-process, and per delegate call over stdio.

Usage: python bench/tracing.py [--calls N] [--before CHECKOUT]   (a few minutes; needs the otel extra)
--before names a checkout of delegate-mcp without the spans (e.g. a worktree of main before they landed): its
server is timed too, interleaved with the others.

1. Per span, in this process: a stage span and a gen_ai model-call span (with its metrics), first with the
   OpenTelemetry API alone (no SDK installed or configured: what every user without OTEL_* gets), then with the
   SDK, a BatchSpanProcessor and the OTLP/HTTP exporter sending to a receiver on 127.0.0.1.
2. Per call: `delegate` over stdio against the real console script, router and specialist on the provider
   simulator, with no OTEL_* variable against OTEL_EXPORTER_OTLP_ENDPOINT set (spans and metrics exported to
   the same local receiver), calls interleaved so drift hits both alike; and the per-call goal's baseline (the
   same two litellm calls in-process, bench/run.py).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")

from bench.rawclient import RawClient, server_env  # noqa: E402
from bench.run import ROUTE, SCRIPT, direct_pair  # noqa: E402
from tests.simulator import ProviderSimulator  # noqa: E402

PATIENT = {"DELEGATE_CLASSIFIER": "off", "DELEGATE_DEADLINE_S": "170"}
"""Three servers start at once: on a busy 2-core machine the first call may wait long for litellm to load."""
SPANS_PER_CALL = 7
"""A routed delegate call with no fallback opens this many: route, router, specialist, 3 store writes, and the
SDK's own tools/call span (more with files, a budget, fallbacks or feedback)."""


class Sink:
    """An OTLP/HTTP receiver on 127.0.0.1 that counts requests and drops them."""

    def __init__(self) -> None:
        self.requests = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                sink.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def per_span_us(n: int) -> tuple[float, float]:
    """Microseconds per stage span and per model-call span (with its metrics), median of 5 rounds."""
    from server import tracing

    def stage() -> None:
        for _ in range(n):
            with tracing.stage("store", {"delegate.store.write": "usage.record"}):
                pass

    def model() -> None:
        for _ in range(n):
            with tracing.model_call("openai/bench-coder", role="specialist") as call:
                call.done(120, 40, 0.0001, "openai/bench-coder")

    results = []
    for work in (stage, model):
        rounds = []
        for _ in range(5):
            started = time.perf_counter()
            work()
            rounds.append((time.perf_counter() - started) / n * 1e6)
        results.append(statistics.median(rounds))
    return results[0], results[1]


def install_sdk(endpoint: str) -> Any:
    from opentelemetry import metrics, trace
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
    trace.set_tracer_provider(provider)
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics"))
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return provider


async def per_call_ms(sim: ProviderSimulator, sink: Sink, calls: int, before: Path | None) -> dict[str, list[float]]:
    """delegate round trips over stdio: no OTEL_* set, OTLP export on, optionally a checkout without the spans,
    and the direct litellm pair."""
    import litellm

    litellm.suppress_debug_info = True
    sim.set_default("bench-router", ROUTE)
    plain, _ = await RawClient.spawn([SCRIPT], server_env(sim.base_url, **PATIENT))
    exported, _ = await RawClient.spawn(
        [SCRIPT],
        server_env(sim.base_url, **PATIENT, OTEL_EXPORTER_OTLP_ENDPOINT=sink.url, OTEL_BSP_SCHEDULE_DELAY="200"),
    )
    clients = {"no exporter": plain, "OTLP exporter": exported}
    if before is not None:  # the same server from a checkout without the spans, for a before/after comparison
        env = server_env(sim.base_url, **PATIENT, PYTHONPATH=str(before))
        clients["before (no spans)"], _ = await RawClient.spawn([SCRIPT], env)
    timings: dict[str, list[float]] = {name: [] for name in [*clients, "direct litellm pair"]}
    for client in clients.values():
        await client.handshake()
    for i in range(20):  # warm-up, every side
        for client in clients.values():
            await client.call("delegate", {"task": f"warm-up task {i}"})
        await direct_pair(litellm, sim.base_url, i)
    order = list(clients.items())
    for i in range(calls):
        order = order[1:] + order[:1]  # each server goes first, second, ... in turn: no place in the round is favoured
        for name, client in order:
            started = time.perf_counter()
            await client.call("delegate", {"task": f"bench task {i} {name}"})  # unique: no routing cache hits
            timings[name].append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        await direct_pair(litellm, sim.base_url, i)
        timings["direct litellm pair"].append((time.perf_counter() - started) * 1000)
    for client in clients.values():
        await client.close()
    return timings


async def main() -> None:
    calls = int(sys.argv[sys.argv.index("--calls") + 1]) if "--calls" in sys.argv else 100
    before = Path(sys.argv[sys.argv.index("--before") + 1]) if "--before" in sys.argv else None
    sink = Sink()
    api_stage, api_model = per_span_us(20000)
    print(f"per span, API only (no SDK):     stage {api_stage:.2f} µs, model call + metrics {api_model:.2f} µs")
    provider = install_sdk(sink.url)
    sdk_stage, sdk_model = per_span_us(5000)
    provider.force_flush()
    print(f"per span, SDK + OTLP exporter:   stage {sdk_stage:.2f} µs, model call + metrics {sdk_model:.2f} µs")
    spans_api = api_stage * (SPANS_PER_CALL - 2) + api_model * 2
    spans_sdk = sdk_stage * (SPANS_PER_CALL - 2) + sdk_model * 2
    with ProviderSimulator() as sim:
        timings = await per_call_ms(sim, sink, calls, before)
    medians = {name: statistics.median(values) for name, values in timings.items()}
    base = medians["direct litellm pair"]
    print(f"\nper delegate call over stdio, {calls} calls each, median:")
    for name, value in medians.items():
        print(f"  {name:22} {value:6.1f} ms  ({value / base:.2f}× the direct pair)")
    print(
        f"\nspans of one call ({SPANS_PER_CALL}): {spans_api / 1000:.3f} ms with the API alone "
        f"({spans_api / 10 / medians['no exporter']:.2f}% of the call), {spans_sdk / 1000:.3f} ms with the SDK"
    )
    from opentelemetry import metrics

    provider.shutdown()
    metrics.get_meter_provider().shutdown()  # type: ignore[attr-defined]  # the SDK's, installed above
    print(f"OTLP requests received: {sink.requests}")
    sink.server.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

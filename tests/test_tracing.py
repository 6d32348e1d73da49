"""Traces and metrics with a real OpenTelemetry SDK: the span tree under the SDK's tools/call span, the gen_ai.*
and delegate.* attributes, the redaction of task, answer and keys, the GenAI metrics, and the OTLP exporter of
the `otel` extra sending a real call's spans over HTTP."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

otel_sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="the otel extra: pip install -e '.[otel]'")

from opentelemetry import metrics, trace  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from server import otel  # noqa: E402
from server.app import build_server  # noqa: E402
from server.delegation import Delegator  # noqa: E402
from tests.conftest import route_to  # noqa: E402
from tests.simulator import ProviderSimulator  # noqa: E402
from tests.test_console_script import HANDSHAKE, script, server_env, spawn  # noqa: E402

pytestmark = pytest.mark.anyio
TASK = "Write a function that parses TASK-MARKER-7731 dates"
CONTEXT = "CONTEXT-MARKER-4410 is the module name"
ANSWER = "def parse(ANSWER-MARKER-9902): ..."
KEY = "sk-proj-TRACEKEYTRACEKEY1234"
PATIENT = {"router_timeout_s": 60.0}  # a loaded 2-core machine must not turn the router's choice into the default


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Gate(SimpleSpanProcessor):
    """Hands spans on only while a test of this module is running: the provider stays for the whole process."""

    active = False

    def on_end(self, span: ReadableSpan) -> None:
        if self.active:
            super().on_end(span)


class Telemetry:
    """The process's one TracerProvider and MeterProvider (OpenTelemetry allows setting them once per process, and
    pytest-xdist may run this module's tests in several workers, each its own process)."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.gate = Gate(self.spans)
        provider = TracerProvider()
        provider.add_span_processor(self.gate)
        self.reader = InMemoryMetricReader()
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[self.reader]))

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """Every data point of one instrument so far: its attributes and the point."""
        data = self.reader.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found += [(dict(p.attributes or {}), p) for p in metric.data.data_points]
        return found


@cache
def installed() -> Telemetry:
    return Telemetry()


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    found = installed()
    found.spans.clear()
    found.gate.active = True
    yield found
    found.gate.active = False
    found.spans.clear()


@pytest.fixture
def spans(telemetry: Telemetry) -> Callable[[], list[ReadableSpan]]:
    return lambda: list(telemetry.spans.get_finished_spans())


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def descendants(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    below = children(spans, parent)
    return below + [d for child in below for d in descendants(spans, child)]


def tree(spans: list[ReadableSpan], root: ReadableSpan, depth: int = 0) -> list[str]:
    """The span tree as indented names, children in start order (printed in docs/observability.md)."""
    lines = ["  " * depth + root.name]
    for child in sorted(children(spans, root), key=lambda s: s.start_time or 0):
        lines += tree(spans, child, depth + 1)
    return lines


async def delegate_with_a_fallback(delegator: Delegator, sim: ProviderSimulator) -> dict[str, Any]:
    sim.enqueue("sim-router", route_to("coder", 0.91, "it asks for code"))
    sim.enqueue("sim-coder", status=503, error_text=f"upstream {KEY} overloaded")
    sim.enqueue("sim-backup", ANSWER)
    async with Client(build_server(delegator)) as session:
        result = await session.call_tool("delegate", {"task": TASK, "context": CONTEXT})
    assert not result.is_error, result.content[0].text
    return result.structured_content


async def test_a_delegate_call_with_a_fallback_is_one_span_tree_under_tools_call(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, spans: Callable[[], list[ReadableSpan]]
) -> None:
    data = await delegate_with_a_fallback(make_delegator(**PATIENT), sim)
    finished = spans()
    (call,) = [s for s in finished if s.name == "tools/call delegate" and s.kind == SpanKind.SERVER]
    below = descendants(finished, call)
    print("\n".join(tree(finished, call)))
    assert {s.context.trace_id for s in below} == {call.context.trace_id}
    attrs = call.attributes or {}
    assert attrs["delegate.specialist"] == "coder" and attrs["delegate.decided_by"] == "router"
    assert attrs["delegate.confidence"] == 0.91 and attrs["delegate.model"] == "openai/sim-backup"
    assert attrs["delegate.fallback"] is True and "openai/sim-coder" in str(attrs["delegate.fallback_reason"])
    assert attrs["delegate.call_id"] == data["call_id"] and attrs["delegate.attempts"] == 2

    (route,) = [s for s in children(finished, call) if s.name == "delegate.route"]
    assert (route.attributes or {})["delegate.decided_by"] == "router"
    (router,) = children(finished, route)
    assert router.name == "chat openai/sim-router" and router.kind == SpanKind.CLIENT
    assert (router.attributes or {})["delegate.role"] == "router"

    failed, answered = (next(s for s in below if s.name == f"chat openai/{m}") for m in ("sim-coder", "sim-backup"))
    assert failed.status.status_code == StatusCode.ERROR and (failed.attributes or {})["error.type"] == "overloaded"
    gen_ai = answered.attributes or {}
    assert gen_ai["gen_ai.operation.name"] == "chat" and gen_ai["gen_ai.provider.name"] == "openai"
    assert gen_ai["gen_ai.request.model"] == gen_ai["gen_ai.response.model"] == "openai/sim-backup"
    assert gen_ai["gen_ai.usage.input_tokens"] == data["usage"]["specialist"]["input_tokens"] > 0
    assert gen_ai["gen_ai.usage.output_tokens"] == data["usage"]["specialist"]["output_tokens"] > 0
    assert answered.status.status_code != StatusCode.ERROR
    writes = {(s.attributes or {}).get("delegate.store.write") for s in below if s.name == "delegate.store"}
    assert {"usage.record", "thread.append"} <= writes


async def test_no_task_context_answer_or_key_in_any_span_unless_log_tasks_allows_the_task(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, spans: Callable[[], list[ReadableSpan]]
) -> None:
    def everything(finished: list[ReadableSpan]) -> str:
        parts = []
        for span in finished:
            parts += [span.name, str(span.status.description), *map(str, (span.attributes or {}).values())]
            parts += [f"{e.name} {dict(e.attributes or {})}" for e in span.events]
        return "\n".join(parts)

    await delegate_with_a_fallback(make_delegator(**PATIENT), sim)
    seen = everything(spans())
    for secret in ("TASK-MARKER", "CONTEXT-MARKER", "ANSWER-MARKER", KEY, "it asks for code"):
        assert secret not in seen
    assert "delegate.fallback_reason" in {k for s in spans() for k in (s.attributes or {})}

    await delegate_with_a_fallback(make_delegator(log_tasks=True, **PATIENT), sim)
    (call,) = [s for s in spans() if s.name == "tools/call delegate" and "delegate.task" in (s.attributes or {})]
    assert (call.attributes or {})["delegate.task"] == TASK
    for secret in ("CONTEXT-MARKER", "ANSWER-MARKER", KEY):
        assert secret not in everything(spans())


async def test_files_read_are_a_span_with_counts_and_no_paths(
    make_delegator: Callable[..., Delegator],
    sim: ProviderSimulator,
    spans: Callable[[], list[ReadableSpan]],
    tmp_path: Path,
) -> None:
    (tmp_path / "notes-secret-name.txt").write_text("twelve chars")
    sim.enqueue("sim-writer", "ok")
    delegator = make_delegator(file_roots=str(tmp_path))
    async with Client(build_server(delegator)) as session:
        result = await session.call_tool("ask_writer", {"task": "Sum up", "files": [str(tmp_path / "*.txt")]})
    assert not result.is_error
    (files,) = [s for s in spans() if s.name == "delegate.files"]
    attrs = dict(files.attributes or {})
    assert attrs["delegate.files.requested"] == 1 and attrs["delegate.files.read"] == 1
    assert attrs["delegate.files.chars"] >= len("twelve chars")
    assert "notes-secret-name" not in str(dict(files.attributes or {}))


async def test_the_gen_ai_metrics_and_the_calls_fallbacks_and_spend_counters(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, telemetry: Telemetry
) -> None:
    def total(name: str, **match: Any) -> float:
        points = [p for attrs, p in telemetry.points(name) if match.items() <= attrs.items()]
        return sum(getattr(p, "value", None) or getattr(p, "sum", 0) for p in points)

    def count(name: str, **match: Any) -> int:
        return sum(p.count for attrs, p in telemetry.points(name) if match.items() <= attrs.items())

    before = {
        "calls": total("delegate.calls", **{"delegate.decided_by": "router", "delegate.tool": "delegate"}),
        "fallbacks": total("delegate.fallbacks", **{"delegate.model": "openai/sim-backup"}),
        "failed": count("gen_ai.client.operation.duration", **{"error.type": "overloaded"}),
        "output": total("gen_ai.client.token.usage", **{"gen_ai.token.type": "output"}),
    }
    data = await delegate_with_a_fallback(make_delegator(**PATIENT), sim)
    assert (
        total("delegate.calls", **{"delegate.decided_by": "router", "delegate.tool": "delegate"}) == before["calls"] + 1
    )
    assert total("delegate.fallbacks", **{"delegate.model": "openai/sim-backup"}) == before["fallbacks"] + 1
    assert count("gen_ai.client.operation.duration", **{"error.type": "overloaded"}) == before["failed"] + 1
    routed_and_answered = data["usage"]["router"]["output_tokens"] + data["usage"]["specialist"]["output_tokens"]
    assert (
        total("gen_ai.client.token.usage", **{"gen_ai.token.type": "output"}) == before["output"] + routed_and_answered
    )
    units = {
        m.name: m.unit
        for r in telemetry.reader.get_metrics_data().resource_metrics
        for s in r.scope_metrics
        for m in s.metrics
    }
    assert units["gen_ai.client.token.usage"] == "{token}" and units["gen_ai.client.operation.duration"] == "s"


def test_exporters_follow_the_standard_variables() -> None:
    assert otel.exporter_names({}, "TRACES") == []
    assert otel.exporter_names({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, "TRACES") == ["otlp"]
    assert otel.exporter_names({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x/v1/traces"}, "METRICS") == []
    assert otel.exporter_names({"OTEL_TRACES_EXPORTER": "console,otlp"}, "TRACES") == ["console", "otlp"]
    assert otel.exporter_names({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "h"}, "TRACES") == []
    assert otel.exporter_names({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, "TRACES") == []


class OtlpReceiver:
    """An OTLP/HTTP endpoint on 127.0.0.1 that decodes what the exporter sends (protobuf, as the spec defines)."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self.spans: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        self.metric_names: set[str] = set()
        received = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/v1/traces":
                    request = ExportTraceServiceRequest.FromString(body)
                    for resource_spans in request.resource_spans:
                        resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                        for scope in resource_spans.scope_spans:
                            for span in scope.spans:
                                attrs = {a.key: a.value for a in span.attributes}
                                received.spans.append((span.name, attrs, resource))
                elif self.path == "/v1/metrics":
                    request = ExportMetricsServiceRequest.FromString(body)
                    for resource_metrics in request.resource_metrics:
                        for scope in resource_metrics.scope_metrics:
                            received.metric_names |= {m.name for m in scope.metrics}
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.mark.subprocess
async def test_the_served_console_script_exports_spans_and_metrics_over_otlp_http(
    sim: ProviderSimulator, specialists_dir: Path
) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http", reason="the otel extra: pip install -e '.[otel]'")
    receiver = OtlpReceiver()
    sim.enqueue("sim-router", route_to("coder", 0.88, "code task"))
    sim.enqueue("sim-coder", "fn main() {}")
    env = server_env(
        sim, specialists_dir, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, OTEL_METRIC_EXPORT_INTERVAL="60000"
    )
    try:
        async with Client(StdioServerParameters(command=script(), env=env), mode="legacy") as session:
            result = await session.call_tool("delegate", {"task": "Write a Rust hello world"})
        assert not result.is_error
    finally:
        receiver.server.shutdown()
    names = {name for name, _, _ in receiver.spans}
    assert {"tools/call delegate", "delegate.route", "chat openai/sim-router", "chat openai/sim-coder"} <= names
    assert {resource.get("service.name") for _, _, resource in receiver.spans} == {"delegate-mcp"}
    (call,) = [attrs for name, attrs, _ in receiver.spans if name == "tools/call delegate"]
    assert call["delegate.specialist"].string_value == "coder"
    assert {"gen_ai.client.token.usage", "gen_ai.client.operation.duration", "delegate.calls"} <= receiver.metric_names


def test_an_exporter_asked_for_without_the_extra_is_a_warning_naming_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.metrics", None)  # as if the otel extra were not installed
    stop = otel.install({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    stop()
    assert "pip install 'delegate-mcp[otel]'" in caplog.text and "No span or metric is exported" in caplog.text
    assert otel.install({}) is not None and not otel.exporter_names({}, "TRACES")


@pytest.mark.subprocess
def test_the_console_exporter_writes_spans_to_stderr_and_stdout_stays_json_rpc(
    sim: ProviderSimulator, specialists_dir: Path
) -> None:
    sim.enqueue("sim-router", route_to("coder", 0.88, "code task"))
    sim.enqueue("sim-coder", "fn main() {}")
    env = server_env(sim, specialists_dir, OTEL_TRACES_EXPORTER="console", OTEL_METRICS_EXPORTER="none")
    env["DELEGATE_ROUTER_TIMEOUT_S"] = "60"
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "delegate", "arguments": {"task": "x"}},
    }
    lines = [json.dumps(m) for m in [*HANDSHAKE, call]]
    process = spawn(env)
    assert process.stdin is not None and process.stdout is not None
    for line in lines:
        process.stdin.write(line + "\n")
        process.stdin.flush()
    answers = [json.loads(process.stdout.readline()) for _ in range(2)]  # initialize, then the call
    process.stdin.close()
    stderr = process.stderr.read() if process.stderr else ""
    process.wait(timeout=60)
    assert answers[1]["result"]["structuredContent"]["specialist"] == "coder"
    assert '"name": "tools/call delegate"' in stderr and '"name": "chat openai/sim-coder"' in stderr


async def test_a_cascade_verification_is_a_span_whose_failed_verdict_escalates(
    sim: ProviderSimulator, tmp_path: Path, spans: Callable[[], list[ReadableSpan]]
) -> None:
    from tests.test_cascade import CHEAP, PREMIUM, VERIFIER, build, question, script

    script(sim, "999 (the draft)")
    result = await build(sim, tmp_path).ask("mathematician", question(7))
    assert result.model == f"openai/{PREMIUM}"
    finished = spans()
    (verify,) = [s for s in finished if s.name == "delegate.verify"]
    attrs = dict(verify.attributes or {})
    assert attrs["delegate.model"] == f"openai/{CHEAP}" and attrs["delegate.verdict"] == "fail"
    assert attrs["delegate.passed"] is False and "wrong sum" not in str(attrs), "the verifier's reason stays out"
    assert [s.name for s in children(finished, verify)] == [f"chat openai/{VERIFIER}"]
    assert f"chat openai/{PREMIUM}" in {s.name for s in finished}

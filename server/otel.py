"""Exporting spans and metrics when asked: the `otel` extra installed and the standard OTEL_* variables set.

Without both, nothing here runs and the OpenTelemetry API stays a no-op (server/tracing.py). The exporters read
their own OTEL_EXPORTER_OTLP_* variables (endpoint, headers, timeout, protocol); the console exporter writes to
stderr, because stdout is the MCP stream.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any

logger = logging.getLogger(__name__)

EXTRA_HINT = "pip install 'delegate-mcp[otel]'"
_ENDPOINTS = {
    "TRACES": ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
    "METRICS": ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
}


def exporter_names(environ: Mapping[str, str], signal: str) -> list[str]:
    """The exporters asked for one signal (TRACES or METRICS): OTEL_<signal>_EXPORTER, else otlp when an OTLP
    endpoint is set, else none. OTEL_SDK_DISABLED=true turns all off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = environ.get(f"OTEL_{signal}_EXPORTER")
    if named is None:
        return ["otlp"] if any(environ.get(name) for name in _ENDPOINTS[signal]) else []
    return [n for n in (part.strip().lower() for part in named.split(",")) if n and n != "none"]


def _resource(environ: Mapping[str, str]) -> Any:
    from opentelemetry.sdk.resources import Resource

    named = "OTEL_SERVICE_NAME" in environ or "service.name" in environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    return Resource.create({} if named else {"service.name": "delegate-mcp"})


def _span_exporter(name: str, environ: Mapping[str, str]) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(out=sys.stderr)
    if name == "otlp" and environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf").startswith("grpc"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    elif name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[assignment]
    else:
        raise ValueError(name)
    return OTLPSpanExporter()


def _metric_exporter(name: str, environ: Mapping[str, str]) -> Any:
    if name == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return ConsoleMetricExporter(out=sys.stderr)
    if name == "otlp" and environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf").startswith("grpc"):
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    elif name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[assignment]
            OTLPMetricExporter,
        )
    else:
        raise ValueError(name)
    return OTLPMetricExporter()


def install(environ: Mapping[str, str]) -> Callable[[], None]:
    """Install a TracerProvider and a MeterProvider when OTEL_* asks for an exporter; the function that flushes and
    stops them (a no-op when nothing was installed). A missing extra or an unknown exporter is logged, not fatal."""
    span_names, metric_names = exporter_names(environ, "TRACES"), exporter_names(environ, "METRICS")
    if not span_names and not metric_names:
        return lambda: None
    try:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = _resource(environ)
        tracer_provider = TracerProvider(resource=resource)
        for name in span_names:
            tracer_provider.add_span_processor(BatchSpanProcessor(_span_exporter(name, environ)))
        readers = [PeriodicExportingMetricReader(_metric_exporter(name, environ)) for name in metric_names]
        meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    except ImportError as exc:
        logger.warning(
            "OTEL_* asks for an exporter, but %s is not installed: %s. No span or metric is exported.",
            exc.name or "the OpenTelemetry SDK",
            EXTRA_HINT if "grpc" not in str(exc.name) else "pip install opentelemetry-exporter-otlp-proto-grpc",
        )
        return lambda: None
    except ValueError as exc:
        logger.warning(
            "unknown OpenTelemetry exporter %r (OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER): use "
            "otlp, console or none. No span or metric is exported.",
            str(exc),
        )
        return lambda: None
    if span_names:
        trace.set_tracer_provider(tracer_provider)
    if metric_names:
        metrics.set_meter_provider(meter_provider)
    logger.info("OpenTelemetry: spans to %s, metrics to %s", span_names or "nowhere", metric_names or "nowhere")

    def shutdown() -> None:
        tracer_provider.shutdown()  # flushes the spans still batched
        meter_provider.shutdown()

    return shutdown

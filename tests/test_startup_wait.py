"""The start-up wait is reported apart from the call's latency: in the result, the summary line, the decision log
and `delegate-mcp stats`, so a slow first call does not read as a slow provider."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from server.commands.stats import format_stats, read_log, summarise_log
from server.delegation import Delegator
from server.results import DelegateResult, Routing, Usage, summary_line
from tests.conftest import route_to
from tests.simulator import ProviderSimulator


async def test_only_the_call_that_waited_for_start_up_reports_the_wait(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, tmp_path: Path
) -> None:
    log = tmp_path / "decisions.jsonl"
    delegator = make_delegator(classifier=True, decision_log=log)  # a one-shot command: calls wait for training
    first = await delegator.ask("coder", "hello")
    second = await delegator.ask("coder", "hello again")
    assert first.startup_wait_ms is not None and 0 < first.startup_wait_ms <= first.latency_ms
    assert second.startup_wait_ms is None, "the classifier was trained and the corrections read by the first call"
    lines = read_log(log)
    assert [line["startup_wait_ms"] for line in lines] == [first.startup_wait_ms, None]
    assert lines[0]["provider_ms"] == round(sum(a.latency_ms for a in first.attempts), 1)


async def test_a_delegate_call_reports_the_router_and_specialist_requests_as_provider_time(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, tmp_path: Path
) -> None:
    log = tmp_path / "decisions.jsonl"
    sim.enqueue("sim-router", route_to("coder"))
    result = await make_delegator(decision_log=log).delegate("Fix the flaky test")
    assert result.routing.decided_by == "router" and result.routing.router_model
    provider = result.routing.latency_ms + sum(a.latency_ms for a in result.attempts)
    assert read_log(log)[0]["provider_ms"] == round(provider, 1)


def _result(latency_ms: float, startup_wait_ms: float | None) -> DelegateResult:
    routing = Routing(decided_by="direct", reason="called directly as ask_coder")
    return DelegateResult(
        output="x",
        specialist="coder",
        model="openai/m",
        routing=routing,
        attempts=[],
        usage=Usage(),
        latency_ms=latency_ms,
        startup_wait_ms=startup_wait_ms,
    )


def test_the_summary_line_says_how_much_of_the_time_was_start_up() -> None:
    assert "· 9.75 s (6.68 s of it waiting for the server to start up)" in summary_line(_result(9750.0, 6675.2))
    assert "start up" not in summary_line(_result(737.0, None))
    assert "start up" not in summary_line(_result(737.0, 0.4)), "a wait that rounds to 0.00 s is not shown"


def test_stats_show_provider_time_and_the_start_up_wait_apart() -> None:
    lines = [
        {"ok": True, "specialist": "coder", "latency_ms": 7412.0, "provider_ms": 737.0, "startup_wait_ms": 6675.2},
        {"ok": True, "specialist": "coder", "latency_ms": 760.0, "provider_ms": 741.0, "startup_wait_ms": None},
        {"ok": True, "specialist": "coder", "latency_ms": 750.0, "provider_ms": 733.0, "startup_wait_ms": None},
    ]
    summary = summarise_log(lines)
    assert summary["latency_ms"]["p50"] == 760.0
    assert summary["provider_ms"] == {"p50": 737.0, "p95": 741.0}
    assert summary["startup_wait_ms"] == {"calls": 1, "p50": 6675.2, "max": 6675.2, "total": 6675.2}
    text = format_stats(summary)
    assert "Latency: p50 760 ms, p95 7412 ms (whole calls, as clients saw them)" in text
    assert "provider requests: p50 737 ms, p95 741 ms" in text
    assert "start-up wait: 1 call(s) waited for the server to start up, p50 6675 ms, max 6675 ms" in text


def test_stats_of_a_log_written_before_these_fields_existed_read_as_before() -> None:
    summary = summarise_log([{"ok": True, "specialist": "coder", "latency_ms": 550.0}])
    assert summary["provider_ms"] == {"p50": None, "p95": None} and summary["startup_wait_ms"]["calls"] == 0
    last = format_stats(summary).splitlines()[-1]
    assert last == "Latency: p50 550 ms, p95 550 ms (whole calls, as clients saw them)"

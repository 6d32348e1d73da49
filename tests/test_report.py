"""`delegate-mcp report`: one HTML file from real calls, loaded in a real headless Chromium (Debian's package) that
must log no console message and make no network request for the page; and a clear error without the extra."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from server.catalog import load_catalog
from server.commands import evals
from server.commands.report import over_time
from server.delegation import Delegator
from server.store.shadow_book import ShadowBook, candidate_key
from tests.conftest import route_to
from tests.simulator import ProviderSimulator
from tests.test_console_script import script, server_env

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium): the page is not loaded"
)
# The browser's own traffic (updates, accounts, time) never leaves the machine: no name resolves but loopback.
QUIET = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--no-first-run",
    "--no-default-browser-check",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--enable-logging=stderr",
    "--v=0",
]


def load_in_chromium(page: Path, folder: Path, height: int = 900) -> tuple[list[str], list[str], Path]:
    """Load a file in headless Chromium: the console messages it logged, the URLs the page itself requested
    (the browser's own background requests are left out), and a screenshot."""
    assert CHROMIUM is not None
    net_log, shot = folder / "net.json", folder / f"{page.stem}.png"
    completed = subprocess.run(
        [
            CHROMIUM,
            *QUIET,
            f"--user-data-dir={folder / 'profile'}",
            f"--log-net-log={net_log}",
            f"--screenshot={shot}",
            f"--window-size=1280,{height}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    console = [line for line in completed.stderr.splitlines() if ":CONSOLE" in line]
    events = json.loads(net_log.read_text())
    start = events["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    starts = [e.get("params", {}) for e in events["events"] if e["type"] == start]
    requested = [p["url"] for p in starts if "url" in p and p.get("initiator") != "not an origin"]
    return console, [url for url in requested if not url.startswith(("file:", "data:"))], shot


@needs_chromium
def test_the_browser_check_sees_a_console_message_and_a_request(tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text('<html><body><script>console.error("boom")</script><img src="http://127.0.0.1:9/x.png"></body>')
    console, requested, _ = load_in_chromium(page, tmp_path)
    assert any('"boom"' in line for line in console)
    assert requested == ["http://127.0.0.1:9/x.png"]


def eval_summary(folder: Path) -> dict[str, Any]:
    """A routing eval's JSON as `eval --json` prints it, from evals.summarise over a few results."""
    catalog = load_catalog({}, folder)
    results = [
        evals.CaseResult(evals.EvalCase(i, f"task {i} <b>bold</b>", exp), got, "router", 300.0, 0.0001, None, None, c)
        for i, (exp, got, c) in enumerate(
            [("coder", "coder", 0.9), ("coder", "writer", 0.6), ("writer", "writer", 0.8), ("generalist", "coder", 0.7)]
        )
    ]
    guesses = [(0.95, True), (0.85, True), (0.75, False), (0.65, True), (0.55, False)]
    return evals.summarise(results, catalog, {}, 400, [150.0], 0.6, guesses)


COMPARE = {
    "tasks": 12,
    "spent_usd": 0.0123,
    "specialists": {
        "generalist": {
            "models": [
                {
                    "model": "openai/gpt-5-mini",
                    "pass_rate": 1.0,
                    "pass_interval": [0.76, 1.0],
                    "cost_per_1k_tasks_usd": 0.08,
                },
                {
                    "model": "openai/gpt-5-nano",
                    "pass_rate": 0.73,
                    "pass_interval": [0.43, 0.9],
                    "cost_per_1k_tasks_usd": 0.016,
                },
                {
                    "model": "local/x",
                    "pass_rate": None,
                    "judge": {"wins": 2, "ties": 1, "losses": 1, "judged": 4, "win_or_tie_interval": [0.3, 0.95]},
                    "cost_per_1k_tasks_usd": None,
                },
            ],
            "recommendation": {"model": "openai/gpt-5-mini", "why": "it scored best"},
        }
    },
}


@pytest.mark.subprocess
@needs_chromium
def test_the_report_of_real_calls_opens_offline_with_no_console_message_and_no_request(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, specialists_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib", reason="the report extra: pip install -e '.[report]'")
    log = tmp_path / "decisions.jsonl"
    delegator = make_delegator(decision_log=log, router_timeout_s=60.0)
    for i, name in enumerate(["coder", "writer", "coder"]):
        sim.enqueue("sim-router", route_to(name, 0.8 + i / 20))
        sim.enqueue(f"sim-{name}", f"answer {i}")
        import anyio

        anyio.run(delegator.delegate, f"task {i}")
    book = ShadowBook(delegator.store)
    for outcome in ("win", "tie", "tie", "loss"):  # as shadow runs keep them (server/quality/shadow.py)
        verdict = {"outcome": outcome, "live_cost_usd": 0.002, "candidate_cost_usd": 0.0004, "judge_cost_usd": 0.0001}
        book.keep(candidate_key("coder", "openai/sim-cheap"), verdict, "a task", include_task=False)
    delegator.close()
    (tmp_path / "eval.json").write_text(json.dumps(eval_summary(specialists_dir)))
    (tmp_path / "compare.json").write_text(json.dumps(COMPARE))
    env = server_env(
        sim, specialists_dir, DELEGATE_LOG=str(log), DELEGATE_DATA_DIR=str(specialists_dir.parent / "data")
    )
    out = tmp_path / "report.html"
    args = ["report", "--eval", str(tmp_path / "eval.json"), "--compare", str(tmp_path / "compare.json")]
    done = subprocess.run([script(), *args, "--out", str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and f"wrote {out}" in done.stderr
    page = out.read_text()
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org", "") and "<link" not in page
    assert page.count("<svg") == 6, "confusion, reliability, compare, shadow, spend, calls by path"
    assert "coder → openai/sim-cheap" in page and "matched or beat the live model on 75%" in page
    assert "task 1 &lt;b&gt;bold&lt;/b&gt;" in page, "task text is escaped"
    console, requested, shot = load_in_chromium(out, tmp_path, height=3600)
    assert console == [] and requested == []
    assert shot.stat().st_size > 50_000, "the screenshot shows charts, not an empty page"


def test_without_matplotlib_the_report_names_the_extra_and_the_text_commands_still_work(
    sim: ProviderSimulator, tmp_path: Path
) -> None:
    blocked = (
        "import sys; sys.modules['matplotlib'] = None; from server.__main__ import main; sys.exit(main(sys.argv[1:]))"
    )
    env = {**server_env(sim, tmp_path), "DELEGATE_DATA_DIR": str(tmp_path / "data")}
    env.pop("DELEGATE_SPECIALISTS_DIR")
    report = subprocess.run(
        [sys.executable, "-c", blocked, "report", "--out", str(tmp_path / "r.html")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert report.returncode == 2 and "pip install 'delegate-mcp[report]'" in report.stderr
    assert not (tmp_path / "r.html").exists()
    stats = subprocess.run(
        [sys.executable, "-c", blocked, "specialists"], env=env, capture_output=True, text=True, timeout=120
    )
    assert stats.returncode == 0, stats.stderr


def test_spend_over_time_falls_back_to_hours_or_minutes_for_a_young_log() -> None:
    lines = [
        {
            "time": "2026-12-01T10:00:01.000+00:00",
            "ok": True,
            "decided_by": "router",
            "cost_usd": 0.01,
            "premium_cost_usd": 0.05,
        },
        {
            "time": "2026-12-01T11:30:00.000+00:00",
            "ok": True,
            "decided_by": "classifier",
            "cost_usd": None,
            "premium_cost_usd": 0.05,
        },
        {"time": "2026-12-01T11:31:00.000+00:00", "ok": False},
    ]
    found = over_time(lines)
    assert found["unit"] == "hour" and found["buckets"] == ["2026-12-01 10", "2026-12-01 11"]
    assert found["spent"] == [0.01, 0.0] and found["premium"] == [0.05, 0.0], "an unpriced call saves nothing"
    assert found["paths"] == {"classifier": [0, 1], "error": [0, 1], "router": [1, 0]}
    assert over_time(lines[1:])["unit"] == "minute"
    assert over_time([{**lines[0], "time": "2026-11-30T09:00:00"}, lines[0]])["unit"] == "day"

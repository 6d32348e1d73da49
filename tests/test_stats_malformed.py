"""`delegate-mcp stats` reads a damaged decision log: bad lines are skipped and counted, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.test_console_script import script

GOOD_LINE = {
    "ok": True,
    "tool": "delegate",
    "specialist": "coder",
    "decided_by": "router",
    "cost_usd": 0.002,
    "premium_cost_usd": 0.01,
    "latency_ms": 1200.0,
    "models_tried": ["openai/a"],
}
BAD_LINES = [
    "not json at all",
    '["a", "list"]',
    json.dumps({**GOOD_LINE, "cost_usd": "0.5 dollars"}),
    json.dumps({**GOOD_LINE, "latency_ms": "slow"}),
    json.dumps({**GOOD_LINE, "specialist": ["coder"]}),
    json.dumps({"tool": "delegate"}),  # no ok
    '{"ok": true, "specialist": "co',  # cut in the middle, then more lines followed
]


@pytest.mark.subprocess
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_stats_skips_malformed_lines_with_a_count(tmp_path: Path, as_json: bool) -> None:
    log = tmp_path / "decisions.jsonl"
    lines = [json.dumps(GOOD_LINE), *BAD_LINES, json.dumps({**GOOD_LINE, "latency_ms": None}), json.dumps(GOOD_LINE)]
    log.write_bytes(("\n".join(lines) + "\n").encode() + b"\xff\xfe broken bytes\n")
    completed = subprocess.run(
        [script(), "stats", str(log), *(["--json"] if as_json else [])],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr
    if as_json:
        summary = json.loads(completed.stdout)
        assert (summary["calls"], summary["skipped_lines"]) == (3, len(BAD_LINES) + 1)
        assert summary["per_specialist"]["coder"]["calls"] == 3
    else:
        assert "Calls: 3" in completed.stdout and f"Skipped {len(BAD_LINES) + 1} malformed line(s)" in completed.stdout

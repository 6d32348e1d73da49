"""Run `delegate-mcp eval` on the shipped set in three modes, with the router model on the provider simulator.

The simulated router (priced as openai/gpt-4.1-mini, 300 ms per call) answers from the eval labels and is
deliberately wrong on every 12th task, so its accuracy is scripted; the classifier's figures are real.
Run: python bench/eval_report.py [--json]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.simulator import ProviderSimulator  # noqa: E402

EVAL = ROOT / "specialists" / "routing-eval.jsonl"


def scripted_router(labels: dict[str, str]) -> Any:
    """Answer the labelled specialist, except on every 12th task of the file (answers generalist there)."""
    wrong = {task for i, task in enumerate(labels) if i % 12 == 11}

    def respond(body: dict[str, Any]) -> str:
        found = re.search(r"<task chars=\d+>\n(.*?)\n</task>", body["messages"][-1]["content"], re.DOTALL)
        task = found.group(1) if found else ""
        choice = "generalist" if task in wrong else labels.get(task, "generalist")
        return json.dumps({"specialist": choice, "reason": "scripted", "confidence": 0.8})

    return respond


def main() -> None:
    labels = {json.loads(line)["task"]: json.loads(line)["expected"] for line in EVAL.read_text().splitlines()}
    script = shutil.which("delegate-mcp", path=str(Path(sys.executable).parent)) or "delegate-mcp"
    extra = ["--json"] if "--json" in sys.argv else []
    with ProviderSimulator() as sim:
        sim.set_default(
            "gpt-4.1-mini",
            responder=scripted_router(labels),
            delay=0.3,
            usage={"prompt_tokens": 420, "completion_tokens": 25},
        )
        env = {
            **os.environ,
            "OPENAI_API_BASE": sim.base_url,
            "OPENAI_API_KEY": "sk-simulated-000000000000",
            # The simulator is a custom base URL, where list prices do not apply: each model carries its own, the
            # list price of the model it stands for (the first usable model of each built-in specialist).
            "ROUTER_MODEL": "openai/gpt-4.1-mini@0.40/1.60",
            "CODE_MODEL": "openai/gpt-5.2@1.75/14",
            "LONG_CONTEXT_MODEL": "openai/gpt-5.2@1.75/14",
            "GENERAL_MODEL": "openai/gpt-5-mini@0.25/2",
        }
        for name, mode in (
            ("classifier only (no router model)", "classifier"),
            ("router only (classifier off)", "router"),
            ("hybrid (default)", "hybrid"),
        ):
            completed = subprocess.run(
                [script, "eval", "--mode", mode, *extra], env=env, capture_output=True, text=True, check=True
            )
            print(f"### {name}: delegate-mcp eval --mode {mode}\n\n{completed.stdout}")


if __name__ == "__main__":
    main()

"""Make the example report of docs/observability.md: real commands, scripted models on the provider simulator.

1. `delegate-mcp eval --full --json` on the shipped set, hybrid routing: the classifier's figures are real, the
   router is bench/eval_report.py's scripted one (wrong on every 12th task), the specialists answer from the
   simulator at their list prices; the calls go to a decision log (DELEGATE_LOG) and the store's usage totals.
2. `delegate-mcp compare` on the shipped example tasks, as bench/compare_example.py runs it (--json).
3. `delegate-mcp report --eval … --compare …` over that log and store.
Run: python bench/report_example.py [--out docs/report-example.html]   (about 2 minutes)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.compare_example import CHAIN, EXAMPLE, answerer, judge  # noqa: E402
from bench.eval_report import EVAL, scripted_router  # noqa: E402
from tests.simulator import ProviderSimulator  # noqa: E402


def specialists_folder(folder: Path) -> Path:
    """The built-in specialists, the generalist's chain set to the three compared models."""
    mine = folder / "specialists"
    mine.mkdir()
    for source in resources.files("specialists").iterdir():
        if source.name.endswith(".md"):
            (mine / source.name).write_text(source.read_text())
    general = mine / "generalist.md"
    general.write_text(re.sub(r"model: .*\nmodel_env: GENERAL_MODEL\nfallbacks: \[.*\]", CHAIN, general.read_text()))
    return mine


def main() -> None:
    out = Path(sys.argv[sys.argv.index("--out") + 1]) if "--out" in sys.argv else Path("report-example.html")
    folder = Path(tempfile.mkdtemp(prefix="report-example-"))
    script = shutil.which("delegate-mcp", path=str(Path(sys.executable).parent)) or "delegate-mcp"
    labels = {json.loads(line)["task"]: json.loads(line)["expected"] for line in EVAL.read_text().splitlines()}
    with ProviderSimulator() as sim:
        usage = {"prompt_tokens": 420, "completion_tokens": 25}
        sim.set_default("gpt-4.1-mini", responder=scripted_router(labels), delay=0.3, usage=usage)
        answer = {"prompt_tokens": 900, "completion_tokens": 350}
        sim.set_default("gpt-5.2", "Here is the change, with a test.", delay=0.2, usage=answer)
        sim.set_default("gpt-5-mini", responder=answerer(None), delay=0.2, usage=answer)
        sim.set_default(
            "gpt-5-nano", responder=answerer(4), delay=0.2, usage={"prompt_tokens": 120, "completion_tokens": 25}
        )
        sim.set_default(
            "gpt-4.1-nano", responder=answerer(2), delay=0.2, usage={"prompt_tokens": 120, "completion_tokens": 25}
        )
        sim.set_default("gpt-4.1", responder=judge, delay=0.3, usage={"prompt_tokens": 300, "completion_tokens": 30})
        env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_API_BASE", "_BASE_URL"))}
        env.update(
            OPENAI_API_BASE=sim.base_url,
            OPENAI_API_KEY="sk-simulated-000000000000",
            ROUTER_MODEL="openai/gpt-4.1-mini@0.40/1.60",
            CODE_MODEL="openai/gpt-5.2@1.75/14",
            LONG_CONTEXT_MODEL="openai/gpt-5.2@1.75/14",
            DELEGATE_SPECIALISTS_DIR=str(specialists_folder(folder)),
            DELEGATE_DATA_DIR=str(folder / "data"),
            DELEGATE_LOG=str(folder / "decisions.jsonl"),
            # Other work on a shared 2-core machine must not turn slow starts into failures in the example.
            DELEGATE_DEADLINE_S="170",
            DELEGATE_FIRST_TOKEN_TIMEOUT_S="120",
            DELEGATE_ROUTER_TIMEOUT_S="60",
        )

        def run(*args: str) -> str:
            done = subprocess.run([script, *args], env=env, capture_output=True, text=True, check=False)
            if done.returncode:
                sys.exit(f"delegate-mcp {args[0]} failed ({done.returncode}): {done.stderr[-1500:]}")
            return done.stdout

        (folder / "eval.json").write_text(run("eval", str(EVAL), "--full", "--concurrency", "4", "--json"))
        compared = run("compare", str(EXAMPLE), "--specialist", "generalist", "--judge", "openai/gpt-4.1@2/8", "--json")
        (folder / "compare.json").write_text(compared)
        run("report", "--eval", str(folder / "eval.json"), "--compare", str(folder / "compare.json"), "--out", str(out))
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB); inputs in {folder}")


if __name__ == "__main__":
    main()

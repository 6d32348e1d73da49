"""Run `delegate-mcp compare` on the shipped example tasks with scripted models on the provider simulator.

The generalist's chain is set to three OpenAI ids served by the simulator (through OPENAI_API_BASE), each with its
list price given in the entry: gpt-5-mini answers every task right, gpt-5-nano is wrong on every 4th generalist
task, gpt-4.1-nano on every 2nd; a scripted judge (gpt-4.1) ties an answer that explains scattering with the
reference. The figures are the scripted models', not real ones: they show what the report and --apply look like.
Run: python bench/compare_example.py
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.simulator import ProviderSimulator  # noqa: E402

EXAMPLE = ROOT / "specialists" / "compare-example.jsonl"
RIGHT = {
    "capital of Australia": "Canberra",
    "Fahrenheit to Celsius": "37.8",
    "Ada Lovelace": '{"name": "Ada Lovelace", "year": 1843}',
    "sentiment": "negative",
    "primary colours": "red, green, blue",
    "leap year": "366",
    "good morning": "bonjour",
    "17 multiplied": "391",
    "sorted alphabetically": '["apple", "fig", "pear"]',
    "closest to the Sun": "Mercury",
    "fourth of July": "2026-07-04",
    "sky is blue": "Air molecules scatter sunlight, and short blue wavelengths scatter most (Rayleigh scattering). "
    "So blue light reaches us from the whole sky.",
}
CHAIN = (
    "model: openai/gpt-5-mini@0.25/2\nmodel_env: GENERAL_MODEL\n"
    "fallbacks: [openai/gpt-5-nano@0.05/0.4, openai/gpt-4.1-nano@0.1/0.4]"
)


def answerer(wrong_every: int | None) -> Any:
    """Right on every task, or wrong on every Nth one (counted in the file's order)."""
    order = [key for key in RIGHT]

    def respond(body: dict[str, Any]) -> str:
        task = body["messages"][-1]["content"]
        key = next((k for k in RIGHT if k in task), None)
        if key is None:
            return "I cannot help with that."
        wrong = wrong_every is not None and (order.index(key) + 1) % wrong_every == 0
        return "I am not sure." if wrong else RIGHT[key]

    return respond


def judge(body: dict[str, Any]) -> str:
    """Tie when both answers explain scattering; else the one that does is better."""
    user = body["messages"][-1]["content"]
    nonce = re.search(r"carry the token (\w+)", user)[1]
    quoted = dict(re.findall(rf"<<<(ANSWER [AB]) {nonce}>>>\n(.*?)\n<<<END \1 {nonce}>>>", user, re.DOTALL))
    a, b = ("scatter" in quoted[f"ANSWER {x}"].lower() for x in "AB")
    better = "tie" if a == b else "A" if a else "B"
    return json.dumps({"better": better, "reason": "both explain scattering" if a == b else "explains scattering"})


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="compare-example-"))
    mine = folder / "specialists"
    mine.mkdir()
    for source in resources.files("specialists").iterdir():
        if source.name.endswith(".md"):
            (mine / source.name).write_text(source.read_text())
    general = mine / "generalist.md"
    text = general.read_text()
    text = re.sub(r"model: .*\nmodel_env: GENERAL_MODEL\nfallbacks: \[.*\]", CHAIN, text)
    general.write_text(text)
    script = shutil.which("delegate-mcp", path=str(Path(sys.executable).parent)) or "delegate-mcp"
    with ProviderSimulator() as sim:
        usage = {"prompt_tokens": 120, "completion_tokens": 25}
        sim.set_default("gpt-5-mini", responder=answerer(None), delay=0.6, usage=usage)
        sim.set_default("gpt-5-nano", responder=answerer(4), delay=0.3, usage=usage)
        sim.set_default("gpt-4.1-nano", responder=answerer(2), delay=0.2, usage=usage)
        sim.set_default("gpt-4.1", responder=judge, delay=0.4, usage={"prompt_tokens": 300, "completion_tokens": 30})
        env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_API_BASE", "_BASE_URL"))}
        env.update(
            OPENAI_API_BASE=sim.base_url,
            OPENAI_API_KEY="sk-simulated-000000000000",
            DELEGATE_SPECIALISTS_DIR=str(mine),
            DELEGATE_DATA_DIR=str(folder / "data"),
        )
        argv = [script, "compare", str(EXAMPLE), "--specialist", "generalist", "--judge", "openai/gpt-4.1@2/8"]
        done = subprocess.run([*argv, "--apply", "--yes"], env=env, capture_output=True, text=True, check=False)
        print(
            f"$ delegate-mcp compare specialists/compare-example.jsonl --specialist generalist "
            f"--judge openai/gpt-4.1@2/8 --apply --yes\n{done.stderr}{done.stdout}(exit {done.returncode})"
        )
        again = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        print(f"\n$ (the same run again)\n{again.stderr.splitlines()[0]}")
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()

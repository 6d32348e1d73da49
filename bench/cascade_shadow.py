"""Verified escalation and shadow runs, measured on a labelled set with scripted models on the provider simulator.

The set: 100 tasks "What is N plus 100?", each answer a short explanation around the sum (about 400 characters).
The cheap model is scripted wrong on a known share, 30% (N ending in 0, 3 or 7); the premium model is always
right. Prices are given in the chain entries (USD per million tokens): cheap $0.05/$0.40, premium $1.25/$10, the
verifier $0.05/$0.40; token counts are the simulator's (a quarter of the characters of the real prompts that
delegate-mcp sends, verifier prompt included). Two verifiers: the call's checks (deterministic), and a scripted
judge model that is imperfect on purpose: it passes a third of the wrong drafts (N ending in 0) and rejects 5% of
the right ones (N = 5, 25, 45, 65, 85). With the `[local]` extra installed, the cascade runs once more with the
embedded model (SmolLM2-135M, real, not scripted) as its cheap step, on the first 20 tasks, verified by checks.
Then a shadow run: the premium model live, the cheap one shadowing every call, a scripted judge preferring the
right sum. Every figure is from scripted models (the embedded model's accuracy aside): they show the mechanism and
its costs, not any real model's quality. Run: python bench/cascade_shadow.py
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")

from server.calling import embedded  # noqa: E402
from server.catalog import load_catalog  # noqa: E402
from server.delegation import Delegator  # noqa: E402
from server.quality.shadow_report import format_shadow, shadow_summary  # noqa: E402
from server.settings import Settings  # noqa: E402
from tests.simulator import ProviderSimulator  # noqa: E402

TASKS = 100
EMBEDDED_TASKS = 20
CHEAP, PREMIUM, VERIFIER, JUDGE = "openai/cheap@0.05/0.4", "openai/premium@1.25/10", "openai/verifier@0.05/0.4", "j"
PAD = (
    " To add two whole numbers, line up their digits by place value and add each column from the right, carrying "
    "any ten to the next column. Here the hundreds digit of 100 adds one hundred to the first number, and the tens "
    "and units stay as they were, so the sum is the number above. No rounding was needed."
)


def number_in(body: dict[str, Any]) -> int:
    return int(re.search(r"What is (\d+) plus", json.dumps(body))[1])


def cheap(body: dict[str, Any]) -> str:
    n = number_in(body)
    return f"{n + 100 + (7 if n % 10 in (0, 3, 7) else 0)}.{PAD}"


def premium(body: dict[str, Any]) -> str:
    return f"{number_in(body) + 100}.{PAD}"


def imperfect_verifier(body: dict[str, Any]) -> str:
    """Passes right drafts (but rejects those for N = 5, 25, 45, 65, 85), and a third of the wrong ones."""
    user = body["messages"][-1]["content"]
    nonce = re.search(r"carry the token (\w+)", user)[1]
    draft = re.search(rf"<<<ANSWER {nonce}>>>\n(.*?)\n<<<END ANSWER {nonce}>>>", user, re.DOTALL)[1]
    n = number_in(body)
    right = draft.startswith(f"{n + 100}.")
    passed = (right and n % 20 != 5) or (not right and n % 10 == 0)
    return json.dumps({"verdict": "pass" if passed else "fail", "reason": "checked the sum"})


def fair_judge(body: dict[str, Any]) -> str:
    user = body["messages"][-1]["content"]
    nonce = re.search(r"carry the token (\w+)", user)[1]
    quoted = dict(re.findall(rf"<<<(ANSWER [AB]) {nonce}>>>\n(.*?)\n<<<END \1 {nonce}>>>", user, re.DOTALL))
    expected = f"{number_in(body) + 100}."
    a, b = quoted["ANSWER A"].startswith(expected), quoted["ANSWER B"].startswith(expected)
    return json.dumps({"better": "A" if a and not b else "B" if b and not a else "tie", "reason": "the sum"})


def chain_entry(model: str, base: str) -> str:
    return "{model: " + model + ", api_base: '" + base + "'}"


def specialist(folder: Path, name: str, models: list[str], base: str, extra: str = "", cap: int = 200) -> Path:
    """A one-file specialist folder; its models on the simulator (an embedded/ id needs no base)."""
    place = folder / name
    place.mkdir(parents=True, exist_ok=True)
    first = f"model: {models[0]}\n" + ("" if models[0].startswith("embedded/") else f"api_base: '{base}'\n")
    fallbacks = ", ".join(chain_entry(m, base) for m in models[1:])
    text = f"---\nname: arithmetic\ndescription: Sums.\n{first}fallbacks: [{fallbacks}]\nmax_output_tokens: {cap}\n"
    (place / "arithmetic.md").write_text(text + f"{extra}---\nYou add numbers. Reply with the number first.\n")
    return place


def first_number_is(n: int) -> str:
    """The scoring rule, also the checks given to the cascade: the answer's first number is the sum."""
    return rf"^\D*{n + 100}\b"


async def run_set(folder: Path, environ: dict[str, str], tasks: int, checks: bool = False) -> dict[str, Any]:
    settings = Settings.from_env(environ, specialists_dir=folder, retries=0, cooldown_s=0, classifier=False)
    delegator = Delegator(settings, load_catalog(environ, folder), environ)
    right = cost = verifications = verifier_cost = verifier_tokens = escalated = 0
    for n in range(1, tasks + 1):
        given = [{"regex": first_number_is(n)}] if checks else None
        result = await delegator.ask("arithmetic", f"What is {n} plus 100? Reply with the number.", checks=given)
        right += re.match(first_number_is(n), result.output) is not None
        cost += result.usage.total_cost_usd or 0.0
        escalated += bool(result.escalations)
        cascade = result.usage.cascade
        if cascade is not None and cascade.verifier.cost_usd:  # one verification: of the cheap draft
            verifications += 1
            verifier_cost += cascade.verifier.cost_usd
            verifier_tokens += cascade.verifier.input_tokens + cascade.verifier.output_tokens
    delegator.close()
    return {
        "tasks": tasks,
        "accuracy": right / tasks,
        "cost_usd": cost,
        "escalated": escalated,
        "verifications": verifications,
        "verifier_cost_usd": verifier_cost,
        "verifier_tokens": verifier_tokens,
    }


async def shadow_run(folder: Path, environ: dict[str, str], store: Path) -> dict[str, Any]:
    shadow = {"shadow": "arithmetic=openai/cheap@0.05/0.4@1", "shadow_judge": "openai/judge@0.05/0.4"}
    settings = Settings.from_env(
        environ, specialists_dir=folder, retries=0, cooldown_s=0, classifier=False, store=str(store), **shadow
    )
    delegator = Delegator(settings, load_catalog(environ, folder), environ)
    for n in range(1, TASKS + 1):
        await delegator.ask("arithmetic", f"What is {n} plus 100? Reply with the number.")
    assert delegator.shadow is not None
    await delegator.shadow.wait()
    summary = shadow_summary(delegator.store)
    delegator.close()
    return summary


def row(name: str, found: dict[str, Any], premium_cost: float) -> str:
    share = found["cost_usd"] / premium_cost if premium_cost else 0
    per_1k = found["cost_usd"] * 1000 / found["tasks"]
    return (
        f"| {name} | {found['tasks']} | {found['accuracy'] * 100:.0f}% | ${per_1k:.4f} "
        f"| {share * 100:.1f}% | {found['escalated']} |"
    )


async def main() -> None:
    with ProviderSimulator() as sim, tempfile.TemporaryDirectory() as tmp:
        base = sim.base_url
        for model, responder in (("cheap", cheap), ("premium", premium), ("verifier", imperfect_verifier)):
            sim.set_default(model, responder=responder)
        sim.set_default("judge", responder=fair_judge)
        environ = {"OPENAI_API_BASE": base}
        os.environ["OPENAI_API_BASE"] = base
        folder = Path(tmp)
        figures = {
            "always cheap": await run_set(specialist(folder, "cheap", [CHEAP], base), environ, TASKS),
            "always premium": await run_set(specialist(folder, "premium", [PREMIUM], base), environ, TASKS),
            "cascade, checks verify": await run_set(
                specialist(folder, "checks", [CHEAP, PREMIUM], base, "escalate: true\n"), environ, TASKS, checks=True
            ),
            "cascade, judge verifies": await run_set(
                specialist(
                    folder,
                    "judge",
                    [CHEAP, PREMIUM],
                    base,
                    f"escalate: true\nverifier: {chain_entry(VERIFIER, base)}\n",
                ),
                environ,
                TASKS,
            ),
        }
        premium_cost = figures["always premium"]["cost_usd"]
        print("| run | tasks | right | cost per 1,000 tasks | cost vs always premium | escalated |")
        print("|---|---|---|---|---|---|")
        for name, found in figures.items():
            print(row(name, found, premium_cost))
        judged = figures["cascade, judge verifies"]
        per = judged["verifier_cost_usd"] / judged["verifications"]
        tokens = judged["verifier_tokens"] / judged["verifications"]
        print(
            f"\nOne verification step (judge model at $0.05/$0.40): {tokens:.0f} tokens, ${per:.8f}; "
            f"{per / (premium_cost / TASKS) * 100:.1f}% of one premium answer, "
            f"{per / (figures['always cheap']['cost_usd'] / TASKS) * 100:.0f}% of one cheap draft."
        )
        if embedded.available():
            on_device = specialist(folder, "embedded", ["embedded/smollm2", PREMIUM], base, "escalate: true\n", 48)
            plain = specialist(folder, "embedded-only", ["embedded/smollm2"], base, cap=48)
            local = await run_set(on_device, environ, EMBEDDED_TASKS, checks=True)
            alone = await run_set(plain, environ, EMBEDDED_TASKS)
            print("\nEmbedded model (SmolLM2-135M, real) as the cheap step, checks verify, first 20 tasks:")
            print(f"  embedded alone: {alone['accuracy'] * 100:.0f}% right, $0")
            print(
                f"  cascade: {local['accuracy'] * 100:.0f}% right, {local['escalated']} of {EMBEDDED_TASKS} escalated, "
                f"${local['cost_usd'] * 1000 / EMBEDDED_TASKS:.4f} per 1,000 tasks"
            )
        else:
            print(f"\nEmbedded model not installed ({embedded.install_hint()}): its run was skipped.")
        summary = await shadow_run(specialist(folder, "shadow", [PREMIUM], base), environ, folder / "state.sqlite3")
        print(f"\nShadow run (delegate-mcp stats --shadow):\n{format_shadow(summary)}")


if __name__ == "__main__":
    asyncio.run(main())

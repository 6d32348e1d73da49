"""What a client's model reads of one result, in its two forms, and what tools/list costs: the figures behind
DELEGATE_RESULT_FORM and declaring no outputSchema (docs/results.md).

Usage: python bench/model_reads.py
- structured: the structuredContent as JSON, which Claude Code hands its model whenever a result has one;
- text: the text content (the answer itself, then one summary line), which it hands its model otherwise.
Tokens are counted three ways: tiktoken's cl100k_base (OpenAI), the Anthropic tokenizer file litellm ships (Claude's
older tokenizer; Claude's current one is not published), and characters / 4 (the server's own estimate).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from importlib.util import find_spec
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def tokenizers() -> dict[str, object]:
    """The token counters available here, by name (tokenizer files from litellm's package, read offline)."""
    counters: dict[str, object] = {"chars/4": lambda text: -(-len(text) // 4)}
    spec = find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return counters
    folder = Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(folder))
    import tiktoken
    from tokenizers import Tokenizer

    cl100k = tiktoken.get_encoding("cl100k_base")
    anthropic = Tokenizer.from_file(str(folder / "anthropic_tokenizer.json"))
    counters["cl100k_base"] = lambda text: len(cl100k.encode(text))
    counters["anthropic (legacy)"] = lambda text: len(anthropic.encode(text).ids)
    return counters


def long_code_answer() -> str:
    """A long code answer as a specialist writes one: a real module of this project, fenced, with a sentence."""
    source = (ROOT / "server" / "jobs.py").read_text()
    return f"Here is the job manager, rewritten:\n\n```python\n{source}```\n\nIt keeps the same interface."


def both_forms(answer: str) -> dict[str, str]:
    """The two forms of one ask_coder result."""
    from server.app import to_tool_result
    from server.results import Attempt, CallUsage, DelegateResult, Routing, Usage

    result = DelegateResult(
        output=answer,
        specialist="coder",
        model="anthropic/claude-sonnet-4-5",
        routing=Routing(decided_by="direct", reason="called directly as ask_coder"),
        attempts=[Attempt(model="anthropic/claude-sonnet-4-5", ok=True, latency_ms=41_250.0)],
        usage=Usage(specialist=CallUsage(input_tokens=3_100, output_tokens=3_400, cost_usd=0.0603)),
        latency_ms=41_310.0,
        thread_id="th_4f1c2d9a7b3e",
        call_id="9c1e4b7a2d3f5e60",
    )
    sent = to_tool_result(result)
    return {"structured": json.dumps(sent.structured_content), "text": sent.content[0].text}  # type: ignore[union-attr]


def readability(text: str) -> dict[str, int]:
    """What a model has to see through: escapes, and how long its longest line is."""
    return {
        "escapes": text.count("\\n") + text.count('\\"') + text.count("\\\\"),
        "lines": text.count("\n") + 1,
        "longest line": max(len(line) for line in text.split("\n")),
    }


async def tools_list_chars() -> dict[str, int]:
    """tools/list as a client receives it: characters in all, and in outputSchema."""
    from mcp import Client

    from server.app import build_server
    from server.catalog import load_catalog
    from server.delegation import Delegator
    from server.settings import Settings

    env = {"DELEGATE_DATA_DIR": tempfile.mkdtemp()}
    settings = Settings.from_env(env)
    async with Client(build_server(Delegator(settings, load_catalog(env, None), env)), mode="legacy") as client:
        tools = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in (await client.list_tools()).tools]
    return {
        "tools": len(tools),
        "tools/list chars": len(json.dumps({"tools": tools})),
        "outputSchema chars": sum(len(json.dumps(t["outputSchema"])) for t in tools if "outputSchema" in t),
    }


def main() -> None:
    """Print the figures as a Markdown table."""
    counters = tokenizers()
    forms = both_forms(long_code_answer())
    print(f"answer: {len(long_code_answer()):,} characters of code\n")
    print("| form | characters | " + " | ".join(counters) + " | escapes | lines | longest line |")
    print("|---|---:|" + "---:|" * len(counters) + "---:|---:|---:|")
    for name, text in forms.items():
        tokens = " | ".join(f"{count(text):,}" for count in counters.values())  # type: ignore[operator]
        read = " | ".join(f"{value:,}" for value in readability(text).values())
        print(f"| {name} | {len(text):,} | {tokens} | {read} |")
    print()
    for key, value in asyncio.run(tools_list_chars()).items():
        print(f"{key}: {value:,}")


if __name__ == "__main__":
    main()

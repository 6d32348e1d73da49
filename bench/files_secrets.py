"""What the credential check on a file's content costs, ours against detect-secrets' detectors.

Usage: python bench/files_secrets.py [--repeat N]
Times server.filesys.secrets.credential_in on a typical source file (20,000 characters), on the largest file a call
accepts (500,000 characters, DELEGATE_MAX_FILE_CHARS), and on the worst inputs we know for our patterns (a token
prefix repeated over 500,000 characters). If detect-secrets is importable (pip install detect-secrets), also its
import time and the same files through its regex detectors, by its own line-by-line API and with its patterns run
over the whole text. Prints the best of N runs in milliseconds.
"""

from __future__ import annotations

import argparse
import importlib
import random
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server.filesys.secrets import TOKEN_FORMATS, credential_in

DETECTORS = [
    "aws.AWSKeyDetector",
    "azure_storage_key.AzureStorageKeyDetector",
    "github_token.GitHubTokenDetector",
    "gitlab_token.GitLabTokenDetector",
    "npm.NpmDetector",
    "pypi_token.PypiTokenDetector",
    "private_key.PrivateKeyDetector",
    "slack.SlackDetector",
    "stripe.StripeDetector",
    "openai.OpenAIDetector",
    "sendgrid.SendGridDetector",
]


def source(chars: int) -> str:
    """Text shaped like code: indented lines of identifiers and calls."""
    rng = random.Random(1)
    lines = []
    while sum(map(len, lines)) < chars:
        words = ["".join(rng.choices(string.ascii_letters, k=rng.randint(2, 9))) for _ in range(8)]
        lines.append("    " + " ".join(words) + "(value, 'text')\n")
    return "".join(lines)[:chars]


def best_ms(work: Callable[[], object], repeat: int) -> float:
    """The fastest of `repeat` runs, in milliseconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append((time.perf_counter() - start) * 1000)
    return min(times)


def worst_inputs() -> list[tuple[str, str]]:
    """Each pattern's fixed prefix repeated over 500,000 characters: many starts, each failing late."""
    cases = []
    for kind, pattern in TOKEN_FORMATS:
        prefix = "".join(ch for ch in pattern.pattern.split("[")[0].split("(")[0] if ch != "\\")
        if prefix:
            cases.append((f"{kind} ({prefix[:12]}…)", (prefix * (500_000 // len(prefix) + 1))[:500_000]))
    return cases


def main() -> None:
    """Print every figure once."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure; the best is printed (default 5)")
    args = parser.parse_args()
    files = {"typical (20,000 chars)": source(20_000), "largest (500,000 chars)": source(500_000)}
    print(f"files_secrets: python {sys.version.split()[0]}; best of {args.repeat}, milliseconds")
    for label, text in files.items():
        print(f"  ours, {label:28} {best_ms(lambda t=text: credential_in('app.py', t), args.repeat):8.2f}")
    worst = max((best_ms(lambda t=text: credential_in("x.txt", t), 1), label) for label, text in worst_inputs())
    print(f"  ours, worst known input: {worst[1]:40} {worst[0]:8.2f}")
    try:
        start = time.perf_counter()
        plugins = []
        for name in DETECTORS:
            module, cls = name.split(".")
            plugins.append(getattr(importlib.import_module(f"detect_secrets.plugins.{module}"), cls)())
        print(
            f"  detect-secrets import of {len(plugins)} detectors:        {(time.perf_counter() - start) * 1000:8.2f}"
        )
    except ImportError:
        print("  detect-secrets is not installed: pip install detect-secrets to compare")
        return
    patterns = [regex for plugin in plugins for regex in plugin.denylist]
    for label, text in files.items():
        lines = text.split("\n")

        def by_line(lines: list[str] = lines) -> object:
            return [
                p.analyze_line(filename="f", line=line, line_number=n) for n, line in enumerate(lines) for p in plugins
            ]

        print(f"  detect-secrets per line, {label:28} {best_ms(by_line, args.repeat):8.2f}")
        whole = best_ms(lambda t=text: [regex.search(t) for regex in patterns], args.repeat)
        print(f"  detect-secrets patterns on the whole text, {label:28} {whole:8.2f}")


if __name__ == "__main__":
    main()

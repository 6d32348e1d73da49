"""Public instruction sets whose source gives the label, read from local git snapshots into one JSONL file.

Nothing here is shipped or downloaded: the snapshots are fetched by hand (see docs/routing.md, "Public training
data"), and the file this writes stays outside the repository. bench/classifier_public.py trains and measures on it.
Run: python bench/classifier_sources.py MIRROR_DIR OUT.jsonl
(MIRROR_DIR holds one bare repository per set, named owner+name/repo.)
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CAP = 500  # items kept per source (a stable hash picks them), so no one set outweighs the others


@dataclass(frozen=True)
class Source:
    """One public set: where it lives, its licence, and how its own labels map onto the built-ins."""

    name: str
    repo: str
    path: str
    licence: str
    mapping: str


SOURCES = (
    Source("gpteacher-code", "teknium1/GPTeacher", "Codegen/codegen-instruct.json", "MIT", "all -> coder"),
    Source("conala", "shilliscmu/TranxConalaBaseline", "conala-train.json", "CC BY-SA 4.0", "all -> coder"),
    Source("humaneval", "openai/human-eval", "data/HumanEval.jsonl.gz", "MIT", "all -> coder"),
    Source("eqbench-creative", "EQ-bench/EQ-Bench", "data/creative_writing_prompts.json", "MIT", "all -> writer"),
    Source(
        "nq-open",
        "google-research-datasets/natural-questions",
        "nq_open/NQ-open.dev.jsonl",
        "CC BY-SA 3.0",
        "all -> generalist",
    ),
    Source("gsm8k", "openai/grade-school-math", "grade_school_math/data/test.jsonl", "MIT", "all -> generalist"),
    Source(
        "mt-bench",
        "lm-sys/FastChat",
        "fastchat/llm_judge/data/mt_bench/question.jsonl",
        "Apache-2.0",
        "coding -> coder; writing -> writer; roleplay dropped; the rest -> generalist",
    ),
    Source(
        "vicuna-bench",
        "lm-sys/FastChat",
        "fastchat/llm_judge/data/vicuna_bench/question.jsonl",
        "Apache-2.0",
        "coding -> coder; writing -> writer; roleplay dropped; the rest -> generalist",
    ),
    Source(
        "arena-hard",
        "lmarena/arena-hard-auto",
        "data/arena-hard-v2.0/question.jsonl",
        "Apache-2.0",
        "coding -> coder; creative_writing -> writer; math -> generalist",
    ),
    Source(
        "writingbench",
        "X-PLUG/WritingBench",
        "benchmark_query/requirement/length/length_subset.jsonl",
        "Apache-2.0",
        "all -> writer",
    ),
    Source("longbench-write", "THUDM/LongWriter", "evaluation/longbench_write_en.jsonl", "Apache-2.0", "all -> writer"),
    Source(
        "hellobench-writing",
        "Quehry/HelloBench",
        "data/main_data/heuristic_text_generation.jsonl",
        "MIT",
        "all -> writer",
    ),
    Source(
        "hellobench-completion", "Quehry/HelloBench", "data/main_data/text_completion.jsonl", "MIT", "all -> writer"
    ),
    Source(
        "hellobench-qa",
        "Quehry/HelloBench",
        "data/main_data/open_ended_qa.jsonl",
        "MIT",
        "all -> generalist (the question, without the benchmark's instructions around it)",
    ),
    Source(
        "truthfulqa",
        "benedictflorance/truthfulqa_experiments",
        "datasets/TruthfulQA.csv",
        "Apache-2.0",
        "all -> generalist",
    ),
    Source("cruxeval", "facebookresearch/cruxeval", "data/cruxeval.jsonl", "MIT", "all -> coder"),
    Source(
        "humaneval-x",
        "THUDM/CodeGeeX",
        "codegeex/benchmark/humaneval-x/{cpp,go,java,js}/data/humaneval_*.jsonl.gz",
        "Apache-2.0",
        "all -> coder",
    ),
    Source(
        "awesome-prompts",
        "f/awesome-chatgpt-prompts",
        "prompts.csv@c3223308",
        "CC0-1.0",
        "acts named for programming -> coder; for story, poem, song or script writing -> writer; others dropped",
    ),
)

_QUESTION = re.compile(r"\[Question\]:\s*(.*?)\s*\[Requirements\]", re.S)
_CODE_ACT = re.compile(
    r"terminal|console|interpreter|developer|programmer|sql|regex|javascript|python|coding|"
    r"software|stackoverflow|git\b|php|r programming|linux|devops|cyber|webpage|ascii",
    re.I,
)
_WRITE_ACT = re.compile(
    r"storytell|poet|novelist|screenwriter|rapper|composer|lyric|fiction|playwright|"
    r"comedian|fancy title|essay writer|song",
    re.I,
)


def blob(mirror: Path, repo: str, path: str) -> bytes:
    """A file of a snapshot, at HEAD or at the commit named after '@'; {a,b} in the path joins several files
    (gzip files joined stay one gzip stream)."""
    path, _, commit = path.partition("@")
    choice = re.search(r"\{([^}]*)\}", path)
    if choice:
        parts = choice.group(1).split(",")
        names = [(path[: choice.start()] + part + path[choice.end() :]).replace("*", part) for part in parts]
        return b"".join(blob(mirror, repo, f"{name}@{commit}" if commit else name) for name in names)
    folder = mirror / repo.replace("/", "+") / "repo"
    return subprocess.run(
        ["git", "-C", str(folder), "show", f"{commit or 'HEAD'}:{path}"], capture_output=True, check=True
    ).stdout


def _mt(line: dict[str, object]) -> tuple[str, str] | None:
    category = str(line["category"])
    if category == "roleplay":  # "pretend to be Elon Musk and answer": writer or generalist, the set cannot say
        return None
    label = {"coding": "coder", "writing": "writer"}.get(category, "generalist")
    return str(line["turns"][0]), label  # type: ignore[index]


def items(source: Source, data: bytes) -> Iterator[tuple[str, str]]:
    """(task, label) pairs of one source."""
    if source.name == "gpteacher-code":
        yield from ((row["instruction"], "coder") for row in json.loads(data))
    elif source.name == "conala":
        yield from ((row["intent"], "coder") for row in json.loads(data))
    elif source.name == "humaneval":
        yield from ((json.loads(line)["prompt"].strip(), "coder") for line in gzip.decompress(data).splitlines())
    elif source.name == "eqbench-creative":
        yield from ((row["writing_prompt"], "writer") for row in json.loads(data).values())
    elif source.name == "nq-open" or source.name == "gsm8k":
        yield from ((json.loads(line)["question"], "generalist") for line in data.splitlines())
    elif source.name in ("mt-bench", "vicuna-bench"):
        yield from (pair for line in data.splitlines() if (pair := _mt(json.loads(line))) is not None)
    elif source.name == "arena-hard":
        labels = {"coding": "coder", "creative_writing": "writer", "math": "generalist"}
        yield from ((row["prompt"], labels[row["subcategory"]]) for row in map(json.loads, data.splitlines()))
    elif source.name in ("writingbench", "longbench-write"):
        key = "query" if source.name == "writingbench" else "prompt"
        yield from ((json.loads(line)[key], "writer") for line in data.splitlines())
    elif source.name.startswith("hellobench"):
        for line in data.splitlines():
            text = json.loads(line)["instruction"]
            question = _QUESTION.search(text)
            yield (question.group(1), "generalist") if question else (text, "writer")
    elif source.name == "truthfulqa":
        yield from ((row["Question"], "generalist") for row in csv.DictReader(io.StringIO(data.decode("utf-8"))))
    elif source.name == "cruxeval":
        for line in data.splitlines():
            row = json.loads(line)
            yield f"{row['code']}\nassert f({row['input']}) == ??", "coder"
    elif source.name == "humaneval-x":
        yield from ((json.loads(line)["prompt"].strip(), "coder") for line in gzip.decompress(data).splitlines())
    elif source.name == "awesome-prompts":
        for row in csv.DictReader(io.StringIO(data.decode("utf-8"))):
            act = row["act"]
            if _CODE_ACT.search(act):
                yield row["prompt"], "coder"
            elif _WRITE_ACT.search(act):
                yield row["prompt"], "writer"


def _english(text: str) -> bool:
    """Whether a task is written in Latin letters: the classifier's words are; WritingBench mixes in Chinese."""
    letters = [c for c in text if c.isalpha()]
    return sum(c.isascii() for c in letters) >= 0.9 * len(letters) if letters else True


def stable(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def main() -> None:
    mirror, out = Path(sys.argv[1]), Path(sys.argv[2])
    with out.open("w", encoding="utf-8") as sink:
        for source in SOURCES:
            seen: dict[str, str] = {}
            for task, label in items(source, blob(mirror, source.repo, source.path)):
                task = task.strip()
                if task and task.lower() not in seen and _english(task):
                    seen[task.lower()] = label
                    seen[task.lower() + "\0"] = task
            pairs = [(seen[key + "\0"], label) for key, label in seen.items() if not key.endswith("\0")]
            kept = sorted(pairs, key=lambda pair: stable(pair[0]))[:CAP]
            for task, label in kept:
                sink.write(json.dumps({"task": task, "expected": label, "source": source.name}) + "\n")
            counts = {name: sum(1 for _, label in kept if label == name) for name in ("coder", "writer", "generalist")}
            print(f"{source.name:<20} {len(pairs):>5} unique, kept {len(kept):>5} {counts}  {source.licence}")


if __name__ == "__main__":
    main()

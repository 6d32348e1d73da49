"""`delegate-mcp compare`: a bake-off of models on your own tasks, graded by checks and a blind judge, with the
cheapest model that is not significantly worse recommended (and, with --apply, written into the specialist)."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

import anyio
from pydantic import ValidationError

from server.calling import llm
from server.calling.chain import ChainRunner
from server.calling.cooldown import Cooldowns
from server.calling.providers import availability
from server.catalog import Catalog, ModelRef, Specialist
from server.errors import ConfigError, InvalidInputError
from server.files import FileReader, FileRules, configured_roots, resolved_roots, split_list
from server.quality import apply
from server.quality.bakeoff import (
    Bakeoff,
    Candidate,
    Plan,
    answer_key,
    answer_worst_case,
    capped_answer,
    models_of,
    verdict_key,
    verdict_worst_case,
)
from server.quality.defaults import CONFIRM_ABOVE_USD
from server.quality.judge import judge_specialist
from server.quality.report import format_report, summarise
from server.quality.spend import SpendCap
from server.quality.tasks import Task, read_tasks
from server.redact import secret_values
from server.settings import Settings
from server.store.budget import DailyBudget
from server.store.compare_book import CompareBook
from server.store.factory import open_store

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED = 0, 1, 2, 130


@dataclass(frozen=True)
class Preview:
    """What is left to do before the run starts, and the most it could cost."""

    answers: int
    verdicts: int
    kept: int
    worst_case_usd: float
    unpriced: int


def run_compare(settings: Settings, catalog: Catalog, environ: Mapping[str, str], args: argparse.Namespace) -> int:
    """The whole command; ConfigError for anything wrong before money is spent."""
    if args.concurrency < 1 or (args.max_cost_usd is not None and args.max_cost_usd < 0):
        raise ConfigError("--concurrency must be 1 or more and --max-cost-usd 0 or more.")
    if args.apply and not args.specialist:
        raise ConfigError("--apply writes a specialist's chain: name it with --specialist NAME.")
    if args.apply:
        check_writable(catalog.get(args.specialist))
    # litellm's import and its first-call imports, while the plan is checked: latencies then measure the models
    importing = threading.Thread(target=llm.prime, name="litellm-prime", daemon=True)
    importing.start()
    plan, left_out = build_plan(settings, catalog, environ, args)
    store = open_store(settings, environ)
    try:
        book = CompareBook(store)
        preview = preview_run(plan, book)
        _say(_preview_text(preview, args.max_cost_usd))
        if min(preview.worst_case_usd, args.max_cost_usd or float("inf")) > CONFIRM_ABOVE_USD and not args.yes:
            raise ConfigError(
                f"this run could cost up to ${preview.worst_case_usd:.2f}, over ${CONFIRM_ABOVE_USD:.2f}: rerun with "
                "--yes to go ahead, or cap it with --max-cost-usd. Nothing was spent."
            )
        daily = DailyBudget(settings.daily_budget_usd, store) if settings.daily_budget_usd is not None else None
        cap = SpendCap(args.max_cost_usd, daily)
        runner = ChainRunner(
            settings,
            environ,
            secret_values(environ, catalog.key_env_names),
            Cooldowns(settings.cooldown_s),
            anyio.CapacityLimiter(args.concurrency),
        )
        bakeoff = Bakeoff(plan, runner, book, cap)
        importing.join()
        show = progress_bar(sys.stderr) if sys.stderr.isatty() else lambda done, total: None
        try:
            outcome = anyio.run(lambda: bakeoff.run(args.concurrency, show))
        except KeyboardInterrupt:
            _say("\nStopped. Every answer and verdict that arrived is kept: run the same command again to go on.")
            return EXIT_STOPPED
        summary = summarise(plan, outcome, cap.spent_usd, cap.refused)
        summary.update(worst_case_usd=round(preview.worst_case_usd, 6), left_out=left_out, warnings=bakeoff.warnings)
        return finish(summary, catalog, plan, args)
    finally:
        store.close()


def finish(summary: dict[str, Any], catalog: Catalog, plan: Plan, args: argparse.Namespace) -> int:
    """Print the report, then --apply's change; exit 1 when no model answered anything or --apply could not."""
    change, problem = None, None
    if args.apply:
        try:
            change = planned_change(summary, catalog.get(args.specialist), plan)
            summary["apply"] = {"file": str(change.path), "backup": str(change.backup), "diff": change.diff}
        except ConfigError as exc:
            problem = f"--apply: {exc}"
            summary["apply"] = {"error": problem}
    print(json.dumps(summary, indent=2) if args.json else format_report(summary))
    for warning in [*summary["warnings"], *([problem] if problem else [])]:
        _say(f"warning: {warning}")
    if change is not None:
        if not args.json:
            print(f"\nThe change to {change.path}:\n{change.diff or '(none: the file already has this chain)'}")
        if change.diff and confirmed(args.yes, f"Write this chain to {change.path}?"):
            apply.write_change(change)
            _say(f"Wrote {change.path}; the old file is kept as {change.backup}.")
        elif change.diff:
            _say("Nothing written.")
    answered = sum(row["answered"] for group in summary["specialists"].values() for row in group["models"])
    return EXIT_OK if answered and not problem else EXIT_FAILED


def planned_change(summary: dict[str, Any], spec: Specialist, plan: Plan) -> apply.Change:
    """The specialist file's change for its recommended chain (the models left out for want of a key keep their
    places at the end); ConfigError when there is none to write."""
    found = summary["specialists"].get(spec.name, {}).get("recommendation", {})
    if not found.get("model"):
        raise ConfigError(f"no recommendation for {spec.name} to apply: {found.get('why', 'no task was answered')}.")
    by_label = {who.label: who.ref for who in plan.candidates}
    return apply.plan_change(Path(spec.source), [*(by_label[label] for label in found["chain"]), *plan.skipped])


def check_writable(spec: Specialist) -> None:
    """--apply writes the specialist's own file: never a built-in one, part of the installed package."""
    if spec.source.startswith("specialists/"):
        raise ConfigError(
            f"{spec.name} is a built-in specialist, part of the installed package: copy the specialists/ folder, "
            "point DELEGATE_SPECIALISTS_DIR (or --specialists) at the copy, then --apply. Nothing was run."
        )


def confirmed(yes: bool, question: str) -> bool:
    """--yes, or a 'y' typed at a terminal; without a terminal and --yes, no."""
    if yes:
        return True
    if not sys.stdin.isatty():
        _say("--apply without a terminal writes only with --yes.")
        return False
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def build_plan(
    settings: Settings, catalog: Catalog, environ: Mapping[str, str], args: argparse.Namespace
) -> tuple[Plan, int]:
    """Tasks, candidates, reference, judge, and every task's messages, all checked; and how many tasks were left out
    (they name another specialist than --specialist)."""
    tasks = read_tasks(args.tasks, catalog.names)
    candidates, skipped = candidates_of(catalog, environ, args)
    reference = _reference(args.reference, candidates)
    judge = judge_specialist(_ref(args.judge, "--judge")) if args.judge else None
    _check_usable(
        [*(c.ref for c in candidates), *([reference.ref] if reference else []), *(judge.chain if judge else [])],
        environ,
    )
    chosen = [t for t in tasks if not args.specialist or t.specialist in (None, args.specialist)]
    if not chosen:
        raise ConfigError(f"{args.tasks}: no task is for {args.specialist}. Nothing was run.")
    default = catalog.get(args.specialist) if args.specialist else catalog.default

    def answered_as(name: str | None) -> Specialist:  # with the output cap a call really gets
        spec = catalog.get(name) if name else default
        return replace(spec, max_output_tokens=min(spec.max_output_tokens, settings.max_output_tokens))

    specialists = {t.line: answered_as(t.specialist) for t in chosen}
    files = read_files(settings, args.tasks, chosen)
    from server.pipeline.messages import specialist_messages  # the messages a real call to that specialist sends

    messages = {
        t.line: specialist_messages(specialists[t.line], t.task, t.context, files.get(t.line, "")) for t in chosen
    }
    plan = Plan(chosen, candidates, specialists, messages, reference, judge, environ, tuple(skipped))
    return plan, len(tasks) - len(chosen)


def candidates_of(
    catalog: Catalog, environ: Mapping[str, str], args: argparse.Namespace
) -> tuple[list[Candidate], list[ModelRef]]:
    """The models to compare, each named as the user wrote it; and the models of --specialist's chain left out
    because they cannot be called here (no key)."""
    skipped: list[ModelRef] = []
    if args.specialist:
        chain = list(catalog.get(args.specialist).chain)
        refs = [ref for ref in chain if availability(ref.model, environ, ref.api_base, ref.api_key_env).usable]
        skipped = [ref for ref in chain if ref not in refs]
        if not refs:
            raise ConfigError(f"no model of {args.specialist}'s chain can be called here (see `delegate-mcp doctor`).")
        for ref in skipped:
            _say(f"Left out {ref.model}: it cannot be called here (no key).")
    elif args.models:
        refs = [_ref(text, "--models") for text in args.models.split(",") if text.strip()]
    else:
        raise ConfigError("name what to compare: --specialist NAME (its chain) or --models A,B,C.")
    seen: dict[str, int] = {}
    found = []
    for ref in refs:
        seen[ref.label] = seen.get(ref.label, 0) + 1
        found.append(Candidate(ref.label if seen[ref.label] == 1 else f"{ref.label}#{seen[ref.label]}", ref))
    return found, skipped


def _ref(text: str, flag: str) -> ModelRef:
    try:
        return ModelRef(model=text.strip())
    except ValidationError as exc:
        raise ConfigError(f"{flag}: {text!r}: " + "; ".join(e["msg"] for e in exc.errors())) from None


def _reference(text: str | None, candidates: list[Candidate]) -> Candidate | None:
    if not text:
        return None
    ref = _ref(text, "--reference")
    same = [c for c in candidates if c.label == text.strip() or c.ref == ref]
    return same[0] if same else Candidate(ref.label, ref)


def _check_usable(refs: list[ModelRef], environ: Mapping[str, str]) -> None:
    """Every model must be callable now: a missing key stops the run before anything is spent."""
    for ref in refs:
        found = availability(ref.model, environ, ref.api_base, ref.api_key_env)
        if not found.usable:
            fix = f" Set {' or '.join(found.enable_with)}." if found.enable_with else ""
            raise ConfigError(f"{ref.model} cannot be called: {found.reason}.{fix} Nothing was run.")


def read_files(settings: Settings, path: Path, tasks: list[Task]) -> dict[int, str]:
    """Each task's files, read as the tools read them (DELEGATE_FILE_ROOTS, else the working folder)."""
    wanted = [t for t in tasks if t.files]
    if not wanted:
        return {}
    roots, why = configured_roots(settings.file_roots, Path.cwd(), Path.home(), settings.file_roots_allow_wide)
    rules = FileRules(
        roots=resolved_roots(roots),
        allow=tuple(split_list(settings.file_allow, ",")),
        max_file_chars=settings.max_file_chars,
        max_total_chars=settings.max_context_chars,
        max_files=settings.max_files,
        no_roots_reason=why,
    )
    texts = {}
    for task in wanted:
        try:
            texts[task.line] = FileReader(rules).read(list(task.files), len(task.context)).text
        except InvalidInputError as exc:
            raise ConfigError(f"{path}:{task.line}: files: {exc} Nothing was run.") from None
    return texts


def preview_run(plan: Plan, book: CompareBook) -> Preview:
    """How many answers and verdicts are missing from the store, and the most getting them could cost."""
    answers = verdicts = kept = unpriced = 0
    worst = 0.0
    for task in plan.tasks:
        texts: dict[str, str] = {}
        for who in models_of(plan):
            found = book.answer(answer_key(plan, task, who))
            if found is not None:
                kept, texts[who.label] = kept + 1, str(found.get("text", ""))
                continue
            answers += 1
            cost = answer_worst_case(plan, task, who)
            worst, unpriced = worst + (cost or 0.0), unpriced + (cost is None)
        reference = task.reference or (texts.get(plan.reference.label) if plan.reference else None)
        for who in plan.candidates if plan.judge and (task.reference or plan.reference) else []:
            if task.reference is None and who == plan.reference:
                continue
            mine = texts.get(who.label)
            if mine is not None and reference is not None and book.verdict(verdict_key(plan, task, mine, reference)):
                continue
            verdicts += 1  # an answer still to come may be as long as its cap
            cost = verdict_worst_case(
                plan, task, mine or capped_answer(plan, task), reference or capped_answer(plan, task)
            )
            worst, unpriced = worst + (cost or 0.0), unpriced + (cost is None)
    return Preview(answers, verdicts, kept, worst, unpriced)


def _preview_text(preview: Preview, cap: float | None) -> str:
    unpriced = f"; {preview.unpriced} of them have no known price and count $0" if preview.unpriced else ""
    capped = f"; capped at ${cap:.4f} (--max-cost-usd)" if cap is not None else ""
    return (
        f"To do: {preview.answers} answer(s) and up to {preview.verdicts} verdict(s) ({preview.kept} answer(s) kept "
        f"from earlier runs). Worst case: ${preview.worst_case_usd:.4f}{unpriced}{capped}."
    )


def progress_bar(stream: TextIO) -> Callable[[int, int], None]:
    """A one-line progress bar redrawn in place on a terminal (stderr)."""

    def draw(done: int, total: int) -> None:
        filled = done * 30 // max(1, total)
        stream.write(f"\rcomparing {done}/{total} [{'#' * filled}{'.' * (30 - filled)}]")
        if done >= total:
            stream.write("\n")
        stream.flush()

    return draw


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


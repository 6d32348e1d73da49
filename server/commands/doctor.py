"""`delegate-mcp doctor`: check specialist files, keys, and (with --ping) that each usable model answers."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import anyio

from server.calling import llm
from server.calling.chain import api_key_for, describe_failure
from server.calling.providers import availability
from server.catalog import Catalog, ModelRef
from server.clock import ms_since
from server.redact import secret_values
from server.settings import Settings

PING_TIMEOUT_S = 20.0


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
        found = availability(ref.model, environ, ref.api_base, ref.api_key_env)
        rows.append({"model": ref.model, "used_by": used_by, "usable": found.usable, "key": found.reason, "ping": None})
    if send_ping:
        await llm.ready()
        refs = list(model_refs(catalog, settings))

        async def one(index: int) -> None:
            rows[index]["ping"] = await ping(refs[index], environ, secrets)

        async with anyio.create_task_group() as group:
            for index, row in enumerate(rows):
                if row["usable"]:
                    group.start_soon(one, index)
    return rows


def format_rows(rows: list[dict[str, Any]], source: str) -> str:
    """The diagnosis as a table for people."""
    lines = [f"Specialist files: {source}: OK", "", f"{'model':<34} {'used by':<26} {'key':<52} ping"]
    for row in rows:
        ping_result = row["ping"]
        status = (
            "-"
            if ping_result is None
            else (f"OK {ping_result['latency_ms']:.0f} ms" if ping_result["ok"] else f"FAILED: {ping_result['reason']}")
        )
        key = row["key"] if row["usable"] else f"missing: {row['key']}"
        lines.append(f"{row['model']:<34} {', '.join(row['used_by']):<26} {key[:52]:<52} {status}")
    return "\n".join(lines)

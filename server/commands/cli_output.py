"""What the command line prints for people: the specialists table and the ask summary."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from server.calling.chain import model_availability
from server.calling.providers import availability
from server.catalog import Catalog, Specialist
from server.progress import Progress
from server.settings import Settings

OFFLINE = "embedded/"
"""The model prefix of the offline model that runs on this machine."""
STREAM_EVERY_S = 5.0
"""How often the characters streamed so far are printed when stderr is not a terminal (a log file)."""


def cascade_report(spec: Specialist) -> dict[str, Any] | None:
    """A cascade's settings as delegate://specialists shows them; None for a plain chain."""
    if spec.cascade is None:
        return None
    verifier = spec.cascade.verifier.label if spec.cascade.verifier else "the router's cheap models"
    return {
        "verifier": verifier,
        "rubric": spec.cascade.rubric,
        "show_draft": spec.cascade.show_draft,
        "on_verifier_error": spec.cascade.on_verifier_error,
    }


def catalog_report(catalog: Catalog, settings: Settings, environ: Mapping[str, str]) -> dict[str, Any]:
    """Each specialist's model chain and router chain, with whether each model is usable now and why."""
    specialists = []
    for spec in catalog:
        models = []
        for position, ref in enumerate(spec.chain):
            found = model_availability(ref, environ)  # a cli/ model: whether its executable is there
            models.append(
                {
                    "model": ref.model,
                    "usable": found.usable,
                    "reason": found.reason,
                    "enable_with": list(found.enable_with),
                    "custom_endpoint": ref.api_base is not None,
                    "set_by": spec.model_env if position == 0 and spec.model_env else None,
                }
            )
        specialists.append(
            {
                "name": spec.name,
                "tool": spec.tool_name,
                "default": spec.default,
                "description": spec.description,
                "source": spec.source,
                "usable": any(m["usable"] for m in models),
                "models": models,
                "escalate": cascade_report(spec),
            }
        )
    router = []
    for model in settings.router_models:
        base = settings.router_api_base if model == settings.router_model else None
        found = availability(model, environ, base)
        router.append(
            {"model": model, "usable": found.usable, "reason": found.reason, "enable_with": list(found.enable_with)}
        )
    return {"source": catalog.source, "specialists": specialists, "router": router}


def format_catalog_report(report: dict[str, Any]) -> str:
    """The catalogue report as a readable table."""
    lines = [f"Specialists ({report['source']}):"]
    for spec in report["specialists"]:
        flag = "  [default]" if spec["default"] else ""
        state = "" if spec["usable"] else "  -- NOT USABLE"
        lines.append(f"\n{spec['name']}  (tool {spec['tool']}){flag}{state}\n  {spec['description']}")
        lines += [_model_line(i, m) for i, m in enumerate(spec["models"], 1)]
    lines.append("\nRouter (first usable model routes; ROUTER_MODEL puts yours first):")
    lines += [_model_line(i, m) for i, m in enumerate(report["router"], 1)]
    if not any(m["usable"] for m in report["router"]):
        default = next((s["name"] for s in report["specialists"] if s["default"]), report["specialists"][0]["name"])
        enable = sorted({" or ".join(m["enable_with"]) for m in report["router"] if m["enable_with"]})
        lines.append(
            "  No router model is usable: the embedded classifier routes the tasks it is sure of, and the rest go "
            f"to the default specialist ({default})."
            + (f" To enable routing, set one of: {'; '.join(enable)} (or ROUTER_MODEL)." if enable else "")
        )
    lines.append("\n" + usable_line(report["specialists"]))
    missing = sorted(
        {
            " or ".join(m["enable_with"])
            for s in report["specialists"]
            for m in s["models"]
            if not m["usable"] and m["enable_with"]
        }
    )
    if missing:
        lines.append("To enable more models, set: " + "; ".join(missing))
    return "\n".join(lines)


def usable_line(specialists: list[dict[str, Any]]) -> str:
    """How many specialists can answer with their own models now, apart from those only the offline model serves."""
    usable = [s for s in specialists if s["usable"]]
    offline = [s for s in usable if all(m["model"].startswith(OFFLINE) for m in s["models"] if m["usable"])]
    own = len(usable) - len(offline)
    line = f"{own} of {len(specialists)} specialists usable now with their own models."
    if offline:
        names = ", ".join(s["name"] for s in offline)
        line += (
            f" {names}: only the small offline model ({OFFLINE}…, on this machine) can answer for "
            f"{'it' if len(offline) == 1 else 'them'}, weakly; set a provider key for real answers."
        )
    return line


def terminal_progress(stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic) -> Progress:
    """Progress of a call shown to someone at a terminal, on stderr: each step on its own line; the characters
    streamed so far on one line that updates (every few seconds when stderr is not a terminal)."""
    out = stream or sys.stderr
    tty = out.isatty()
    clear = "\r\x1b[K" if tty else ""  # the streaming line, overwritten by the next step
    last = [float("-inf")]

    async def send(_value: float, message: str) -> None:
        if message.startswith("answering:"):
            if tty:
                out.write(f"\r[{message}]\x1b[K")
                out.flush()
            elif clock() - last[0] >= STREAM_EVERY_S:
                last[0] = clock()
                print(f"[{message}]", file=out)
            return
        print(f"{clear}[{message}]", file=out)

    return Progress(send)


def _model_line(position: int, model: dict[str, Any]) -> str:
    mark = "ok " if model["usable"] else "-- "
    override = f"  (override with {model['set_by']})" if model.get("set_by") else ""
    return f"  {position}. {mark} {model['model']:<34} {model['reason']}{override}"

"""What the command line prints for people: the specialists table and the ask summary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from server.calling.chain import model_availability
from server.calling.providers import availability
from server.catalog import Catalog, Specialist
from server.settings import Settings


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
    usable = sum(1 for s in report["specialists"] if s["usable"])
    lines.append(f"\n{usable} of {len(report['specialists'])} specialists usable now.")
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


def _model_line(position: int, model: dict[str, Any]) -> str:
    mark = "ok " if model["usable"] else "-- "
    override = f"  (override with {model['set_by']})" if model.get("set_by") else ""
    return f"  {position}. {mark} {model['model']:<34} {model['reason']}{override}"

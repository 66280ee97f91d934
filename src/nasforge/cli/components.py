"""`nasforge list`: every registered component, built-in or from a plug-in package.

Unlike `nasforge models` (a written-out copy, so that it answers without importing torch), this
imports the registries, plug-ins included: it is the command that shows what a `nasforge.plugins`
package added.
"""

from __future__ import annotations

import argparse
from typing import Any

from nasforge.cli.common import console, print_json

#: kind (as typed) -> "module:attribute" of its registry
REGISTRIES = {
    "spaces": "nasforge.spaces:SPACES",
    "strategies": "nasforge.strategies:STRATEGIES",
    "evaluators": "nasforge.evaluators:EVALUATORS",
    "objectives": "nasforge.evaluators.objectives:OBJECTIVES",
    "schedulers": "nasforge.experiment.scheduler:SCHEDULERS",
    "executors": "nasforge.experiment.executors:EXECUTORS",
    "families": "nasforge.scaling.family:FAMILIES",
    "models": "nasforge.models.registry:MODELS",
}


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "list",
        help="list registered spaces, strategies, evaluators, ... (plug-ins included)",
        description="Every component a search, scaling or training command can name, with the "
        "package that registered it, so that plug-in packages show.",
    )
    p.add_argument("kind", nargs="?", choices=sorted(REGISTRIES), help="list only this kind (default: all)")
    p.add_argument("--json", action="store_true", help="print {kind: [{name, description, origin}]} as JSON")
    p.set_defaults(func=cmd_list)


def _registry(kind: str) -> Any:
    import importlib

    module, _, attr = REGISTRIES[kind].partition(":")
    return getattr(importlib.import_module(module), attr)


def _origin(entry: Any) -> str:
    """The top-level package that registered an entry: "nasforge" or a plug-in's."""
    from nasforge.registry import unwrap

    target = entry.target
    module = target.partition(":")[0] if isinstance(target, str) else getattr(unwrap(target), "__module__", "?")
    return str(module).split(".")[0]


def cmd_list(args: argparse.Namespace) -> int:
    kinds = [args.kind] if args.kind else sorted(REGISTRIES)
    listing = {
        kind: [
            {"name": entry.name, "description": entry.description, "origin": _origin(entry)}
            for entry in _registry(kind).entries()
        ]
        for kind in kinds
    }
    if args.json:
        print_json(listing)
        return 0
    from rich.markup import escape
    from rich.table import Table

    for kind, rows in listing.items():
        table = Table(title=f"{kind} ({len(rows)})", title_justify="left")
        for col in ("name", "from", "description"):
            table.add_column(col)
        for row in rows:
            table.add_row(escape(row["name"]), escape(row["origin"]), escape(row["description"]))
        console().print(table)
    return 0

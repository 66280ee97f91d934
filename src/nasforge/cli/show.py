"""`nasforge show`: the leaderboard of a run (its counts and best trials)."""

from __future__ import annotations

from typing import Any

from nasforge.cli.common import console, print_json, user_path
from nasforge.cli.search import _print_leaderboard, _rungs_reached
from nasforge.errors import ConfigError


def cmd_show(args: Any) -> int:
    from nasforge.experiment import Store

    run_dir = user_path(args.run, "run")
    if not Store.exists(run_dir):
        raise ConfigError("run", f"no nasforge run in {args.run!r}")
    store = Store.open(run_dir)
    try:
        best = store.best(args.top)
        counts = store.counts()
        if args.json:
            print_json(
                {
                    "run": str(run_dir),
                    "counts": counts,
                    "top": [t.to_dict() for t in best],
                    "rungs": [vars(r) for r in store.rungs()],
                }
            )
            return 0
        console().print(f"{run_dir}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
        _print_leaderboard(best, f"best of {run_dir}", _rungs_reached(store))
    finally:
        store.close()
    return 0


def add_parser(sub: Any) -> None:
    from nasforge.cli.common import positive_int

    p = sub.add_parser("show", help="the leaderboard of a run")
    p.add_argument("run", help="run folder, any path: absolute, relative to the current directory or under ~")
    p.add_argument("--top", type=positive_int, default=10, help="trials listed, best first (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the counts and top trials as JSON")
    p.set_defaults(func=cmd_show)

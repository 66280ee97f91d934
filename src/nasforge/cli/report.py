"""`nasforge report RUN`: the run's self-contained HTML report."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    from nasforge.cli.common import positive_int

    p = sub.add_parser("report", help="write a run's HTML report (index.html, figures, summary.json)")
    p.add_argument("run", help="run folder")
    p.add_argument("--out", help="output folder (default RUN/report)")
    p.add_argument("--compare", nargs="*", default=[], metavar="RUN", help="other runs to draw beside it")
    p.add_argument("--top", type=positive_int, default=10, help="rows of the leaderboard")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from nasforge.errors import ConfigError
    from nasforge.report import write_report

    for name in (args.run, *args.compare):
        if not name.strip():  # Path("") is the current folder, which the user did not name
            raise ConfigError("run", f"{name!r} names no run folder")
    index = write_report(args.run, args.out, compare=args.compare, top=args.top)
    print(index)
    return 0

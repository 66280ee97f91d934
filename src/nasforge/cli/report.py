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
    p.add_argument(
        "--serve",
        action="store_true",
        help="write no files: serve the report from a local web server, redrawn as trials "
        "finish (an open page updates itself, no reload); reads the run without writing "
        "it; Ctrl-C stops (docs/report.md)",
    )
    p.add_argument("--port", type=int, help="with --serve: TCP port (default: 8765; 0 picks a free one)")
    p.add_argument(
        "--host",
        help="with --serve: address to listen on (default: 127.0.0.1, this machine "
        "only); any other address, e.g. 0.0.0.0, exposes the run's report to "
        "everyone who can reach it",
    )
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from nasforge.errors import ConfigError
    from nasforge.report import write_report

    for name in (args.run, *args.compare):
        if not name.strip():  # Path("") is the current folder, which the user did not name
            raise ConfigError("run", f"{name!r} names no run folder")
    if args.serve:
        from nasforge.report.serve import DEFAULT_HOST, DEFAULT_PORT, serve

        if args.out is not None:
            raise ConfigError("--out", "not used with --serve (the live report writes no files)")
        host = DEFAULT_HOST if args.host is None else args.host
        return serve(
            args.run, host, DEFAULT_PORT if args.port is None else args.port, compare=args.compare, top=args.top
        )
    if args.port is not None or args.host is not None:
        raise ConfigError("--port" if args.port is not None else "--host", "only applies with --serve")
    index = write_report(args.run, args.out, compare=args.compare, top=args.top)
    print(index)
    return 0

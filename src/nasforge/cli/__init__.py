"""The `nasforge` command.

Every error a user can cause (a `NasforgeError`, a bad flag, an unreadable file) ends as one line
on stderr and exit status 2; tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from typing import NoReturn

from nasforge.cli.common import EXIT_USAGE, one_line, positive_int
from nasforge.errors import NasforgeError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + message
        self.exit(EXIT_USAGE, f"{one_line(f'{self.prog}: error: {message}')}\n")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        args, extra = self.parse_known_args(args, namespace)
        if extra:  # quoted as a shell would, so that '' or 'a b' shows
            self.error(f"unrecognized arguments: {shlex.join(extra)}")
        return args


def build_parser() -> argparse.ArgumentParser:
    from nasforge.cli import models, report, run, search

    parser = _Parser(prog="nasforge", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("models", help="list registered models")
    p.add_argument("pattern", nargs="?", help="glob filter on the names, e.g. 'nasnet*' (default: all)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=models.cmd_models)

    p = sub.add_parser("profile", help="parameters, MACs, latency and memory of a model")
    p.add_argument("model", nargs="?", help="registered model name (see `nasforge models`)")
    p.add_argument("--arch", help="architecture JSON file instead of a registered model")
    p.add_argument(
        "--resolution", type=positive_int, help="input image side in pixels (default: the model's own; 32 with --arch)"
    )
    p.add_argument(
        "--num-classes", type=positive_int, help="classifier outputs (default: the model's own; 10 with --arch)"
    )
    p.add_argument("--stem", choices=["cifar", "imagenet"], help="with --arch: NASNet stem (default: cifar)")
    p.add_argument("--cells", type=positive_int, help="with --arch: normal cells per stack, N (default: 6)")
    p.add_argument("--filters", type=positive_int, help="with --arch: filters of the first stack, F (default: 32)")
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=1,
        help="images per forward pass when measuring latency and memory (default: %(default)s)",
    )
    p.add_argument(
        "--device",
        default="cpu",
        choices=["cpu", "cuda"],
        help="where latency and memory are measured (default: %(default)s)",
    )
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement, the slow part of a profile")
    p.add_argument(
        "--deploy",
        action="store_true",
        help="measure latency and memory of the deployed model (nasforge.deploy: BatchNorm folded, "
        "channels_last on CPU); parameters and MACs stay the trained network's",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=models.cmd_profile)

    search.add_parser(sub)
    search.add_show_parser(sub)
    report.add_parser(sub)
    run.add_parser(sub)
    __import__("nasforge.cli.bench", fromlist=["add_parser"]).add_parser(sub)  # nasforge bench
    __import__("nasforge.cli.check", fromlist=["add_parser"]).add_parser(sub)  # nasforge check-evaluator
    __import__("nasforge.cli.scale", fromlist=["add_parser"]).add_parser(sub)  # nasforge scale family/search
    __import__("nasforge.cli.train", fromlist=["add_parser"]).add_parser(sub)  # nasforge train
    __import__("nasforge.cli.train", fromlist=["add_export_parser"]).add_export_parser(sub)  # nasforge export
    __import__("nasforge.cli.components", fromlist=["add_parser"]).add_parser(sub)  # nasforge list
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except NasforgeError as exc:
        print(one_line(f"nasforge: error: {exc}"), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("nasforge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

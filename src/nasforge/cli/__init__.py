"""The `nasforge` command.

Every error a user can cause (a `NasforgeError`, a bad flag, an unreadable file) ends as one line
on stderr and exit status 2; tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from collections.abc import Sequence
from typing import NoReturn

from nasforge.cli.common import EXIT_USAGE, one_line
from nasforge.errors import NasforgeError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + message
        self.exit(EXIT_USAGE, f"{one_line(f'{self.prog}: error: {message}')}\n")

    def parse_args(self, args=None, namespace=None):
        args, extra = self.parse_known_args(args, namespace)
        if extra:  # quoted as a shell would, so that '' or 'a b' shows
            self.error(f"unrecognized arguments: {shlex.join(extra)}")
        return args


#: the sub-commands in the order `nasforge --help` lists them: module nasforge.cli.NAME adds each
#: with its `add_parser(sub)`
COMMANDS = (
    "models",
    "profile",
    "search",
    "show",
    "report",
    "run",
    "bench",
    "check",
    "scale",
    "train",
    "export",
    "components",
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nasforge", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"nasforge.cli.{name}").add_parser(sub)
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

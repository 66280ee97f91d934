"""Small pieces every `nasforge` sub-command uses."""

from __future__ import annotations

import argparse
import json
from typing import Any

EXIT_USAGE = 2

#: The characters `str.splitlines` breaks at, as escapes (a user's text may hold any of them).
_LINE_BREAKS = str.maketrans({c: c.encode("unicode_escape").decode()
                              for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"})


def one_line(text: str) -> str:
    """`text` with its line breaks escaped, so an error message stays one line whatever it quotes."""
    return text.translate(_LINE_BREAKS)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def console():
    from rich.console import Console

    return Console()


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value

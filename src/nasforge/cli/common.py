"""Small pieces every `nasforge` sub-command uses."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from nasforge.errors import ConfigError

EXIT_USAGE = 2

#: The characters `str.splitlines` breaks at, as escapes (a user's text may hold any of them).
_LINE_BREAKS = str.maketrans({c: c.encode("unicode_escape").decode() for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"})


def one_line(text: str) -> str:
    """`text` with its line breaks escaped, so an error message stays one line whatever it quotes."""
    return text.translate(_LINE_BREAKS)


def user_path(text: str, flag: str) -> Path:
    """The absolute path of a folder the user typed: absolute, relative to the current directory
    ('..' allowed) or under '~'.

    A path typed on the command line is the user's to choose, so it is not confined to any folder
    (a run name read from a config file is: `nasforge.experiment.resolve_run_dir`). It is resolved
    at once, so the same folder typed from another directory, or as an absolute path, is the same
    run. Control characters are refused: in a folder name they are a slip, not a choice.
    """
    if not text.strip():
        raise ConfigError(flag, f"{text!r} names no folder")
    if any(ord(c) < 32 for c in text):
        raise ConfigError(flag, f"{text!r} must not contain control characters")
    try:  # '~nobody' stays as it is (a folder of that name), as a shell leaves it
        return Path(os.path.expanduser(text)).resolve()
    except (OSError, RuntimeError) as exc:  # a loop of symbolic links
        raise ConfigError(flag, f"cannot resolve {text!r} ({exc})") from None


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


def add_scheduler_arguments(group: Any, max_epochs_default: str) -> None:
    """--scheduler, --min-epochs, --max-epochs and --eta, the same on `search` and `run`."""
    group.add_argument(
        "--scheduler",
        choices=["none", "sh", "hyperband", "asha", "median"],
        help="multi-fidelity training: sh (successive halving), hyperband, asha (asynchronous), "
        "median (median stopping); children start at --min-epochs and the best 1/--eta go on, "
        "continuing from their saved state, up to --max-epochs (default: none, every child "
        "gets --epochs)",
    )
    group.add_argument(
        "--min-epochs", type=positive_int, help="with --scheduler: epochs of the first rung (default: 1)"
    )
    group.add_argument(
        "--max-epochs",
        type=positive_int,
        help=f"with --scheduler: epochs of the top rung, the span of the learning-rate schedule "
        f"(default: {max_epochs_default})",
    )
    group.add_argument(
        "--eta",
        type=positive_int,
        help="with --scheduler: reduction factor, 1/eta of a rung goes on, each rung eta times "
        "longer (default: 3; at least 2)",
    )

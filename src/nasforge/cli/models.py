"""`nasforge models` and `nasforge profile`."""

from __future__ import annotations

import argparse
import fnmatch
from typing import Any, NamedTuple

from nasforge.cli.common import console, print_json


# -- nasforge models -----------------------------------------------------------------------------
class ModelEntry(NamedTuple):
    name: str
    family: str
    resolution: int
    num_classes: int
    description: str


#: The registry of `nasforge.models` as `nasforge models` lists it, sorted by name. Written out
#: because the registry registers its models by importing their networks, and so torch, which
#: would make listing them take seconds; tests/test_cli.py checks it against the registry.
MODELS = (
    ModelEntry("amoebanet_a_cifar", "nasnet", 32, 10, "AmoebaNet-A N=6, F=36 (CIFAR)"),
    ModelEntry("darts_v2_cifar", "nasnet", 32, 10, "DARTS (2nd order) cells in a NASNet network, 6@36 (CIFAR)"),
    ModelEntry(
        "efficientnet_b0", "efficientnet", 224, 1000, "EfficientNet-B0 (width 1.0, depth 1.0, 224px, dropout 0.2)"
    ),
    ModelEntry(
        "efficientnet_b1", "efficientnet", 240, 1000, "EfficientNet-B1 (width 1.0, depth 1.1, 240px, dropout 0.2)"
    ),
    ModelEntry(
        "efficientnet_b2", "efficientnet", 260, 1000, "EfficientNet-B2 (width 1.1, depth 1.2, 260px, dropout 0.3)"
    ),
    ModelEntry(
        "efficientnet_b3", "efficientnet", 300, 1000, "EfficientNet-B3 (width 1.2, depth 1.4, 300px, dropout 0.3)"
    ),
    ModelEntry(
        "efficientnet_b4", "efficientnet", 380, 1000, "EfficientNet-B4 (width 1.4, depth 1.8, 380px, dropout 0.4)"
    ),
    ModelEntry(
        "efficientnet_b5", "efficientnet", 456, 1000, "EfficientNet-B5 (width 1.6, depth 2.2, 456px, dropout 0.4)"
    ),
    ModelEntry(
        "efficientnet_b6", "efficientnet", 528, 1000, "EfficientNet-B6 (width 1.8, depth 2.6, 528px, dropout 0.5)"
    ),
    ModelEntry(
        "efficientnet_b7", "efficientnet", 600, 1000, "EfficientNet-B7 (width 2.0, depth 3.1, 600px, dropout 0.5)"
    ),
    ModelEntry(
        "efficientnet_b8", "efficientnet", 672, 1000, "EfficientNet-B8 (width 2.2, depth 3.6, 672px, dropout 0.5)"
    ),
    ModelEntry(
        "efficientnet_l2", "efficientnet", 800, 1000, "EfficientNet-L2 (width 4.3, depth 5.3, 800px, dropout 0.5)"
    ),
    ModelEntry("nasnet_a_cifar", "nasnet", 32, 10, "NASNet-A 6@768 (CIFAR)"),
    ModelEntry("nasnet_a_large", "nasnet", 331, 1000, "NASNet-A Large 6@4032"),
    ModelEntry("nasnet_a_mobile", "nasnet", 224, 1000, "NASNet-A Mobile 4@1056"),
)


def cmd_models(args: argparse.Namespace) -> int:
    entries = [m for m in MODELS if args.pattern is None or fnmatch.fnmatch(m.name, args.pattern)]
    if args.json:
        print_json([m._asdict() for m in entries])
        return 0
    from rich.table import Table

    table = Table(title="nasforge models")
    for col in ("name", "family", "resolution", "classes", "description"):
        table.add_column(col)
    for m in entries:
        table.add_row(m.name, m.family, str(m.resolution), str(m.num_classes), m.description)
    console().print(table)
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("models", help="list registered models")
    p.add_argument("pattern", nargs="?", help="glob filter on the names, e.g. 'nasnet*' (default: all)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=cmd_models)

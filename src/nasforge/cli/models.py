"""`nasforge models` and `nasforge profile`."""

from __future__ import annotations

import argparse
import fnmatch
import json
from pathlib import Path
from typing import NamedTuple

from nasforge.cli.common import console, print_json
from nasforge.errors import ArchitectureError, ConfigError


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


# -- nasforge profile ----------------------------------------------------------------------------
def load_architecture_file(path: str):
    """Read an architecture JSON file (any registered space) with one-line errors."""
    from nasforge.spaces import space_for_json

    file = Path(path)
    if not file.is_file():
        raise ConfigError("--arch", f"no such file: {path}")
    try:
        data = json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArchitectureError(str(file), f"not valid JSON ({exc})") from None
    except RecursionError:
        raise ArchitectureError(str(file), "not valid JSON (nested too deeply)") from None
    space = space_for_json(data)
    return space, space.from_json(data)


def cmd_profile(args: argparse.Namespace) -> int:
    import torch

    from nasforge.models import create, get_model_spec
    from nasforge.profile import profile_model

    if (args.model is None) == (args.arch is None):
        raise ConfigError("model", "give a registered model name or --arch FILE, not both or neither")
    torch.manual_seed(0)
    if args.model is not None:
        spec = get_model_spec(args.model)
        resolution = args.resolution or spec.resolution
        model = create(args.model, num_classes=args.num_classes, resolution=resolution)
        name = args.model
    else:
        space, arch = load_architecture_file(args.arch)
        resolution = args.resolution or 32
        config = {
            k: v
            for k, v in {
                "num_classes": args.num_classes or 10,
                "stem": args.stem,
                "num_cells": args.cells,
                "num_filters": args.filters,
                "resolution": resolution,
            }.items()
            if v is not None
        }
        model = space.build(arch, **config)
        name = args.arch
    if resolution < 1:
        raise ConfigError("--resolution", f"must be a positive integer, got {resolution}")
    model.to(args.device)
    prof = profile_model(model, resolution, batch_size=args.batch_size, latency=not args.no_latency, deploy=args.deploy)
    result = {"model": name, **prof.to_dict()}
    if args.json:
        print_json(result)
        return 0
    from rich.table import Table

    table = Table(title=f"profile of {name}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("parameters", f"{prof.params:,}")
    table.add_row("MACs", f"{prof.macs:,} ({prof.macs / 1e9:.3f} G)")
    table.add_row("resolution", str(prof.resolution))
    if prof.latency_ms is not None:
        deployed = ", deployed" if prof.deployed else ""
        table.add_row(f"latency (batch {prof.batch_size}, {prof.device}{deployed})", f"{prof.latency_ms:.1f} ms")
    if prof.peak_memory_bytes is not None:
        table.add_row(
            "peak activation memory" + (" (deployed)" if prof.deployed else ""),
            f"{prof.peak_memory_bytes / 2**20:.1f} MiB",
        )
    console().print(table)
    return 0

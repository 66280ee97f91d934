"""`nasforge models` and `nasforge profile`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nasforge.cli.common import console, print_json
from nasforge.errors import ArchitectureError, ConfigError


# -- nasforge models -----------------------------------------------------------------------------
def cmd_models(args: argparse.Namespace) -> int:
    from nasforge.models import get_model_spec, list_models

    specs = [get_model_spec(n) for n in list_models(args.pattern)]
    if args.json:
        print_json([{"name": s.name, "family": s.family, "resolution": s.resolution,
                      "num_classes": s.num_classes, "description": s.description} for s in specs])
        return 0
    from rich.table import Table

    table = Table(title="nasforge models")
    for col in ("name", "family", "resolution", "classes", "description"):
        table.add_column(col)
    for s in specs:
        table.add_row(s.name, s.family, str(s.resolution), str(s.num_classes), s.description)
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
        config = {k: v for k, v in {"num_classes": args.num_classes or 10, "stem": args.stem,
                                    "num_cells": args.cells, "num_filters": args.filters,
                                    "resolution": resolution}.items() if v is not None}
        model = space.build(arch, **config)
        name = args.arch
    if resolution < 1:
        raise ConfigError("--resolution", f"must be a positive integer, got {resolution}")
    model.to(args.device)
    prof = profile_model(model, resolution, batch_size=args.batch_size, latency=not args.no_latency)
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
        table.add_row(f"latency (batch {prof.batch_size}, {prof.device})", f"{prof.latency_ms:.1f} ms")
    if prof.peak_memory_bytes is not None:
        table.add_row("peak activation memory", f"{prof.peak_memory_bytes / 2**20:.1f} MiB")
    console().print(table)
    return 0

"""`nasforge profile`: parameters, MACs, latency and memory of a model or an architecture file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nasforge.cli.common import console, positive_int, print_json
from nasforge.errors import ArchitectureError, ConfigError


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


def add_parser(sub: Any) -> None:
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
    p.set_defaults(func=cmd_profile)

"""`nasforge run`: dataset -> searched baseline -> alpha/beta/gamma -> model family -> report."""

from __future__ import annotations

import argparse
from typing import Any


def _preset(name: str) -> str:
    """`name`'s value in each --budget preset, for the help (the presets are the defaults)."""
    from nasforge.pipeline import BUDGETS

    return "default: the --budget preset's, " + ", ".join(f"{b} {v[name]}" for b, v in BUDGETS.items())


def add_parser(sub: Any) -> None:
    from nasforge.cli.common import positive_float, positive_int

    p = sub.add_parser("run", help="the whole pipeline: search a baseline, scale it, train the family, report")
    p.add_argument("--dataset", default="digits",
                   help="images: digits (built in), npz:PATH, folder:PATH (default: %(default)s)")
    p.add_argument("--space", default="nasnet", choices=["nasnet", "mbconv"],
                   help="search space of the baseline: NASNet cells or an MBConv network (default: %(default)s)")
    p.add_argument("--strategy", default="evolution",
                   help="search strategy of stage 1: random, evolution (default), local, predictor, ppo, reinforce")
    p.add_argument("--budget", default="small", choices=["small", "medium", "large"],
                   help="preset of the settings below; on digits with 2 CPU cores small takes minutes, medium "
                        "about 40 minutes, large hours (default: %(default)s)")
    p.add_argument("--trials", type=positive_int, help=f"search trials ({_preset('trials')})")
    p.add_argument("--epochs", type=positive_int, help=f"training epochs per search child ({_preset('epochs')})")
    p.add_argument("--step", type=positive_float,
                   help=f"grid step of the alpha, beta, gamma search ({_preset('step')})")
    p.add_argument("--family-epochs", type=positive_int,
                   help=f"training epochs per family member ({_preset('family_epochs')})")
    p.add_argument("--cells", type=positive_int,
                   help=f"NASNet: normal cells per stack of the baseline, N ({_preset('cells')})")
    p.add_argument("--filters", type=positive_int,
                   help=f"NASNet: filters of the baseline's first stack, F ({_preset('filters')})")
    p.add_argument("--train-size", type=positive_int,
                   help="train on a stratified subset of this many images (default: the whole training split)")
    p.add_argument("--val-size", type=positive_int,
                   help="validate on a stratified subset of this many images (default: the whole validation "
                        "split)")
    p.add_argument("--phi-max", type=int, default=2,
                   help="largest family member phi, the family is 0..PHI_MAX (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the search, the data split and the training (default: %(default)s)")
    p.add_argument("--run", metavar="FOLDER",
                   help="run folder, any path: absolute, relative to the current directory or under ~ "
                        "(default: runs/pipeline-DATASET-TIME)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run where it stopped")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of tables")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    import time

    from nasforge.cli.common import console, print_json, user_path
    from nasforge.pipeline import PipelineConfig, run_pipeline

    config = PipelineConfig(dataset=args.dataset, space=args.space, strategy=args.strategy, budget=args.budget,
                            trials=args.trials, epochs=args.epochs, step=args.step,
                            family_epochs=args.family_epochs, cells=args.cells, filters=args.filters,
                            phi_max=args.phi_max, seed=args.seed, train_size=args.train_size,
                            val_size=args.val_size)
    name = args.run
    if name is None:
        name = f"runs/pipeline-{args.dataset.split(':')[0]}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = run_pipeline(config, user_path(name, "--run"), resume=args.resume,
                          progress=not (args.no_progress or args.json))
    if args.json:
        print_json(result)
        return 0
    from rich.table import Table

    best = result["coefficients"]
    out = console()
    out.print(f"coefficients: alpha={best['alpha']:.2f} beta={best['beta']:.2f} gamma={best['gamma']:.2f}")
    table = Table(title="model family")
    for col in ("phi", "resolution", "params", "MACs", "val acc", "test acc", "latency ms"):
        table.add_column(col)
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    for m in result["members"]:
        table.add_row(str(m["phi"]), fmt(m.get("resolution"), "d"), fmt(m.get("params"), ",.0f"),
                      fmt(m.get("macs"), ",.0f"), fmt(m.get("val_accuracy"), ".4f"),
                      fmt(m.get("test_accuracy"), ".4f"), fmt(m.get("latency_ms"), ".1f"))
    out.print(table)
    out.print(f"report: {result['report']}")
    return 0

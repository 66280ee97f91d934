"""`nasforge run`: dataset -> searched baseline -> alpha/beta/gamma -> model family -> report."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    from nasforge.cli.common import positive_float, positive_int

    p = sub.add_parser("run", help="the whole pipeline: search a baseline, scale it, train the family, report")
    p.add_argument("--dataset", default="digits", help="digits (built in), npz:PATH, folder:PATH")
    p.add_argument("--space", default="nasnet", choices=["nasnet", "mbconv"])
    p.add_argument("--strategy", default="evolution", help="random, evolution, ppo, reinforce")
    p.add_argument("--budget", default="small", choices=["small", "medium", "large"])
    p.add_argument("--trials", type=positive_int, help="search trials (overrides the budget)")
    p.add_argument("--epochs", type=positive_int, help="epochs per search child (overrides the budget)")
    p.add_argument("--step", type=positive_float, help="grid step of the coefficient search")
    p.add_argument("--family-epochs", type=positive_int, help="epochs per family member")
    p.add_argument("--cells", type=positive_int, help="NASNet: normal cells per stack of the baseline")
    p.add_argument("--filters", type=positive_int, help="NASNet: filters of the baseline")
    p.add_argument("--train-size", type=positive_int)
    p.add_argument("--val-size", type=positive_int)
    p.add_argument("--phi-max", type=int, default=2, help="largest family member phi (family is 0..K)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run", help="run folder (default runs/pipeline-DATASET-TIME)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run where it stopped")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    import time

    from nasforge.cli.common import console, print_json
    from nasforge.cli.search import resolve_cli_run
    from nasforge.pipeline import PipelineConfig, run_pipeline

    config = PipelineConfig(dataset=args.dataset, space=args.space, strategy=args.strategy, budget=args.budget,
                            trials=args.trials, epochs=args.epochs, step=args.step,
                            family_epochs=args.family_epochs, cells=args.cells, filters=args.filters,
                            phi_max=args.phi_max, seed=args.seed, train_size=args.train_size,
                            val_size=args.val_size)
    name = args.run or f"runs/pipeline-{args.dataset.split(':')[0]}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = run_pipeline(config, resolve_cli_run(name), resume=args.resume,
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

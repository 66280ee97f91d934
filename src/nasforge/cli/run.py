"""`nasforge run`: dataset -> searched baseline -> alpha/beta/gamma -> model family -> report."""

from __future__ import annotations

import argparse
from typing import Any

from nasforge.arch import DEFAULT_SPACE


def _preset(name: str) -> str:
    """`name`'s value in each --budget preset, for the help (the presets are the defaults)."""
    from nasforge.pipeline import BUDGETS

    return "default: the --budget preset's, " + ", ".join(f"{b} {v[name]}" for b, v in BUDGETS.items())


def add_parser(sub: Any) -> None:
    from nasforge.cli.common import add_scheduler_arguments, positive_float, positive_int

    p = sub.add_parser("run", help="the whole pipeline: search a baseline, scale it, train the family, report")
    p.add_argument(
        "--dataset", default="digits", help="images: digits (built in), npz:PATH, folder:PATH (default: %(default)s)"
    )
    p.add_argument(
        "--space",
        default=DEFAULT_SPACE,
        help="search space of the baseline, one whose architectures have a scaling rule (a space "
        "with a scaling family in nasforge list) (default: %(default)s)",
    )
    p.add_argument(
        "--strategy",
        default="evolution",
        help="search strategy of stage 1: random, evolution (default), local, predictor, ppo, reinforce",
    )
    p.add_argument(
        "--budget",
        default="small",
        choices=["small", "medium", "large"],
        help="preset of the settings below; on digits with 2 CPU cores small takes minutes, medium "
        "about 40 minutes, large hours (default: %(default)s)",
    )
    p.add_argument(
        "--search-evaluator",
        metavar="NAME",
        help="how stage 1 rates a child: proxy (trained for --epochs), zc_ensemble or another zero-cost "
        "score, auto (the recommended one) (default: zc_ensemble on a real dataset, 300 trials, nothing "
        "trained; proxy on digits or with --scheduler)",
    )
    p.add_argument(
        "--trials", type=positive_int, help=f"search trials ({_preset('trials')}; 300 with a zero-cost evaluator)"
    )
    p.add_argument(
        "--epochs",
        type=positive_int,
        help=f"training epochs per search child (proxy) and per coefficient candidate ({_preset('epochs')})",
    )
    p.add_argument(
        "--step", type=positive_float, help=f"grid step of the alpha, beta, gamma search ({_preset('step')})"
    )
    p.add_argument(
        "--grid-seeds",
        type=positive_int,
        default=1,
        help="trainings of each alpha, beta, gamma candidate (and of the alternatives and the baseline), "
        "from different seeds; the table shows their mean, and ± adds their spread (default: %(default)s)",
    )
    p.add_argument(
        "--family-epochs", type=positive_int, help=f"training epochs per family member ({_preset('family_epochs')})"
    )
    p.add_argument(
        "--cells", type=positive_int, help=f"NASNet: normal cells per stack of the baseline, N ({_preset('cells')})"
    )
    p.add_argument(
        "--filters", type=positive_int, help=f"NASNet: filters of the baseline's first stack, F ({_preset('filters')})"
    )
    p.add_argument(
        "--train-size",
        type=positive_int,
        help="train on a stratified subset of this many images (default: the whole training split)",
    )
    p.add_argument(
        "--val-size",
        type=positive_int,
        help="validate on a stratified subset of this many images (default: the whole validation split)",
    )
    p.add_argument(
        "--family-schedule",
        default="grow",
        choices=["grow", "fixed", "early-stop"],
        help="how long each family member trains: grow (default) gives member phi "
        "FAMILY_EPOCHS x sqrt(its MACs / the baseline's) epochs; fixed gives every member "
        "FAMILY_EPOCHS; early-stop trains up to twice grow's epochs and stops after --patience "
        "epochs without a better validation accuracy, keeping the best epoch",
    )
    p.add_argument(
        "--patience",
        type=positive_int,
        help="with --family-schedule early-stop: epochs without a better validation accuracy "
        "before a member stops (default: 3)",
    )
    p.add_argument(
        "--test-dataset",
        metavar="SPEC",
        help="a separate test set (npz:PATH, folder:PATH) with the training data's classes and image "
        "size; scored once per family member at the end, reported only, never used to choose "
        "(default: the dataset's own test split, if it has one)",
    )
    add_scheduler_arguments(p, "--epochs")
    p.add_argument(
        "--phi-max",
        type=int,
        default=2,
        help="largest family member phi, the family is 0..PHI_MAX (default: %(default)s)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the search, the data split and the training (default: %(default)s)"
    )
    p.add_argument(
        "--run",
        metavar="FOLDER",
        help="run folder, any path: absolute, relative to the current directory or under ~ "
        "(default: runs/pipeline-DATASET-TIME)",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --run where it stopped")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of tables")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    import time

    from nasforge.cli.common import print_json, user_path
    from nasforge.pipeline import PipelineConfig, run_pipeline

    config = PipelineConfig(
        dataset=args.dataset,
        space=args.space,
        strategy=args.strategy,
        budget=args.budget,
        trials=args.trials,
        epochs=args.epochs,
        step=args.step,
        grid_seeds=args.grid_seeds,
        family_epochs=args.family_epochs,
        cells=args.cells,
        filters=args.filters,
        phi_max=args.phi_max,
        seed=args.seed,
        train_size=args.train_size,
        val_size=args.val_size,
        family_schedule=args.family_schedule,
        patience=args.patience,
        test_dataset=args.test_dataset,
        scheduler=None if args.scheduler in (None, "none") else args.scheduler,
        min_epochs=args.min_epochs,
        max_epochs=args.max_epochs,
        eta=args.eta,
        search_evaluator=args.search_evaluator,
    )
    name = args.run
    if name is None:
        name = f"runs/pipeline-{args.dataset.split(':')[0]}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = run_pipeline(
        config, user_path(name, "--run"), resume=args.resume, progress=not (args.no_progress or args.json)
    )
    if args.json:
        print_json(result)
        return 0
    from rich.table import Table

    from nasforge.cli.scale import wide_console

    best = result["coefficients"]
    out = wide_console()

    def fmt(v: Any, f: str) -> str:
        return "-" if v is None else format(v, f)

    def pm(c: dict[str, Any]) -> str:
        se = c.get("se")
        return fmt(c.get("val_accuracy", c.get("reward")), ".4f") + (
            f" ± {se:.4f}" if isinstance(se, float) and se > 0 else ""
        )

    schedule = result.get("schedule") or {}
    grid = Table(
        title=f"coefficient search at phi = 1 ({fmt(schedule.get('epochs'), 'd')} epochs each, "
        f"{fmt(schedule.get('val_images'), 'd')} validation images"
        + (f", mean of {schedule['seeds']} seeds" if (schedule.get("seeds") or 1) > 1 else "")
        + "; ± is one standard error)"
    )
    for col in ("candidate", "alpha", "beta", "gamma", "val acc ± se", "MACs"):
        grid.add_column(col, justify="left" if col == "candidate" else "right")
    rows = [result["baseline"]] if result.get("baseline") else []
    rows += sorted((c for c in result.get("candidates", []) if c.get("reward") is not None), key=lambda c: -c["reward"])
    for c in rows:
        chosen = c.get("index") is not None and c.get("index") == best.get("index")
        label = "baseline (phi = 0)" if c.get("label") == "baseline" else c.get("label", "")
        grid.add_row(
            label + (" *" if chosen else ""),
            fmt(c.get("alpha"), ".3g"),
            fmt(c.get("beta"), ".3g"),
            fmt(c.get("gamma"), ".3g"),
            pm(c),
            fmt(c.get("macs"), ",.0f"),
            style="bold" if chosen else None,
        )
    out.print(grid)
    out.print(f"coefficients: alpha={best['alpha']:.2f} beta={best['beta']:.2f} gamma={best['gamma']:.2f} (* chosen)")
    if result.get("verdict"):
        out.print(result["verdict"]["text"], soft_wrap=True)
    table = Table(title=f"model family ({result.get('family_schedule', 'fixed')} schedule)")
    for col in ("phi", "px", "params", "MACs", "epochs", "stopped", "val acc", "test acc", "ms"):
        table.add_column(col, justify="left" if col == "stopped" else "right", no_wrap=True)
    mega = lambda v: "-" if v is None else f"{v / 1e6:.3g}M"  # noqa: E731
    for m in result["members"]:
        epochs = fmt(m.get("epochs"), "d") + (f"/{m['max_epochs']}" if m.get("stopped") in ("patience", "cap") else "")
        stopped = m.get("stopped") or "-"
        if m.get("best_epoch"):
            stopped += f", best {m['best_epoch']}"
        table.add_row(
            str(m["phi"]),
            fmt(m.get("resolution"), "d"),
            mega(m.get("params")),
            mega(m.get("macs")),
            epochs,
            stopped,
            fmt(m.get("val_accuracy"), ".4f"),
            fmt(m.get("test_accuracy"), ".4f"),
            fmt(m.get("latency_ms"), ".1f"),
        )
    out.print(table)
    if result.get("test_dataset"):
        out.print(
            f"test accuracy: {result['test_dataset']}, scored once per member at the end, reported only", soft_wrap=True
        )
    out.print(f"report: {result['report']}")
    return 0

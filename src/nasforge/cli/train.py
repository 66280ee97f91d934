"""`nasforge train`: train an architecture, a registered model or a run's best fully (`nasforge.train`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from nasforge.cli.common import console, positive_float, positive_int, print_json, user_path
from nasforge.errors import ConfigError
from nasforge.train import DEFAULT_EPOCHS


def output_dir(out: str | None, name: str) -> Path:
    """The output folder (--out, anywhere the user says); refuses one that holds a run or a model."""
    from nasforge.experiment import Store
    from nasforge.export import ARCH_NAME, WEIGHTS_NAME

    if out is None:
        base = f"runs/train-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        folder, n = user_path(base, "--out"), 1
        while folder.exists():
            n += 1
            folder = user_path(f"{base}-{n}", "--out")
        return folder
    folder = user_path(out, "--out")
    if folder.exists() and not folder.is_dir():
        raise ConfigError("--out", f"{out} exists and is not a folder")
    if Store.exists(folder):
        raise ConfigError("--out", f"{out} holds a search run; choose another folder (nothing was written)")
    if (folder / WEIGHTS_NAME).exists() or (folder / ARCH_NAME).exists():
        raise ConfigError(
            "--out", f"{out} already holds a trained model; choose another folder (nothing was overwritten)"
        )
    return folder


def _shown(path: Path) -> str:
    """`path` relative to the current directory where it lies inside it."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def cmd_train(args: Any) -> int:
    from nasforge.train import make_plan, plan_splits, train_plan

    plan = make_plan(
        args.source,
        dataset=args.dataset,
        cells=args.cells,
        filters=args.filters,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        resolution=args.resolution,
        device=args.device,
        seed=args.seed,
        test_dataset=args.test_dataset,
    )
    out_dir = output_dir(args.out, plan.name)
    if plan.test_dataset is not None:
        plan_splits(plan)  # a test set that does not fit is refused before anything is trained
    metrics = train_plan(plan, out_dir, progress=not (args.no_progress or args.json))
    if args.json:
        print_json({"out": _shown(out_dir), **metrics})
        return 0
    from rich.table import Table

    table = Table(title=f"trained {plan.name} on {plan.dataset}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("validation accuracy", f"{metrics['val_accuracy']:.4f}")
    test = metrics["test_accuracy"]
    table.add_row("test accuracy (reported only)", "-" if test is None else f"{test:.4f}")
    table.add_row("test set", metrics.get("test_dataset") or "none")
    table.add_row("parameters", f"{metrics['params']:,}")
    table.add_row("MACs", f"{metrics['macs']:,}")
    table.add_row("epochs", str(metrics["epochs"]))
    table.add_row("training time", f"{metrics['train_seconds']:.1f} s")
    out = console()
    out.print(table)
    shown = _shown(out_dir)
    out.print(f"saved to {shown}   (next: nasforge export {shown} --format onnx --out model.onnx)", soft_wrap=True)
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train an architecture (or a run's best) fully; save weights + arch.json")
    p.add_argument(
        "source", metavar="ARCH_OR_RUN", help="architecture JSON file, registered model name, or search run folder"
    )
    p.add_argument(
        "--dataset", help="images: digits (built in), npz:PATH, folder:PATH (default: the run's, else digits)"
    )
    p.add_argument(
        "--test-dataset",
        metavar="SPEC",
        help="a separate test set (npz:PATH, folder:PATH) with the training data's classes and image "
        "size, scored once at the end and only reported (default: the dataset's own test split)",
    )
    p.add_argument(
        "--cells", type=positive_int, help="NASNet: normal cells per stack, N (default: the run's or model's, else 1)"
    )
    p.add_argument(
        "--filters",
        type=positive_int,
        help="NASNet: filters of the first stack, F (default: the run's or model's, else 8)",
    )
    p.add_argument("--epochs", type=positive_int, help=f"training epochs (default: {DEFAULT_EPOCHS})")
    p.add_argument("--batch-size", type=positive_int, help="images per training batch (default: the run's, else 64)")
    p.add_argument(
        "--lr",
        type=positive_float,
        help="SGD learning rate at the start of the cosine schedule (default: the run's, else 0.05)",
    )
    p.add_argument(
        "--resolution",
        type=positive_int,
        help="resize images to this side in pixels (default: the run's, else the dataset's own)",
    )
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        help="where to train; auto takes cuda when there is one (default: the run's, else auto)",
    )
    p.add_argument("--seed", type=int, help="seed of the weights, batch order and augmentation (default: 0)")
    p.add_argument(
        "--out",
        metavar="FOLDER",
        help="output folder, any path: absolute, relative to the current directory or under ~ "
        "(default: runs/train-NAME-TIME)",
    )
    p.add_argument("--no-progress", action="store_true", help="no per-epoch lines on stderr")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=cmd_train)

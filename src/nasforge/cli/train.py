"""`nasforge train` (train an architecture fully) and `nasforge export` (take it away).

`nasforge train ARCH_OR_RUN` accepts an architecture JSON file (or a model description written by
`train`/`export --format json`), a registered model name, or a search run folder (its best
trial's architecture; by default with the run's dataset, network and training settings, flags
overriding). The validation split monitors training; the test split is scored once at the end
and only reported. The output folder holds `weights.pt`, `arch.json` and `metrics.json` (see
`nasforge.export`).
"""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasforge.cli.common import console, positive_float, positive_int, print_json, user_path
from nasforge.errors import ConfigError

#: Epochs of a full training unless --epochs says otherwise (a search's proxy uses far fewer).
DEFAULT_EPOCHS = 10
#: `nasforge.export.EXPORT_FORMATS`, named here so that building the parser imports no torch (a test
#: keeps the two equal; `nasforge export` itself checks --format against the real tuple).
EXPORT_FORMAT_NAMES = ("json", "onnx", "pt2", "torchscript")
#: Data options of the proxy evaluator that full training keeps (subset sizes are dropped).
DATA_OPTIONS = {"val_fraction": 0.1, "split_seed": 0, "resolution": None, "augment": True, "cutout": 0}


@dataclass
class TrainPlan:
    """What `nasforge train` will do, resolved from the source and the flags (no data loaded)."""

    name: str
    source: dict[str, Any]
    dataset: str
    network: dict[str, Any]
    train: dict[str, Any]
    data: dict[str, Any] = field(default_factory=lambda: dict(DATA_OPTIONS))
    architecture: Any = None
    space: dict[str, Any] | None = None
    model: str | None = None
    seed: int = 0
    test_dataset: str | None = None


# -- resolving the source ---------------------------------------------------------------------------
def _safe_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "model"
    return name[:60]


def _from_run(path: Path) -> dict[str, Any]:
    from nasforge.experiment import Store
    from nasforge.spaces import SPACES

    store = Store.open(path)
    try:
        config = store.config()
        best = store.best(1)
    finally:
        store.close()
    if not best:
        raise ConfigError("run", f"{path} has no finished trial to train (its best architecture is taken)")
    trial = best[0]
    space_cfg = config.get("space") if isinstance(config.get("space"), dict) else {}
    space = None
    if space_cfg.get("name") in SPACES:
        options = space_cfg.get("options") if "class" not in space_cfg else None
        space = {"name": space_cfg["name"], "options": dict(options or {})}
    evaluator = config.get("evaluator") if isinstance(config.get("evaluator"), dict) else {}
    opts: dict[str, Any] = {}
    if evaluator.get("name") == "proxy":
        opts = evaluator["options"] if isinstance(evaluator.get("options"), dict) else evaluator
    return {
        "kind": "run",
        "name": path.name,
        "architecture": trial.arch,
        "space": space,
        "dataset": opts.get("dataset"),
        "network": opts.get("network"),
        "train": opts.get("train"),
        "data": {k: opts[k] for k in DATA_OPTIONS if opts.get(k) is not None},
        "info": {"run": str(path), "trial": trial.id, "key": trial.key, "reward": trial.reward},
    }


def _from_file(path: Path) -> dict[str, Any]:
    import json

    from nasforge.errors import ArchitectureError
    from nasforge.export import FORMAT, ModelConfig

    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ArchitectureError(str(path), f"cannot read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ArchitectureError(str(path), f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise ArchitectureError(str(path), "not valid JSON (nested too deeply)") from None
    stem = path.parent.name if path.name == "arch.json" else path.stem
    if isinstance(data, dict) and data.get("format") == FORMAT:  # a model description: retrain it
        desc = ModelConfig.from_dict(data, path)
        return {
            "kind": "description",
            "name": stem,
            "architecture": desc.architecture,
            "space": desc.space,
            "model": desc.model,
            "network": desc.network,
            "dataset": desc.dataset,
            "info": {"file": str(path)},
        }
    return {"kind": "architecture", "name": stem, "architecture": data, "space": None, "info": {"file": str(path)}}


def resolve_source(text: str) -> dict[str, Any]:
    from nasforge.experiment import Store
    from nasforge.export import ARCH_NAME

    path = Path(os.path.expanduser(text))  # unchanged if '~' starts no home folder, as in a shell
    if path.is_dir():
        if Store.exists(path):
            return _from_run(path)
        if (path / ARCH_NAME).is_file():
            return _from_file(path / ARCH_NAME)
        raise ConfigError(
            "ARCH_OR_RUN", f"{text} is a folder without a nasforge run (nasforge.db) or a trained model ({ARCH_NAME})"
        )
    if path.is_file():
        return _from_file(path)
    from nasforge.models import list_models

    if text in list_models():
        return {"kind": "model", "name": text, "model": text, "info": {"model": text}}
    raise ConfigError(
        "ARCH_OR_RUN", f"{text!r} is neither a file, a run folder nor a registered model (see `nasforge models`)"
    )


def _canonical_architecture(arch: Any, space: dict[str, Any] | None) -> tuple[Any, dict[str, Any]]:
    """Validated, canonical architecture JSON and its space {"name", "options"}."""
    from nasforge.export import build_space_for

    s = build_space_for(space, arch)
    return s.to_json(s.from_json(arch)), {"name": s.name, "options": dict((space or {}).get("options") or {})}


def make_plan(
    source: str,
    *,
    dataset: str | None = None,
    cells: int | None = None,
    filters: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    resolution: int | None = None,
    device: str | None = None,
    seed: int | None = None,
    test_dataset: str | None = None,
) -> TrainPlan:
    """Resolve ARCH_OR_RUN and the flags (None = not given) into a `TrainPlan`."""
    from nasforge.evaluators.proxy import train_config_from
    from nasforge.spaces import SPACES

    if seed is not None and seed < 0:
        raise ConfigError("--seed", f"must be a non-negative integer, got {seed}")
    src = resolve_source(source)
    architecture, space, model = src.get("architecture"), src.get("space"), src.get("model")
    if model is not None:
        from nasforge.export import FIXED_KEYS
        from nasforge.models import get_model_spec

        spec = get_model_spec(model)
        options = spec.options()
        network = {k: v for k, v in spec.defaults.items() if k in options and k not in FIXED_KEYS}
        network.update({k: v for k, v in (src.get("network") or {}).items()})
        takes_cells = "num_cells" in options and "num_filters" in options
        what = f"model {model!r}"
    else:
        architecture, space = _canonical_architecture(architecture, space)
        proxy_network = getattr(SPACES[space["name"]], "proxy_network", {})
        network = dict(src["network"]) if src.get("network") is not None else dict(proxy_network)
        takes_cells = "num_cells" in proxy_network and "num_filters" in proxy_network
        what = f"a {space['name']} architecture"
    for flag, key, value in (("--cells", "num_cells", cells), ("--filters", "num_filters", filters)):
        if value is not None:
            if not takes_cells:
                raise ConfigError(flag, f"only applies to NASNet networks, not {what}")
            network[key] = value
    for key in ("num_classes", "in_channels", "resolution"):  # these come from the data
        network.pop(key, None)
    train = dict(src.get("train") or {})
    train["epochs"] = epochs if epochs is not None else DEFAULT_EPOCHS
    for key, value in (("batch_size", batch_size), ("lr", lr), ("device", device)):
        if value is not None:
            train[key] = value
    train_config_from(train)  # validate now, before loading any data
    data = {**DATA_OPTIONS, **(src.get("data") or {})}
    if resolution is not None:
        data["resolution"] = resolution
    return TrainPlan(
        name=_safe_name(src["name"]),
        source={"kind": src["kind"], **src.get("info", {})},
        dataset=dataset or src.get("dataset") or "digits",
        network=network,
        train=train,
        data=data,
        architecture=architecture,
        space=space if model is None else None,
        model=model,
        seed=0 if seed is None else seed,
        test_dataset=test_dataset,
    )


def plan_splits(plan: TrainPlan):
    """The full train/validation split of the plan's dataset (no proxy subsets) and its test split
    (the --test-dataset's images when one is given: same classes and image size, else a ConfigError)."""
    from nasforge.scaling.schedule import splits_for

    return splits_for(plan.dataset, plan.data["val_fraction"], plan.data["split_seed"], None, None, plan.test_dataset)


def model_config(plan: TrainPlan, splits) -> Any:
    from nasforge.export import ModelConfig

    return ModelConfig(
        name=plan.name,
        num_classes=splits.num_classes,
        in_channels=splits.in_channels,
        resolution=plan.data["resolution"] or splits.resolution,
        mean=tuple(splits.mean),
        std=tuple(splits.std),
        architecture=plan.architecture,
        space=plan.space,
        model=plan.model,
        network=dict(plan.network),
        dataset=plan.dataset,
    )


# -- training ---------------------------------------------------------------------------------------
def train_plan(plan: TrainPlan, out_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Train the plan's network fully, save it into `out_dir`; return the metrics written."""
    import torch

    from nasforge.evaluators.base import EvaluationError
    from nasforge.evaluators.proxy import ProxyTrainer, train_config_from
    from nasforge.evaluators.training import train_model
    from nasforge.export import save_model
    from nasforge.profile import count_macs, count_params

    splits = plan_splits(plan)
    config = model_config(plan, splits)
    train_cfg = train_config_from(plan.train)
    augmenter = ProxyTrainer(plan.dataset, augment=plan.data["augment"], cutout=plan.data["cutout"], latency=False)

    def on_epoch(epoch: int, loss: float) -> None:
        if progress:
            print(
                f"epoch {epoch + 1}/{train_cfg.epochs}: train loss {loss:.4f} ({time.perf_counter() - start:.1f} s)",
                file=sys.stderr,
                flush=True,
            )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(plan.seed)
        model = config.build()
        params = count_params(model)
        macs = count_macs(model, config.resolution, config.in_channels)
        start = time.perf_counter()
        try:
            result = train_model(
                model,
                splits,
                train_cfg,
                plan.seed,
                augmenter.augmentation(splits),
                resolution=plan.data["resolution"],
                evaluate_test=True,
                on_epoch=on_epoch,
            )
        except EvaluationError as exc:
            raise ConfigError("train", f"training failed: {exc} (try a lower --lr)") from None
    model.to("cpu").eval()
    metrics = {
        "name": plan.name,
        "source": plan.source,
        "dataset": plan.dataset,
        "val_accuracy": result.val_accuracy,
        "val_loss": result.val_loss,
        "test_accuracy": result.test_accuracy,
        "train_loss": result.train_loss,
        "params": params,
        "macs": macs,
        "train_seconds": result.train_seconds,
        "images_per_second": result.images_per_second,
        "epochs": train_cfg.epochs,
        "seed": plan.seed,
        "train": train_cfg.to_dict(),
        "data": plan.data,
        "splits": {
            "train": len(splits.train),
            "val": len(splits.val),
            "test": len(splits.test) if splits.test is not None else 0,
        },
        "test_dataset": plan.test_dataset
        or (f"{plan.dataset} (its own test split)" if splits.test is not None else None),
    }
    save_model(out_dir, model, config, metrics)
    return metrics


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


# -- export -------------------------------------------------------------------------------------------
def cmd_export(args: Any) -> int:
    from nasforge.experiment import Store
    from nasforge.export import (
        ARCH_NAME,
        EXPORT_FORMATS,
        WEIGHTS_NAME,
        ModelFileError,
        export_model,
        load_model,
        locate_trained,
        read_model_config,
    )

    if args.format not in EXPORT_FORMATS:
        raise ConfigError("--format", f"unknown export format {args.format!r}", EXPORT_FORMATS)
    if args.normalize and args.format == "json":
        raise ConfigError("--normalize", "only applies to pt2, onnx and torchscript exports")
    path = Path(args.source)
    if not path.exists():
        raise ModelFileError(path, "no such file or folder")
    out = Path(args.out)
    home = (path if path.is_dir() else path.parent).resolve()
    if out.is_file() and (home in out.resolve().parents or Store.exists(out.parent)):
        raise ConfigError(
            "--out",
            f"{args.out} would overwrite a file of a nasforge run or trained model; "
            "write the export to another file (nothing was overwritten)",
        )
    trained = not path.is_dir() or (path / ARCH_NAME).is_file()
    if trained:
        arch_file, weights_file = locate_trained(path)
        if args.format == "json":
            config, model = read_model_config(arch_file), None
        else:
            model, config = load_model(path)
    elif Store.exists(path):
        if args.format != "json":
            raise ConfigError(
                "--format",
                f"{args.source} is a search run without trained weights; only "
                f"--format json exports it (train it first: nasforge train "
                f"{args.source}, then export that folder)",
            )
        plan = make_plan(str(path))
        config, model = model_config(plan, plan_splits(plan)), None
    else:
        raise ConfigError(
            "RUN_OR_WEIGHTS",
            f"{args.source} holds neither a trained model ({ARCH_NAME} + "
            f"{WEIGHTS_NAME}) nor a nasforge run (nasforge.db)",
        )
    if args.no_deploy and args.format == "json":
        raise ConfigError("--no-deploy", "only applies to pt2, onnx and torchscript exports")
    result = export_model(
        model, config, args.format, args.out, normalize=args.normalize, trained=trained, deploy=not args.no_deploy
    )
    if args.json:
        print_json(result.to_dict())
        return 0
    note = ""
    if result.method:
        note = f" via {result.method}"
    if result.dynamic_batch is not None:
        note += "; dynamic batch" if result.dynamic_batch else "; static batch"
    if result.max_abs_diff is not None:
        note += f"; checked against the original: max |diff| {result.max_abs_diff:.2g}"
    elif args.format == "onnx":
        note += "; not checked (onnxruntime is not installed)"
    if result.deployed:
        note += "; deployed: BatchNorm folded, dropout and drop path removed (--no-deploy keeps them)"
    console().print(f"wrote {result.path} ({result.format}{note})", soft_wrap=True)
    if result.deprecated:
        console().print(
            f"note: PyTorch deprecates {result.format}; the default --format pt2 (torch.export) replaces it",
            soft_wrap=True,
        )
    return 0


# -- parsers ------------------------------------------------------------------------------------------
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


def add_export_parser(sub: Any) -> None:
    p = sub.add_parser("export", help=f"export a trained model: {', '.join(EXPORT_FORMAT_NAMES)}")
    p.add_argument(
        "source",
        metavar="RUN_OR_WEIGHTS",
        help="a `nasforge train` folder (or its weights.pt), or a search run folder (json only)",
    )
    p.add_argument(
        "--format",
        default="pt2",
        help="pt2 (default: a torch.export ExportedProgram), onnx (torch.export-based exporter), "
        "json (the model description) or torchscript (legacy: deprecated by PyTorch)",
    )
    p.add_argument("--out", required=True, help="file to write (never one of a run's or a trained model's own files)")
    p.add_argument(
        "--normalize",
        action="store_true",
        help="bake the training normalisation in: the exported model takes images in [0, 1]",
    )
    p.add_argument(
        "--no-deploy",
        action="store_true",
        help="export the eager network as trained (BatchNorm, dropout and drop path kept) instead "
        "of the deployed one (nasforge.deploy: BN folded into the convolutions, faster)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_export)

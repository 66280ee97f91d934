"""Full training of an architecture, a registered model or a search run's best, outside the search.

`make_plan(source, ...)` resolves what to train: an architecture JSON file (or a model description
written by training or `export --format json`), a registered model name, or a search run folder
(its best trial's architecture, by default with the run's dataset, network and training settings).
`train_plan(plan, out_dir)` trains it on the full training split; the validation split monitors
training and the test split is scored once at the end and only reported. The folder then holds
`weights.pt`, `arch.json` and `metrics.json` (see `nasforge.export`). `nasforge train` is this
module plus argument parsing and printing.
"""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasforge.errors import ConfigError

#: Epochs of a full training unless told otherwise (a search's proxy uses far fewer).
DEFAULT_EPOCHS = 10
#: Data options of the proxy evaluator that full training keeps (subset sizes are dropped).
DATA_OPTIONS = {"val_fraction": 0.1, "split_seed": 0, "resolution": None, "augment": True, "cutout": 0}


@dataclass
class TrainPlan:
    """What a full training will do, resolved from the source and the flags (no data loaded)."""

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
    raw_space = config.get("space")
    space_cfg: dict[str, Any] = raw_space if isinstance(raw_space, dict) else {}
    space = None
    if space_cfg.get("name") in SPACES:
        options = space_cfg.get("options") if "class" not in space_cfg else None
        space = {"name": space_cfg["name"], "options": dict(options or {})}
    raw_evaluator = config.get("evaluator")
    evaluator: dict[str, Any] = raw_evaluator if isinstance(raw_evaluator, dict) else {}
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
    for key, setting in (("batch_size", batch_size), ("lr", lr), ("device", device)):
        if setting is not None:
            train[key] = setting
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

    from nasforge.data.loader import augmentation
    from nasforge.evaluators.base import EvaluationError
    from nasforge.evaluators.proxy import train_config_from
    from nasforge.evaluators.training import train_model
    from nasforge.export import save_model
    from nasforge.profile import count_macs, count_params

    splits = plan_splits(plan)
    config = model_config(plan, splits)
    train_cfg = train_config_from(plan.train)

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
                augmentation(splits, plan.data["augment"], plan.data["cutout"]),
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

"""How long each member of a scaled family is trained, so that members are compared at a like point.

With one short schedule for every member, a larger member is simply further from convergence at
the end of it, and the family comes out flat or backwards (phi = 2 worse than phi = 0) for no
reason but under-training. The EfficientNet paper trains every member to convergence with a long
schedule (Tan & Le, ICML 2019, section 5.2: 350 epochs in the reference TPU implementation),
which a proxy run cannot afford. Three schedules are offered instead:

- ``fixed``: every member gets the base number of epochs E (what nasforge did before; cheap,
  biased against the larger members).
- ``grow`` (the default): member phi gets ceil(E x sqrt(MACs_phi / MACs_0)) epochs, about
  E x 2^(phi/2) under alpha beta^2 gamma^2 = 2: E, 1.4 E, 2 E, 2.8 E, ... A larger member needs
  more optimisation steps to reach the same point of its learning curve; the square root keeps
  the family's cost at about sum 2^(3 phi / 2) x the baseline's. It is a heuristic, recorded with
  each member, not a law.
- ``early-stop``: member phi is trained for up to twice its ``grow`` epochs (the cap; the cosine
  learning rate spans the cap), validation accuracy is measured after every epoch, training stops
  after `patience` epochs without a better validation accuracy, and the weights of the best epoch
  are kept (and tested). Validation is what the choice of epoch is made on; the test split is
  scored once, on those weights, and only reported.

Each member records `epochs` (trained), `max_epochs` (its schedule or cap), `best_epoch`
(early-stop), `stopped` ("schedule", "patience" or "cap") and a sentence `stop_reason`.

A member's training can outlast a sitting (on a CPU the phi = 2 member of a real dataset is hours),
so `MemberTrainer(checkpoint=PATH)` saves its state after every epoch -- weights, optimizer,
learning-rate schedule, random-number generators, the validation history and the best epoch's
weights -- and a later call with the same member and seed goes on from the last finished epoch,
with the result an uninterrupted training would have given.
"""

from __future__ import annotations

import json
import math
import os
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from nasforge.errors import ConfigError
from nasforge.evaluators.proxy import ProxyTrainer, cached_splits
from nasforge.spaces.base import SearchSpace

SCHEDULES = ("fixed", "grow", "early-stop")
#: early-stop's epochs without a better validation accuracy before it stops (the default).
DEFAULT_PATIENCE = 3
#: early-stop's cap, in multiples of the member's `grow` epochs.
CAP_FACTOR = 2


def check_schedule(schedule: str, patience: int | None = None) -> None:
    if schedule not in SCHEDULES:
        raise ConfigError("family_schedule", f"unknown family schedule {schedule!r}", SCHEDULES)
    if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
        raise ConfigError("patience", f"must be a positive integer, got {patience!r}")


def member_epochs(base_epochs: int, macs_ratio: float, schedule: str = "grow") -> int:
    """Epochs (or, for early-stop, the cap) of a member whose MACs are `macs_ratio` x the baseline's."""
    check_schedule(schedule)
    if isinstance(base_epochs, bool) or not isinstance(base_epochs, int) or base_epochs < 1:
        raise ConfigError("epochs", f"must be a positive integer, got {base_epochs!r}")
    if schedule == "fixed":
        return base_epochs
    ratio = macs_ratio if isinstance(macs_ratio, (int, float)) and math.isfinite(macs_ratio) else 1.0
    grown = max(base_epochs, math.ceil(base_epochs * math.sqrt(max(ratio, 1.0)) - 1e-9))
    return grown if schedule == "grow" else CAP_FACTOR * grown


@lru_cache(maxsize=2)
def _splits_with_test(
    dataset: str, val_fraction: float, split_seed: int, train_size: int | None, val_size: int | None, test_dataset: str
) -> Any:
    from nasforge.data.loader import with_test_set

    splits = cached_splits(dataset, val_fraction, split_seed, train_size, val_size)
    return with_test_set(splits, test_dataset, train_spec=dataset)


def splits_for(
    dataset: str,
    val_fraction: float,
    split_seed: int,
    train_size: int | None,
    val_size: int | None,
    test_dataset: str | None = None,
) -> Any:
    """The (cached) splits of `dataset`, with the test split of `test_dataset` when one is given."""
    if test_dataset is None:
        return cached_splits(dataset, val_fraction, split_seed, train_size, val_size)
    return _splits_with_test(dataset, val_fraction, split_seed, train_size, val_size, test_dataset)


class MemberTrainer(ProxyTrainer):
    """A `ProxyTrainer` for family members: a separate test set, and optional early stopping.

    Args (besides `ProxyTrainer`'s; `train.epochs` is the schedule, or the cap with `patience`):
        patience: stop after this many epochs without a better validation accuracy and keep the
            best epoch's weights (None: train all `train.epochs`).
        test_dataset: a dataset spec whose images replace the test split (reported only).
        schedule: the schedule's name, recorded in the metrics.
        checkpoint: a file to save the training state to after every epoch and to go on from
            (None: no checkpoint). It is where the work is kept, not part of the result, so it is
            not in `config()`; a file of another member or seed is ignored and overwritten.
    """

    name = "member_trainer"

    def __init__(
        self,
        *args: Any,
        patience: int | None = None,
        test_dataset: str | None = None,
        schedule: str = "fixed",
        checkpoint: str | os.PathLike | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        check_schedule(schedule, patience)
        self.patience = patience
        self.test_dataset = test_dataset
        self.schedule = schedule
        self.checkpoint = None if checkpoint is None else Path(checkpoint)

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "name": self.name,
            "patience": self.patience,
            "test_dataset": self.test_dataset,
            "schedule": self.schedule,
        }

    def splits(self) -> Any:
        return splits_for(
            self.dataset, self.val_fraction, self.split_seed, self.train_size, self.val_size, self.test_dataset
        )

    def evaluate(self, space: SearchSpace, arch: Any, seed: int, fidelity: Any = None) -> Any:
        if fidelity is not None:
            raise ConfigError("fidelity", "family members are trained to their own schedule, not a fidelity")
        epochs = self.train.epochs
        if self.patience is None and self.checkpoint is None:
            metrics = dict(super().evaluate(space, arch, seed))
            metrics.update(
                epochs=epochs,
                max_epochs=epochs,
                best_epoch=None,
                stopped="schedule",
                schedule=self.schedule,
                stop_reason=f"end of its {epochs}-epoch schedule",
            )
            return metrics
        return self._by_epoch(space, arch, seed)

    def _by_epoch(self, space: SearchSpace, arch: Any, seed: int) -> dict[str, Any]:
        """Train one epoch at a time: for early stopping (validation after each) and for the
        checkpoint. Without patience the result is the uninterrupted training's, epoch for epoch."""
        from nasforge.evaluators.training import evaluate_accuracy, train_model
        from nasforge.profile import count_macs, count_params, measure_latency

        splits = self.splits()
        resolution = self.resolution or splits.resolution
        cap = self.train.epochs
        start = time.perf_counter()
        identity = f"{arch!r} seed {seed} {json.dumps(self.config(), sort_keys=True, default=str)}"
        saved = self._load_checkpoint(identity)
        progress: dict[str, Any] = saved or {
            "identity": identity,
            "epoch": 0,
            "state": None,
            "history": [],
            "train_loss": [],
            "best_acc": -math.inf,
            "best_epoch": 0,
            "best_weights": None,
            "patience_stop": False,
            "final_weights": None,
            "seconds": 0.0,
            "images_per_second": 0.0,
        }
        stopped = "cap" if self.patience is not None else "schedule"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self.build(space, arch, splits)
            params = count_params(model)
            macs = count_macs(model, resolution, splits.in_channels)
            augment = self.augmentation(splits)
            result = None
            while progress["epoch"] < cap and not progress["patience_stop"]:
                epoch = progress["epoch"] + 1
                last = epoch == cap and self.patience is None
                result = train_model(
                    model,
                    splits,
                    self.train,
                    seed,
                    augment,
                    resolution=self.resolution,
                    horizon=cap,
                    until=epoch,
                    resume=progress["state"],
                    evaluate_test=last and self.report_test,
                )
                progress["epoch"], progress["state"] = epoch, result.state
                if result.state is None and self.patience is None:  # the last epoch: the weights to score
                    progress["final_weights"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
                progress["seconds"] += result.train_seconds
                progress["images_per_second"] = result.images_per_second
                progress["train_loss"] = list(result.train_loss)
                progress["history"].append(result.val_accuracy)
                if self.patience is not None:
                    if result.val_accuracy > progress["best_acc"]:
                        progress["best_acc"], progress["best_epoch"] = result.val_accuracy, epoch
                        progress["best_weights"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    progress["patience_stop"] = epoch - progress["best_epoch"] >= self.patience and epoch < cap
                self._save_checkpoint(progress)
            history, best_epoch, trained = progress["history"], progress["best_epoch"], progress["epoch"]
            if progress["patience_stop"]:
                stopped = "patience"
            if self.patience is None and result is not None:
                val_accuracy, val_loss, test_accuracy = result.val_accuracy, result.val_loss, result.test_accuracy
            else:  # the best epoch's weights, or a finished training's from its checkpoint
                weights = progress["best_weights"] if self.patience is not None else progress["final_weights"]
                if weights is not None:
                    model.load_state_dict(weights)
                val_accuracy, val_loss = evaluate_accuracy(model, splits.val, splits, self.train, self.resolution)
                test_accuracy = None
                if self.report_test and splits.test is not None:
                    test_accuracy, _ = evaluate_accuracy(model, splits.test, splits, self.train, self.resolution)
        if stopped == "schedule":
            reason = f"end of its {cap}-epoch schedule"
        elif stopped == "patience":
            reason = (
                f"no better validation accuracy for {self.patience} epochs after epoch {best_epoch} "
                f"(cap {cap}); epoch {best_epoch}'s weights kept"
            )
        else:
            reason = f"reached the cap of {cap} epochs; epoch {best_epoch}'s weights kept"
        metrics: dict[str, Any] = {
            "val_accuracy": val_accuracy,
            "val_loss": val_loss,
            "train_loss": progress["train_loss"],
            "params": params,
            "macs": macs,
            "train_seconds": progress["seconds"],
            "images_per_second": progress["images_per_second"],
            "epochs": trained,
            "max_epochs": cap,
            "best_epoch": best_epoch if self.patience is not None else None,
            "stopped": stopped,
            "schedule": self.schedule,
            "stop_reason": reason,
            "val_history": history,
        }
        if test_accuracy is not None:
            metrics["test_accuracy"] = test_accuracy
        if self.latency:
            metrics["latency_ms"] = measure_latency(model, resolution, in_channels=splits.in_channels)
        metrics["wall_seconds"] = time.perf_counter() - start
        return metrics

    def _load_checkpoint(self, identity: str) -> dict[str, Any] | None:
        """The saved progress of this very training, or None (no file, or another training's)."""
        if self.checkpoint is None or not self.checkpoint.exists():
            return None
        saved = torch.load(self.checkpoint, weights_only=True, map_location="cpu")
        return saved if isinstance(saved, dict) and saved.get("identity") == identity else None

    def _save_checkpoint(self, progress: dict[str, Any]) -> None:
        """Written whole, then renamed: a kill while saving leaves the previous epoch's file."""
        if self.checkpoint is None:
            return
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        partial = self.checkpoint.with_name(self.checkpoint.name + ".partial")
        torch.save(progress, partial)
        os.replace(partial, self.checkpoint)


__all__ = [
    "CAP_FACTOR",
    "DEFAULT_PATIENCE",
    "SCHEDULES",
    "MemberTrainer",
    "check_schedule",
    "member_epochs",
    "splits_for",
]

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
"""

from __future__ import annotations

import math
import time
from functools import lru_cache
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
    """

    name = "member_trainer"

    def __init__(
        self,
        *args: Any,
        patience: int | None = None,
        test_dataset: str | None = None,
        schedule: str = "fixed",
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        check_schedule(schedule, patience)
        self.patience = patience
        self.test_dataset = test_dataset
        self.schedule = schedule

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
        if self.patience is None:
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
        return self._early_stopped(space, arch, seed)

    def _early_stopped(self, space: SearchSpace, arch: Any, seed: int) -> dict[str, Any]:
        from nasforge.evaluators.training import evaluate_accuracy, train_model
        from nasforge.profile import count_macs, count_params, measure_latency

        splits = self.splits()
        resolution = self.resolution or splits.resolution
        cap, patience = self.train.epochs, int(self.patience or 1)
        start = time.perf_counter()
        history: list[float] = []
        train_loss: list[float] = []
        best_acc, best_epoch, best_weights = -math.inf, 0, None
        seconds, images_per_second = 0.0, 0.0
        stopped = "cap"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self.build(space, arch, splits)
            params = count_params(model)
            macs = count_macs(model, resolution, splits.in_channels)
            state = None
            augment = self.augmentation(splits)
            for epoch in range(1, cap + 1):
                result = train_model(
                    model,
                    splits,
                    self.train,
                    seed,
                    augment,
                    resolution=self.resolution,
                    horizon=cap,
                    until=epoch,
                    resume=state,
                )
                state = result.state
                seconds += result.train_seconds
                images_per_second = result.images_per_second
                train_loss = list(result.train_loss)
                history.append(result.val_accuracy)
                if result.val_accuracy > best_acc:
                    best_acc, best_epoch = result.val_accuracy, epoch
                    best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
                if epoch - best_epoch >= patience and epoch < cap:
                    stopped = "patience"
                    break
            trained = len(history)
            if best_weights is not None:
                model.load_state_dict(best_weights)
            val_accuracy, val_loss = evaluate_accuracy(model, splits.val, splits, self.train, self.resolution)
            test_accuracy = None
            if self.report_test and splits.test is not None:
                test_accuracy, _ = evaluate_accuracy(model, splits.test, splits, self.train, self.resolution)
        if stopped == "patience":
            reason = (
                f"no better validation accuracy for {patience} epochs after epoch {best_epoch} "
                f"(cap {cap}); epoch {best_epoch}'s weights kept"
            )
        else:
            reason = f"reached the cap of {cap} epochs; epoch {best_epoch}'s weights kept"
        metrics: dict[str, Any] = {
            "val_accuracy": val_accuracy,
            "val_loss": val_loss,
            "train_loss": train_loss,
            "params": params,
            "macs": macs,
            "train_seconds": seconds,
            "images_per_second": images_per_second,
            "epochs": trained,
            "max_epochs": cap,
            "best_epoch": best_epoch,
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


__all__ = [
    "CAP_FACTOR",
    "DEFAULT_PATIENCE",
    "SCHEDULES",
    "MemberTrainer",
    "check_schedule",
    "member_epochs",
    "splits_for",
]

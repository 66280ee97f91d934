"""The proxy task: train a child network briefly on the user's data, score it on validation.

Splits are made once per process and cached, so a search pays for loading its dataset once per
worker. Everything random in one evaluation (weights, batch order, augmentation, drop path) is
drawn from the trial's seed inside a forked RNG, so a trial gives the same metrics whenever and
wherever it runs on CPU.
"""

from __future__ import annotations

import io
import time
from dataclasses import fields
from functools import lru_cache
from typing import Any, overload

import torch

from nasforge.data.datasets import load_dataset
from nasforge.data.loader import Augment, DataSplits, augmentation, make_splits
from nasforge.errors import ConfigError
from nasforge.evaluators.base import EVALUATORS, Evaluation, Evaluator, Fidelity, Metrics
from nasforge.evaluators.training import TrainConfig, train_model
from nasforge.profile import count_macs, count_params, measure_latency
from nasforge.spaces.base import SearchSpace


@lru_cache(maxsize=4)
def cached_splits(
    dataset: str, val_fraction: float, split_seed: int, train_size: int | None, val_size: int | None
) -> DataSplits:
    return make_splits(load_dataset(dataset), val_fraction, split_seed, train_size, val_size)


def train_config_from(value: TrainConfig | dict[str, Any] | None) -> TrainConfig:
    if isinstance(value, TrainConfig):
        return value
    allowed = [f.name for f in fields(TrainConfig)]
    for key in value or {}:
        if key not in allowed:
            raise ConfigError(f"train.{key}", "unknown training option", allowed)
    return TrainConfig(**(value or {}))


class DataEvaluator(Evaluator):
    """An evaluator that builds the space's network for the user's data: the dataset, the
    validation split carved from its training part, optional subsets, and network options."""

    def _set_data(
        self,
        dataset: str,
        network: dict[str, Any] | None,
        val_fraction: float,
        split_seed: int,
        train_size: int | None,
        val_size: int | None,
        resolution: int | None,
    ) -> None:
        self.dataset = dataset
        self.network = dict(network or {})
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.train_size = train_size
        self.val_size = val_size
        self.resolution = resolution

    def data_config(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "network": self.network,
            "val_fraction": self.val_fraction,
            "split_seed": self.split_seed,
            "train_size": self.train_size,
            "val_size": self.val_size,
            "resolution": self.resolution,
        }

    def splits(self) -> DataSplits:
        return cached_splits(self.dataset, self.val_fraction, self.split_seed, self.train_size, self.val_size)

    def prepare(self) -> None:
        self.splits()  # loads (and caches) the dataset: a bad one is a DatasetError naming the file

    def build(self, space: SearchSpace, arch: Any, splits: DataSplits, **overrides: Any) -> torch.nn.Module:
        resolution = self.resolution or splits.resolution
        config = {
            "num_classes": splits.num_classes,
            "in_channels": splits.in_channels,
            "resolution": resolution,
            **self.network,
            **overrides,
        }
        return space.build(arch, **config)


@EVALUATORS.register("proxy")
class ProxyTrainer(DataEvaluator):
    """Evaluate an architecture by training it: `val_accuracy` is the reward's source.

    Args:
        dataset: dataset spec (`digits`, `npz:PATH`, `folder:PATH`).
        network: keyword arguments for `space.build` (e.g. num_cells, num_filters, stem).
        train: a `TrainConfig` or a dict of its fields.
        val_fraction, split_seed: the validation split carved from the training data.
        train_size, val_size: optional stratified subsets for a cheaper proxy.
        resolution: resize images to this size (default: the dataset's).
        augment: random crop/flip suited to the data (see `default_augment`); False for none.
        cutout: cutout square size (0 = off).
        latency: also measure batch-1 latency of the trained child.
        report_test: also score the test split, as "test_accuracy" (for final reports; searches
            leave it off, and objectives refuse test metrics either way).
    """

    name = "proxy"

    def __init__(
        self,
        dataset: str = "digits",
        network: dict[str, Any] | None = None,
        train: TrainConfig | dict[str, Any] | None = None,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        train_size: int | None = None,
        val_size: int | None = None,
        resolution: int | None = None,
        augment: bool = True,
        cutout: int = 0,
        latency: bool = True,
        report_test: bool = False,
    ):
        self._set_data(dataset, network, val_fraction, split_seed, train_size, val_size, resolution)
        self.train = train_config_from(train)
        self.augment = augment
        self.cutout = cutout
        self.latency = latency
        self.report_test = report_test

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **self.data_config(),
            "train": self.train.to_dict(),
            "augment": self.augment,
            "cutout": self.cutout,
            "latency": self.latency,
            "report_test": self.report_test,
        }

    def augmentation(self, splits: DataSplits) -> Augment | None:
        return augmentation(splits, self.augment, self.cutout)

    supports_fidelity = True

    @overload
    def evaluate(self, space: SearchSpace, arch: Any, seed: int, fidelity: None = None) -> Metrics: ...
    @overload
    def evaluate(self, space: SearchSpace, arch: Any, seed: int, fidelity: Fidelity) -> Evaluation: ...
    @overload
    def evaluate(
        self, space: SearchSpace, arch: Any, seed: int, fidelity: Fidelity | None = None
    ) -> Metrics | Evaluation: ...
    def evaluate(
        self, space: SearchSpace, arch: Any, seed: int, fidelity: Fidelity | None = None
    ) -> Metrics | Evaluation:
        """Train and score `arch`; with `fidelity`, train to its epochs of its horizon (continuing
        from its state), stop at its deadline, and return an `Evaluation` carrying the state."""
        splits = self.splits()
        resolution = self.resolution or splits.resolution
        start = time.perf_counter()
        resume = None
        if fidelity is not None and fidelity.state is not None:
            resume = torch.load(io.BytesIO(fidelity.state), weights_only=True, map_location="cpu")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self.build(space, arch, splits)
            params = count_params(model)
            macs = count_macs(model, resolution, splits.in_channels)
            horizon = (fidelity.horizon if fidelity is not None else None) or self.train.epochs
            result = train_model(
                model,
                splits,
                self.train,
                seed,
                self.augmentation(splits),
                resolution=self.resolution,
                evaluate_test=self.report_test,
                horizon=horizon,
                until=fidelity.epochs if fidelity else None,
                resume=resume,
                deadline=fidelity.deadline if fidelity else None,
            )
        metrics: Metrics = {
            "val_accuracy": result.val_accuracy,
            "val_loss": result.val_loss,
            "train_loss": result.train_loss,
            "params": params,
            "macs": macs,
            "train_seconds": result.train_seconds,
            "images_per_second": result.images_per_second,
        }
        if result.test_accuracy is not None:
            metrics["test_accuracy"] = result.test_accuracy
        if self.latency and result.stopped is None:  # at a deadline, every second is over budget
            metrics["latency_ms"] = measure_latency(model, resolution, in_channels=splits.in_channels)
        metrics["wall_seconds"] = time.perf_counter() - start
        if fidelity is None:
            return metrics
        metrics["epochs"] = result.epochs
        metrics["fidelity"] = result.epochs / horizon
        if result.stopped is not None:
            metrics["stopped"] = result.stopped
        state = None
        if result.state is not None:
            buffer = io.BytesIO()
            torch.save(result.state, buffer)
            state = buffer.getvalue()
        return Evaluation(metrics, state)

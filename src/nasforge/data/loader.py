"""Splits and batches for data held in memory.

Child networks in a search are small and their datasets fit in memory, so batches are sliced from
tensors and augmented on the whole batch at once (no DataLoader workers, no per-image Python),
which keeps a proxy training step close to the speed of a bare PyTorch loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from nasforge.data.datasets import Dataset
from nasforge.errors import ConfigError


@dataclass(frozen=True)
class Split:
    x: torch.Tensor  # uint8 (N, C, H, W)
    y: torch.Tensor  # int64 (N,)

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class DataSplits:
    """Train and validation carved from the training data; test is the dataset's own test set."""

    train: Split
    val: Split
    test: Split | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int

    @property
    def in_channels(self) -> int:
        return int(self.train.x.shape[1])

    @property
    def resolution(self) -> int:
        return int(self.train.x.shape[-1])


def _stratified_take(y: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of `count` items with classes in proportion, in a seeded order."""
    order = rng.permutation(len(y))
    by_class = [order[y[order] == c] for c in np.unique(y)]
    take = []
    for idx in by_class:
        take.append(idx[: int(round(count * len(idx) / len(y)))])
    chosen = np.concatenate(take)
    if len(chosen) < count:  # rounding: top up from what is left, still seeded
        rest = np.setdiff1d(order, chosen, assume_unique=True)
        chosen = np.concatenate([chosen, rng.permutation(rest)[: count - len(chosen)]])
    return np.sort(chosen[:count])


def make_splits(
    dataset: Dataset,
    val_fraction: float = 0.1,
    seed: int = 0,
    train_size: int | None = None,
    val_size: int | None = None,
) -> DataSplits:
    """Stratified, seeded train/validation split; optional subsets make a cheaper proxy task."""
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError("val_fraction", f"must be in (0, 1), got {val_fraction}")
    y = dataset.y.numpy()
    rng = np.random.default_rng(seed)
    n_val = max(dataset.num_classes, int(round(len(y) * val_fraction)))
    if n_val >= len(y):
        raise ConfigError(
            "val_fraction",
            f"leaves no training images out of the {len(y)} of {dataset.name} "
            f"(a validation image per class takes {n_val})",
        )
    val_idx = _stratified_take(y, n_val, rng)
    train_mask = np.ones(len(y), dtype=bool)
    train_mask[val_idx] = False
    train_idx = np.flatnonzero(train_mask)
    for name, size in (("train_size", train_size), ("val_size", val_size)):
        if size is not None and size < 1:
            raise ConfigError(name, f"must be a positive integer, got {size}")
    if train_size is not None and train_size < len(train_idx):
        train_idx = train_idx[_stratified_take(y[train_idx], train_size, rng)]
    if val_size is not None and val_size < len(val_idx):
        val_idx = val_idx[_stratified_take(y[val_idx], val_size, rng)]
    train = Split(dataset.x[train_idx], dataset.y[train_idx])
    val = Split(dataset.x[val_idx], dataset.y[val_idx])
    test = None
    if dataset.x_test is not None:
        assert dataset.y_test is not None  # test images come with their labels
        test = Split(dataset.x_test, dataset.y_test)
    pixels = train.x.float().div_(255)
    mean = tuple(pixels.mean(dim=(0, 2, 3)).tolist())
    std = tuple(pixels.std(dim=(0, 2, 3), correction=0).clamp_min(1e-3).tolist())
    return DataSplits(train, val, test, mean, std, dataset.num_classes)


@dataclass(frozen=True)
class Augment:
    """Batch augmentation: random crop after zero padding, horizontal flip, cutout."""

    crop_padding: int = 0
    flip: bool = False
    cutout: int = 0

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        n, _, h, w = x.shape
        if self.crop_padding:
            p = self.crop_padding
            padded = F.pad(x, (p, p, p, p))
            oy = torch.randint(0, 2 * p + 1, (n,), generator=gen).to(x.device)
            ox = torch.randint(0, 2 * p + 1, (n,), generator=gen).to(x.device)
            rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
            cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
            padded = padded.gather(2, rows.expand(n, x.shape[1], h, w + 2 * p))
            x = padded.gather(3, cols.expand(n, x.shape[1], h, w))
        if self.flip:
            flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)[:, None, None, None]
            x = torch.where(flip, x.flip(3), x)
        if self.cutout:
            cy = torch.randint(0, h, (n,), generator=gen).to(x.device)[:, None, None, None]
            cx = torch.randint(0, w, (n,), generator=gen).to(x.device)[:, None, None, None]
            ys = torch.arange(h, device=x.device)[None, None, :, None]
            xs = torch.arange(w, device=x.device)[None, None, None, :]
            half = self.cutout // 2
            hole = ((ys - cy).abs() <= half) & ((xs - cx).abs() <= half)
            x = x.masked_fill(hole, 0.0)
        return x


def default_augment(splits: DataSplits) -> Augment:
    """CIFAR-style crops on images of 16 px and more; flips only for colour images (flipping
    digits or letters changes what they are)."""
    r = splits.resolution
    return Augment(crop_padding=r // 8 if r >= 16 else 1, flip=splits.in_channels == 3)


def augmentation(splits: DataSplits, augment: bool = True, cutout: int = 0) -> Augment | None:
    """The training augmentation: `default_augment` (when `augment`) plus cutout of `cutout` px."""
    if not augment and not cutout:
        return None
    base = default_augment(splits) if augment else Augment()
    return Augment(base.crop_padding, base.flip, cutout)


def batches(
    split: Split,
    batch_size: int,
    splits: DataSplits,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    augment: Augment | None = None,
    resolution: int | None = None,
    device: torch.device | str = "cpu",
    channels_last: bool = False,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Normalised float batches (and labels) on `device`; augmentation after normalisation-free
    scaling to [0, 1], so padding and cutout fill with black as in the reference recipes."""
    n = len(split)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    mean = torch.tensor(splits.mean, device=device)[None, :, None, None]
    std = torch.tensor(splits.std, device=device)[None, :, None, None]
    stop = n - (n % batch_size) if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]
        x = split.x[idx].to(device, non_blocking=True).float().div_(255)
        if resolution is not None and resolution != x.shape[-1]:
            x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
        if augment is not None:
            x = augment(x, generator if generator is not None else torch.Generator().manual_seed(0))
        x = (x - mean) / std
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        yield x, split.y[idx].to(device, non_blocking=True)


def with_test_set(
    splits: DataSplits, spec: str, field: str = "--test-dataset", train_spec: str | None = None
) -> DataSplits:
    """`splits` with its test split replaced by the images of dataset `spec` (reported only).

    The test dataset's own test part is taken when it has one (a folder with `train.npz` and
    `test.npz`, `digits`), else all its images. It must have the training data's classes, channels
    and image size; anything else is a `ConfigError` naming `field`.
    """
    from dataclasses import replace

    from nasforge.data.datasets import load_dataset
    from nasforge.errors import DatasetError

    try:
        data = load_dataset(spec)
    except DatasetError as exc:
        raise ConfigError(field, f"cannot load {spec!r}: {exc}") from None
    x, y = data.x, data.y
    if data.x_test is not None:
        assert data.y_test is not None  # test images come with their labels
        x, y = data.x_test, data.y_test
    of = f" of the training data{f' ({train_spec})' if train_spec else ''}"
    if data.num_classes != splits.num_classes:
        raise ConfigError(field, f"{spec} has {data.num_classes} classes, not the {splits.num_classes}{of}")
    if tuple(x.shape[1:]) != tuple(splits.train.x.shape[1:]):
        c, h, w = (int(v) for v in x.shape[1:])
        tc, th, tw = (int(v) for v in splits.train.x.shape[1:])
        raise ConfigError(field, f"{spec} holds {h}x{w} images with {c} channel(s), not the {th}x{tw} with {tc}{of}")
    if len(y) == 0:
        raise ConfigError(field, f"{spec} holds no images")
    return replace(splits, test=Split(x, y))

"""Datasets held in memory as uint8 tensors (N, C, H, W), named by a short spec string.

- `digits`: scikit-learn's bundled 8x8 handwritten digits, so the default needs no download;
- `npz:PATH`: a file with `x` (uint8, N×H×W or N×H×W×C) and `y`, or a folder with `train.npz`
  (and optionally `test.npz`), e.g. the CIFAR-10/MNIST folders of the shared data;
- `folder:PATH`: one sub-folder of PNG/JPEG images per class, or `train/` and `test/` folders of those.

Everything a user can get wrong ends in a `DatasetError` naming the file and the problem.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nasforge.errors import DatasetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SPEC_KINDS = ("digits", "npz:PATH", "folder:PATH")


@dataclass(frozen=True)
class Dataset:
    """Images as uint8 (N, C, H, W) and int64 labels; `test` is only ever reported."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    classes: tuple[str, ...]
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.x.shape[1])

    @property
    def resolution(self) -> int:
        return int(self.x.shape[-1])


def load_dataset(spec: str) -> Dataset:
    """Load a dataset from its spec string (see the module docstring)."""
    if spec == "digits":
        return _digits()
    kind, _, path = spec.partition(":")
    if kind == "npz" and path:
        return _npz(Path(path))
    if kind == "folder" and path:
        return _folder(Path(path))
    raise DatasetError("dataset", f"unknown dataset {spec!r} (allowed: {', '.join(SPEC_KINDS)})")


def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # 0..16 grey levels -> 0..255; the official set has no test split, so a fixed stratified
    # fifth is set aside as test (reported only, never searched on).
    x = np.clip(bunch.images * 16, 0, 255).astype(np.uint8)[:, None]
    y = bunch.target.astype(np.int64)
    rng = np.random.default_rng(20240601)
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        test[rng.choice(idx, size=len(idx) // 5, replace=False)] = True
    classes = tuple(str(c) for c in range(10))
    return Dataset(
        "digits",
        torch.from_numpy(x[~test]),
        torch.from_numpy(y[~test]),
        classes,
        torch.from_numpy(x[test]),
        torch.from_numpy(y[test]),
    )


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DatasetError(str(path), "no such file")
    try:
        with open(path, "rb") as file:  # opened here: numpy leaves the file open when the zip is broken
            data = np.load(file, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise DatasetError(str(path), "holds a single .npy array, not an .npz file with arrays x and y")
            with data:
                missing = [k for k in ("x", "y") if k not in data.files]
                if missing:
                    raise DatasetError(
                        str(path), f"missing array(s) {', '.join(missing)} (found: {', '.join(data.files) or 'none'})"
                    )
                x, y = data["x"], data["y"]
    except DatasetError:
        raise
    except (
        OSError,
        ValueError,
        EOFError,
        RuntimeError,
        NotImplementedError,
        MemoryError,
        zipfile.BadZipFile,
        zlib.error,
    ) as exc:  # a damaged zip fails in many ways (encrypted, unknown compression...)
        raise DatasetError(str(path), f"not a readable .npz file ({exc})") from None
    return _check_arrays(str(path), x, y)


def _check_arrays(source: str, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if x.dtype != np.uint8:
        raise DatasetError(source, f"x must be uint8 images, got dtype {x.dtype}")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    else:
        raise DatasetError(source, f"x must be N×H×W or N×H×W×C, got shape {x.shape}")
    if x.shape[1] not in (1, 3):
        raise DatasetError(source, f"images must have 1 or 3 channels, got {x.shape[1]}")
    if x.shape[2] != x.shape[3]:
        raise DatasetError(source, f"images must be square, got {x.shape[2]}×{x.shape[3]}")
    if x.shape[2] == 0:
        raise DatasetError(source, "images are empty (0×0 px)")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(source, f"y must be a 1-D integer array, got {y.dtype} with shape {y.shape}")
    if len(y) != len(x):
        raise DatasetError(source, f"{len(x)} images but {len(y)} labels")
    if len(y) == 0:
        raise DatasetError(source, "no images")
    if y.min() < 0:
        raise DatasetError(source, f"labels must be >= 0, found {int(y.min())}")
    if int(y.max()) > np.iinfo(np.int64).max:
        raise DatasetError(source, f"labels must be class indices 0..K-1, found {int(y.max())}")
    return x, y.astype(np.int64)


def _npz(path: Path) -> Dataset:
    if path.is_dir():
        train_file, test_file = path / "train.npz", path / "test.npz"
        x, y = _read_npz(train_file)
        xt, yt = _read_npz(test_file) if test_file.exists() else (None, None)
    else:
        x, y = _read_npz(path)
        xt = yt = None
    num_classes = int(max(y.max(), yt.max() if yt is not None else 0)) + 1
    _check_classes(str(path), y, num_classes)
    if xt is not None and xt.shape[1:] != x.shape[1:]:
        raise DatasetError(str(path), f"test images are {xt.shape[1:]} but training images {x.shape[1:]}")
    classes = _class_names(path, num_classes)
    return Dataset(
        f"npz:{path}",
        torch.from_numpy(x),
        torch.from_numpy(y),
        classes,
        None if xt is None else torch.from_numpy(xt),
        None if yt is None else torch.from_numpy(yt),
    )


def _class_names(path: Path, num_classes: int) -> tuple[str, ...]:
    names_file = (path if path.is_dir() else path.parent) / "classes.txt"
    if names_file.is_file():
        names = [n.strip() for n in names_file.read_text().splitlines() if n.strip()]
        if len(names) == num_classes:
            return tuple(names)
    return tuple(str(c) for c in range(num_classes))


def _check_classes(source: str, y: np.ndarray, num_classes: int) -> None:
    present = np.unique(y)  # not a bincount: a label of 10**12 must not allocate 10**12 counts
    if len(present) < num_classes:
        gaps = np.flatnonzero(present != np.arange(len(present)))
        empty = int(gaps[0]) if len(gaps) else len(present)
        raise DatasetError(source, f"class {empty} has no training images (labels must be 0..{num_classes - 1})")


def _folder(path: Path) -> Dataset:
    if not path.is_dir():
        raise DatasetError(str(path), "no such folder")
    if (path / "train").is_dir():
        x, y, classes = _read_image_folder(path / "train")
        xt = yt = None
        if (path / "test").is_dir():
            xt, yt, test_classes = _read_image_folder(path / "test", classes)
            if xt.shape[1:] != x.shape[1:]:
                raise DatasetError(str(path / "test"), f"images are {xt.shape[1:]} but training images {x.shape[1:]}")
    else:
        x, y, classes = _read_image_folder(path)
        xt = yt = None
    return Dataset(
        f"folder:{path}",
        torch.from_numpy(x),
        torch.from_numpy(y),
        classes,
        None if xt is None else torch.from_numpy(xt),
        None if yt is None else torch.from_numpy(yt),
    )


def _read_image_folder(root: Path, classes: tuple[str, ...] | None = None):
    from PIL import Image, UnidentifiedImageError
    from PIL.Image import DecompressionBombError

    found = tuple(sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")))
    if not found:
        raise DatasetError(str(root), "no class sub-folders (expected one folder of images per class)")
    if classes is not None and set(found) - set(classes):
        raise DatasetError(str(root), f"classes {sorted(set(found) - set(classes))} are not in the training set")
    classes = classes or found
    images, labels, shape = [], [], None
    for name in found:
        files = sorted(f for f in (root / name).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DatasetError(str(root / name), "empty class: no .png/.jpg/.jpeg images")
        for f in files:
            try:
                with Image.open(f) as im:
                    im.load()
                    mode = "L" if im.mode in ("1", "L", "I;16", "I") else "RGB"
                    arr = np.asarray(im.convert(mode))
            except (UnidentifiedImageError, DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
                raise DatasetError(str(f), f"not a readable image ({exc})") from None
            arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
            if shape is None:
                shape = arr.shape
            elif arr.shape != shape:
                raise DatasetError(
                    str(f),
                    f"image is {arr.shape[2]}×{arr.shape[1]}×{arr.shape[0]}, "
                    f"others are {shape[2]}×{shape[1]}×{shape[0]}; resize them to one size",
                )
            images.append(arr)
            labels.append(classes.index(name))
    x = np.stack(images)
    if x.shape[2] != x.shape[3]:
        raise DatasetError(str(root), f"images must be square, got {x.shape[3]}×{x.shape[2]}")
    return x, np.asarray(labels, dtype=np.int64), classes

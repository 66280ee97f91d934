import numpy as np
import pytest
import torch
from PIL import Image

from nasforge.data.datasets import load_dataset
from nasforge.data.loader import Augment, batches, default_augment, make_splits
from nasforge.errors import DatasetError


def test_digits_is_built_in_and_offline():
    d = load_dataset("digits")
    assert d.x.dtype == torch.uint8 and d.x.shape[1:] == (1, 8, 8)
    assert len(d.x) + len(d.x_test) == 1797 and d.num_classes == 10
    assert int(d.x.max()) == 255


def test_splits_are_stratified_disjoint_and_seeded():
    d = load_dataset("digits")
    a = make_splits(d, val_fraction=0.2, seed=1)
    b = make_splits(d, val_fraction=0.2, seed=1)
    c = make_splits(d, val_fraction=0.2, seed=2)
    assert torch.equal(a.val.y, b.val.y) and torch.equal(a.val.x, b.val.x)
    assert not torch.equal(a.val.x, c.val.x)
    assert len(a.train) + len(a.val) == len(d.y)
    counts = torch.bincount(a.val.y, minlength=10).float()
    assert counts.min() > 0.7 * counts.mean()
    # no validation image is also a training image
    train_rows = {bytes(r) for r in a.train.x.reshape(len(a.train), -1).numpy()}
    overlap = sum(bytes(r) in train_rows for r in a.val.x.reshape(len(a.val), -1).numpy())
    assert overlap <= 2  # digits contains a few exact duplicate images
    small = make_splits(d, val_fraction=0.2, seed=1, train_size=100, val_size=50)
    assert len(small.train) == 100 and len(small.val) == 50


def test_batches_normalise_and_augment_deterministically():
    d = load_dataset("digits")
    s = make_splits(d, seed=0)
    xs = torch.cat([x for x, _ in batches(s.train, 256, s)])
    assert abs(xs.mean().item()) < 1e-3 and abs(xs.std().item() - 1) < 1e-2
    run = lambda: [x for x, _ in batches(s.train, 64, s, shuffle=True, generator=torch.Generator().manual_seed(3),
                                         augment=Augment(2, True, 2))]
    assert all(torch.equal(p, q) for p, q in zip(run(), run()))
    up = next(batches(s.train, 4, s, resolution=16))[0]
    assert up.shape == (4, 1, 16, 16)
    assert default_augment(s).flip is False


def test_random_crop_shifts_content():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 4, 4] = 1
    gen = torch.Generator().manual_seed(0)
    positions = set()
    for _ in range(50):
        out = Augment(crop_padding=2)(x, gen)
        assert out.sum() <= 1
        if out.sum() == 1:
            positions.add(tuple(out[0, 0].nonzero()[0].tolist()))
    assert len(positions) > 5 and all(2 <= r <= 6 and 2 <= c <= 6 for r, c in positions)


def _write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path

def test_one_training_pixel_still_normalises(tmp_path):
    x = np.array([[[7]], [[9]]], dtype=np.uint8)  # two 1x1 images: one trains, one validates
    d = load_dataset(f"npz:{_write_npz(tmp_path / 'tiny.npz', x=x, y=np.zeros(2, int))}")
    s = make_splits(d, val_fraction=0.5)
    assert len(s.train) == 1 and np.isfinite(s.std).all() and min(s.std) >= 1e-3
    assert torch.isfinite(next(batches(s.train, 1, s))[0]).all()


def test_npz_file_and_folder(tmp_path):
    x = np.random.default_rng(0).integers(0, 255, (20, 6, 6, 3), dtype=np.uint8)
    y = np.arange(20) % 4
    d = load_dataset(f"npz:{_write_npz(tmp_path / 'd.npz', x=x, y=y)}")
    assert d.x.shape == (20, 3, 6, 6) and d.num_classes == 4 and d.x_test is None
    folder = tmp_path / "set"
    folder.mkdir()
    _write_npz(folder / "train.npz", x=x, y=y)
    _write_npz(folder / "test.npz", x=x[:5], y=y[:5])
    d = load_dataset(f"npz:{folder}")
    assert len(d.x_test) == 5


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x": np.zeros((4, 6, 6), np.float32), "y": np.zeros(4, int)}, "x must be uint8"),
        ({"x": np.zeros((4, 6, 6), np.uint8), "y": np.zeros(3, int)}, "4 images but 3 labels"),
        ({"x": np.zeros((4, 6, 6), np.uint8)}, "missing array(s) y"),
        ({"x": np.zeros((4, 6), np.uint8), "y": np.zeros(4, int)}, "x must be N×H×W or N×H×W×C"),
        ({"x": np.zeros((4, 6, 6), np.uint8), "y": np.array([0, 0, 2, 2])}, "class 1 has no training images"),
    ],
)
def test_bad_npz_files(tmp_path, arrays, message):
    path = _write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DatasetError) as err:
        load_dataset(f"npz:{path}")
    assert message in str(err.value) and str(path) in str(err.value)


def test_truncated_npz(tmp_path):
    path = _write_npz(tmp_path / "t.npz", x=np.zeros((40, 8, 8), np.uint8), y=np.zeros(40, int))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DatasetError, match="not a readable .npz file"):
        load_dataset(f"npz:{path}")


def _image_folder(root, sizes=None, corrupt=False):
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            size = (sizes or {}).get((c, i), 8)
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    if corrupt:
        (root / "dog" / "9.png").write_bytes(b"\x89PNG not really")
    return root


def test_image_folder(tmp_path):
    d = load_dataset(f"folder:{_image_folder(tmp_path / 'imgs')}")
    assert d.classes == ("cat", "dog") and d.x.shape == (6, 3, 8, 8)
    assert d.y.tolist() == [0, 0, 0, 1, 1, 1]


def test_image_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="9.png: not a readable image"):
        load_dataset(f"folder:{_image_folder(tmp_path / 'a', corrupt=True)}")
    with pytest.raises(DatasetError, match="1.png: image is 10×10×3, others are 8×8×3"):
        load_dataset(f"folder:{_image_folder(tmp_path / 'b', sizes={('cat', 1): 10})}")
    (tmp_path / "c" / "empty").mkdir(parents=True)
    with pytest.raises(DatasetError, match="empty class"):
        load_dataset(f"folder:{tmp_path / 'c'}")
    with pytest.raises(DatasetError, match="no such folder"):
        load_dataset(f"folder:{tmp_path / 'missing'}")
    with pytest.raises(DatasetError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet")

"""Images/s of nasforge's child training loop against a bare PyTorch loop, same model and data.

    .venv/bin/python benchmarks/child_training.py                       # digits, N=1, F=16
    .venv/bin/python benchmarks/child_training.py --dataset npz:../shared/data/cifar10 \
        --train-size 1280 --filters 12 --epochs 1

Both loops train the same NASNet-A child (same initial weights) for the same number of steps on
the same in-memory batches; the bare loop is forward, cross-entropy, backward, SGD step, nothing
else. nasforge's loop adds augmentation, label smoothing, gradient clipping, drop path and the
cosine schedule. The ratio (nasforge / bare) is the figure to keep >= 0.9: the extras should cost little.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

from nasforge.arch.nasnet_cells import NASNET_A  # noqa: E402
from nasforge.data.datasets import load_dataset  # noqa: E402
from nasforge.data.loader import batches, default_augment, make_splits  # noqa: E402
from nasforge.evaluators.training import TrainConfig, train_model  # noqa: E402
from nasforge.spaces import NASNetSpace  # noqa: E402


def bare_loop(model, splits, batch_size, epochs, device) -> float:
    """The same memory format as nasforge's loop (channels_last), so the ratio measures the loop."""
    model.to(device, memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    xs = [(x, y) for x, y in batches(splits.train, batch_size, splits, device=device, drop_last=True,
                                     channels_last=True)]
    images = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for x, y in xs:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            images += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return images / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="digits")
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--cells", type=int, default=1)
    p.add_argument("--filters", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--name", default=None, help="results file name (default child_training_<dataset kind>)")
    args = p.parse_args()

    splits = make_splits(load_dataset(args.dataset), 0.1, 0, args.train_size)
    torch.manual_seed(0)
    model = NASNetSpace().build(NASNET_A, num_classes=splits.num_classes, in_channels=splits.in_channels,
                                num_cells=args.cells, num_filters=args.filters, resolution=splits.resolution)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, device=args.device)
    device = config.resolve_device()
    ours, bare = [], []
    for r in range(args.repeats):  # interleaved, alternating order, so background load hits both alike
        runs = [lambda: ours.append(train_model(copy.deepcopy(model), splits, config, seed=r,
                                                augment=default_augment(splits)).images_per_second),
                lambda: bare.append(bare_loop(copy.deepcopy(model), splits, args.batch_size, args.epochs, device))]
        for run in runs if r % 2 else runs[::-1]:
            run()
    # Best-of-N is the least noisy figure on a shared machine; medians are printed beside it.
    o, b = max(ours), max(bare)
    rows = [["nasforge train_model", o, statistics.median(ours)],
            ["bare PyTorch loop", b, statistics.median(bare)],
            ["ratio", o / b, statistics.median(ours) / statistics.median(bare)]]
    print_table(f"child training throughput ({args.dataset}, N={args.cells}, F={args.filters}, {device})",
                ["loop", "images/s (best)", "images/s (median)"], rows)
    name = args.name or "child_training_" + args.dataset.split(":")[0]
    path = write_json(name, {"args": vars(args), "nasforge_images_per_s": ours,
                                         "bare_images_per_s": bare, "ratio_of_best": o / b})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""Retrain searched NASNet cells and NASNet-A with one fixed, real schedule over several seeds.

    .venv/bin/python benchmarks/nasnet_retrain.py --cell searched=runs/live_nasnet/multi-fidelity-s0 \
        --cell random=runs/live_nasnet/random-s0 --seeds 0 1 2          # ~15 min per retrain here
    .venv/bin/python benchmarks/nasnet_retrain.py --report

A search's proxy ranks cells after minutes of training; whether its winner is really better is
only told by training the cells properly and scoring them on images no search step has seen. Each
cell (the best of a run folder, by validation reward at the highest fidelity, or NASNet-A from
Zoph et al., CVPR 2018) is trained from scratch on all the training images of
../shared/data/cifar10/train.npz (no validation split is carved: nothing is chosen here), with
random-crop and flip augmentation and one cosine learning-rate period, in the network size of the
search's proxy, and scored on the 10,000 CIFAR-10 test images. Every (cell, seed) result is
appended to benchmarks/results/NAME.jsonl as it finishes, so an interrupted benchmark continues
where it stopped. The table gives mean ± std of test accuracy per cell over the seeds and says
whether the gap between the best two is larger than their seed spread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, print_table, write_json  # noqa: E402

from nasforge.arch.nasnet_cells import NASNET_A  # noqa: E402
from nasforge.data.datasets import load_dataset  # noqa: E402
from nasforge.data.loader import DataSplits, Split, default_augment  # noqa: E402
from nasforge.evaluators.training import TrainConfig, train_model  # noqa: E402
from nasforge.experiment import Store  # noqa: E402
from nasforge.spaces import NASNetSpace  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"


def cell_of(source: str, space: NASNetSpace):
    """NASNet-A, or the best trial of a run folder."""
    if source == "nasnet-a":
        return NASNET_A
    with Store.open(source, readonly=True) as store:
        return space.from_json(store.best(1)[0].arch)


def all_training_images() -> DataSplits:
    """Every training image for training, the test set for scoring (no validation: nothing is chosen)."""
    data = load_dataset(f"npz:{SHARED}")
    train, test = Split(data.x, data.y), Split(data.x_test, data.y_test)
    pixels = train.x.float().div_(255)
    return DataSplits(train, test, test, tuple(pixels.mean(dim=(0, 2, 3)).tolist()),
                      tuple(pixels.std(dim=(0, 2, 3), correction=0).tolist()), data.num_classes)


def retrain(space: NASNetSpace, arch, seed: int, splits: DataSplits, args: argparse.Namespace) -> dict:
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = space.build(arch, num_classes=splits.num_classes, num_cells=args.cells,
                            num_filters=args.filters, stem="cifar", resolution=splits.resolution)
        result = train_model(model, splits, config, seed, default_augment(splits))
    return {"test_accuracy": result.val_accuracy, "train_loss": result.train_loss,
            "train_images": len(splits.train), "params": sum(p.numel() for p in model.parameters()),
            "seconds": time.perf_counter() - start}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cell", action="append", default=[], metavar="LABEL=RUN",
                   help="a cell to retrain: the best of run folder RUN (NASNet-A is always added)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--cells", type=int, default=1, help="NASNet N of the retrained network (the proxy's)")
    p.add_argument("--filters", type=int, default=8, help="NASNet F of the retrained network (the proxy's)")
    p.add_argument("--name", default="nasnet_retrain")
    p.add_argument("--report", action="store_true", help="only print and write the results so far")
    args = p.parse_args()
    log = RESULTS / f"{args.name}.jsonl"
    done = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    space = NASNetSpace()
    if not args.report:
        splits = all_training_images()
        sources = dict(item.split("=", 1) for item in args.cell)
        sources["NASNet-A"] = "nasnet-a"
        for label, source in sources.items():
            arch = cell_of(source, space)
            for seed in args.seeds:
                if any(r["label"] == label and r["seed"] == seed and r["epochs"] == args.epochs for r in done):
                    continue
                record = {"label": label, "source": source, "key": space.key(arch), "seed": seed,
                          "epochs": args.epochs, **retrain(space, arch, seed, splits, args)}
                print(f"{label} seed {seed}: test {record['test_accuracy']:.4f} ({record['seconds']:.0f} s)",
                      flush=True)
                RESULTS.mkdir(exist_ok=True)
                with log.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                done.append(record)
    by_label: dict[str, list[float]] = {}
    for r in done:
        by_label.setdefault(r["label"], []).append(r["test_accuracy"])
    rows = []
    for label, accs in sorted(by_label.items(), key=lambda item: -statistics.mean(item[1])):
        std = statistics.stdev(accs) if len(accs) > 1 else float("nan")
        rows.append([label, len(accs), f"{statistics.mean(accs):.4f} ± {std:.4f}",
                     ", ".join(f"{a:.4f}" for a in accs)])
    print_table(f"NASNet cells retrained ({args.epochs} epochs, all training images)",
                ["cell", "seeds", "test accuracy (mean ± std)", "each seed"], rows)
    if len(rows) >= 2:
        (a, b) = sorted(by_label.values(), key=statistics.mean, reverse=True)[:2]
        gap = statistics.mean(a) - statistics.mean(b)
        spread = max(statistics.stdev(a) if len(a) > 1 else 0.0, statistics.stdev(b) if len(b) > 1 else 0.0)
        print(f"gap between the best two: {gap:.4f}; larger seed std of the two: {spread:.4f} -> "
              f"{'larger than the seed spread' if gap > spread else 'within the seed spread'}")
    write_json(args.name, {"args": vars(args), "results": done})


if __name__ == "__main__":
    main()

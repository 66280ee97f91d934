"""Search NASNet cells on real CIFAR-10, then retrain them and NASNet-A with one fixed, real schedule.

    .venv/bin/python benchmarks/nasnet_retrain.py --search zero-cost-evolution --search zero-cost-random \
        --seeds 0 1 2 --parallel 2 --threads 1    # searches: minutes each; retrains: about an hour each
    .venv/bin/python benchmarks/nasnet_retrain.py --cell mine=runs/NAME --seeds 0 1 2
    .venv/bin/python benchmarks/nasnet_retrain.py --report

Searches (SEARCHES) run `nasforge search --space nasnet` on ../shared/data/cifar10/train.npz in run
folders runs/live_nasnet/ARM-sSEED (resumed when interrupted); a finished one writes the cell it
returned to benchmarks/results/live_nasnet/ARM-sSEED.json, which is committed, so the retrains can
go on in a later sitting on a fresh checkout. "zero-cost-evolution" is what `nasforge search
--dataset ...` runs when given nothing else (regularized evolution rewarded by the zc_ensemble
score, 300 trials); "zero-cost-random" scores 300 random cells with the same score and keeps the
best (the same budget and rules, random proposals).

A search's proxy ranks cells after minutes of training; whether its winner is really better is
only told by training the cells properly and scoring them on images no search step has seen. Each
cell (the best of a run folder, by validation reward at the highest fidelity, or NASNet-A from
Zoph et al., CVPR 2018) is trained from scratch on all the training images of
../shared/data/cifar10/train.npz (no validation split is carved: nothing is chosen here), with
random-crop and flip augmentation and one cosine learning-rate period, in the network size of the
search's proxy, and scored on the 10,000 CIFAR-10 test images. Every (cell, seed) result is
appended to benchmarks/results/NAME.jsonl as it finishes, and a retrain in progress saves its state
every two epochs (runs/live_nasnet/retrain), so an interrupted benchmark continues where it stopped.
The table gives mean ± std of test accuracy per cell over the seeds and says
whether the gap between the best two is larger than their seed spread.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, print_table, run_nasforge, write_json  # noqa: E402

from nasforge.arch.nasnet_cells import NASNET_A  # noqa: E402
from nasforge.data.datasets import load_dataset  # noqa: E402
from nasforge.data.loader import DataSplits, Split, default_augment  # noqa: E402
from nasforge.evaluators.training import TrainConfig, train_model  # noqa: E402
from nasforge.experiment import Store  # noqa: E402
from nasforge.spaces import NASNetSpace  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "cifar10"
CHECKPOINTS = ROOT / "runs" / "live_nasnet" / "retrain"


#: nasforge search flags of each search arm (the dataset, seed and run folder are added)
SEARCHES: dict[str, list[str]] = {
    "zero-cost-evolution": [],
    "zero-cost-random": ["--strategy", "random", "--evaluator", "zc_ensemble", "--trials", "300"],
}


def searched(arm: str, seed: int, threads: int) -> Path:
    """Run (or resume) one search arm and keep the cell it returned; a kept one is not searched again."""
    kept = RESULTS / "live_nasnet" / f"{arm}-s{seed}.json"
    if kept.exists():
        return kept
    folder = ROOT / "runs" / "live_nasnet" / f"{arm}-s{seed}"
    print(f"search {arm} seed {seed}:", flush=True)
    summary = run_nasforge("search", folder, ["--space", "nasnet", "--dataset", f"npz:{SHARED / 'train.npz'}",
                                  "--seed", str(seed), *SEARCHES[arm]], threads, ROOT)
    with Store.open(folder, readonly=True) as store:
        best, trials = store.best(1)[0], len(store.trials())
    record = {"arm": arm, "seed": seed, "arch": best.arch, "key": best.key, "reward": best.reward,
              "trials": trials, **{k: summary[k] for k in ("elapsed", "stop_reason", "process_s",
                                                          "load_1min_before_after", "command")}}
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text(json.dumps(record, indent=2, sort_keys=True))
    print(f"search {arm} seed {seed}: returned {best.key} (reward {best.reward:.4f}, {trials} trials)", flush=True)
    return kept


def cell_of(source: str, space: NASNetSpace):
    """NASNet-A, the cell a search arm kept (a .json file), or the best trial of a run folder."""
    if source == "nasnet-a":
        return NASNET_A
    if source.endswith(".json"):
        return space.from_json(json.loads(Path(source).read_text())["arch"])
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
    """Train one cell from scratch; every `--checkpoint-every` epochs its state is saved under
    runs/live_nasnet/retrain, so a retrain cut off by the end of a sitting goes on from there (exactly:
    the state holds the schedule, the data order and the RNG)."""
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
    checkpoint = CHECKPOINTS / f"{args.name}-{space.key(arch)}-s{seed}-e{args.epochs}.pt"
    saved = torch.load(checkpoint) if checkpoint.exists() else {"state": None, "seconds": 0.0}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = space.build(arch, num_classes=splits.num_classes, num_cells=args.cells,
                            num_filters=args.filters, stem="cifar", resolution=splits.resolution)
        while True:
            start, done = time.perf_counter(), saved["state"]["epoch"] if saved["state"] else 0
            result = train_model(model, splits, config, seed, default_augment(splits), horizon=args.epochs,
                                 until=done + args.checkpoint_every, resume=saved["state"])
            saved = {"state": result.state, "seconds": saved["seconds"] + time.perf_counter() - start}
            if result.state is None:
                break
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            torch.save(saved, checkpoint.with_suffix(".tmp"))
            checkpoint.with_suffix(".tmp").replace(checkpoint)
    checkpoint.unlink(missing_ok=True)
    return {"test_accuracy": result.val_accuracy, "train_loss": result.train_loss,
            "train_images": len(splits.train), "params": sum(p.numel() for p in model.parameters()),
            "seconds": saved["seconds"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cell", action="append", default=[], metavar="LABEL=RUN",
                   help="a cell to retrain: the best of run folder RUN (NASNet-A is always added)")
    p.add_argument("--search", action="append", default=[], choices=sorted(SEARCHES),
                   help="a search arm whose returned cell is retrained (searched first if not kept yet)")
    p.add_argument("--search-seed", type=int, default=0, help="seed of the search arms (default: 0)")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads of each search and retrain (default: 2)")
    p.add_argument("--parallel", type=int, default=1,
                   help="retrains run at once, in worker processes (default: 1; on 2 cores, 2 with --threads 1 "
                        "finish more retrains per hour)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="retrain seeds (default: 0 1 2)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--checkpoint-every", type=int, default=2,
                   help="epochs between saved states of a retrain (each costs one pass over the test images)")
    p.add_argument("--cells", type=int, default=1, help="NASNet N of the retrained network (the proxy's)")
    p.add_argument("--filters", type=int, default=8, help="NASNet F of the retrained network (the proxy's)")
    p.add_argument("--name", default="nasnet_retrain")
    p.add_argument("--report", action="store_true", help="only print and write the results so far")
    args = p.parse_args()
    log = RESULTS / f"{args.name}.jsonl"
    done = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    space = NASNetSpace()
    if not args.report:
        sources = {arm: os.path.relpath(searched(arm, args.search_seed, args.threads)) for arm in args.search}
        sources.update(item.split("=", 1) for item in args.cell)
        splits = all_training_images()
        sources["NASNet-A"] = "nasnet-a"
        archs = {label: cell_of(source, space) for label, source in sources.items()}
        # seed by seed, so an unfinished benchmark still compares every cell
        jobs = [(label, seed) for seed in args.seeds for label in archs
                if not any(r["label"] == label and r["seed"] == seed and r["epochs"] == args.epochs for r in done)]
        # retrains in parallel worker processes, each on its own threads (torch hands them the images
        # as shared-memory tensors, not copies); a finished one is appended to the log at once
        with ProcessPoolExecutor(args.parallel, mp_context=multiprocessing.get_context("fork"),
                                 initializer=torch.set_num_threads, initargs=(args.threads,)) as pool:
            futures = {pool.submit(retrain, space, archs[label], seed, splits, args): (label, seed)
                       for label, seed in jobs}
            for future in as_completed(futures):
                label, seed = futures[future]
                record = {"label": label, "source": sources[label], "key": space.key(archs[label]), "seed": seed,
                          "epochs": args.epochs, "threads": args.threads, "parallel": args.parallel,
                          **future.result()}
                print(f"{label} seed {seed}: test {record['test_accuracy']:.4f} ({record['seconds']:.0f} s)",
                      flush=True)
                with log.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                done.append(record)
    by_label: dict[str, list[dict]] = {}
    for r in done:
        by_label.setdefault(r["label"], []).append(r)
    accuracies = {label: [r["test_accuracy"] for r in records] for label, records in by_label.items()}
    rows = []
    for label, accs in sorted(accuracies.items(), key=lambda item: -statistics.mean(item[1])):
        std = statistics.stdev(accs) if len(accs) > 1 else float("nan")
        records = by_label[label]
        rows.append([label, f"{records[0]['params']:,}", len(accs), f"{statistics.mean(accs):.4f} ± {std:.4f}",
                     ", ".join(f"{a:.4f}" for a in accs),
                     f"{statistics.mean(r['seconds'] for r in records) / 60:.0f}"])
    print_table(f"NASNet cells retrained ({args.epochs} epochs, all training images)",
                ["cell", "params", "seeds", "test accuracy (mean ± std)", "each seed", "min per retrain"], rows)
    if len(rows) >= 2:
        (a, b) = sorted(accuracies.values(), key=statistics.mean, reverse=True)[:2]
        gap = statistics.mean(a) - statistics.mean(b)
        if min(len(a), len(b)) < 2:
            print(f"gap between the best two: {gap:.4f}; one seed of one of them: no spread to compare it with yet")
        else:
            spread = max(statistics.stdev(a), statistics.stdev(b))
            print(f"gap between the best two: {gap:.4f}; larger seed std of the two: {spread:.4f} -> "
                  f"{'larger than the seed spread' if gap > spread else 'within the seed spread'}")
    write_json(args.name, {"args": vars(args), "results": done})


if __name__ == "__main__":
    main()

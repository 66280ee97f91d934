"""PPO against random search of equal budget on the CIFAR-10 proxy, then the winners retrained longer.

    .venv/bin/python benchmarks/cifar_search.py                      # 80 trials each, ~1 h here
    .venv/bin/python benchmarks/cifar_search.py --trials 4 --long-epochs 1 --name cifar_search_smoke

1. Runs `nasforge search` once per strategy (NASNet space, proxy: `--train-size` CIFAR-10 training
   images, `--val-size` validation images carved from the training set, N, F, epochs), all
   strategies at once, each in its own process with `--threads` intra-op threads. The run folders
   (runs/NAME-STRATEGY) are resumed when they exist, so an interrupted benchmark continues.
2. Retrains each run's best cell (by validation accuracy, the reward) and NASNet-A with the same
   longer schedule (more images, more epochs, more filters) and scores them on the CIFAR-10 *test*
   set, which no search step has seen.

Prints the table side by side and writes benchmarks/results/NAME.json and NAME.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, print_table, write_json  # noqa: E402

from nasforge.arch.nasnet_cells import NASNET_A  # noqa: E402
from nasforge.evaluators.proxy import ProxyTrainer  # noqa: E402
from nasforge.experiment import Store  # noqa: E402
from nasforge.spaces import NASNetSpace  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def search(args: argparse.Namespace) -> dict[str, Path]:
    """Run (or resume) one search per strategy, concurrently; return the run folders."""
    runs, procs = {}, []
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    for strategy in args.strategies:
        run = ROOT / "runs" / f"{args.name}-{strategy}"
        runs[strategy] = run
        cmd = [sys.executable, "-m", "nasforge.cli", "search", "--space", "nasnet", "--strategy", strategy,
               "--dataset", args.dataset, "--train-size", str(args.train_size), "--val-size", str(args.val_size),
               "--cells", str(args.cells), "--filters", str(args.filters), "--epochs", str(args.epochs),
               "--trials", str(args.trials), "--seed", str(args.seed), "--run", str(run.relative_to(ROOT)),
               "--no-progress"]
        if Store.exists(run):
            cmd.append("--resume")
        log = open(RESULTS / f"{args.name}-{strategy}.log", "w")
        procs.append((strategy, subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    for strategy, proc, log in procs:
        if proc.wait() != 0:
            raise SystemExit(f"search with {strategy} failed (exit {proc.returncode}); see {log.name}")
        log.close()
    return runs


def search_span(run: Path) -> float:
    """Seconds from the run's first trial to its last result, across interruptions and resumes."""
    with Store.open(run) as store:
        trials = store.trials()
    return max(t.finished or t.created for t in trials) - min(t.created for t in trials)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="npz:../shared/data/cifar10")
    p.add_argument("--strategies", nargs="+", default=["ppo", "random"])
    p.add_argument("--trials", type=int, default=80)
    p.add_argument("--train-size", type=int, default=2000)
    p.add_argument("--val-size", type=int, default=1000)
    p.add_argument("--cells", type=int, default=1)
    p.add_argument("--filters", type=int, default=8)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="intra-op threads per search process")
    p.add_argument("--long-train-size", type=int, default=4000)
    p.add_argument("--long-epochs", type=int, default=4)
    p.add_argument("--long-filters", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="cifar_search")
    args = p.parse_args()
    RESULTS.mkdir(exist_ok=True)

    runs = search(args)
    span = max(search_span(run) for run in runs.values())
    space = NASNetSpace()
    candidates = []
    for strategy, run in runs.items():
        with Store.open(run) as store:
            done = store.trials("done")
            best = store.best(1)[0]
        candidates.append((f"best of {strategy}", strategy, space.from_json(best.arch), best.metrics["val_accuracy"],
                           len(done), sum(t.duration or 0.0 for t in done) / max(1, len(done))))
    candidates.append(("NASNet-A", "published", NASNET_A, None, 0, 0.0))

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    long = ProxyTrainer(args.dataset, network={"num_cells": args.cells, "num_filters": args.long_filters},
                        train={"epochs": args.long_epochs}, train_size=args.long_train_size,
                        val_size=args.val_size, latency=False, report_test=True)
    rows, records = [], []
    for label, source, arch, proxy_acc, trials, child_seconds in candidates:
        m = long.evaluate(space, arch, seed=args.seed)
        record = {"label": label, "source": source, "arch": space.to_json(arch), "key": space.key(arch),
                  "proxy_val_accuracy": proxy_acc, "trials": trials, "seconds_per_child": child_seconds,
                  "long_val_accuracy": m["val_accuracy"], "test_accuracy": m["test_accuracy"],
                  "params": m["params"], "macs": m["macs"], "long_seconds": m["wall_seconds"]}
        records.append(record)
        rows.append([label, "-" if proxy_acc is None else f"{proxy_acc:.4f}", f"{m['val_accuracy']:.4f}",
                     f"{m['test_accuracy']:.4f}", f"{m['params']:,}", f"{m['macs'] / 1e6:.1f}",
                     f"{child_seconds:.0f}" if trials else "-"])
        print(f"{label}: long val {m['val_accuracy']:.4f} test {m['test_accuracy']:.4f}", flush=True)
    columns = ["cell", "proxy val acc", "long val acc", "test acc", "params", "MMACs", "s/child"]
    print_table(f"search on the CIFAR-10 proxy, {args.trials} trials each", columns, rows)
    path = write_json(args.name, {"args": vars(args), "search_span_seconds": span, "results": records})
    md = RESULTS / f"{args.name}.md"
    md.write_text("\n".join([
        "# PPO vs random search on the CIFAR-10 proxy", "",
        "`python benchmarks/cifar_search.py " + " ".join(sys.argv[1:]) + "`", "",
        f"Proxy: {args.train_size} training / {args.val_size} validation images, N={args.cells}, "
        f"F={args.filters}, {args.epochs} epochs; {args.trials} trials per strategy, run side by side "
        f"({span / 60:.0f} min from the first trial to the last). Longer schedule: {args.long_train_size} images, {args.long_epochs} "
        f"epochs, F={args.long_filters}; test = the 10,000 CIFAR-10 test images, never searched on.", "",
        "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns),
        *["| " + " | ".join(r) + " |" for r in rows], ""]))
    print(f"wrote {path} and {md}")


if __name__ == "__main__":
    main()

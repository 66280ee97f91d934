"""Does the cheap proxy rank architectures as a longer training does? (Kendall tau)

    .venv/bin/python benchmarks/proxy_rank.py            # 10 cells, ~20 min on 2 CPU cores
    .venv/bin/python benchmarks/proxy_rank.py --archs 20 --long-epochs 15 --long-train-size 45000
    .venv/bin/python benchmarks/proxy_rank.py --archs 20 --resume   # adds to the last run's cells
    .venv/bin/python benchmarks/proxy_rank.py --archs 20 --resume --zero-cost zc_ensemble

Trains the same architectures (random NASNet cells plus NASNet-A and AmoebaNet-A) twice: with the
proxy settings a search uses, and with a longer schedule (more epochs and images, optionally more
filters); both score the same validation images.
Prints both validation accuracies per architecture, the seconds per proxy child, and Kendall's
tau between the two rankings; writes benchmarks/results/proxy_rank.json. With ``--zero-cost E``
the same cells are also scored by evaluator E (untrained, one batch of the proxy's training
images, the proxy's network), and its tau against the longer schedule is printed beside the proxy's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, print_table, write_json  # noqa: E402

from nasforge.arch.nasnet_cells import AMOEBANET_A, NASNET_A  # noqa: E402
from nasforge.evaluators.proxy import ProxyTrainer  # noqa: E402
from nasforge.spaces import NASNetSpace  # noqa: E402


def previous_rows(args: argparse.Namespace) -> dict[str, tuple[float, float, float]]:
    """Rows of the last results file when it was written with the same settings but --archs."""
    path = RESULTS / "proxy_rank.json"
    if not path.is_file():
        return {}
    old = json.loads(path.read_text())
    same = {k: v for k, v in vars(args).items() if k not in ("archs", "resume", "zero_cost")}
    if {k: old["args"].get(k) for k in same} != same:
        print(f"{path.name} was written with other settings: starting afresh", flush=True)
        return {}
    return {r["arch"]: (r["proxy"], r["long"], r["proxy_seconds"]) for r in old["rows"]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="npz:../shared/data/cifar10")
    p.add_argument("--archs", type=int, default=10, help="architectures in all (2 published + random)")
    p.add_argument("--train-size", type=int, default=2000)
    p.add_argument("--val-size", type=int, default=1000)
    p.add_argument("--cells", type=int, default=1)
    p.add_argument("--filters", type=int, default=8)
    p.add_argument("--proxy-epochs", type=int, default=3)
    p.add_argument("--long-epochs", type=int, default=4)
    p.add_argument("--long-train-size", type=int, default=4000)
    p.add_argument("--long-filters", type=int, default=None, help="default: --filters")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true",
                   help="keep the rows of the last results file written with the same settings "
                        "(all but --archs): the random cells come from one seeded sequence, so a "
                        "larger --archs only adds cells")
    p.add_argument("--zero-cost", metavar="EVALUATOR", help="also rank the cells with this evaluator "
                                                             "(e.g. zc_ensemble or naswot)")
    args = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    space = NASNetSpace()
    rng = np.random.default_rng(args.seed)
    archs = [("NASNet-A", NASNET_A), ("AmoebaNet-A", AMOEBANET_A)]
    archs += [(f"random-{i}", space.sample(rng)) for i in range(args.archs - 2)]
    proxy = ProxyTrainer(args.dataset, network={"num_cells": args.cells, "num_filters": args.filters},
                         train={"epochs": args.proxy_epochs, "batch_size": args.batch_size},
                         train_size=args.train_size, val_size=args.val_size, latency=False)
    long = ProxyTrainer(args.dataset, network={"num_cells": args.cells,
                                               "num_filters": args.long_filters or args.filters},
                        train={"epochs": args.long_epochs, "batch_size": args.batch_size},
                        train_size=args.long_train_size, val_size=args.val_size, latency=False)
    done = previous_rows(args) if args.resume else {}
    rows, proxy_acc, long_acc, proxy_seconds = [], [], [], []
    for name, arch in archs:
        if name in done:
            a, b, seconds = done[name]
        else:
            start = time.perf_counter()
            a = proxy.evaluate(space, arch, seed=args.seed)["val_accuracy"]
            seconds = time.perf_counter() - start
            b = long.evaluate(space, arch, seed=args.seed)["val_accuracy"]
        proxy_seconds.append(seconds)
        proxy_acc.append(a)
        long_acc.append(b)
        rows.append([name, a, b, proxy_seconds[-1]])
        print(f"{name}: proxy {a:.4f} long {b:.4f} ({proxy_seconds[-1]:.1f} s proxy)", flush=True)
        write_json("proxy_rank", {"args": vars(args), "partial": True,  # what is done so far survives a kill
                                  "rows": [dict(zip(["arch", "proxy", "long", "proxy_seconds"], r)) for r in rows]})
    tau, p_value = kendalltau(proxy_acc, long_acc)
    zero_cost = None
    if args.zero_cost:
        from nasforge.evaluators import create_evaluator, resolve_evaluator

        name = resolve_evaluator(args.zero_cost)
        scorer = create_evaluator(name, space=space, dataset=args.dataset, train_size=args.train_size,
                                  val_size=args.val_size,
                                  network={"num_cells": args.cells, "num_filters": args.filters, "stem": "cifar"})
        scorer.prepare()
        scores, seconds = [], []
        for row, (_, arch) in zip(rows, archs):
            start = time.perf_counter()
            scores.append(scorer.evaluate(space, arch, seed=args.seed)[scorer.reward_metric])
            seconds.append(time.perf_counter() - start)
            row.append(scores[-1])
        zc_tau, zc_p = kendalltau(scores, long_acc)
        zero_cost = {"evaluator": scorer.config(), "kendall_tau": zc_tau, "p_value": zc_p, "scores": scores,
                     "seconds_per_cell": statistics.median(seconds)}
        print(f"{name}: Kendall tau against the long schedule = {zc_tau:.3f} (p = {zc_p:.3g}), "
              f"{statistics.median(seconds):.2f} s per cell")
    print_table(f"proxy vs long training on {args.dataset}",
                ["arch", "proxy val acc", "long val acc", "proxy s"] + ([args.zero_cost] if zero_cost else []),
                rows)
    print(f"Kendall tau = {tau:.3f} (p = {p_value:.3g}); median seconds per proxy child = "
          f"{statistics.median(proxy_seconds):.1f}")
    path = write_json("proxy_rank", {"args": vars(args), "kendall_tau": tau, "p_value": p_value,
                                     "seconds_per_proxy_child": statistics.median(proxy_seconds),
                                     "rows": [dict(zip(["arch", "proxy", "long", "proxy_seconds"], r))
                                              for r in rows],
                                     **({"zero_cost": zero_cost} if zero_cost else {})})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""How well each zero-cost score ranks NAS-Bench-201 cells on real CIFAR-10 images.

Scores a fixed random sample of the NAS-Bench-201 table's cells (``--sample``, chosen by
``--seed``) with every zero-cost score on one batch of ../shared/data/cifar10/train.npz, in the
benchmark's own network (C=16, N=5), and prints Kendall's tau, Spearman's rho and the top-10 %
precision of each against the table's 200-epoch accuracy -- the same figures that
``nasforge check-evaluator`` prints for one evaluator. Every score of a cell comes from one
evaluation, so the scores share their cost; the per-score seconds are measured separately with
``--time-each``.

Resumable: each evaluator seed's scores are appended to benchmarks/results/zero_cost/seed-N.jsonl
as they are computed; a rerun scores only the cells not there yet.

    .venv/bin/python benchmarks/zero_cost_rank.py --sample 500 --eval-seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from _common import RESULTS, nb201_on_cifar10, print_table, progress_printer, write_json
from nasforge.evaluators.quality import check_evaluator, rank_quality
from nasforge.evaluators.zero_cost import SCORES, ZeroCostEvaluator

#: published Kendall tau on NB201 CIFAR-10 (NAS-Bench-Suite-Zero, ~700 random cells).
PUBLISHED = {"naswot": 0.59, "jacob_cov": 0.58, "params": 0.56, "synflow": 0.54, "flops": 0.52, "snip": 0.44,
             "grasp": 0.38, "fisher": 0.37}
TRUTH = "c10_test_acc_200ep"
SELECTION = "c10_valid_acc_200ep"  # what combinations are chosen on, never the reported test column


def run_seed(space, table: Path, dataset: str, sample: int, seed: int, eval_seed: int, batch_size: int):
    evaluator = ZeroCostEvaluator(scores=SCORES, dataset=dataset, batch_size=batch_size, batch_seed=eval_seed)
    cache = RESULTS / "zero_cost" / f"seed-{eval_seed}.jsonl"
    cache.parent.mkdir(parents=True, exist_ok=True)
    return check_evaluator(space, evaluator, table, TRUTH, sample=sample, seed=seed, eval_seed=eval_seed,
                           metric="zc_naswot", cache=cache, progress=progress_printer(f"eval seed {eval_seed}"))


def time_each(space, dataset: str, batch_size: int, cells: int) -> dict[str, float]:
    """Median seconds per cell of each score alone (model built, batch ready), over `cells` cells."""
    import numpy as np

    rng = np.random.default_rng(123)
    archs = [space.sample(rng) for _ in range(cells)]
    out = {}
    for score in SCORES:
        ev = ZeroCostEvaluator(scores=[score], dataset=dataset, batch_size=batch_size)
        ev.batch()
        times = []
        for k, arch in enumerate(archs):
            t = time.perf_counter()
            try:
                ev.evaluate(space, arch, k)
            except Exception:
                pass
            times.append(time.perf_counter() - t)
        out[score] = statistics.median(times)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0, help="which cells are sampled")
    ap.add_argument("--eval-seeds", type=int, nargs="+", default=[0], help="evaluator seeds (weights, batch)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--time-each", type=int, default=0, metavar="CELLS",
                    help="also time each score alone on this many random cells")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    space, table, dataset = nb201_on_cifar10()
    per_seed = {}
    for eval_seed in args.eval_seeds:
        result = run_seed(space, table, dataset, args.sample, args.seed, eval_seed, args.batch_size)
        per_seed[eval_seed] = result
    from nasforge.evaluators.table import read_table

    valid = read_table(table).numeric(SELECTION)
    rows, summary = [], {}
    for score in SCORES:
        taus, rhos, tops, vtaus = [], [], [], []
        for result in per_seed.values():
            values = [(c["metrics"] or {}).get(f"zc_{score}") for c in result.cells]
            q = rank_quality(values, [c["truth"] for c in result.cells])
            v = rank_quality(values, [float(valid[c["row"]]) for c in result.cells])
            taus.append(q.kendall_tau), rhos.append(q.spearman_rho), tops.append(q.top10_precision)
            vtaus.append(v.kendall_tau)
        summary[score] = {"kendall_tau": statistics.mean(taus), "kendall_tau_per_seed": taus,
                          "kendall_tau_valid": statistics.mean(vtaus),
                          "spearman_rho": statistics.mean(rhos), "top10_precision": statistics.mean(tops),
                          "published_tau": PUBLISHED[score]}
        rows.append([score, summary[score]["kendall_tau"], PUBLISHED[score], summary[score]["spearman_rho"],
                     summary[score]["top10_precision"]])
    timing = time_each(space, dataset, args.batch_size, args.time_each) if args.time_each else {}
    for r in rows:
        r.append(timing.get(r[0], float("nan")))
    first = next(iter(per_seed.values()))
    print_table(f"zero-cost scores, NB201 CIFAR-10, {first.quality.cells} cells, eval seeds {args.eval_seeds}",
                ["score", "kendall tau", "published", "spearman", "top-10% prec.", "s/cell alone"], rows)
    write_json("zero_cost_rank", {"sample": args.sample, "seed": args.seed, "eval_seeds": args.eval_seeds,
                                  "truth_column": TRUTH, "batch_size": args.batch_size, "scores": summary,
                                  "seconds_per_cell_all_scores": {s: r.seconds_per_cell for s, r in per_seed.items()},
                                  "seconds_per_cell_each": timing,
                                  "failed": {s: r.quality.failed for s, r in per_seed.items()}})


if __name__ == "__main__":
    main()

"""Which evaluator ranks NAS-Bench-201 cells best per CPU-second, on real CIFAR-10 images?

Each named setting below is run through `check_evaluator` (what ``nasforge check-evaluator``
does) on a seeded sample of the NAS-Bench-201 table, against the table's 200-epoch test accuracy.
The sample seed is 1 by default: the zero-cost ensemble's scores were chosen on the *validation*
column of sample seed 0 (benchmarks/zero_cost_rank.py), so it is graded here on other cells.

Resumable: each setting appends its scored cells to benchmarks/results/evaluator_rank/NAME.jsonl,
and a rerun scores only what is missing; benchmarks/results/evaluator_rank.json collects the figures.

    .venv/bin/python benchmarks/evaluator_rank.py zc_ensemble --sample 500
    .venv/bin/python benchmarks/evaluator_rank.py proxy_c8n1_1ep proxy_c8n1_3ep --sample 30
"""

from __future__ import annotations

import argparse
import json

import torch

from _common import RESULTS, nb201_on_cifar10, print_table, progress_printer, write_json
from nasforge.evaluators import create_evaluator
from nasforge.evaluators.quality import check_evaluator

TRUTH = "c10_test_acc_200ep"
SMALL_NET = {"channels": 8, "cells_per_stage": 1}


def _proxy(epochs: int, network: dict | None = None, train_size: int = 5000) -> dict:
    return {"evaluator": "proxy", "options": {"network": network or SMALL_NET, "train": {"epochs": epochs},
                                              "train_size": train_size, "val_size": 1000, "latency": False}}


#: name -> evaluator and options (the dataset is added: real CIFAR-10 training images).
SETTINGS: dict[str, dict] = {
    "zc_ensemble": {"evaluator": "zc_ensemble", "options": {}},
    "naswot": {"evaluator": "naswot", "options": {}},
    "synflow": {"evaluator": "synflow", "options": {}},
    "params": {"evaluator": "params", "options": {}},
    "proxy_c8n1_1ep": _proxy(1),
    "proxy_c8n1_3ep": _proxy(3),
    "proxy_c8n1_10ep": _proxy(10),
    "proxy_c16n5_1ep": _proxy(1, {"channels": 16, "cells_per_stage": 5}),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("settings", nargs="+", choices=sorted(SETTINGS))
    ap.add_argument("--sample", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1, help="which cells are sampled (1: not the selection sample)")
    ap.add_argument("--eval-seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    space, table, dataset = nb201_on_cifar10()
    out_path = RESULTS / "evaluator_rank.json"
    figures, rows = {}, []
    for name in args.settings:
        setting = SETTINGS[name]
        evaluator = create_evaluator(setting["evaluator"], space=space, dataset=dataset, **setting["options"])
        cache = RESULTS / "evaluator_rank" / f"{name}-s{args.seed}-n{args.sample}-e{args.eval_seed}.jsonl"
        cache.parent.mkdir(parents=True, exist_ok=True)
        result = check_evaluator(space, evaluator, table, TRUTH, sample=args.sample, seed=args.seed,
                                 eval_seed=args.eval_seed, cache=cache, progress=progress_printer(name))
        q = result.quality
        figures[f"{name}/seed{args.seed}/n{args.sample}"] = {
            **result.to_dict(), "setting": name, "sample": args.sample, "sample_seed": args.seed,
            "eval_seed": args.eval_seed}
        rows.append([name, q.cells, q.kendall_tau, q.spearman_rho, q.top10_precision, result.seconds_per_cell,
                     q.failed])
    print_table(f"evaluators on NB201 CIFAR-10 (truth {TRUTH}, sample seed {args.seed})",
                ["setting", "cells", "kendall tau", "spearman", "top-10% prec.", "s/cell", "failed"], rows)
    # read just before writing: another setting may have finished meanwhile in another process
    collected = json.loads(out_path.read_text()).get("settings", {}) if out_path.exists() else {}
    write_json("evaluator_rank", {"truth_column": TRUTH, "settings": {**collected, **figures}})


if __name__ == "__main__":
    main()

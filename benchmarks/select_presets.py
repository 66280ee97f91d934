"""Choose the PPO / REINFORCE "default" preset on validation only.

    .venv/bin/python benchmarks/select_presets.py              # 30 selection seeds, resumable
    .venv/bin/python benchmarks/select_presets.py --show       # the table of what was measured

Procedure (written down before any test figure is read):
- table NAS-Bench-201 CIFAR-10, reward = 12-epoch validation accuracy; the table is opened with
  the *reward* column as its report column, so this script never reads a test column;
- seeds 1000..1000+N-1, disjoint from the seeds 0..99 that benchmarks/strategies.py reports;
- the loop's default duplicate filter ("reask"), as `nasforge search` and `nasforge bench` run;
- criterion: the mean over seeds of the best reward found (the validation accuracy of the
  best-by-reward cell), averaged over the 100- and 200-query budgets; the highest wins;
- grid: lr x batch_size x entropy_weight below, other options at the preset's values
  (standardised advantages, 4 PPO epochs, clip 0.2, 100 LSTM units);
- PPO and REINFORCE share their presets (they differ only in the update rule), and the preset is
  selected on PPO; `--strategies ppo reinforce` also measures REINFORCE's grid.
Each configuration's result is appended to benchmarks/results/select_presets.jsonl as it finishes,
so an interrupted selection resumes where it stopped.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, print_table  # noqa: E402

from nasforge.benchmarking import BenchTable, run_bench_budgets  # noqa: E402

GRID = {"lr": [0.005, 0.01, 0.03], "batch_size": [5, 10], "entropy_weight": [0.01, 0.05]}
BUDGETS = [100, 200]


def configurations() -> list[dict]:
    return [dict(zip(GRID, values)) for values in itertools.product(*GRID.values())]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=30, help="selection seeds, 1000..1000+N-1 (default 30)")
    p.add_argument("--strategies", nargs="+", default=["ppo"], choices=["ppo", "reinforce"])
    p.add_argument("--show", action="store_true", help="print what was measured, run nothing")
    args = p.parse_args()
    torch.set_num_threads(1)
    path = RESULTS / "select_presets.jsonl"
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            done[(record["strategy"], json.dumps(record["options"], sort_keys=True), record["seeds"])] = record
    # the reward column reported: no test column is opened
    table = BenchTable("nb201", report_column="c10_valid_acc_12ep")
    assert table.report_column == table.reward_column
    seeds = list(range(1000, 1000 + args.seeds))
    if not args.show:
        for strategy in args.strategies:
            for options in configurations():
                key = (strategy, json.dumps(options, sort_keys=True), args.seeds)
                if key in done:
                    continue
                start = time.perf_counter()
                results = run_bench_budgets(table, strategy, BUDGETS, seeds, options)
                record = {"strategy": strategy, "options": options, "seeds": args.seeds,
                          **{f"reward_{q}": r.mean_best_reward for q, r in results.items()},
                          **{f"reward_std_{q}": r.std_best_reward for q, r in results.items()},
                          "seconds": time.perf_counter() - start}
                record["criterion"] = sum(record[f"reward_{q}"] for q in BUDGETS) / len(BUDGETS)
                done[key] = record
                with path.open("a") as f:
                    f.write(json.dumps(record, sort_keys=True) + "\n")
                print(f"{strategy} {options}: {record['criterion']:.3f} ({record['seconds']:.0f} s)", flush=True)
    rows = []
    for strategy in args.strategies:
        records = sorted((r for (s, _, n), r in done.items() if s == strategy and n == args.seeds),
                         key=lambda r: -r["criterion"])
        for rank, r in enumerate(records, 1):
            rows.append([strategy, rank, json.dumps(r["options"], sort_keys=True),
                         f"{r['reward_100']:.3f} ± {r['reward_std_100']:.2f}",
                         f"{r['reward_200']:.3f} ± {r['reward_std_200']:.2f}", f"{r['criterion']:.3f}"])
    print_table(f"preset selection: best 12-epoch validation reward, seeds 1000..{999 + args.seeds}",
                ["strategy", "rank", "options", "100 queries", "200 queries", "criterion"], rows)


if __name__ == "__main__":
    main()

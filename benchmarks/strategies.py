"""Search strategies on the tabulated benchmarks: random, evolution, REINFORCE and PPO.

    .venv/bin/python benchmarks/strategies.py                    # 100 seeds on both tables
    .venv/bin/python benchmarks/strategies.py --seeds 20         # quicker, noisier

For each table, strategy and budget (100 and 200 queries), runs one independent search per seed
(strategy seed = seed index) with `nasforge.benchmarking` and reports the mean and standard
deviation over seeds of the report column of each seed's best-by-reward architecture, the
standard error of that mean, the mean best reward, the distinct architectures per seed (every ask
is a query, repeats included), and the strategy's own computation per query (ask + tell, one
intra-op thread, excluding the table lookups). Strategies do not know the budget, so the 100-query
numbers are the first 100 asks of the 200-query searches.

Tables and protocols:
- NAS-Bench-201 CIFAR-10: reward = 12-epoch validation accuracy (cifar10-valid), report = 200-epoch
  test accuracy, as the benchmark's own baselines (REFERENCE 6.2). Reference: RS 93.70 +- 0.36,
  REA 93.92 +- 0.30, REINFORCE 93.85 (NAS-Bench-201 paper, ~100 queries); best cell 94.37.
- NAS-Bench-Macro CIFAR-10: the benchmark has no validation split, so reward and report are the
  same column (mean test accuracy of 3 runs): this measures optimisation, not generalisation.
  Best 93.127.

Writes benchmarks/results/strategies.md and benchmarks/results/strategies.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, print_table, write_json  # noqa: E402

from nasforge.benchmarking import BenchTable, run_bench_budgets  # noqa: E402

#: (label, strategy, options). Evolution uses the NAS-Bench-201 scripts' P=10, S=3 (paper: 100, 25).
STRATEGIES = [
    ("random", "random", {}),
    ("evolution P=10 S=3", "evolution", {"population_size": 10, "sample_size": 3}),
    ("reinforce", "reinforce", {}),
    ("ppo", "ppo", {}),
    ("reinforce preset=nasnet", "reinforce", {"preset": "nasnet"}),
    ("ppo preset=nasnet", "ppo", {"preset": "nasnet"}),
]

NOTES = {
    "nb201": "reward c10_valid_acc_12ep (12-epoch validation), report c10_test_acc_200ep (200-epoch test)",
    "macro": "reward = report = mean_acc: NAS-Bench-Macro has no validation split (val == test)",
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=100, help="seeds per table (default 100)")
    p.add_argument("--macro-seeds", type=int, default=None, help="seeds on NAS-Bench-Macro (default: --seeds)")
    p.add_argument("--queries", type=int, nargs="+", default=[100, 200])
    p.add_argument("--tables", nargs="+", default=["nb201", "macro"], choices=["nb201", "macro"])
    p.add_argument("--only", nargs="+", help="labels of STRATEGIES to run (default: all)")
    p.add_argument("--name", default="strategies", help="results file name (default strategies)")
    args = p.parse_args()
    torch.set_num_threads(1)

    rows, records = [], []
    for table_name in args.tables:
        table = BenchTable(table_name)
        seeds = args.macro_seeds if table_name == "macro" and args.macro_seeds else args.seeds
        for label, strategy, options in STRATEGIES:
            if args.only and label not in args.only:
                continue
            start = time.perf_counter()
            results = run_bench_budgets(table, strategy, args.queries, seeds, options)
            print(f"{table_name} {label}: " + ", ".join(
                f"{q}q {r.mean:.3f}+-{r.std:.3f}" for q, r in results.items())
                + f" ({time.perf_counter() - start:.0f} s)", flush=True)
            for q, r in results.items():
                rows.append([table_name, label, q, seeds, f"{r.mean:.2f} ± {r.std:.2f}", f"{r.sem:.3f}",
                             f"{r.mean_best_reward:.2f}", f"{r.mean_distinct:.1f}",
                             f"{r.seconds_per_query * 1e3:.3f}"])
                records.append({"label": label, **r.to_dict()})
    columns = ["table", "strategy", "queries", "seeds", "report mean ± std", "sem", "best reward",
               "distinct", "ms/query"]
    print_table("strategies on tabulated benchmarks", columns, rows)
    path = write_json(args.name, {"args": vars(args), "notes": NOTES, "results": records})
    md = RESULTS / f"{args.name}.md"
    md.write_text(markdown(columns, rows, args))
    print(f"wrote {path} and {md}")


def markdown(columns: list[str], rows: list[list], args: argparse.Namespace) -> str:
    lines = ["# Search strategies on tabulated benchmarks", "",
             f"`python benchmarks/strategies.py --seeds {args.seeds}"
             + (f" --macro-seeds {args.macro_seeds}" if args.macro_seeds else "") + "`", "",
             "Each seed is an independent search (strategy seed = seed index); its best architecture is "
             "picked by reward and scores its report column. *report mean ± std* is over seeds (std with "
             "ddof=0), *sem* the standard error of that mean, *distinct* the different canonical keys per "
             "seed (every ask is a query, repeats included), *ms/query* the strategy's own computation "
             "(ask + tell, one thread, lookups excluded) on this shared 2-core machine.", ""]
    lines += [f"- **{name}**: {note}" for name, note in NOTES.items() if name in args.tables]
    lines += ["", "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

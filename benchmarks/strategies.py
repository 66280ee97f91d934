"""Search strategies on the tabulated benchmarks, under both duplicate protocols.

    .venv/bin/python benchmarks/strategies.py                    # 100 seeds, both tables (resumable)
    .venv/bin/python benchmarks/strategies.py --seeds 20         # quicker, noisier
    .venv/bin/python benchmarks/strategies.py --cost             # ms per ask + tell at 1,000 trials

For each table, strategy, protocol and budget (100 and 200 queries), one independent search per
seed (strategy seed = seed index 0..N-1) with `nasforge.benchmarking.run_bench`, the strategy told
the budget it plans for; reported: mean and standard deviation over seeds of the report column of
each seed's best-by-reward cell, the standard error of that mean, the mean best reward, the
distinct cells evaluated per seed, the proposals per seed, and the strategy's own computation per
query (ask + tell, one intra-op thread, table lookups excluded).

Protocols (the same rules for every strategy):
- "published" (`duplicates="reuse"`): every ask is a query, a repeated cell is looked up again;
  how NAS-Bench-201's own baselines count queries.
- "filtered" (`duplicates="reask"`, nasforge's default in `nasforge search` and `nasforge bench`):
  a proposal already asked in the search is turned down and the strategy asked again, so every
  query is a new cell.

Tables:
- NAS-Bench-201 CIFAR-10: reward = 12-epoch validation accuracy (cifar10-valid), report = 200-epoch
  test accuracy (Dong & Yang, ICLR 2020, section 5). Published: RS 93.70 ± 0.36, REA 93.92 ± 0.30,
  REINFORCE 93.85 (about 100 queries); the space's best cell 94.37.
- NAS-Bench-Macro CIFAR-10 (Su et al., arXiv:2103.11922): no validation split, three training runs
  each scored on test; reward = run 1, report = mean of runs 2 and 3, so the reported number is
  never the one searched on.

Each (table, strategy, protocol, budget, seeds) result is appended to
benchmarks/results/strategies.jsonl when it finishes and not run again; the tables are written to
benchmarks/results/strategies.md and .json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, print_table, write_json  # noqa: E402

from nasforge.benchmarking import BenchTable, run_bench, run_seed_budgets  # noqa: E402

#: (label, strategy, options): every strategy at its defaults, plus NASNet's own PPO settings.
STRATEGIES = [
    ("random", "random", {}),
    ("evolution", "evolution", {}),
    ("local", "local", {}),
    ("predictor", "predictor", {}),
    ("reinforce", "reinforce", {}),
    ("ppo", "ppo", {}),
    ("ppo preset=nasnet", "ppo", {"preset": "nasnet"}),
]
PROTOCOLS = {"published": "reuse", "filtered": "reask"}

NOTES = {
    "nb201": "reward c10_valid_acc_12ep (12-epoch validation), report c10_test_acc_200ep (200-epoch test)",
    "macro": "reward test_acc_run1, report the mean of test_acc_run2 and test_acc_run3 (no validation split)",
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=100, help="seeds per table (default 100)")
    p.add_argument("--queries", type=int, nargs="+", default=[100, 200])
    p.add_argument("--tables", nargs="+", default=["nb201", "macro"], choices=["nb201", "macro"])
    p.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=list(PROTOCOLS))
    p.add_argument("--only", nargs="+", help="labels of STRATEGIES to run (default: all)")
    p.add_argument("--cost", action="store_true", help="measure ms per ask + tell at 1,000 trials instead")
    args = p.parse_args()
    torch.set_num_threads(1)
    chosen = [s for s in STRATEGIES if not args.only or s[0] in args.only]
    if args.cost:
        return cost(chosen)
    cache = RESULTS / "strategies.jsonl"
    done: dict[str, dict] = {}
    if cache.exists():
        for line in cache.read_text().splitlines():
            record = json.loads(line)
            done[record["id"]] = record
    rows, records = [], []
    for table_name in args.tables:
        table = BenchTable(table_name)
        for protocol in args.protocols:
            for label, strategy, options in chosen:
                for q in args.queries:
                    rid = f"{table_name}|{label}|{protocol}|{q}|{args.seeds}"
                    if rid not in done:
                        start = time.perf_counter()
                        r = run_bench(table, strategy, q, args.seeds, options, duplicates=PROTOCOLS[protocol])
                        done[rid] = {"id": rid, "table_name": table_name, "label": label, "protocol": protocol,
                                     **r.to_dict()}
                        with cache.open("a") as f:
                            f.write(json.dumps(_finite(done[rid]), sort_keys=True) + "\n")
                        print(f"{table_name} {protocol} {label} {q}q: {r.mean:.3f} ± {r.std:.3f} "
                              f"({time.perf_counter() - start:.0f} s)", flush=True)
                    r = done[rid]
                    records.append(r)
                    rows.append([table_name, protocol, label, q, args.seeds, f"{r['mean']:.2f} ± {r['std']:.2f}",
                                 f"{r['sem']:.3f}", f"{r['mean_best_reward']:.2f}", f"{r['mean_distinct']:.1f}",
                                 f"{r['mean_asks']:.1f}", f"{r['seconds_per_query'] * 1e3:.3f}"])
    columns = ["table", "protocol", "strategy", "queries", "seeds", "report mean ± std", "sem", "best reward",
               "distinct", "asks", "ms/query"]
    print_table("strategies on tabulated benchmarks", columns, rows)
    path = write_json("strategies", {"args": vars(args), "notes": NOTES, "results": records})
    md = RESULTS / "strategies.md"
    md.write_text(markdown(columns, rows, args))
    print(f"wrote {path} and {md}")


def cost(chosen: list) -> None:
    """Strategy time per ask + tell over queries 901..1000 of one NAS-Bench-201 search per strategy."""
    table = BenchTable("nb201")
    rows, records = [], []
    for label, strategy, options in chosen:
        marks = run_seed_budgets(table, strategy, [900, 1000], 0, options, plan=1000)
        early, late = marks[900], marks[1000]
        asks = late.asks - early.asks
        ms = (late.strategy_seconds - early.strategy_seconds) / max(1, late.queries - early.queries) * 1e3
        records.append({"label": label, "ms_per_query_at_1000": ms, "asks_901_1000": asks,
                        "mean_ms_1_1000": late.strategy_seconds / late.queries * 1e3})
        rows.append([label, f"{ms:.2f}", asks, f"{records[-1]['mean_ms_1_1000']:.2f}"])
        print(f"{label}: {ms:.2f} ms per query at 1,000 trials", flush=True)
    print_table("strategy cost on NAS-Bench-201 (ask + tell, duplicates re-asked, one thread)",
                ["strategy", "ms/query, queries 901-1000", "asks 901-1000", "ms/query, 1-1000"], rows)
    write_json("strategy_cost", {"results": records})


def _finite(value):
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def markdown(columns: list[str], rows: list[list], args: argparse.Namespace) -> str:
    lines = ["# Search strategies on tabulated benchmarks", "",
             f"`python benchmarks/strategies.py --seeds {args.seeds}`", "",
             "Each seed is an independent search (strategy seed = seed index); its best cell is picked by reward "
             "and scores its report column. *report mean ± std* is over seeds (std with ddof=0), *sem* the "
             "standard error of that mean, *distinct* the different cells evaluated per seed, *asks* the "
             "proposals per seed, *ms/query* the strategy's own computation (ask + tell, one thread, lookups "
             "excluded) on this shared 2-core machine. *published*: every ask is a query (repeats looked up "
             "again); *filtered*: a repeat is turned down and the strategy asked again (nasforge's default).", ""]
    lines += [f"- **{name}**: {note}" for name, note in NOTES.items() if name in args.tables]
    lines += ["", "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

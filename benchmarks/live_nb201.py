"""Live NAS-Bench-201 search on real CIFAR-10 under a wall-clock budget, scored by the table.

    .venv/bin/python benchmarks/live_nb201.py --arm random --seeds 0 1 2        # 30 min a seed
    .venv/bin/python benchmarks/live_nb201.py --arm zero-cost --seeds 0 1 2 3 4 # minutes a seed
    .venv/bin/python benchmarks/live_nb201.py --arm zero-cost-300 --arm zero-cost-evolution --seeds 0 1 2 3 4
    .venv/bin/python benchmarks/live_nb201.py --arm multi-fidelity --seeds 0 1 2
    .venv/bin/python benchmarks/live_nb201.py --report                           # the table only
    .venv/bin/python benchmarks/live_nb201.py --arm random --seeds 0 --budget 120 --name smoke

Each (arm, seed) is one `nasforge search` of the NAS-Bench-201 space (Dong & Yang, ICLR 2020)
whose children are trained on ../shared/data/cifar10/train.npz (validation carved from it), in its
own run folder runs/NAME/ARM-sSEED; an unfinished one is resumed (its time budget counts every
sitting). A finished seed is scored into benchmarks/results/NAME/ARM-sSEED.json, which is
committed, and is not searched again: the benchmark spreads over several sittings. The cell each
search returns (the best by validation reward at the highest fidelity) is looked up in the
NAS-Bench-201 table: its 200-epoch CIFAR-10 test accuracy is what we report, never searched on.
Timings depend on the machine being otherwise idle: the budget is wall-clock.

Arms (see ARMS): "random" and "evolution" with the plain proxy evaluator (the network and schedule
of the benchmark itself, C=16, N=5, as `nasforge search --space nb201 --dataset ... --evaluator proxy` trains it);
"zero-cost" ranks 100 random cells by the zc_ensemble score alone and returns the best, and
"zero-cost-300" 300 of them; "zero-cost-evolution" is regularized evolution rewarded by the same
score, 300 trials (what `nasforge search --dataset ...` runs when given nothing else), and
"zero-cost-evolution-600k" the same with children over 600,000 parameters refused (a user's size
limit: the largest cell of the space has 1.53 M);
"multi-fidelity" is regularized evolution (population 10) whose proposals are pre-screened by
zc_ensemble (best of 10, scored on the same small network), training a small proxy (C=8, N=1, on
10,000 images, validated on all 3,500 held-out ones) under successive halving with rungs of 1, 3
and 9 epochs.

Writes benchmarks/results/NAME.json and NAME.md (mean ± std per arm and every seed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, nb201_on_cifar10, print_table, run_nasforge, write_json  # noqa: E402

from nasforge.evaluators.table import NB201Table, row_architectures  # noqa: E402
from nasforge.experiment import Store  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

#: nasforge search flags of each arm (the dataset, seed, budget and run folder are added).
ARMS: dict[str, list[str]] = {
    "random": ["--strategy", "random", "--evaluator", "proxy"],
    "evolution": ["--strategy", "evolution", "--evaluator", "proxy"],
    "zero-cost": ["--strategy", "random", "--evaluator", "zc_ensemble", "--trials", "100"],
    "zero-cost-300": ["--strategy", "random", "--evaluator", "zc_ensemble", "--trials", "300"],
    "zero-cost-evolution": ["--strategy", "evolution", "--evaluator", "zc_ensemble", "--trials", "300"],
    "zero-cost-evolution-600k": ["--strategy", "evolution", "--evaluator", "zc_ensemble", "--trials", "300",
                                 "--max-params", "600000"],
    "multi-fidelity": ["--strategy", "evolution", "--strategy-option", "population_size=10",
                       "--evaluator", "proxy",
                       "--prescreen", "zc_ensemble", "--prescreen-candidates", "10",
                       "--network-option", "channels=8", "--network-option", "cells_per_stage=1",
                       "--train-size", "10000",
                       "--scheduler", "sh", "--min-epochs", "1", "--max-epochs", "9", "--eta", "3"],
}
#: arms whose budget is their trial count, not the wall clock
UNTIMED = {"zero-cost", "zero-cost-300", "zero-cost-evolution", "zero-cost-evolution-600k"}


def run_dir(name: str, arm: str, seed: int) -> Path:
    return ROOT / "runs" / name / f"{arm}-s{seed}"


def result_file(name: str, arm: str, seed: int) -> Path:
    """A finished seed's scored result: committed with the results, so a later sitting on a fresh
    checkout (without runs/) skips that seed."""
    return RESULTS / name / f"{arm}-s{seed}.json"


def search(name: str, arm: str, seed: int, budget: float, dataset: str, threads: int) -> None:
    """Run (or resume) one seed of one arm and score it; a scored one is left as it is."""
    if result_file(name, arm, seed).exists():
        print(f"{arm} seed {seed}: finished earlier", flush=True)
        return
    flags = ["--space", "nb201", "--dataset", dataset, "--seed", str(seed), *ARMS[arm]]
    if arm not in UNTIMED:
        flags += ["--time", str(budget)]
    print(f"{arm} seed {seed}:", flush=True)
    folder = run_dir(name, arm, seed)
    summary = run_nasforge("search", folder, flags, threads, ROOT)
    record = score(folder, summary, seed)
    record.update({k: summary[k] for k in ("process_s", "load_1min_before_after", "command")})
    result_file(name, arm, seed).parent.mkdir(parents=True, exist_ok=True)
    result_file(name, arm, seed).write_text(json.dumps(record, indent=2, sort_keys=True))
    print(f"{arm} seed {seed}: returned {record['arch']}, 200-epoch test {record['test_acc_200ep']:.2f}",
          flush=True)


def score(folder: Path, summary: dict, seed: int) -> dict:
    """The returned cell (the run's best) with its table accuracies, and what the search spent."""
    space, table_path, _ = nb201_on_cifar10()
    table = NB201Table(table_path)
    with Store.open(folder, readonly=True) as store:
        best = store.best(1)[0]
        trials = store.trials()
        rungs = store.rungs()
    k = table.row(space.from_json(best.arch), space)
    epochs = sum(max(0.0, (t.metrics or {}).get("epochs", 0.0)) for t in trials)
    return {"seed": seed, "test_acc_200ep": 100 * table.accuracy("c10_test_acc_200ep", k),
            "valid_acc_200ep": 100 * table.accuracy("c10_valid_acc_200ep", k), "arch": best.key,
            "arch_str": space.to_json(space.from_json(best.arch))["arch"],
            "reward": best.reward, "fidelity": (best.metrics or {}).get("fidelity", 1.0),
            "trials": len(trials), "rung_results": len(rungs), "child_epochs": epochs,
            "elapsed_s": summary["elapsed"], "stop_reason": summary["stop_reason"]}


def report(name: str) -> None:
    results: dict[str, list[dict]] = {}
    for arm in ARMS:
        files = sorted((RESULTS / name).glob(f"{arm}-s*.json")) if (RESULTS / name).exists() else []
        rows = sorted((json.loads(f.read_text()) for f in files), key=lambda r: r["seed"])
        if rows:
            results[arm] = rows
    if not results:
        print(f"no finished seeds in {RESULTS / name} yet")
        return
    space, table_path, _ = nb201_on_cifar10()
    table = NB201Table(table_path).load()
    test = table.numeric("c10_test_acc_200ep")
    anchors = _anchors(test.tolist())
    limited = {}  # arm -> the table's distribution among the cells its size limit allows
    params: list[int] = []  # every row's parameter count, counted once when an arm has a limit
    for arm in results:
        if "--max-params" in ARMS[arm]:
            limit = int(ARMS[arm][ARMS[arm].index("--max-params") + 1])
            params = params or [space.costs(a)["params"] for a in row_architectures(space, table, range(len(table)))]
            allowed = [float(t) for p, t in zip(params, test) if p <= limit]
            limited[arm] = {"max_params": limit, "cells": len(allowed), **_anchors(allowed)}
    lines, summary_rows = [], []
    for arm, rows in results.items():
        accs = [r["test_acc_200ep"] for r in rows]
        std = _std(accs)
        valid = [r["valid_acc_200ep"] for r in rows]
        summary_rows.append([arm, len(rows), f"{statistics.mean(valid):.2f} ± {_std(valid):.2f}",
                             f"{statistics.mean(accs):.2f} ± {std:.2f}",
                             ", ".join(f"{a:.2f}" for a in accs),
                             f"{statistics.mean(r['trials'] for r in rows):.1f}",
                             f"{statistics.mean(r['elapsed_s'] for r in rows) / 60:.1f}",
                             f"{statistics.mean(r['process_s'] for r in rows) / 60:.1f}"])
        lines.append("| " + " | ".join(str(c) for c in summary_rows[-1]) + " |")
    columns = ["arm", "seeds", "200-ep valid acc (mean ± std)", "200-ep test acc (mean ± std)", "each seed",
               "children", "search min", "process min"]
    print_table(f"live NAS-Bench-201 search on CIFAR-10 ({name})", columns, summary_rows)
    write_json(name, {"arms": ARMS, "anchors": anchors, "anchors_within_limit": limited,
                      "results": results})  # seeds: results/NAME/
    md = [f"# Live NAS-Bench-201 search on CIFAR-10 ({name})", "",
          "`.venv/bin/python benchmarks/live_nb201.py`; the table's 200-epoch test accuracy of the cell "
          "each search returned (the search saw only its own scores: the validation accuracy of its proxy "
          "training, or a zero-cost score). The table's 200-epoch validation accuracy of the same cells is what "
          "a configuration is chosen by; the test accuracy is reported only.", "",
          "The table's own distribution of that accuracy (all its cells): "
          + ", ".join(f"{k} >= {v:.2f}" for k, v in anchors.items()) + ".", "",
          *(f"Among the {a['cells']} cells of at most {a['max_params']:,} parameters ({arm}): "
            + ", ".join(f"{k} >= {v:.2f}" for k, v in a.items() if k not in ("max_params", "cells")) + "."
            for arm, a in limited.items()), "",
          "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns), *lines, ""]
    (RESULTS / f"{name}.md").write_text("\n".join(md))


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else float("nan")


def _anchors(accuracies: list[float]) -> dict[str, float]:
    column = sorted(accuracies, reverse=True)
    anchors = {f"top {p} %": column[int(len(column) * p / 100)] for p in (1, 3, 5)}
    anchors["median"] = column[len(column) // 2]
    return anchors


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arm", action="append", choices=sorted(ARMS), help="arm(s) to search (default: none, report only)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds to run (default: 0 1 2)")
    p.add_argument("--budget", type=float, default=1800.0, help="wall-clock seconds per search (default: 1800)")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads of each search (default: 2)")
    p.add_argument("--name", default="live_nb201", help="run folders runs/NAME/..., results NAME.json/md")
    p.add_argument("--report", action="store_true", help="only print and write the results so far")
    args = p.parse_args()
    _, _, dataset = nb201_on_cifar10()
    if not args.report:
        for arm in args.arm or []:
            for seed in args.seeds:
                search(args.name, arm, seed, args.budget, dataset, args.threads)
    report(args.name)

if __name__ == "__main__":
    main()

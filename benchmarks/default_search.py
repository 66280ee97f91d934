"""Does the default `nasforge search` beat random cells, and how long does it take?

    .venv/bin/python benchmarks/default_search.py                # ~6 min on 2 CPU cores

Runs the command a user types first, `nasforge search` with every default (NASNet cells on the
built-in digits, regularized evolution, 48 trials), timed, then random search with the same
budget and seed. Every trial of the random run is a random cell trained by the same proxy, so the
random run doubles as the distribution the default search has to beat. Prints the table and
writes benchmarks/results/default_search.json. Run folders: runs/bench-default-{evolution,random}
(removed first, so each measurement starts from nothing).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

from nasforge.experiment import Store  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def search(strategy: str | None, seed: int) -> tuple[Path, float]:
    """One `nasforge search` with defaults (or another strategy); returns its run and wall time."""
    run = ROOT / "runs" / f"bench-default-{strategy or 'evolution'}"
    shutil.rmtree(run, ignore_errors=True)
    cmd = [sys.executable, "-m", "nasforge.cli", "search", "--run", str(run.relative_to(ROOT)),
           "--seed", str(seed), "--no-progress"]
    if strategy:
        cmd += ["--strategy", strategy]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return run, time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    runs = {"evolution (default)": search(None, args.seed), "random": search("random", args.seed)}
    figures, rows, rewards = {}, [], {}
    for label, (run, seconds) in runs.items():
        with Store.open(run) as store:
            done = rewards[label] = [t.reward for t in store.trials("done") if not t.reused]
            trials = len(store.trials())
        figures[label] = {"seconds": seconds, "trials": trials, "evaluated": len(done),
                          "best": max(done), "median": statistics.median(done),
                          "mean_last_half": statistics.mean(done[len(done) // 2:])}
        f = figures[label]
        rows.append([label, f"{seconds / 60:.1f}", trials, f"{f['best']:.4f}", f"{f['median']:.4f}",
                     f"{f['mean_last_half']:.4f}"])
    random_rewards = rewards["random"]
    best = figures["evolution (default)"]["best"]
    figures["default best beats random cells"] = (f"{sum(r < best for r in random_rewards)} of "
                                                  f"{len(random_rewards)}")
    print_table("nasforge search defaults on digits vs random cells",
                ["strategy", "minutes", "trials", "best val acc", "median val acc",
                 "mean val acc, 2nd half"], rows)
    print(f"the default search's best beats {figures['default best beats random cells']} random cells")
    print(f"wrote {write_json('default_search', {'args': vars(args), 'figures': figures})}")


if __name__ == "__main__":
    main()

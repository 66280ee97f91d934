"""The whole `nasforge run` on real CIFAR-10: does the family improve with phi, and does the chosen
alpha, beta, gamma beat scaling one dimension by more than its standard error?

    .venv/bin/python benchmarks/scaling_cifar.py                            # all 35,000 images, --budget small
    .venv/bin/python benchmarks/scaling_cifar.py --budget medium --grid-seeds 2
    .venv/bin/python benchmarks/scaling_cifar.py --train-size 300 --val-size 100 --trials 12 --out smoke
    .venv/bin/python benchmarks/scaling_cifar.py --report                   # the tables of the runs so far

Each configuration is one `nasforge run --dataset npz:../shared/data/cifar10/train.npz --test-dataset
npz:../shared/data/cifar10/test.npz` in the run folder runs/scaling_cifar/NAME, resumed where a
sitting stopped (the pipeline resumes every stage; a grid or search trial cut off is trained again,
a family member goes on from its last finished epoch), so the
benchmark spreads over several sittings. The validation split (10 % of the training images) is what
the pipeline chooses by; the 10,000 test images are scored once per family member and only reported.

It reports, from the run's own result:
- the coefficient grid: every candidate's validation accuracy ± standard error, and the verdict;
- the chosen triple against the depth-, width- and resolution-only alternatives trained alike,
  each with the difference and the 2-standard-error margin it has to clear (an alternative the
  family rounds to the chosen network is said to be that network, not beaten or beating);
- the family: validation accuracy ± its binomial standard error, epochs and test accuracy per phi,
  and whether validation rises with phi (by more than the combined standard error, or not; each
  member is trained once, so each step is also judged with the grid's measured training spread added).

On this project's 2-core CPU the full run is many hours (a phi = 1 candidate of the small budget
trains at tens of images per second); it is meant for an accelerator (training uses CUDA where
there is one) or for a run folder kept across sittings. Writes benchmarks/results/OUT.json, OUT.md and
OUT.jsonl (one line per finished configuration; OUT is scaling_cifar unless --out says otherwise).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, print_table, run_nasforge, write_json  # noqa: E402

from nasforge.scaling.search import compare, network_id, standard_error  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "cifar10"
FOLDER = ROOT / "runs" / "scaling_cifar"


def run(args: argparse.Namespace, rest: list[str]) -> dict:
    """Run (or resume) the pipeline; its JSON result with how this sitting was run."""
    flags = ["--dataset", f"npz:{SHARED / 'train.npz'}", "--test-dataset", f"npz:{SHARED / 'test.npz'}",
             "--budget", args.budget, "--grid-seeds", str(args.grid_seeds), "--family-schedule", args.family_schedule,
             "--seed", str(args.seed), *rest]
    return run_nasforge("run", FOLDER / args.name, flags, args.threads, ROOT)


def ahead(pair: dict) -> bool:
    """`compare(a, b)` says a is ahead of b by more than the margin."""
    return bool(pair["clear"]) and pair["difference"] > 0


def summary(name: str, result: dict) -> dict:
    """What the goal asks, read off the pipeline's result, compared as the pipeline's verdict compares."""
    n_val = (result.get("schedule") or {}).get("val_images")
    verdict = result.get("verdict") or {}
    best = result["coefficients"]
    alternatives = []
    for cand in result.get("candidates", []):
        if cand.get("label", "compound") != "compound" and cand.get("reward") is not None:
            pair = compare(best, cand)
            same = network_id(cand) == network_id(best)  # a second training of the chosen network
            alternatives.append({"label": cand["label"], "val": cand["reward"], "se": cand["se"],
                                 "chosen_minus_it": pair["difference"], "margin": pair["margin"],
                                 "same_network": same,
                                 "clearly_better": not same and ahead(pair)})
    members = [{"phi": m["phi"], "epochs": m.get("epochs"), "val": m.get("val_accuracy"),
                "se": standard_error(m.get("val_accuracy"), "val_accuracy", n_val), "test": m.get("test_accuracy"),
                "params": m.get("params"), "macs": m.get("macs")} for m in result.get("members", [])]
    # Each member is trained once, so its se is binomial only; where the grid measured how much one
    # training's luck moves a network (at the grid's shorter schedule), each step is also judged with
    # that spread added to both members, the cautious reading.
    sd = (verdict.get("training_spread") or {}).get("sd") or 0.0
    steps = []
    for a, b in zip(members, members[1:]):
        pair = compare({"reward": b["val"], "se": b["se"]}, {"reward": a["val"], "se": a["se"]})
        step = {"from": a["phi"], "to": b["phi"], "difference": pair["difference"], "margin": pair["margin"],
                "rises": pair["difference"] > 0, "clearly": ahead(pair),
                "margin_with_spread": None, "clearly_with_spread": None}
        if sd:
            wide = compare({"reward": b["val"], "se": math.hypot(b["se"], sd)},
                           {"reward": a["val"], "se": math.hypot(a["se"], sd)})
            step.update(margin_with_spread=wide["margin"], clearly_with_spread=ahead(wide))
        steps.append(step)
    return {"name": name, "chosen": {k: best[k] for k in ("alpha", "beta", "gamma", "reward", "se")},
            "grid_verdict": verdict.get("text"), "grid_clear": verdict.get("clear"),
            "alternatives": alternatives, "members": members, "steps": steps,
            "family_rises": all(s["rises"] for s in steps),
            "beats_every_alternative": bool(alternatives) and all(a["clearly_better"] for a in alternatives),
            "training_spread": verdict.get("training_spread"),
            "schedule": result.get("schedule"), "family_schedule": result.get("family_schedule"),
            "command": result.get("command"), "sitting_s": result.get("process_s")}


def better(a: dict) -> str:
    """The 'clearly better' cell: a second training of the chosen network is no alternative."""
    if a.get("same_network"):
        return "no: the same network as the chosen triple"
    return "yes" if a["clearly_better"] else "no"


def step_text(step: dict) -> str:
    """One family step against its 2-se margin, and against the wider one with the grid's training spread."""
    text = (f"{step['difference']:+.4f} ({'more' if step['clearly'] else 'not more'} than the 2-se margin "
            f"{step['margin']:.4f}")
    if step.get("margin_with_spread") is not None:
        text += (f"; {'more' if step['clearly_with_spread'] else 'not more'} than {step['margin_with_spread']:.4f}, "
                 "the margin with the grid's training spread added")
    return text + ")"


def show(s: dict) -> None:
    chosen = s["chosen"]
    print(f"\n{s['name']}: chosen alpha={chosen['alpha']:g} beta={chosen['beta']:g} gamma={chosen['gamma']:g}, "
          f"val {chosen['reward']:.4f} ± {chosen['se']:.4f}; grid: {s['grid_verdict']}")
    print_table("the chosen triple against one dimension (phi = 1, trained alike)",
                ["alternative", "val ± se", "chosen − it", "2-se margin", "clearly better"],
                [[a["label"], f"{a['val']:.4f} ± {a['se']:.4f}", f"{a['chosen_minus_it']:+.4f}", f"{a['margin']:.4f}",
                  better(a)] for a in s["alternatives"]])
    print_table(f"family ({s['family_schedule']} schedule)", ["phi", "epochs", "params", "val ± se", "test"],
                [[m["phi"], m["epochs"], f"{m['params']:,}", f"{m['val']:.4f} ± {m['se']:.4f}",
                  "-" if m["test"] is None else f"{m['test']:.4f}"] for m in s["members"]])
    for step in s["steps"]:
        print(f"  phi {step['from']} -> {step['to']}: {step_text(step)}")


def markdown(summaries: list[dict]) -> str:
    lines = ["# `nasforge run` on real CIFAR-10 (scaling_cifar)", "",
             "`.venv/bin/python benchmarks/scaling_cifar.py`; validation (10 % of the training images) is what "
             "the pipeline chose by; test accuracy (the 10,000 CIFAR-10 test images) is reported only.", ""]
    for s in summaries:
        chosen = s["chosen"]
        lines += [f"## {s['name']}", "", f"`{s['command']}`", "",
                  f"Chosen: α = {chosen['alpha']:g}, β = {chosen['beta']:g}, γ = {chosen['gamma']:g}; "
                  f"grid verdict: {s['grid_verdict']}", "",
                  "| alternative | val ± se | chosen − it | 2-se margin | clearly better |", "|---|---|---|---|---|"]
        lines += [f"| {a['label']} | {a['val']:.4f} ± {a['se']:.4f} | {a['chosen_minus_it']:+.4f} | "
                  f"{a['margin']:.4f} | {better(a)} |" for a in s["alternatives"]]
        lines += ["", "| φ | epochs | params | val ± se | test |", "|---|---|---|---|---|"]
        lines += [f"| {m['phi']} | {m['epochs']} | {m['params']:,} | {m['val']:.4f} ± {m['se']:.4f} | "
                  f"{'-' if m['test'] is None else format(m['test'], '.4f')} |" for m in s["members"]]
        lines += [""] + [f"- φ {st['from']} → {st['to']}: {step_text(st)}" for st in s["steps"]]
        lines += ["", f"Family rises with φ: {'yes' if s['family_rises'] else 'no'}; the chosen triple beats every "
                  f"one-dimension alternative by more than 2 se: {'yes' if s['beats_every_alternative'] else 'no'}.",
                  ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget", default="small", choices=["small", "medium", "large"])
    p.add_argument("--grid-seeds", type=int, default=1, help="trainings of each grid row (default: 1)")
    p.add_argument("--family-schedule", default="grow", choices=["grow", "fixed", "early-stop"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="intra-op threads on CPU (default: 2)")
    p.add_argument("--name", help="run folder under runs/scaling_cifar (default: BUDGET-gSEEDS-SCHEDULE-sSEED)")
    p.add_argument("--out", default="scaling_cifar", help="results name in benchmarks/results (default: %(default)s)")
    p.add_argument("--report", action="store_true", help="only print and write the results so far")
    args, rest = p.parse_known_args()  # anything else goes to `nasforge run` (e.g. --train-size, --trials)
    args.name = args.name or f"{args.budget}-g{args.grid_seeds}-{args.family_schedule}-s{args.seed}"
    log = RESULTS / f"{args.out}.jsonl"
    done = {r["name"]: r for r in map(json.loads, log.read_text().splitlines())} if log.exists() else {}
    if not args.report and args.name not in done:
        done[args.name] = summary(args.name, run(args, rest))
        with log.open("a") as f:
            f.write(json.dumps(done[args.name]) + "\n")
    if not done:
        print(f"no finished configuration yet; the run in progress: nasforge show {FOLDER / args.name}")
        return
    for s in done.values():
        show(s)
    write_json(args.out, {"results": list(done.values())})
    (RESULTS / f"{args.out}.md").write_text(markdown(list(done.values())))


if __name__ == "__main__":
    main()

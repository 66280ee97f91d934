"""Reliability figures: kills survived, failures injected and handled, concurrent writers, load, fuzzing.

    .venv/bin/python benchmarks/reliability.py                 # every section (~10 min here)
    .venv/bin/python benchmarks/reliability.py --only kill load --quick

Sections (each returns a dict of figures; one table is printed and written to
benchmarks/results/NAME.json):

- kill: SIGKILL a real `nasforge search` process (PPO on a synthetic NAS-Bench-201 table, serial)
  at random moments, resume each time, and compare the final trial sequence with an uninterrupted
  run's; SQLite's integrity check after every kill.
- failures: a process-pool search whose evaluations raise, return NaN, hang past their timeout or
  kill their worker at random (seeded), with retries; every trial must end done or failed with its
  reason, and the budget must be spent.
- writers: 16 processes recording trials into one run at once.
- load: 500 simulated asynchronous workers, 10,000 trials per strategy; trials/s of the whole loop
  (ask, evaluate, record, checkpoint, tell) and peak RSS at 1,000 and 10,000 trials.
- fuzz: tests/test_fuzz.py with NASFORGE_FUZZ_SCALE examples per property; counts the cases.
- nodes: a Ray cluster on this machine (a head without CPUs and two worker nodes, each a raylet
  started by `ray start`); a search of trials pinned to the worker nodes (a table behind a sleep)
  during which worker nodes are SIGKILLed and started again; trials retried, lost, duplicated, and
  the wall time lost against the same search without kills.
- driver: a real `nasforge search --executor ray --ray-address ...` SIGKILLed at random moments
  and resumed against the same cluster; the final trial sequence against an uninterrupted run's.
- disk: a search on a tmpfs that fills up (exit status and message), resumed after the run folder
  is moved to a disk with room; show, report and --resume on a read-only remounted tmpfs. Needs
  root (mount); elsewhere the section reports that it was skipped.
- cluster-load: 2,000 trials through the cluster (a table behind a 10 ms sleep, 2 workers);
  trials/s and the driver's RSS at 500 and 2,000 trials.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))
from _common import RESULTS, print_table, write_json  # noqa: E402
from test_ray_executor import LocalCluster  # noqa: E402  (the tests' `ray start` cluster)
from toys import write_synthetic_nb201_table  # noqa: E402  (the tests' synthetic table)

from nasforge.evaluators.table import TableEvaluator  # noqa: E402
from nasforge.experiment import Experiment, ProcessExecutor, SimulatedExecutor, Store  # noqa: E402
from nasforge.spaces import NB201Space  # noqa: E402
from nasforge.strategies import create_strategy  # noqa: E402


def _table(folder: Path) -> Path:
    path = folder / "nb201_synthetic.csv"
    if not path.exists():
        write_synthetic_nb201_table(path)
    return path


def _trial_rows(run: Path) -> list[tuple]:
    with Store.open(run) as store:
        return [(t.id, t.key, t.status, t.reward, t.seed) for t in store.trials()]


# -- kill ----------------------------------------------------------------------------------------------
def kill(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    trials, kills = (100, 5) if args.quick else (400, 20)
    cmd = [sys.executable, "-m", "nasforge.cli", "search", "--space", "nb201", "--evaluator", "table",
           "--table", str(_table(work)), "--reward-column", "valid", "--report-column", "test",
           "--strategy", "ppo", "--trials", str(trials), "--seed", "7", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # run folders must lie under the current directory, so the searches run inside `work`
    subprocess.run([*cmd, "--run", "runs/kill-ref"], check=True, capture_output=True, env=env, cwd=work)
    run, rng = work / "runs" / "kill-run", random.Random(11)
    # kill once the run has moved by a trial, at a random moment within 0.5 s
    survived, integrity_failures, progress = _sigkill_repeatedly(
        lambda: subprocess.Popen([*cmd, "--run", "runs/kill-run", *(["--resume"] if Store.exists(run) else [])],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=work),
        run, kills, rng, lambda: 1)
    subprocess.run([*cmd, "--run", "runs/kill-run", "--resume"], check=True, capture_output=True, env=env, cwd=work)
    rows, ref = _trial_rows(run), _trial_rows(work / "runs" / "kill-ref")
    ids = [r[0] for r in rows]
    return {"kills": survived, "trials": len(rows), "trials at each kill": progress,
            "lost": trials - len(set(ids)), "duplicated": len(ids) - len(set(ids)),
            "integrity failures": integrity_failures, "same sequence as uninterrupted": rows == ref}


def _sigkill_repeatedly(launch: Callable[[], subprocess.Popen], run: Path, kills: int, rng: random.Random,
                        more_trials: Callable[[], int]) -> tuple[int, int, list[int]]:
    """(kills survived, integrity-check failures, trials stored at each kill): start the search with
    `launch()`, wait until it has stored `more_trials()` more trials, SIGKILL it at a random moment
    within 0.5 s, check the database; `kills` times, or fewer if the search finishes first."""
    survived, integrity_failures, progress = 0, 0, []
    while survived < kills:
        proc = launch()
        target = _count(run) + more_trials()
        while proc.poll() is None and _count(run) < target:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.5))
        if proc.poll() is not None:
            break  # the run finished first: fewer kills than asked, reported as such
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        survived += 1
        with Store.open(run) as store:
            integrity_failures += bool(store.integrity_check())
            progress.append(store.count())
    return survived, integrity_failures, progress


def _count(run: Path) -> int:
    try:
        with Store.open(run) as store:
            return store.count()
    except Exception:  # noqa: BLE001 - the database is being created
        return 0


# -- failures -------------------------------------------------------------------------------------------
class FaultyTable:
    """A table evaluator that fails at random (seeded by architecture and attempt seed)."""

    name = "faulty-table"

    def __init__(self, table: Path, rates: dict[str, float]):
        self.inner = TableEvaluator(table, "valid", space="nb201", report_column="test", percent=True)
        self.rates = rates

    def evaluate(self, space: Any, arch: Any, seed: int) -> dict[str, Any]:
        u = random.Random(f"{space.key(arch)}/{seed}").random()
        for mode, rate in self.rates.items():
            if u < rate:
                if mode == "raise":
                    raise RuntimeError("injected failure")
                if mode == "nan":
                    return {"val_accuracy": float("nan")}
                if mode == "hang":
                    time.sleep(3600)
                if mode == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
            u -= rate
        return self.inner.evaluate(space, arch, seed)


def failures(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    trials = 40 if args.quick else 200
    space = NB201Space()
    rates = {"raise": 0.1, "nan": 0.1, "hang": 0.05, "kill": 0.05}
    # random search: evolution re-proposes many equivalent cells, which are reused, not evaluated
    exp = Experiment(space, create_strategy("random", space, 0),
                     FaultyTable(_table(work), rates), None, work / "faults", budget=trials, retries=1,
                     timeout=2.0, executor=ProcessExecutor(workers=2, context="fork"), progress=False)
    start = time.perf_counter()
    summary = exp.run()
    exp.close()
    with Store.open(work / "faults") as store:
        rows = store.trials()
        integrity = store.integrity_check()
    evaluated = [t for t in rows if not t.reused]
    kinds = {"raise": "injected failure", "nan": "val_accuracy is nan", "hang": "timed out",
             "kill": "killed by signal"}
    failed = [t for t in evaluated if t.status == "failed"]
    # a trial keeps the error of its last failed attempt, also when a retry then succeeded
    return {"trials": summary.trials, "unfinished": summary.unfinished, "evaluated": len(evaluated),
            "failed attempts": sum(t.failures for t in evaluated),
            "recovered by retry": sum(t.status == "done" and t.failures > 0 for t in evaluated),
            **{f"last failure: {k}": sum(v in (t.error or "") for t in evaluated) for k, v in kinds.items()},
            "failed trials": len(failed),
            "failed without reason": sum(not t.error for t in failed),
            "integrity ok": not integrity, "seconds": round(time.perf_counter() - start, 1)}


# -- writers --------------------------------------------------------------------------------------------
def _writer(run: str, worker: int, count: int, queue: Any) -> None:
    try:
        with Store.open(run) as store:
            for i in range(count):
                tid = store.add_trial({"w": worker, "i": i}, f"w{worker}-{i}", lambda t: t, status="running")
                store.finish_trial(tid, "done", metrics={"val_accuracy": 0.5}, reward=0.5)
        queue.put(None)
    except BaseException as exc:  # noqa: BLE001 - "database is locked" included
        queue.put(repr(exc))


def writers(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    n, per = 16, (20 if args.quick else 100)
    run = work / "writers"
    Store.create(run, {"benchmark": "writers"}).close()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    start = time.perf_counter()
    procs = [ctx.Process(target=_writer, args=(str(run), w, per, queue)) for w in range(n)]
    for p in procs:
        p.start()
    errors = [e for e in (queue.get(timeout=600) for _ in procs) if e]
    for p in procs:
        p.join()
    seconds = time.perf_counter() - start
    rows = _trial_rows(run)
    return {"writers": n, "trials written": n * per, "trials stored": len(rows),
            "lost": n * per - len(rows), "errors": len(errors), "writes/s": round(2 * len(rows) / seconds)}


# -- load -----------------------------------------------------------------------------------------------
def load(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    trials = 2000 if args.quick else 10_000
    space = NB201Space()
    evaluator = TableEvaluator(_table(work), "valid", space=space, report_column="test", percent=True)
    figures: dict[str, Any] = {"workers": 500, "trials": trials}
    # PPO checkpoints its controller and Adam state (~1.1 MB) after every ask and tell, ~17 trials/s
    # here: a fifth of the trials keeps the section to minutes
    for name, n in (("random", trials), ("evolution", trials), ("ppo", max(1000, trials // 5))):
        rss: dict[int, float] = {}

        def on_trial(record: Any) -> None:
            if record.id in (1000, n):
                rss[record.id] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        exp = Experiment(space, create_strategy(name, space, 0), evaluator, None, work / f"load-{name}",
                         budget=n, executor=SimulatedExecutor(workers=500, seed=0), progress=False,
                         on_trial=on_trial)
        start = time.perf_counter()
        summary = exp.run()
        seconds = time.perf_counter() - start
        exp.close()
        figures[f"{name}: trials done"] = summary.trials - summary.unfinished
        figures[f"{name}: trials/s"] = round(n / seconds, 1)
        figures[f"{name}: peak RSS MiB at 1k / {n // 1000}k"] = f"{rss[1000]:.0f} / {rss[n]:.0f}"
    return figures


# -- fuzz -----------------------------------------------------------------------------------------------
def fuzz(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    scale = 1 if args.quick else 10
    env = {**os.environ, "NASFORGE_FUZZ_SCALE": str(scale)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(ROOT / "tests" / "test_fuzz.py"), "--hypothesis-show-statistics"],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    # "- 45 passing, 0 failing, and 3 invalid test cases" (older Hypothesis: "45 passing examples")
    passing = sum(int(n) for n in re.findall(r"(\d+) passing\b", proc.stdout))
    failing = sum(int(n) for n in re.findall(r"(\d+) failing\b", proc.stdout))
    return {"scale": scale, "cases run": passing + failing, "failing cases": failing,
            "pytest exit": proc.returncode}


# -- a Ray cluster on this machine ----------------------------------------------------------------------
class SleepyTable:
    """A table evaluator behind a sleep: a trial that takes time, as real training does."""

    name = "sleepy-table"

    def __init__(self, table: Path, delay: float):
        self.inner = TableEvaluator(table, "valid", space="nb201", report_column="test", percent=True)
        self.delay = delay

    def evaluate(self, space: Any, arch: Any, seed: int) -> dict[str, Any]:
        time.sleep(self.delay)
        return self.inner.evaluate(space, arch, seed)


_CLUSTER: list[LocalCluster] = []


def _cluster() -> LocalCluster:
    """One cluster for the cluster sections, this process its driver; stopped by main()."""
    if not _CLUSTER:
        import ray

        _CLUSTER.append(LocalCluster(workers=2, cpus=1))
        ray.init(address=_CLUSTER[0].address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    return _CLUSTER[0]


def _stop_cluster() -> None:
    if _CLUSTER:
        import ray

        ray.shutdown()
        _CLUSTER.pop().stop()


def _ray_search(work: Path, name: str, trials: int, delay: float, workers: int = 2,
                on_trial: Any = None) -> tuple[Any, float]:
    from nasforge.experiment import create_executor

    space = NB201Space()
    exp = Experiment(space, create_strategy("random", space, 0), SleepyTable(_table(work), delay), None,
                     work / name, budget=trials, retries=2, duplicates="evaluate", progress=False, on_trial=on_trial,
                     executor=create_executor("ray", workers=workers, resources={"nasforge_worker": 1}))
    start = time.perf_counter()
    summary = exp.run()
    seconds = time.perf_counter() - start
    exp.close()
    return summary, seconds


def nodes(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    trials, delay = (60, 0.2) if args.quick else (150, 0.2)
    kill_at = [trials // 5, 2 * trials // 5, 3 * trials // 5]  # trial ids; w0, w1, w0 die 0.1 s later
    cluster = _cluster()
    _ray_search(work, "nodes-warm", 4, 0.0)  # each node's first worker imports torch and nasforge
    _, baseline = _ray_search(work, "nodes-ref", trials, delay)
    restarts: list[subprocess.Popen] = []

    def kill_and_restart(node: str) -> None:
        cluster.kill_node(node)
        restarts.append(cluster.start_node(node))

    def on_trial(record: Any) -> None:
        if record.id in kill_at:
            node = ("w0", "w1")[kill_at.index(record.id) % 2]
            threading.Timer(0.1, kill_and_restart, (node,)).start()

    summary, seconds = _ray_search(work, "nodes-run", trials, delay, on_trial=on_trial)
    for proc in restarts:
        proc.communicate(timeout=120)
    with Store.open(work / "nodes-run") as store:
        rows = store.trials()
        integrity = store.integrity_check()
    ids = [t.id for t in rows]
    return {"trials": trials, "seconds per trial": delay, "workers": 2, "node kills": len(restarts),
            "trials retried": sum(t.failures > 0 for t in rows),
            "retry errors": sorted({(t.error or "").split(":")[1].strip() for t in rows if t.failures}),
            "failed trials": summary.failed, "lost": trials - len(set(ids)), "duplicated": len(ids) - len(set(ids)),
            "integrity ok": not integrity, "seconds without kills": round(baseline, 1),
            "seconds with kills": round(seconds, 1), "wall time lost s": round(seconds - baseline, 1)}


def driver(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    trials, kills = (60, 2) if args.quick else (400, 5)
    cluster = _cluster()
    cmd = [sys.executable, "-m", "nasforge.cli", "search", "--space", "nb201", "--evaluator", "table",
           "--table", str(_table(work)), "--reward-column", "valid", "--report-column", "test",
           "--strategy", "evolution", "--trials", str(trials), "--seed", "7", "--workers", "1", "--no-progress"]
    env = {**cluster.env, "OMP_NUM_THREADS": "1", "NASFORGE_RAY_RESOURCES": '{"nasforge_worker": 1}'}
    on_ray = ["--executor", "ray", "--ray-address", cluster.address]
    subprocess.run([*cmd, "--run", str(work / "driver-ref")], check=True, capture_output=True, env=env)
    run, rng = work / "driver-run", random.Random(5)
    # a new driver's first trial waits for new Ray workers (they import torch): kill after 1-30
    # more trials, at a random moment within 0.5 s
    survived, integrity_failures, progress = _sigkill_repeatedly(
        lambda: subprocess.Popen([*cmd, *on_ray, "--run", str(run), *(["--resume"] if Store.exists(run) else [])],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env),
        run, kills, rng, lambda: rng.randint(1, 30))
    start = time.perf_counter()
    subprocess.run([*cmd, *on_ray, "--run", str(run), "--resume"], check=True, capture_output=True, env=env)
    rows, ref = _trial_rows(run), _trial_rows(work / "driver-ref")
    ids = [r[0] for r in rows]
    return {"driver kills": survived, "trials": len(rows), "trials at each kill": progress,
            "lost": trials - len(set(ids)), "duplicated": len(ids) - len(set(ids)),
            "integrity failures": integrity_failures, "same sequence as uninterrupted serial run": rows == ref,
            "last resume s": round(time.perf_counter() - start, 1)}


def _rss_mib() -> float:
    """The driver's resident memory now (not its peak: the earlier sections' peaks would hide it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cluster_load(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    trials, delay = (600, 0.01) if args.quick else (2000, 0.01)
    _cluster()
    _ray_search(work, "load-warm", 4, 0.0)
    marks: dict[int, tuple[float, float]] = {}
    start = time.perf_counter()

    def on_trial(record: Any) -> None:
        if record.id in (500, trials):
            marks[record.id] = (time.perf_counter() - start, _rss_mib())

    summary, seconds = _ray_search(work, "cluster-load", trials, delay, on_trial=on_trial)
    return {"trials": trials, "workers": 2, "seconds per trial": delay, "done": summary.done,
            "trials/s": round(trials / seconds, 1),
            "trials/s over the first 500": round(500 / marks[500][0], 1),
            "driver RSS MiB at 500 / all": f"{marks[500][1]:.0f} / {marks[trials][1]:.0f}"}


def disk(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    if os.geteuid() != 0:
        return {"skipped": "needs root to mount a tmpfs (the tests inject the errors instead)"}
    cmd = [sys.executable, "-m", "nasforge.cli", "search", "--space", "nb201", "--evaluator", "table",
           "--table", str(_table(work)), "--reward-column", "valid", "--report-column", "test",
           "--strategy", "evolution", "--seed", "2", "--no-progress"]
    mount = work / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        full = subprocess.run([*cmd, "--trials", "500", "--run", str(mount / "run")], capture_output=True, text=True)
        stored_at_full = _count(mount / "run")
        shutil.copytree(mount / "run", work / "moved")
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)
    resumed = subprocess.run([*cmd, "--trials", "500", "--run", str(work / "moved"), "--resume"], capture_output=True)
    subprocess.run([*cmd, "--trials", "500", "--run", str(work / "disk-ref")], check=True, capture_output=True)
    figures = {"full: exit status": full.returncode, "full: stderr": full.stderr.strip(),
               "full: trials stored": stored_at_full, "moved and resumed: exit status": resumed.returncode,
               "resumed sequence equals uninterrupted": _trial_rows(work / "moved") == _trial_rows(work / "disk-ref")}
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    try:
        subprocess.run([*cmd, "--trials", "50", "--run", str(mount / "run")], check=True, capture_output=True)
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        nf = [sys.executable, "-m", "nasforge.cli"]
        for name, argv in (("show", ["show", str(mount / "run")]),
                           ("report --out elsewhere", ["report", str(mount / "run"), "--out", str(work / "ro-report")]),
                           ("report into the run", ["report", str(mount / "run")]),
                           ("--resume", [*cmd[3:], "--trials", "60", "--run", str(mount / "run"), "--resume"])):
            proc = subprocess.run([*nf, *argv], capture_output=True, text=True)
            error = f": {proc.stderr.strip()}" if proc.returncode else ""
            figures[f"read-only: {name}"] = f"exit {proc.returncode}{error}"
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)
    return figures


SECTIONS = {"kill": kill, "failures": failures, "writers": writers, "load": load, "fuzz": fuzz,
            "nodes": nodes, "driver": driver, "disk": disk, "cluster-load": cluster_load}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=sorted(SECTIONS), help="sections to run (default: all)")
    p.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    p.add_argument("--name", default="reliability", help="results file name (default reliability)")
    args = p.parse_args()
    figures: dict[str, dict] = {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="nasforge-reliability-") as tmp:
        try:
            for name, section in SECTIONS.items():
                if args.only and name not in args.only:
                    continue
                start = time.perf_counter()
                figures[name] = section(args, Path(tmp))
                figures[name].setdefault("seconds", round(time.perf_counter() - start, 1))
                rows += [[name, key, value] for key, value in figures[name].items()]
                print(f"{name}: {figures[name]}", flush=True)
        finally:
            _stop_cluster()
    print_table("reliability", ["section", "figure", "value"], rows)
    previous = RESULTS / f"{args.name}.json"
    if args.only and previous.exists():  # rerun sections replace theirs; the others stay as measured
        old = json.loads(previous.read_text())
        figures = {**old.get("figures", {}), **figures}
        args.only = sorted(set(old.get("args", {}).get("only") or SECTIONS) | set(args.only))
    path = write_json(args.name, {"args": vars(args), "figures": figures})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

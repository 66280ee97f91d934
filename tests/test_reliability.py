"""Reliability under faults and load: what users of long searches complain about most.

- SIGKILL at 20 random moments (evaluation, database write, strategy update, ask) then resume:
  nothing lost, nothing repeated, and the serial run's trial sequence equals an uninterrupted one.
- `nasforge run` killed once in each of its stages and resumed gives the uninterrupted result.
- Children that raise, return NaN, time out or kill their worker, on the serial, process and Ray
  executors: recorded as failed with the reason, retried as configured, the budget completed, and
  the strategy told a failure (never a reward).
- 500 asynchronous (simulated) workers against a table evaluator: every trial recorded, the
  checkpoint's size bounded by the outstanding asks, memory flat.
- A disk that fills up stops the search with one line, and the run resumes losslessly once moved
  to a disk with room; a run on a read-only filesystem can be shown and reported, not resumed.

The figures (kills survived, trials/s, peak RSS) are printed by benchmarks/reliability.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import random
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from nasforge.cli import main
from nasforge.evaluators.table import TableEvaluator
from nasforge.experiment import Experiment, ProcessExecutor, SerialExecutor, SimulatedExecutor, Store
from nasforge.spaces import NB201Space
from nasforge.strategies import create_strategy
from toys import (
    PRELOAD,
    check_faulty_run,
    check_run,
    killed_child,
    make_experiment,
    run_faulty_search,
    run_main,
    sequence,
    write_synthetic_nb201_table,
)

KILL_POINTS = ("eval", "before-commit", "tell", "before-checkpoint", "ask")


# -- kill and resume -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_twenty_sigkills_at_random_moments(tmp_path):
    trials = 60
    ref = tmp_path / "ref"
    make_experiment(ref, trials=trials).run()
    reference = sequence(ref)

    run = tmp_path / "run"
    rng = random.Random(2026)
    ctx = multiprocessing.get_context("fork")
    for _ in range(20):
        point, n = rng.choice(KILL_POINTS), rng.randint(1, 2)
        p = ctx.Process(target=killed_child, args=(str(run), point, n, trials))
        p.start()
        p.join(60)
        assert p.exitcode == -signal.SIGKILL, (point, n, p.exitcode)  # the kill really happened
        with Store.open(run) as store:
            assert store.integrity_check() == []
            ids = [t.id for t in store.trials()]
            assert ids == list(range(1, len(ids) + 1)) and len(ids) < trials
    make_experiment(run, trials=trials, resume=True).run()
    assert sequence(run) == reference
    check_run(run, trials)


PIPELINE = ["run", "--trials", "2", "--epochs", "1", "--step", "0.25", "--family-epochs", "2", "--phi-max", "1",
            "--family-schedule", "fixed", "--train-size", "150", "--val-size", "50", "--no-progress"]


def _pipeline_state(run_dir) -> dict:
    """What the pipeline has finished so far (0 for a folder that holds no run yet)."""
    state = {"search": 0, "coefficients": 0, "family": 0}
    try:
        if Store.exists(run_dir):
            with Store.open(run_dir) as store:
                state["search"] = sum(t.status == "done" for t in store.trials())
                # phi = 1 started and saved its first epoch: a kill now lands inside that member
                state["family"] = int(store.get_marker("pipeline.family.phi0") is not None
                                      and (run_dir / "family" / "phi1.ckpt").exists())
        if Store.exists(run_dir / "coefficients"):
            with Store.open(run_dir / "coefficients") as store:
                state["coefficients"] = sum(t.status == "done" for t in store.trials())
    except Exception:  # noqa: BLE001 - a database being created; look again
        pass
    return state


def _outcome(run_dir) -> dict:
    with Store.open(run_dir) as store:
        search = [(t.key, t.reward) for t in store.trials()]
        family = store.get_marker("family")["members"]
        assert store.integrity_check() == []
    with Store.open(run_dir / "coefficients") as store:
        coefficients = [(t.key, t.reward) for t in store.trials()]
        assert store.integrity_check() == []
    return {"search": search, "coefficients": coefficients,
            "family": [(m["phi"], m["val_accuracy"], m["test_accuracy"]) for m in family]}


def _pipeline_child(folder: str, argv: list[str]) -> None:
    """`nasforge ARGV` in `folder`, run by a forked child until the test kills it."""
    os.chdir(folder)
    main(argv)


@pytest.mark.slow
def test_pipeline_killed_in_every_stage_resumes_to_the_same_result(tmp_path, monkeypatch, capfd):
    """Killed once in each stage -- in the family stage halfway through the phi = 1 member, which
    goes on from its checkpoint -- and resumed, a run ends as the uninterrupted one. The killed runs are forks of this process running `main()`, which has imported torch, nasforge
    and the report's libraries for the reference run: a fresh interpreter spent ~8 s of each run on
    that before its first trial. The final resume is the real command in a fresh interpreter."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "nasforge.cli", *PIPELINE]
    monkeypatch.chdir(tmp_path)
    assert main([*PIPELINE, "--run", "runs/ref"]) == 0  # the uninterrupted reference, in this process
    run = tmp_path / "runs" / "p"
    ctx = multiprocessing.get_context("fork")
    for stage in ("search", "coefficients", "family"):
        resume = ["--resume"] if Store.exists(run) else []
        proc = ctx.Process(target=_pipeline_child, args=(str(tmp_path), [*PIPELINE, "--run", "runs/p", *resume]))
        proc.start()
        deadline = time.monotonic() + 300
        while _pipeline_state(run)[stage] < 1:
            assert proc.is_alive(), f"finished before the kill in {stage}: {capfd.readouterr().err}"
            assert time.monotonic() < deadline, f"stage {stage} never started"
            time.sleep(0.05)
        proc.kill()
        proc.join()
        assert proc.exitcode == -signal.SIGKILL
    def contents():  # the bytes may change when SQLite folds its WAL back in; the contents may not
        with Store.open(run) as store:
            return [t.to_dict() for t in store.trials()], store.markers()

    before = contents()
    for extra, message in (([], "already holds a run; pass --resume"), (["--phi-max", "2", "--resume"], "phi_max (1 -> 2)")):
        capfd.readouterr()
        assert main([*PIPELINE, "--run", "runs/p", *extra]) == 2
        err = capfd.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert contents() == before  # refused without touching the run
    subprocess.run([*cli, "--run", "runs/p", "--resume"], cwd=tmp_path, env=env, check=True, capture_output=True)
    outcome = _outcome(run)
    assert outcome == _outcome(tmp_path / "runs" / "ref")
    assert len(outcome["search"]) == 2 and len({k for k, _ in outcome["coefficients"]}) == len(outcome["coefficients"])
    assert [phi for phi, _, _ in outcome["family"]] == [0, 1]
    assert not list((run / "family").iterdir())  # members' checkpoints go once their results are stored
    assert all(0 <= v <= 1 and 0 <= t <= 1 for _, v, t in outcome["family"])
    assert (run / "report" / "index.html").is_file() and (run / "report" / "summary.json").is_file()
    # a finished run resumed reads its grid's rows and verdict afresh from the trials, not a stored copy
    with Store.open(tmp_path / "runs" / "ref") as store:
        stored = store.get_marker("coefficients")
        store.set_marker("coefficients", {**stored, "verdict": None, "candidates": []})
    assert main([*PIPELINE, "--run", "runs/ref", "--resume"]) == 0
    with Store.open(tmp_path / "runs" / "ref") as store:
        assert store.get_marker("coefficients") == stored


# -- failing children ----------------------------------------------------------------------------------
def test_failing_children_serial(tmp_path):
    summary, strategy, evaluator = run_faulty_search(tmp_path / "s", SerialExecutor())
    figures = check_faulty_run(tmp_path / "s", summary, strategy, evaluator, 27, 1)
    assert figures["failed"] == 3


@pytest.mark.slow
def test_failing_children_in_worker_processes(tmp_path):
    executor = ProcessExecutor(workers=2, preload=PRELOAD)
    # 2 s, not 1: the timeout also covers starting the worker process, slow on a loaded CI machine
    summary, strategy, evaluator = run_faulty_search(tmp_path / "p", executor, retries=2, timeout=2.0)
    figures = check_faulty_run(tmp_path / "p", summary, strategy, evaluator, 27, 2, timeout=2.0)
    assert figures["failed"] == 4 and figures["retried"] > 0


# -- load --------------------------------------------------------------------------------------------
def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["random", "evolution"])
def test_five_hundred_async_workers(tmp_path, strategy):
    table = tmp_path / "nb201.csv"
    write_synthetic_nb201_table(table)
    space = NB201Space()
    evaluator = TableEvaluator(table, "valid", space=space, report_column="test", percent=True)
    trials, sizes, rss = 2000, {}, {}
    exp = None

    def on_trial(record):
        if record.id in (500, trials):
            rss[record.id] = peak_rss_mib()
            sizes[record.id] = len(exp.store.load_checkpoint().state["pending"])

    exp = Experiment(space, create_strategy(strategy, space, 0), evaluator, None, tmp_path / "run",
                     budget=trials, executor=SimulatedExecutor(workers=500, seed=0), progress=False,
                     on_trial=on_trial)
    summary = exp.run()
    exp.close()
    assert summary.trials == trials and summary.unfinished == 0 and summary.failed == 0
    with Store.open(tmp_path / "run") as store:
        assert [t.id for t in store.trials()] == list(range(1, trials + 1))
        assert store.integrity_check() == []
    # 500 asks outstanding at every checkpoint while the budget lasts: the state is bounded by them
    assert sizes[500] <= 500 and sizes[trials] <= 500
    assert rss[trials] - rss[500] < 64, rss  # MiB: nothing accumulates per trial


# -- disks and filesystems -----------------------------------------------------------------------------
@contextlib.contextmanager
def _tmpfs(folder, size: str):
    """A tmpfs of `size` mounted at `folder` (True) where this runs as root and may mount; else
    the folder stays a plain one (False) and the test injects the error the full disk would give."""
    folder.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=True)


def _table_search(tmp_path, trials: int) -> list:
    table = tmp_path / "nb201.csv"
    if not table.exists():
        write_synthetic_nb201_table(table)
    return ["search", "--space", "nb201", "--evaluator", "table", "--table", table, "--reward-column", "valid",
            "--report-column", "test", "--strategy", "evolution", "--trials", str(trials), "--seed", "3",
            "--no-progress"]


def _one_line_error(code: int, err: str, text: str) -> None:
    assert code == 2 and text in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (code, err)


def test_a_full_disk_stops_in_one_line_and_the_moved_run_resumes(tmp_path, capfd, monkeypatch):
    search = _table_search(tmp_path, 60)
    with _tmpfs(tmp_path / "disk", "160k") as mounted:
        if not mounted:  # what SQLite raises when a write finds no room, from the 6th write on
            from nasforge.experiment.store import Store as SQLiteStore

            real_write, writes = SQLiteStore._write, iter(range(10**6))

            def full_disk(self, body):
                def body_on_a_full_disk(conn):
                    if next(writes) >= 5:
                        raise sqlite3.OperationalError("database or disk is full")
                    return body(conn)
                return real_write(self, body_on_a_full_disk)

            monkeypatch.setattr(SQLiteStore, "_write", full_disk)
        code, _, err = run_main(capfd, *search, "--run", tmp_path / "disk" / "run")
        monkeypatch.undo()
        _one_line_error(code, err, "database or disk is full")
        with Store.open(tmp_path / "disk" / "run") as store:
            assert store.integrity_check() == [] and 0 < store.count() < 60
        shutil.copytree(tmp_path / "disk" / "run", tmp_path / "moved")  # the database, its WAL and -shm
    code, _, err = run_main(capfd, *search, "--run", tmp_path / "moved", "--resume")
    assert code == 0, err
    assert run_main(capfd, *search, "--run", tmp_path / "ref")[0] == 0
    assert sequence(tmp_path / "moved") == sequence(tmp_path / "ref")  # nothing lost or repeated


def test_a_run_on_a_read_only_filesystem_is_shown_and_reported_not_resumed(tmp_path, capfd):
    search = _table_search(tmp_path, 20)
    run = tmp_path / "disk" / "run"
    with _tmpfs(tmp_path / "disk", "4m") as mounted:
        assert run_main(capfd, *search, "--run", run)[0] == 0
        digest = hashlib.sha256((run / "nasforge.db").read_bytes()).hexdigest()
        if mounted:
            subprocess.run(["mount", "-o", "remount,ro", str(tmp_path / "disk")], check=True)
        else:  # a folder this user cannot write: the same to SQLite
            run.chmod(0o555)
        try:
            code, out, err = run_main(capfd, "show", run, "--json")
            assert code == 0 and json.loads(out)["counts"]["done"] == 20 and not err, err
            code, out, err = run_main(capfd, "report", run, "--out", tmp_path / "report")
            assert code == 0 and (tmp_path / "report" / "index.html").is_file(), err
            _one_line_error(*run_main(capfd, "report", run)[::2], "cannot create report folder")
            more = _table_search(tmp_path, 30)  # a larger budget: the run has work left to write
            _one_line_error(*run_main(capfd, *more, "--run", run, "--resume")[::2],
                            "the run folder cannot be written (a read-only filesystem?)")
            assert hashlib.sha256((run / "nasforge.db").read_bytes()).hexdigest() == digest
            assert sorted(p.name for p in run.iterdir()) == ["nasforge.db"]
        finally:
            if not mounted:
                run.chmod(0o755)


# -- safety ------------------------------------------------------------------------------------------
def test_nothing_is_unpickled_without_weights_only():
    """Every torch.load in the package passes weights_only=True; no pickle.load(s) at all."""
    import ast
    from pathlib import Path

    import nasforge

    calls = 0
    for path in Path(nasforge.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = getattr(node.func.value, "id", None)
            if owner == "pickle" and node.func.attr in ("load", "loads"):
                raise AssertionError(f"{path}:{node.lineno}: pickle.{node.func.attr}")
            if owner == "torch" and node.func.attr == "load":
                calls += 1
                flags = {k.arg: getattr(k.value, "value", None) for k in node.keywords}
                assert flags.get("weights_only") is True, f"{path}:{node.lineno}: torch.load without weights_only=True"
    assert calls >= 2  # the store's checkpoints and saved weights

"""The Ray executor on a Ray cluster of three nodes on this machine, started with Ray's own
`ray start` as on a real cluster: a head without CPUs and two worker nodes with 2 CPUs and one
`nasforge_worker` resource each, each a raylet of its own with its own temp folder. One cluster for
the module: starting one costs ~10 s here. Beyond the executor's outcomes, the faults only a
cluster has: a worker node dies mid-search, the driver dies mid-search (benchmarks/reliability.py
runs the larger versions: >= 100 trials with a node killed, 2,000 trials of sustained load)."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'nasforge[ray]'")

import toys  # noqa: E402

from nasforge.errors import ConfigError  # noqa: E402
from nasforge.evaluators.base import Evaluator  # noqa: E402
from nasforge.experiment import Experiment, Store, create_executor  # noqa: E402
from nasforge.spaces import NB201Space  # noqa: E402
from nasforge.strategies import RandomSearch  # noqa: E402

RAY = Path(sys.executable).with_name("ray")  # the `ray` command of this interpreter's Ray


#: Ray's head marks a node dead after this many missed health checks, this far apart (Ray's own
#: defaults: 5 missed, 3 s apart); until then it may still send that node new tasks, which wait
HEALTH_CHECK = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


class LocalCluster:
    """A Ray head (no CPUs, so no trial runs there) and worker nodes named w0, w1, ... with `cpus`
    CPUs and one `nasforge_worker` resource each, all on this machine, each started by `ray start`
    in a session of its own: `kill_node` SIGKILLs a node, `start_node` starts it again, `stop`
    kills every process of every session the cluster started (benchmarks/reliability.py uses it
    too).

    Recent Ray turns on token authentication for a cluster that `ray start --head` starts, and a
    driver reads its authentication mode once, when Ray is imported: this process imported Ray
    long before, so the test cluster runs with RAY_AUTH_MODE=disabled (a real cluster keeps the
    token; see docs/reliability.md).
    """

    def __init__(self, workers: int = 2, cpus: int = 1):
        self.cpus = cpus
        self.root = Path(tempfile.mkdtemp(prefix="nfray-"))  # short: Ray's socket paths must fit 107 bytes
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", **HEALTH_CHECK}
        self.env.pop("RAY_ADDRESS", None)
        self._sessions: dict[str, int] = {}  # node name -> session id (the `ray start` process's pid)
        self._all_sessions: list[int] = []  # every session started, restarted nodes' included
        try:
            self._ray_start("head", "--head", "--port", str(self.port), "--num-cpus", "0",
                            "--include-dashboard", "false")
            procs = [self._ray_start_async(f"w{i}") for i in range(workers)]
            for proc in procs:
                self._finish(proc)
        except BaseException:
            self.stop()
            raise

    def _ray_start_async(self, name: str, *args: str) -> subprocess.Popen:
        if not args:  # a worker node
            args = ("--address", self.address, "--num-cpus", str(self.cpus), "--resources", '{"nasforge_worker": 1}')
        proc = subprocess.Popen([str(RAY), "start", *args, "--temp-dir", str(self.root / name),
                                 "--disable-usage-stats"], env=self.env, start_new_session=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # the daemons it starts, and their workers, stay in its session
        self._sessions[name] = proc.pid
        self._all_sessions.append(proc.pid)
        return proc

    def _finish(self, proc: subprocess.Popen) -> None:
        out, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"ray start failed:\n{out[-3000:]}")

    def _ray_start(self, name: str, *args: str) -> None:
        self._finish(self._ray_start_async(name, *args))

    def start_node(self, name: str) -> subprocess.Popen:
        """Start worker node `name` (again); returns the `ray start` process, done once it exits."""
        return self._ray_start_async(name)

    def raylet_pid(self, name: str) -> int:
        [pid] = [pid for pid, args in _processes(self._sessions[name]) if args[0].endswith("/raylet")]
        return pid

    def kill_node(self, name: str) -> None:
        """SIGKILL node `name` as a machine failure would: its raylet, then every other process
        of the node (agents, and the workers running trials: a worker whose raylet alone died
        still finishes its task and returns the result to the driver)."""
        os.kill(self.raylet_pid(name), signal.SIGKILL)
        _kill_session(self._sessions[name])

    def stop(self) -> None:
        for session in self._all_sessions:
            _kill_session(session)
        shutil.rmtree(self.root, ignore_errors=True)


def _processes(session: int) -> list[tuple[int, list[str]]]:
    """(pid, command line) of the processes in `session`: a node's daemons and, in process
    groups of their own, its workers."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[3]) == session:
                found.append((int(proc.name), (proc / "cmdline").read_bytes().decode().split("\0")))
        except (OSError, ValueError, IndexError):
            continue  # not a process, or gone
    return found


def _kill_session(session: int) -> None:
    for pid, _ in _processes(session):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class _Count(Evaluator):
    """Reward = number of convolutions; one op pattern crashes its worker, one raises."""

    name = "count"

    def evaluate(self, space, arch, seed):
        s = space.to_json(arch)["arch"]
        if s.count("none") >= 5:
            os._exit(3)  # kills the Ray worker process
        if s.count("skip_connect") >= 4:
            raise ValueError("evaluator refused this one")
        return {"val_accuracy": s.count("conv") / 6}


#: Logical CPUs of the tests' Ray cluster, 2 on each worker node (the executors still run 2 trials
#: at once). Ray keeps up to this many idle workers alive (its soft limit is the CPU count), and
#: `_warm_workers` leaves 4
#: that have imported torch and nasforge: a trial after a killed worker (a timeout, a crash) then
#: runs on one of them. With 2, every kill made the next trial wait for a new worker process to
#: import torch, longer than a 5 s timeout on a loaded 2-core machine, so that trial timed out and
#: was killed in turn: most of the faulty search's trials failed by timeout, for 60-100 s.
RAY_CPUS = 4


def _warm(evaluator):
    import nasforge.experiment  # noqa: F401 - what a trial's task imports first

    time.sleep(0.2)  # held, so that the RAY_CPUS tasks run at once, each in a worker of its own


def _warm_workers():
    """RAY_CPUS idle workers that have unpickled a toy evaluator (so imported torch and nasforge);
    a worker killed since is replaced by a new one, warmed here."""
    ray.cloudpickle.register_pickle_by_value(toys)
    warm = ray.remote(num_cpus=1)(_warm)
    ray.get([warm.remote(toys.ToyEvaluator()) for _ in range(RAY_CPUS)])


@pytest.fixture(scope="module")
def cluster():
    """The cluster, with this process connected to it as a driver."""
    c = LocalCluster(workers=2, cpus=RAY_CPUS // 2)
    try:
        ray.init(address=c.address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        # Ray workers cannot import this test module; ship its functions by value instead.
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        _warm_workers()  # else each of the 4 would import torch at its first trial, one after another
        yield c
    finally:
        ray.shutdown()
        c.stop()


@pytest.fixture()
def warm_workers(cluster):
    _warm_workers()


def _sleepy(x):
    time.sleep(x)
    return x


def test_outcomes_timeouts_and_crashes(cluster):
    ex = create_executor("ray", workers=2)
    fast = ex.submit(_sleepy, 0.01)
    slow = ex.submit(_sleepy, 30, timeout=1.0)
    outcomes = {}
    while len(outcomes) < 2:
        for o in ex.wait(timeout=20):
            outcomes[o.handle] = o
    assert outcomes[fast].ok and outcomes[fast].value == 0.01
    assert outcomes[slow].error == "timed out after 1 s"
    crash = ex.submit(os._exit, 1)
    [o] = ex.wait(timeout=60)
    assert o.handle == crash and not o.ok and "Ray worker failed" in o.error
    ex.shutdown()


@pytest.mark.parametrize("text", ['{"CPU": 1}', '{"a": -1}', '{"a": true}', "[1]", "{"])
def test_bad_custom_resources_are_refused_in_one_line(cluster, monkeypatch, text):
    monkeypatch.setenv("NASFORGE_RAY_RESOURCES", text)
    with pytest.raises(ConfigError, match="NASFORGE_RAY_RESOURCES: must be a JSON object of custom resource"):
        create_executor("ray", workers=1)


def test_search_on_ray_records_every_trial(cluster, tmp_path):
    space = NB201Space()
    exp = Experiment(space, RandomSearch(space, seed=1), _Count(), run_dir=tmp_path / "run",
                     budget={"max_trials": 24}, executor=create_executor("ray", workers=2),
                     progress=False)
    with exp:
        summary = exp.run()
    store = Store.open(tmp_path / "run")
    trials = store.trials()
    assert len(trials) == 24 and summary.trials == 24
    assert {t.status for t in trials} <= {"done", "failed"}
    done = [t for t in trials if t.status == "done"]
    assert done and all(0 <= t.reward <= 1 for t in done)
    assert all(t.error for t in trials if t.status == "failed")
    assert not store.integrity_check()
    store.close()


def test_failing_children_on_ray(warm_workers, tmp_path):
    """Raise, NaN, timeout and a killed worker process, with retries, on Ray tasks."""
    summary, strategy, evaluator = toys.run_faulty_search(
        tmp_path / "r", create_executor("ray", workers=2), retries=1, timeout=5.0)  # Ray restarts workers slowly
    figures = toys.check_faulty_run(tmp_path / "r", summary, strategy, evaluator, 27, 1,
                                    crash_error="Ray worker failed", timeout=5.0, slow_starts=True)
    assert figures["failed"] == 4


def test_a_multi_fidelity_search_on_ray(cluster, tmp_path):
    from nasforge.experiment.scheduler import create_scheduler

    ray.cloudpickle.register_pickle_by_value(toys)
    space = NB201Space()
    exp = Experiment(space, RandomSearch(space, seed=1), toys.Curves(), run_dir=tmp_path / "sh",
                     budget={"max_trials": 3}, executor=create_executor("ray", workers=2), progress=False,
                     scheduler=create_scheduler("sh", min_epochs=1, max_epochs=3, eta=3))
    with exp:
        summary = exp.run()
        rungs = exp.store.rungs()
        assert not exp.store.integrity_check()
    assert summary.done == 3 and sorted(r.rung for r in rungs) == [0, 0, 0, 1]
    assert summary.best.metrics["epochs"] == 3.0  # continued from the state a Ray task returned


def test_a_worker_node_killed_mid_search(cluster, tmp_path):
    """SIGKILL a worker node (raylet, agents, workers) while both nodes run trials, then start it
    again: the trial it ran fails with Ray's NodeDiedError, is retried on a live node, and the
    search ends with every trial recorded once and a clean database. Each trial asks for the
    node's one `nasforge_worker`, so the two trials in flight run on the two nodes."""
    restarted = []

    def kill_and_restart():
        cluster.kill_node("w0")
        restarted.append(cluster.start_node("w0"))

    def on_trial(record):
        if record.id == 2:  # 0.3 s later both nodes are early in a one-second trial
            threading.Timer(0.3, kill_and_restart).start()

    trials = 6
    exp = toys.make_experiment(tmp_path / "run", trials=trials, evaluator=toys.ToyEvaluator(delay=1.0),
                               executor=create_executor("ray", workers=2, resources={"nasforge_worker": 1}),
                               duplicates="evaluate",
                               on_trial=on_trial)
    with exp:
        summary = exp.run()
    cluster._finish(restarted[0])
    assert summary.trials == trials and summary.unfinished == 0
    toys.check_run(tmp_path / "run", trials)  # ids 1..6 once each, integrity_check clean, nothing pending
    with Store.open(tmp_path / "run") as store:
        rows = store.trials()
    # the toy's limit check rejects one architecture; every other trial is done
    assert all(t.status == "done" or t.error.startswith("rejected:") for t in rows)
    retried = [t for t in rows if t.failures]
    assert len(retried) == 1, [(t.id, t.failures, t.error) for t in rows]
    assert retried[0].status == "done" and retried[0].error.startswith("Ray worker failed: NodeDiedError")


SEARCH = ["search", "--space", "nb201", "--evaluator", "table", "--reward-column", "valid",
          "--report-column", "test", "--strategy", "evolution", "--trials", "30", "--seed", "5",
          "--workers", "1", "--no-progress"]


def test_the_driver_killed_mid_search_resumes_on_the_same_cluster(cluster, tmp_path, capfd, monkeypatch):
    """A real `nasforge search --executor ray --ray-address ...` SIGKILLed mid-search; `--resume`
    against the same cluster (from this process, already its driver) ends with the trial sequence
    of an uninterrupted run with the same seed (one trial at a time: serial order). Trials are
    pinned to the worker nodes through NASFORGE_RAY_RESOURCES."""
    monkeypatch.setenv("NASFORGE_RAY_RESOURCES", '{"nasforge_worker": 1}')
    table = tmp_path / "nb201.csv"
    toys.write_synthetic_nb201_table(table)
    search = [*SEARCH, "--table", str(table)]
    on_ray = ["--executor", "ray", "--ray-address", cluster.address, "--run", str(tmp_path / "run")]
    proc = subprocess.Popen([sys.executable, "-m", "nasforge.cli", *search, *on_ray], env={**cluster.env, **os.environ},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while _count(tmp_path / "run") < 6:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.kill()
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with Store.open(tmp_path / "run") as store:
        assert store.integrity_check() == [] and store.count() < 30  # killed mid-search

    code, _, err = toys.run_main(capfd, *search, *on_ray, "--resume")
    assert code == 0, err
    code, _, err = toys.run_main(capfd, *search, "--executor", "serial", "--run", tmp_path / "ref")
    assert code == 0, err
    resumed = toys.sequence(tmp_path / "run")
    assert resumed == toys.sequence(tmp_path / "ref")
    assert [t[0] for t in resumed] == list(range(1, 31))  # none lost, none twice
    with Store.open(tmp_path / "run") as store:
        assert store.integrity_check() == []


def _count(run) -> int:
    try:
        with Store.open(run, readonly=True) as store:
            return store.count()
    except Exception:  # noqa: BLE001 - no database yet, or one being created
        return 0

"""The Ray executor on a local Ray instance (Ray is installed by the test set-up)."""

import os
import sys
import time

import pytest

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'nasforge[ray]'")

from nasforge.evaluators.base import Evaluator  # noqa: E402
from nasforge.experiment import Experiment, Store, create_executor  # noqa: E402
from nasforge.strategies import RandomSearch  # noqa: E402
from nasforge.spaces import NB201Space  # noqa: E402


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


#: Logical CPUs of the tests' Ray instance (the executors still run 2 trials at once). Ray keeps up
#: to this many idle workers alive (its soft limit is the CPU count), and `_warm_workers` leaves 4
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
    import toys

    ray.cloudpickle.register_pickle_by_value(toys)
    warm = ray.remote(num_cpus=1)(_warm)
    ray.get([warm.remote(toys.ToyEvaluator()) for _ in range(RAY_CPUS)])


@pytest.fixture(scope="module")
def local_ray():
    # Ray workers cannot import this test module; ship its functions by value instead.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=RAY_CPUS, include_dashboard=False, log_to_driver=False, configure_logging=False)
    _warm_workers()  # else each of the 4 would import torch at its first trial, one after another
    yield
    ray.shutdown()


@pytest.fixture()
def warm_workers(local_ray):
    _warm_workers()


def _sleepy(x):
    time.sleep(x)
    return x


def test_outcomes_timeouts_and_crashes(local_ray):
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


def test_search_on_ray_records_every_trial(local_ray, tmp_path):
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
    import toys

    summary, strategy, evaluator = toys.run_faulty_search(
        tmp_path / "r", create_executor("ray", workers=2), retries=1, timeout=5.0)  # Ray restarts workers slowly
    figures = toys.check_faulty_run(tmp_path / "r", summary, strategy, evaluator, 27, 1,
                                    crash_error="Ray worker failed", timeout=5.0, slow_starts=True)
    assert figures["failed"] == 4


def test_a_multi_fidelity_search_on_ray(local_ray, tmp_path):
    import toys
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

"""The run store: real SQLite files, atomic trial+checkpoint writes, concurrent writers."""

from __future__ import annotations

import io
import multiprocessing
import sqlite3

import numpy as np
import pytest
import torch

from nasforge.errors import ConfigError, NasforgeError
from nasforge.experiment.checkpoint import state_from_bytes, state_to_bytes
from nasforge.experiment.records import CheckpointUpdate, StoreError
from nasforge.experiment.store import DB_NAME, Store

CONFIG = {"space": "toy", "strategy": {"name": "random", "options": {}}, "seed": 3}


def _checkpoint(i: int, event: str = "ask") -> CheckpointUpdate:
    return CheckpointUpdate({"step": i, "rng": np.random.default_rng(i).bit_generator.state}, event)


def test_create_open_and_config(tmp_path):
    run = tmp_path / "runs" / "a"
    with Store.create(run, CONFIG) as store:
        assert store.path == run / DB_NAME
        assert store.config() == CONFIG
        assert store.counts()["total"] == 0
        assert store.load_checkpoint() is None
        mode = store._read(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
        assert mode == "wal"
    with Store.open(run) as store:
        assert store.config() == CONFIG
        assert store.integrity_check() == []


def test_create_refuses_an_existing_run_and_keeps_it(tmp_path):
    with Store.create(tmp_path, CONFIG) as store:
        store.add_trial({"a": 1}, "k1", 7, status="running", checkpoint=_checkpoint(1))
    with pytest.raises(ConfigError, match="already holds a run"):
        Store.create(tmp_path, {"other": True})
    with Store.open(tmp_path) as store:
        assert store.config() == CONFIG
        assert [t.key for t in store.trials()] == ["k1"]


def test_open_errors_are_one_line(tmp_path):
    with pytest.raises(StoreError, match="no nasforge run database"):
        Store.open(tmp_path / "missing")
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / DB_NAME).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a nasforge run database") as info:
        Store.open(tmp_path / "garbage")
    assert "\n" not in str(info.value) and isinstance(info.value, NasforgeError)
    (tmp_path / "foreign").mkdir()
    conn = sqlite3.connect(tmp_path / "foreign" / DB_NAME)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="missing tables"):
        Store.open(tmp_path / "foreign")


def test_trial_lifecycle(tmp_path):
    with Store.create(tmp_path, CONFIG) as store:
        tid = store.add_trial({"a": 1}, "k1", lambda i: 100 + i, status="running", queued=1,
                              checkpoint=_checkpoint(1))
        assert tid == 1
        t = store.trial(tid)
        assert (t.status, t.seed, t.attempts, t.queued, t.arch) == ("running", 101, 1, 1, {"a": 1})
        store.requeue_trial(tid, "ValueError: flaky", queued=2)
        t = store.trial(tid)
        assert (t.status, t.failures, t.attempts, t.error, t.queued) == ("running", 1, 2,
                                                                        "ValueError: flaky", 2)
        store.finish_trial(tid, "done", metrics={"val_accuracy": 0.5, "x": float("nan")},
                           reward=0.5, checkpoint=_checkpoint(2, "tell"))
        t = store.trial(tid)
        assert t.status == "done" and t.reward == 0.5 and t.metrics == {"val_accuracy": 0.5, "x": None}
        assert t.finished >= t.started
        with pytest.raises(StoreError, match="already done"):
            store.finish_trial(tid, "failed", error="again")
        rid = store.add_trial({"a": 1}, "k1", 0, status="done", metrics=t.metrics, reward=t.reward,
                              reused_from=tid, checkpoint=_checkpoint(3, "tell"))
        assert store.trial(rid).reused
        assert store.find_result("k1").id == tid
        fid = store.add_trial({"a": 2}, "k2", 0, status="failed", error="rejected: too big",
                              rejected=True, checkpoint=_checkpoint(4, "tell"))
        assert store.find_result("k2").id == fid
        store.add_trial({"a": 3}, "k3", 0, status="failed", error="boom")
        assert store.find_result("k3") is None  # an evaluation failure is not reused
        counts = store.counts()
        assert (counts["done"], counts["failed"], counts["reused"], counts["total"]) == (2, 2, 1, 4)
        assert [t.id for t in store.best()] == [tid]
        checkpoint = store.load_checkpoint()
        assert checkpoint.state["step"] == 4 and checkpoint.trial_id == fid
        assert store.integrity_check() == []


@pytest.mark.parametrize("label", ["before-checkpoint", "before-commit"])
def test_trial_and_checkpoint_are_one_transaction(tmp_path, label):
    with Store.create(tmp_path, CONFIG) as store:
        tid = store.add_trial({"a": 1}, "k1", 0, status="running", checkpoint=_checkpoint(1))

        def fail(where: str) -> None:
            if where == label:
                raise RuntimeError("crash")

        store.fault_hook = fail
        with pytest.raises(RuntimeError):
            store.add_trial({"a": 2}, "k2", 0, status="running", checkpoint=_checkpoint(2))
        with pytest.raises(RuntimeError):
            store.finish_trial(tid, "done", metrics={"v": 1.0}, reward=1.0,
                               checkpoint=_checkpoint(3, "tell"))
        store.fault_hook = None
        assert [t.status for t in store.trials()] == ["running"]
        assert store.load_checkpoint().state["step"] == 1
        assert store.integrity_check() == []


def test_checkpoint_blobs_are_safe_and_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    rng.random(3)
    state = {"rng": rng.bit_generator.state, "weights": torch.arange(6.0).reshape(2, 3),
             "array": np.arange(4, dtype=np.int16), "scalar": np.float32(1.5), "t": (1, "a"),
             "s": {1, 2}, "nested": [{"x": None, "y": True}]}
    back = state_from_bytes(state_to_bytes(state))
    assert back["rng"] == rng.bit_generator.state
    assert torch.equal(back["weights"], state["weights"])
    assert back["array"].dtype == np.int16 and back["array"].tolist() == [0, 1, 2, 3]
    assert back["scalar"] == 1.5 and back["t"] == (1, "a") and back["s"] == {1, 2}
    assert back["nested"] == [{"x": None, "y": True}]
    with pytest.raises(TypeError, match=r"state\['bad'\]"):
        state_to_bytes({"bad": object()})

    # a blob that would run code when unpickled is refused, not executed
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    buffer = io.BytesIO()
    torch.save({"x": Evil()}, buffer)
    with Store.create(tmp_path, CONFIG) as store:
        store.save_checkpoint(buffer.getvalue())
        with pytest.raises(StoreError, match="cannot be read safely"):
            store.load_checkpoint()


def test_plain_states_take_the_json_path_and_keep_their_types():
    plain = {"pending": [["k1", None], ["k2", [1, 2.5]]], "rng": {"state": 2 ** 100, "inc": 7}, "ok": True}
    blob = state_to_bytes(plain)
    assert blob.startswith(b"nasforge-json") and state_from_bytes(blob) == plain
    # JSON would turn tuples into lists, int keys into strings and refuse NaN: those parts (and
    # tensors) go via torch.save beside the JSON of the rest
    for state in ({"t": (1, 2)}, {"d": {3: "x"}}, {"nan": float("nan")}, {"n": np.int64(4)}):
        blob = state_to_bytes(state)
        assert blob.startswith(b"nasforge-mixed")
        back = state_from_bytes(blob)
        assert type(next(iter(back.values()))) is type(next(iter(state.values()))) or "n" in state
    assert state_from_bytes(state_to_bytes({"t": (1, 2)}))["t"] == (1, 2)
    assert state_from_bytes(state_to_bytes({"d": {3: "x"}}))["d"] == {3: "x"}
    mixed = {**plain, "weights": torch.ones(3), "optimizer": {"state": {0: {"step": torch.tensor(2.0)}}}}
    blob = state_to_bytes(mixed)
    assert b'"pending":[["k1",null],["k2",[1,2.5]]]' in blob  # the bulky plain part is JSON
    back = state_from_bytes(blob)
    assert {k: back[k] for k in plain} == plain and torch.equal(back["weights"], torch.ones(3))
    assert back["optimizer"]["state"][0]["step"].item() == 2.0
    legacy = io.BytesIO()  # checkpoints written before the mixed format still load
    torch.save({"w": torch.zeros(2), "k": [1]}, legacy)
    assert state_from_bytes(legacy.getvalue())["k"] == [1]


def _blob_rows(store: Store) -> set[str]:
    return {h for (h,) in store._read(lambda c: c.execute("SELECT hash FROM blobs").fetchall())}


def test_large_tensors_are_stored_once_per_content(tmp_path):
    """A controller checkpointed after every ask and tell writes its weights again only when an
    update changed them; what is read back is the latest state either way."""
    big, small = torch.randn(100, 400), torch.ones(3)
    with Store.create(tmp_path, CONFIG) as store:
        for step in range(3):
            store.save_checkpoint({"step": step, "weights": big, "bias": small,
                                   "adam": {"state": {0: {"exp_avg": big * 2}}}})
        first = _blob_rows(store)
        assert len(first) == 2  # `big` and `big * 2`; `small` stays inline
        big[0, 0] += 1  # an update: the changed tensor replaces its old row
        store.save_checkpoint({"step": 3, "weights": big, "bias": small,
                               "adam": {"state": {0: {"exp_avg": big * 2}}}})
        assert len(_blob_rows(store)) == 2 and not _blob_rows(store) & first
        back = store.load_checkpoint().state
        assert back["step"] == 3 and torch.equal(back["weights"], big)
        assert torch.equal(back["adam"]["state"][0]["exp_avg"], big * 2)
        assert torch.equal(back["bias"], small)
        assert store.integrity_check() == []
        # the integrity check finds rows no checkpoint refers to, and references without a row
        store._write(lambda c: c.execute("INSERT INTO blobs SELECT owner, 'stale', data FROM blobs LIMIT 1"))
        assert store.integrity_check() == ["blobs: 1 row(s) of checkpoint 'strategy' that it does not refer to"]
        store._write(lambda c: c.execute("UPDATE blobs SET owner = 'gone' WHERE hash = 'stale'"))
        assert store.integrity_check() == ["blobs: 1 row(s) of no checkpoint"]
        store._write(lambda c: c.execute("DELETE FROM blobs"))
        [problem] = store.integrity_check()
        assert "refers to tensor" in problem and "blobs table does not hold" in problem
        with pytest.raises(StoreError, match="refers to tensor"):
            store.load_checkpoint()
        store.save_checkpoint({"step": 4})  # a state without large tensors leaves no rows behind
        assert _blob_rows(store) == set() and store.load_checkpoint().state == {"step": 4}
        assert store.integrity_check() == []


def test_runs_from_before_the_blobs_table_still_load_and_write(tmp_path):
    with Store.create(tmp_path, CONFIG) as store:
        store.save_checkpoint({"step": 1, "w": torch.ones(8)})
        store._write(lambda c: c.execute("DROP TABLE blobs"))
        assert store.load_checkpoint().state["step"] == 1
        store.save_checkpoint({"step": 2, "w": torch.zeros(100, 100)})
        assert torch.equal(store.load_checkpoint().state["w"], torch.zeros(100, 100))


def test_a_blob_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    buffer = io.BytesIO()
    torch.save(Evil(), buffer)
    with Store.create(tmp_path, CONFIG) as store:
        store.save_checkpoint({"w": torch.zeros(100, 100)})
        store._write(lambda c: c.execute("UPDATE blobs SET data = ?", (buffer.getvalue(),)))
        with pytest.raises(StoreError, match="cannot be read safely"):
            store.load_checkpoint()


def test_markers(tmp_path):
    with Store.create(tmp_path, CONFIG) as store:
        assert store.get_marker("stage", "none") == "none"
        store.set_marker("stage", {"name": "search", "done": False})
        store.set_marker("stage", {"name": "search", "done": True})
        store.set_marker("other", 3)
        assert store.get_marker("stage") == {"name": "search", "done": True}
        assert store.markers() == {"other": 3, "stage": {"name": "search", "done": True}}
        store.delete_marker("other")
        assert list(store.markers()) == ["stage"]


def _writer(run_dir: str, worker: int, n: int, queue) -> None:
    try:
        store = Store.open(run_dir)
        for i in range(n):
            tid = store.add_trial({"w": worker, "i": i}, f"{worker}-{i}", lambda t: t, status="running",
                                  checkpoint=CheckpointUpdate({"w": worker, "i": i}, "ask"))
            store.finish_trial(tid, "done", metrics={"val_accuracy": i / n}, reward=i / n,
                               checkpoint=CheckpointUpdate({"w": worker, "i": i}, "tell"))
            store.set_marker(f"w{worker}", i)
            store.counts()  # readers alongside the writers
        store.close()
        queue.put((worker, None))
    except BaseException as exc:  # noqa: BLE001 - report anything, including "database is locked"
        queue.put((worker, repr(exc)))


def test_sixteen_concurrent_writers(tmp_path):
    Store.create(tmp_path, CONFIG).close()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    writers, per_writer = 16, 25
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, per_writer, queue))
             for w in range(writers)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert sorted(results) == [(w, None) for w in range(writers)]
    with Store.open(tmp_path) as store:
        trials = store.trials()
        assert len(trials) == writers * per_writer
        assert [t.id for t in trials] == list(range(1, writers * per_writer + 1))
        assert all(t.status == "done" and t.seed == t.id for t in trials)
        assert len({t.key for t in trials}) == writers * per_writer
        assert store.markers() == {f"w{w}": per_writer - 1 for w in range(writers)}
        assert store.integrity_check() == []

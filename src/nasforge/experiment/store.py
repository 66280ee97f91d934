"""The run's database: one SQLite file per run folder (`RUN/nasforge.db`).

`Store` is the durable backend of `nasforge.experiment.records.TrialStore` (the in-memory one is
`nasforge.experiment.memory_store.MemoryStore`).

Tables
------
``run``          the run's config (JSON), written once when the run is created.
``trials``       one row per trial; ``id`` (autoincrement) is the order in which trials were asked.
``checkpoints``  the latest state of named objects (the strategy's): JSON, with a `torch.save` of
                 the parts JSON cannot hold, read back with ``torch.load(weights_only=True)``: a
                 run folder never unpickles code.
``blobs``        the checkpoints' large tensors (controller weights, optimizer moments), one row
                 per tensor content, so a checkpoint rewritten after every ask and tell stores
                 them again only when they changed (a policy update), not each time.
``markers``      small key/value JSON entries for stage markers (used by multi-stage pipelines).
``rungs``        under a multi-fidelity scheduler, one row per result of a child at a rung
                 (epochs trained, metrics, reward) and the scheduler's decision on it
                 (``promote``/``stop``; NULL while the rung is undecided).

Consistency
-----------
Every change the strategy must agree with is one transaction: a new trial is inserted together
with the strategy checkpoint taken right after the `ask` that proposed it, and a result is written
together with the checkpoint taken right after the `tell` that learned from it. A process killed
at any moment therefore leaves a database whose checkpoint matches its trials exactly: the trials
that are still ``pending``/``running`` are the strategy's outstanding asks.

Concurrency
-----------
WAL journal (readers never block the writer), a long ``busy_timeout``, write transactions that
take the write lock up front (``BEGIN IMMEDIATE``) and a retry loop with jittered back-off around
every write, so many processes can record into one run without "database is locked" reaching
anyone. Connections are per process (re-opened after a fork).
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nasforge.errors import ConfigError
from nasforge.experiment.checkpoint import (
    MissingBlob,
    UsedBlobs,
    dumps,
    loads_or_none,
    state_from_bytes,
)
from nasforge.experiment.records import (
    STATUSES,
    UNFINISHED,
    Checkpoint,
    CheckpointUpdate,
    RungResult,
    StoreError,
    TrialRecord,
)

DB_NAME = "nasforge.db"
SCHEMA_VERSION = 1
_BUSY_DEADLINE_S = 300.0

_BLOBS_TABLE = """CREATE TABLE IF NOT EXISTS blobs (
    owner TEXT NOT NULL,
    hash TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (owner, hash)
);"""

_RUNGS_TABLE = """CREATE TABLE IF NOT EXISTS rungs (
    trial_id INTEGER NOT NULL REFERENCES trials(id),
    rung INTEGER NOT NULL,
    epochs REAL,
    metrics TEXT,
    reward REAL,
    error TEXT,
    decision TEXT,
    recorded REAL NOT NULL,
    PRIMARY KEY (trial_id, rung)
);"""

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS run (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    config TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    nasforge_version TEXT,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    arch TEXT NOT NULL,
    key TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    metrics TEXT,
    reward REAL,
    error TEXT,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    seed INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    reused_from INTEGER REFERENCES trials(id),
    rejected INTEGER NOT NULL DEFAULT 0,
    queued INTEGER
);
CREATE INDEX IF NOT EXISTS trials_key ON trials(key, status);
CREATE INDEX IF NOT EXISTS trials_status ON trials(status);
CREATE TABLE IF NOT EXISTS checkpoints (
    name TEXT PRIMARY KEY,
    state BLOB NOT NULL,
    trial_id INTEGER,
    event TEXT,
    elapsed REAL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS markers (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated REAL NOT NULL
);
"""
    + _BLOBS_TABLE
    + _RUNGS_TABLE
)


_TRIAL_COLUMNS = (
    "id, arch, key, status, metrics, reward, error, created, started, finished, seed, "
    "attempts, failures, reused_from, rejected, queued"
)


def _record(row: tuple) -> TrialRecord:
    (
        id_,
        arch,
        key,
        status,
        metrics,
        reward,
        error,
        created,
        started,
        finished,
        seed,
        attempts,
        failures,
        reused_from,
        rejected,
        queued,
    ) = row
    return TrialRecord(
        id_,
        loads_or_none(arch),
        key,
        status,
        loads_or_none(metrics),
        reward,
        error,
        created,
        started,
        finished,
        seed,
        attempts,
        failures,
        reused_from,
        bool(rejected),
        queued,
    )


def _has_blobs_table(conn: sqlite3.Connection) -> bool:
    """Runs created before the blobs table lack it until their next checkpoint write."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'blobs'").fetchone() is not None


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _readonly_query(path: Path, unwritable: bool) -> str:
    """The URI query of a read-only connection. SQLite opens a WAL database read-only only where it
    can find or create the -shm file beside it (https://sqlite.org/wal.html#readonly); in a folder
    that cannot be written and holds no -wal file (a run closed cleanly, then put on a read-only
    filesystem) nothing can write the database either, so it is opened `immutable`, which needs
    neither file nor locks (https://sqlite.org/uri.html#uriimmutable)."""
    if unwritable and not path.with_name(path.name + "-wal").exists():
        return "mode=ro&immutable=1"
    return "mode=ro"


class Store:
    """A run's SQLite database. Create with `Store.create`, open an existing run with `Store.open`."""

    #: a `TrialStore` whose records outlive the process: runs in it can be resumed
    durable = True

    def __init__(
        self,
        run_dir: str | os.PathLike,
        *,
        readonly: bool = False,
        fault_hook: Callable[[str], None] | None = None,
    ):
        self.run_dir = Path(run_dir)
        #: called with "before-commit" and "before-checkpoint" inside every write transaction, so
        #: tests can kill or fail a process at exactly those moments
        self.fault_hook = fault_hook
        self.path = self.run_dir / DB_NAME
        self.readonly = readonly
        #: opened for writing, but its folder cannot be written (a read-only filesystem): every
        #: write is refused with a StoreError that says so
        self.unwritable = False
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._lock = threading.RLock()

    # -- opening ----------------------------------------------------------------------------------
    @staticmethod
    def exists(run_dir: str | os.PathLike) -> bool:
        return (Path(run_dir) / DB_NAME).exists()

    @classmethod
    def create(
        cls, run_dir: str | os.PathLike, config: Mapping[str, Any], *, fault_hook: Callable[[str], None] | None = None
    ) -> Store:
        """Create a new run; refuses (ConfigError) when the folder already holds a run."""
        run_dir = Path(run_dir)
        if run_dir.exists() and not run_dir.is_dir():
            raise ConfigError("run", f"{run_dir} exists and is not a folder")
        if cls.exists(run_dir):
            raise ConfigError(
                "run",
                f"{run_dir} already holds a run ({DB_NAME}); resume it or "
                "choose another run folder (nothing was overwritten)",
            )
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError("run", f"cannot create run folder {run_dir}: {exc.strerror}") from None
        store = cls(run_dir, fault_hook=fault_hook)
        config_text = dumps(config)

        def body(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT COUNT(*) FROM run").fetchone()[0]:
                raise ConfigError(
                    "run",
                    f"{run_dir} already holds a run ({DB_NAME}); resume it or "
                    "choose another run folder (nothing was overwritten)",
                )
            from nasforge import __version__

            conn.execute(
                "INSERT INTO run (id, config, schema_version, nasforge_version, created) VALUES (1, ?, ?, ?, ?)",
                (config_text, SCHEMA_VERSION, __version__, time.time()),
            )

        try:
            store._connect(create=True)
            store._write(body)
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def open(
        cls, run_dir: str | os.PathLike, *, readonly: bool = False, fault_hook: Callable[[str], None] | None = None
    ) -> Store:
        """Open an existing run (StoreError when there is none or it is not a nasforge database).

        `readonly=True` opens the file read-only (a ``file:...?mode=ro`` URI and ``query_only``):
        any write is a StoreError, and nothing about the database is changed, not even its journal
        mode. WAL readers never block the run's writers; a read-only reader cannot checkpoint the
        WAL either. For readers beside a running search (reports, the live report server)."""
        store = cls(run_dir, readonly=readonly, fault_hook=fault_hook)
        if not store.path.is_file():
            raise StoreError(store.path, "no nasforge run database here")
        try:
            store._connect(create=False)
            row = store._read(lambda c: c.execute("SELECT schema_version FROM run WHERE id = 1").fetchone())
        except StoreError:
            store.close()
            raise
        except sqlite3.DatabaseError as exc:
            store.close()
            raise StoreError(store.path, f"not a nasforge run database ({exc})") from None
        if row is None:
            store.close()
            raise StoreError(store.path, "the run database has no config (not a nasforge run)")
        if row[0] > SCHEMA_VERSION:
            store.close()
            raise StoreError(
                store.path, f"written by a newer nasforge (schema {row[0]}, this one reads {SCHEMA_VERSION})"
            )
        return store

    def _connect(self, create: bool = False) -> sqlite3.Connection:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                return self._conn
            self._conn = None  # a connection inherited over fork is never used
            unwritable = not create and not os.access(self.run_dir, os.W_OK)
            if unwritable and not self.readonly:
                # a read-only filesystem (or folder): the run can be shown and reported, but a
                # search that resumed here would fail at its first write; refuse it now
                self.readonly, self.unwritable = True, True
            try:
                if self.readonly:
                    conn = sqlite3.connect(
                        f"{self.path.resolve().as_uri()}?{_readonly_query(self.path, unwritable)}",
                        uri=True,
                        timeout=60.0,
                        isolation_level=None,
                        check_same_thread=False,
                    )
                else:
                    conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=False)
            except sqlite3.Error as exc:
                raise StoreError(self.path, f"cannot open database ({exc})") from None
            try:
                conn.execute("PRAGMA busy_timeout = 60000")
                if self.readonly:
                    conn.execute("PRAGMA query_only = ON")
                else:
                    self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
                    conn.execute("PRAGMA synchronous = NORMAL")  # WAL+NORMAL: survives process kills
                    conn.execute("PRAGMA foreign_keys = ON")
                if create:
                    self._retry(lambda: conn.executescript(_SCHEMA))
                else:
                    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                    missing = {"run", "trials", "checkpoints", "markers"} - tables
                    if missing:
                        raise StoreError(
                            self.path, f"not a nasforge run database (missing tables: {', '.join(sorted(missing))})"
                        )
            except sqlite3.DatabaseError as exc:
                conn.close()
                raise StoreError(self.path, f"not a nasforge run database ({exc})") from None
            except BaseException:
                conn.close()
                raise
            self._conn, self._pid = conn, os.getpid()
            return conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                try:
                    self._conn.close()
                except sqlite3.Error:
                    pass
            self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions -------------------------------------------------------------------------------
    def _retry(self, fn: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + _BUSY_DEADLINE_S
        delay = 0.005
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.5)

    def _write(self, body: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `body` in one write transaction (BEGIN IMMEDIATE), retrying when the file is busy."""
        with self._lock:
            conn = self._connect()
            if self.unwritable:
                raise StoreError(
                    self.path,
                    "the run folder cannot be written (a read-only filesystem?): it can be shown and "
                    "reported; copy the folder to a writable disk to resume it",
                )

            def attempt() -> Any:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = body(conn)
                    if self.fault_hook is not None:
                        self.fault_hook("before-commit")
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        try:
                            conn.execute("ROLLBACK")
                        except sqlite3.Error:
                            pass
                    raise
                return result

            try:
                return self._retry(attempt)
            except sqlite3.DatabaseError as exc:
                raise StoreError(self.path, f"database error ({exc})") from None

    def _read(self, body: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._lock:
            conn = self._connect()
            try:
                return self._retry(lambda: body(conn))
            except sqlite3.DatabaseError as exc:
                raise StoreError(self.path, f"database error ({exc})") from None

    @contextmanager
    def snapshot(self) -> Iterator[Store]:
        """Reads made inside see one consistent state of the database: one read transaction,
        held only as long as the block runs (in WAL mode it never blocks a writer; keep it short,
        since the WAL cannot be checkpointed past it). Other threads' reads wait for the block."""
        with self._lock:
            conn = self._connect()
            try:
                conn.execute("BEGIN")  # deferred: the snapshot is taken at the first read
            except sqlite3.DatabaseError as exc:
                raise StoreError(self.path, f"database error ({exc})") from None
            try:
                yield self
            finally:
                if conn.in_transaction:
                    try:
                        conn.execute("COMMIT")
                    except sqlite3.Error:
                        conn.execute("ROLLBACK")

    def _put_checkpoint(self, conn: sqlite3.Connection, update: CheckpointUpdate | None, trial_id: int | None) -> None:
        if update is None:
            return
        import torch

        if self.fault_hook is not None:
            self.fault_hook("before-checkpoint")
        blobs: dict[str, Any] = {}
        data = update.blob(blobs)
        conn.execute(_BLOBS_TABLE)  # runs created before the blobs table get it here
        stored = {h for (h,) in conn.execute("SELECT hash FROM blobs WHERE owner = ?", (update.name,))}
        for key in blobs.keys() - stored:
            buffer = io.BytesIO()
            torch.save(blobs[key].detach().cpu().clone(), buffer)
            conn.execute(
                "INSERT INTO blobs (owner, hash, data) VALUES (?, ?, ?)",
                (update.name, key, sqlite3.Binary(buffer.getvalue())),
            )
        conn.executemany(
            "DELETE FROM blobs WHERE owner = ? AND hash = ?", [(update.name, key) for key in stored - blobs.keys()]
        )
        conn.execute(
            "INSERT INTO checkpoints (name, state, trial_id, event, elapsed, updated) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET state = excluded.state, "
            "trial_id = excluded.trial_id, event = excluded.event, elapsed = excluded.elapsed, "
            "updated = excluded.updated",
            (update.name, sqlite3.Binary(data), trial_id, update.event, update.elapsed, time.time()),
        )

    # -- run config ---------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        row = self._read(lambda c: c.execute("SELECT config FROM run WHERE id = 1").fetchone())
        if row is None:
            raise StoreError(self.path, "the run database has no config")
        return json.loads(row[0])

    def created(self) -> float:
        return self._read(lambda c: c.execute("SELECT created FROM run WHERE id = 1").fetchone())[0]

    # -- trials -------------------------------------------------------------------------------------
    def add_trial(
        self,
        arch: Any,
        key: str,
        seed: int | Callable[[int], int],
        *,
        status: str = "pending",
        metrics: Mapping[str, Any] | None = None,
        reward: float | None = None,
        error: str | None = None,
        reused_from: int | None = None,
        rejected: bool = False,
        queued: int | None = None,
        checkpoint: CheckpointUpdate | None = None,
    ) -> int:
        """Insert a trial (and the strategy checkpoint, if given) in one transaction; return its id.

        `arch` is the architecture's JSON value (or its JSON text). `seed` may be a function of the
        new trial's id, so a trial's seed can derive from its index in the same transaction.
        Trials inserted as ``done``/``failed`` (reused results, rejections) are finished at once;
        a trial inserted as ``running`` counts one attempt.
        """
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        arch_text = arch if isinstance(arch, str) else json.dumps(arch, sort_keys=True)
        metrics_text = None if metrics is None else dumps(metrics)
        reward = None if reward is None or not math.isfinite(reward) else float(reward)

        def body(conn: sqlite3.Connection) -> int:
            now = time.time()
            started = now if status != "pending" else None
            finished = now if status in ("done", "failed") else None
            cur = conn.execute(
                "INSERT INTO trials (arch, key, status, metrics, reward, error, created, started, "
                "finished, seed, attempts, reused_from, rejected, queued) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?)",
                (
                    arch_text,
                    key,
                    status,
                    metrics_text,
                    reward,
                    error,
                    now,
                    started,
                    finished,
                    int(status == "running"),
                    reused_from,
                    int(rejected),
                    queued,
                ),
            )
            assert cur.lastrowid is not None  # set by the INSERT
            trial_id = int(cur.lastrowid)
            trial_seed = seed(trial_id) if callable(seed) else seed
            conn.execute("UPDATE trials SET seed = ? WHERE id = ?", (int(trial_seed), trial_id))
            self._put_checkpoint(conn, checkpoint, trial_id)
            return trial_id

        return self._write(body)

    def mark_running(self, trial_id: int, *, queued: int | None = None, reused_from: int | None | bool = False) -> None:
        """The trial was handed to an executor: status running, one more attempt.

        `reused_from=None` clears a follower's link (its leader failed, it is evaluated itself).
        """

        def body(conn: sqlite3.Connection) -> None:
            sets = "status = 'running', started = ?, attempts = attempts + 1, queued = COALESCE(?, queued)"
            params: list[Any] = [time.time(), queued]
            if reused_from is not False:
                sets += ", reused_from = ?"
                params.append(reused_from)
            self._update(conn, trial_id, sets, params, UNFINISHED)

        self._write(body)

    def requeue_trial(self, trial_id: int, error: str, *, queued: int | None = None) -> None:
        """A failed attempt that will be retried: keep it unfinished, count the failure and attempt."""

        def body(conn: sqlite3.Connection) -> None:
            self._update(
                conn,
                trial_id,
                "status = 'running', error = ?, failures = failures + 1, "
                "attempts = attempts + 1, started = ?, queued = COALESCE(?, queued)",
                [error, time.time(), queued],
                UNFINISHED,
            )

        self._write(body)

    def finish_trial(
        self,
        trial_id: int,
        status: str,
        *,
        metrics: Mapping[str, Any] | None = None,
        reward: float | None = None,
        error: str | None = None,
        started: float | None = None,
        failures: int | None = None,
        reused_from: int | None | bool = False,
        checkpoint: CheckpointUpdate | None = None,
    ) -> None:
        """Record a trial's outcome (and the checkpoint after its tell) in one transaction.

        A trial that succeeds after failed attempts keeps the last attempt's error as a note.
        """
        if status not in ("done", "failed"):
            raise ValueError(f"a trial finishes as done or failed, not {status!r}")
        metrics_text = None if metrics is None else dumps(metrics)
        reward = None if reward is None or not math.isfinite(reward) else float(reward)

        def body(conn: sqlite3.Connection) -> None:
            sets = (
                "status = ?, metrics = ?, reward = ?, error = COALESCE(?, error), finished = ?, "
                "started = COALESCE(?, started, ?), failures = COALESCE(?, failures)"
            )
            now = time.time()
            params: list[Any] = [status, metrics_text, reward, error, now, started, now, failures]
            if reused_from is not False:
                sets += ", reused_from = ?"
                params.append(reused_from)
            self._update(conn, trial_id, sets, params, UNFINISHED)
            self._put_checkpoint(conn, checkpoint, trial_id)

        self._write(body)

    def _update(
        self, conn: sqlite3.Connection, trial_id: int, sets: str, params: list[Any], from_statuses: tuple[str, ...]
    ) -> None:
        marks = ", ".join("?" * len(from_statuses))
        cur = conn.execute(
            f"UPDATE trials SET {sets} WHERE id = ? AND status IN ({marks})", [*params, trial_id, *from_statuses]
        )
        if cur.rowcount != 1:
            row = conn.execute("SELECT status FROM trials WHERE id = ?", (trial_id,)).fetchone()
            state = "does not exist" if row is None else f"is already {row[0]}"
            raise StoreError(self.path, f"trial {trial_id} {state}")

    def trial(self, trial_id: int) -> TrialRecord:
        row = self._read(
            lambda c: c.execute(f"SELECT {_TRIAL_COLUMNS} FROM trials WHERE id = ?", (trial_id,)).fetchone()
        )
        if row is None:
            raise KeyError(f"no trial {trial_id}")
        return _record(row)

    def trials(self, status: str | tuple[str, ...] | None = None) -> list[TrialRecord]:
        """Trials in id order, optionally only those with the given status(es)."""
        return list(self.iter_trials(status))

    def iter_trials(self, status: str | tuple[str, ...] | None = None) -> Iterator[TrialRecord]:
        where = ""
        params: tuple[str, ...] = ()
        if status is not None:
            statuses = (status,) if isinstance(status, str) else tuple(status)
            where = f" WHERE status IN ({', '.join('?' * len(statuses))})"
            params = statuses
        rows = self._read(
            lambda c: c.execute(f"SELECT {_TRIAL_COLUMNS} FROM trials{where} ORDER BY id", params).fetchall()
        )
        return (_record(r) for r in rows)

    def find_result(self, key: str) -> TrialRecord | None:
        """The first finished trial of `key` whose result can be reused: done, or rejected."""
        row = self._read(
            lambda c: c.execute(
                f"SELECT {_TRIAL_COLUMNS} FROM trials WHERE key = ? AND "
                "(status = 'done' OR (status = 'failed' AND rejected = 1)) ORDER BY id LIMIT 1",
                (key,),
            ).fetchone()
        )
        return None if row is None else _record(row)

    def count(self) -> int:
        return self._read(lambda c: c.execute("SELECT COUNT(*) FROM trials").fetchone()[0])

    def counts(self) -> dict[str, int]:
        rows = self._read(lambda c: c.execute("SELECT status, COUNT(*) FROM trials GROUP BY status").fetchall())
        out = dict.fromkeys(STATUSES, 0)
        out.update({s: n for s, n in rows})
        out["reused"] = self._read(
            lambda c: c.execute("SELECT COUNT(*) FROM trials WHERE reused_from IS NOT NULL").fetchone()[0]
        )
        out["total"] = sum(out[s] for s in STATUSES)
        return out

    def best(self, n: int = 10) -> list[TrialRecord]:
        """The n best done trials by reward (first seen wins ties; reused copies left out).

        A child trained only part of the way (``metrics["fidelity"] < 1``: stopped by a
        multi-fidelity scheduler or a deadline) ranks below every fully trained one."""
        rows = self._read(
            lambda c: c.execute(
                f"SELECT {_TRIAL_COLUMNS} FROM trials WHERE status = 'done' AND reward IS NOT NULL "
                "AND reused_from IS NULL ORDER BY "
                "COALESCE(json_extract(metrics, '$.fidelity'), 1.0) >= 1.0 DESC, reward DESC, id ASC "
                "LIMIT ?",
                (int(n),),
            ).fetchall()
        )
        return [_record(r) for r in rows]

    # -- multi-fidelity -----------------------------------------------------------------------------
    def record_schedule(
        self,
        result: RungResult | None,
        decisions: Mapping[int, str],
        finished: list[tuple[int, str, str | None]],
        *,
        checkpoint: CheckpointUpdate | None = None,
    ) -> None:
        """One scheduler event in one transaction: a child's result at a rung (also its trial's
        latest metrics and reward), the decisions it led to (on each child's latest rung), the
        children it finished ``(trial, "done"|"failed", error)``, and the checkpoint after the
        tells."""

        def body(conn: sqlite3.Connection) -> None:
            conn.execute(_RUNGS_TABLE)  # runs created before the rungs table get it here
            now = time.time()
            if result is not None:
                reward = None if result.reward is None or not math.isfinite(result.reward) else float(result.reward)
                metrics_text = None if result.metrics is None else dumps(result.metrics)
                conn.execute(
                    "INSERT OR REPLACE INTO rungs (trial_id, rung, epochs, metrics, reward, "
                    "error, decision, recorded) VALUES (?, ?, ?, ?, ?, ?, NULL, ?)",
                    (result.trial_id, result.rung, result.epochs, metrics_text, reward, result.error, now),
                )
                if result.error is None:
                    self._update(conn, result.trial_id, "metrics = ?, reward = ?", [metrics_text, reward], UNFINISHED)
                else:
                    self._update(
                        conn,
                        result.trial_id,
                        "metrics = COALESCE(?, metrics), reward = NULL",
                        [metrics_text],
                        UNFINISHED,
                    )
            for trial_id, decision in decisions.items():
                conn.execute(
                    "UPDATE rungs SET decision = ? WHERE trial_id = ? AND rung = "
                    "(SELECT MAX(rung) FROM rungs WHERE trial_id = ?)",
                    (decision, trial_id, trial_id),
                )
            for trial_id, status, error in finished:
                self._update(
                    conn,
                    trial_id,
                    "status = ?, error = COALESCE(?, error), finished = ?",
                    [status, error, now],
                    UNFINISHED,
                )
            self._put_checkpoint(conn, checkpoint, result.trial_id if result is not None else None)

        self._write(body)

    def rungs(self, trial_id: int | None = None) -> list[RungResult]:
        """The rung results (of one trial, or all), in the order they were recorded."""

        def body(c: sqlite3.Connection) -> list[tuple]:
            if "rungs" not in {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}:
                return []
            where, params = ("WHERE trial_id = ?", (trial_id,)) if trial_id is not None else ("", ())
            return c.execute(
                "SELECT trial_id, rung, epochs, metrics, reward, error, decision, recorded "
                f"FROM rungs {where} ORDER BY rowid",
                params,
            ).fetchall()

        return [
            RungResult(t, r, e, loads_or_none(m), w, err, d, rec) for t, r, e, m, w, err, d, rec in self._read(body)
        ]

    def max_queued(self) -> int:
        return self._read(lambda c: c.execute("SELECT COALESCE(MAX(queued), 0) FROM trials").fetchone()[0])

    # -- checkpoints --------------------------------------------------------------------------------
    def save_checkpoint(
        self,
        state: Any,
        *,
        name: str = "strategy",
        event: str = "manual",
        trial_id: int | None = None,
        elapsed: float | None = None,
    ) -> None:
        update = CheckpointUpdate(state, event, elapsed, name)
        self._write(lambda conn: self._put_checkpoint(conn, update, trial_id))

    def load_checkpoint(self, name: str = "strategy") -> Checkpoint | None:
        loaded = self._load_checkpoint(name)
        return None if loaded is None else loaded[0]

    def _load_checkpoint(self, name: str) -> tuple[Checkpoint, set[str]] | None:
        """The checkpoint and the hashes of its blob rows that it does not refer to."""
        row = self._read(
            lambda c: c.execute(
                "SELECT state, trial_id, event, elapsed, updated FROM checkpoints WHERE name = ?", (name,)
            ).fetchone()
        )
        if row is None:
            return None
        try:
            blobs = UsedBlobs(self._load_blobs(name))
            state = state_from_bytes(bytes(row[0]), blobs)
        except MissingBlob as exc:
            raise StoreError(
                self.path, f"checkpoint {name!r} refers to tensor {exc.args[0]} that the blobs table does not hold"
            ) from None
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
            raise StoreError(self.path, f"checkpoint {name!r} cannot be read safely ({type(exc).__name__})") from None
        return Checkpoint(state, row[1], row[2], row[3], row[4]), set(blobs) - blobs.used

    def _load_blobs(self, name: str) -> dict[str, Any]:
        import torch

        def rows(c: sqlite3.Connection) -> list[tuple[str, bytes]]:
            if _has_blobs_table(c):
                return c.execute("SELECT hash, data FROM blobs WHERE owner = ?", (name,)).fetchall()
            return []

        return {h: torch.load(io.BytesIO(data), weights_only=True, map_location="cpu") for h, data in self._read(rows)}

    # -- markers ------------------------------------------------------------------------------------
    def set_marker(self, key: str, value: Any) -> None:
        text = dumps(value)
        self._write(
            lambda conn: conn.execute(
                "INSERT INTO markers (key, value, updated) VALUES (?, ?, ?) ON CONFLICT(key) "
                "DO UPDATE SET value = excluded.value, updated = excluded.updated",
                (key, text, time.time()),
            )
        )

    def get_marker(self, key: str, default: Any = None) -> Any:
        row = self._read(lambda c: c.execute("SELECT value FROM markers WHERE key = ?", (key,)).fetchone())
        return default if row is None else json.loads(row[0])

    def delete_marker(self, key: str) -> None:
        self._write(lambda conn: conn.execute("DELETE FROM markers WHERE key = ?", (key,)))

    def markers(self) -> dict[str, Any]:
        rows = self._read(lambda c: c.execute("SELECT key, value FROM markers ORDER BY key").fetchall())
        return {k: json.loads(v) for k, v in rows}

    # -- checks -------------------------------------------------------------------------------------
    def integrity_check(self) -> list[str]:
        """Problems found by SQLite's integrity check and the store's own invariants ([] if none)."""
        problems: list[str] = []

        def body(c: sqlite3.Connection) -> None:
            rows = [r[0] for r in c.execute("PRAGMA integrity_check").fetchall()]
            if rows != ["ok"]:
                problems.extend(f"sqlite: {r}" for r in rows)
            problems.extend(
                f"foreign key: trial {r[1]} refers to a missing trial"
                for r in c.execute("PRAGMA foreign_key_check(trials)").fetchall()
            )
            if c.execute("SELECT COUNT(*) FROM run").fetchone()[0] != 1:
                problems.append("run: expected exactly one config row")
            for (tid,) in c.execute(
                "SELECT id FROM trials WHERE status = 'done' AND (reward IS NULL OR metrics IS NULL)"
            ):
                problems.append(f"trial {tid}: done without reward or metrics")
            for (tid,) in c.execute("SELECT id FROM trials WHERE status = 'failed' AND error IS NULL"):
                problems.append(f"trial {tid}: failed without an error")
            for (tid,) in c.execute("SELECT id FROM trials WHERE status IN ('done', 'failed') AND finished IS NULL"):
                problems.append(f"trial {tid}: finished without a finish time")
            n, lo, hi = c.execute("SELECT COUNT(*), MIN(id), MAX(id) FROM trials").fetchone()
            if n and (lo != 1 or hi != n):
                problems.append(f"trials: ids are not 1..{n} (min {lo}, max {hi})")
            if n and c.execute("SELECT COUNT(*) FROM checkpoints WHERE name = 'strategy'").fetchone()[0] == 0:
                problems.append("checkpoints: trials but no strategy checkpoint")
            if _has_blobs_table(c):
                orphans = c.execute(
                    "SELECT COUNT(*) FROM blobs WHERE owner NOT IN (SELECT name FROM checkpoints)"
                ).fetchone()[0]
                if orphans:
                    problems.append(f"blobs: {orphans} row(s) of no checkpoint")

        self._read(body)
        names = self._read(lambda c: [n for (n,) in c.execute("SELECT name FROM checkpoints")])
        for name in names:
            try:
                loaded = self._load_checkpoint(name)
            except StoreError as exc:
                problems.append(str(exc).removeprefix(f"{self.path}: "))
                continue
            assert loaded is not None  # its name was listed just above
            _, unused = loaded
            if unused:
                problems.append(f"blobs: {len(unused)} row(s) of checkpoint {name!r} that it does not refer to")
        return problems

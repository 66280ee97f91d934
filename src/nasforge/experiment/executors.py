"""Executors run evaluations: one interface, several backends.

An executor knows nothing about NAS: it runs ``fn(*args)`` and reports each call's outcome.

    handle = executor.submit(fn, *args)      # returns at once
    outcomes = executor.wait(timeout=None)   # block until at least one call has finished
    outcomes = executor.poll()               # whatever has finished, without blocking
    executor.shutdown()                      # stop (and kill) whatever is still running

A call that raises, times out or whose worker dies yields an `Outcome` with ``error`` set (a
one-line reason); it never takes the executor or the other calls down with it. Exceptions that
stop the program (KeyboardInterrupt, SystemExit) are not outcomes: they propagate from the
serial executor exactly as they would from the caller's own code.

Backends: `SerialExecutor` (in-process, FIFO, the default and the deterministic one),
`SimulatedExecutor` (in-process, completes calls in a seeded random order: emulates many
asynchronous workers), `ProcessExecutor` (local processes, a fresh one per call).

`RayExecutor` (`ray_executor.py`, Ray tasks on a local or remote cluster) is registered as "ray"
and imported only when used. A new backend subclasses `Executor`, implements
`submit`/`poll`/`wait`/`shutdown` and the `workers` attribute, and registers itself with
`@EXECUTORS.register(name)`; `create_executor(name, workers=..., **options)` then builds it for
the experiment and the CLI.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import wait as mp_wait
from typing import Any

import numpy as np

from nasforge.errors import ConfigError
from nasforge.registry import Registry


@dataclass(frozen=True)
class Handle:
    """Identifies one submitted call."""

    id: int


@dataclass(frozen=True)
class Outcome:
    """The result of one call: `value` when it returned, `error` (one line) when it did not."""

    handle: Handle
    value: Any = None
    error: str | None = None
    started: float | None = None  # wall-clock (time.time()) start and end of the call
    finished: float | None = None
    traceback: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def describe_exception(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class Executor(ABC):
    """Runs calls, possibly concurrently; `workers` is how many run at once."""

    name = "executor"
    workers: int = 1

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    def _new_handle(self) -> Handle:
        return Handle(next(self._ids))

    @abstractmethod
    def submit(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Handle:
        """Queue ``fn(*args)``; `timeout` (seconds) fails the call when it runs longer."""

    @abstractmethod
    def poll(self) -> list[Outcome]:
        """Outcomes of calls that have finished since the last poll/wait, without blocking."""

    @abstractmethod
    def wait(self, timeout: float | None = None) -> list[Outcome]:
        """Block until at least one call finishes (or `timeout` passes); return the outcomes."""

    @abstractmethod
    def pending(self) -> int:
        """Calls submitted and not yet returned as outcomes."""

    def shutdown(self) -> None:
        """Stop: queued calls are dropped, running ones are stopped where the backend can."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


class _CallTimeout(BaseException):
    """Raised by the alarm inside a serial call that ran out of time (not an `Exception`, so an
    evaluator's broad `except Exception` cannot swallow it)."""


def _run_inline(handle: Handle, fn: Callable[..., Any], args: tuple, timeout: float | None) -> Outcome:
    started = time.time()
    use_alarm = (
        timeout is not None and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    )
    old_handler = None
    armed = [True]
    if use_alarm:

        def on_alarm(signum: int, frame: Any) -> None:
            if armed[0]:  # an alarm that lands after the call returned is ignored
                raise _CallTimeout()

        old_handler = signal.signal(signal.SIGALRM, on_alarm)
        assert timeout is not None  # use_alarm needs a timeout
        signal.setitimer(signal.ITIMER_REAL, float(timeout))
    try:
        value = fn(*args)
        armed[0] = False
    except _CallTimeout:
        return Outcome(handle, error=f"timed out after {timeout:g} s", started=started, finished=time.time())
    except Exception as exc:  # noqa: BLE001 - a failed call is an outcome, not a crash
        return Outcome(
            handle,
            error=describe_exception(exc),
            started=started,
            finished=time.time(),
            traceback=traceback.format_exc(),
        )
    finally:
        armed[0] = False
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old_handler)
    if timeout is not None and not use_alarm and time.time() - started > timeout:
        return Outcome(handle, error=f"timed out after {timeout:g} s", started=started, finished=time.time())
    return Outcome(handle, value=value, started=started, finished=time.time())


class SerialExecutor(Executor):
    """Runs calls one at a time in this process, in submission order, when `wait` is called.

    The deterministic backend: with it a run's trial sequence depends only on its seed and config.
    A timeout is enforced with SIGALRM when running in the main thread of a POSIX process.
    `workers` is nominal (it sets how many asks an experiment keeps outstanding by default).
    """

    name = "serial"

    def __init__(self, workers: int = 1):
        super().__init__()
        if workers < 1:
            raise ConfigError("workers", f"must be at least 1, got {workers}")
        self.workers = int(workers)
        self._queue: deque[tuple[Handle, Callable[..., Any], tuple, float | None]] = deque()

    def submit(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Handle:
        handle = self._new_handle()
        self._queue.append((handle, fn, args, timeout))
        return handle

    def _next_index(self) -> int:
        return 0

    def poll(self) -> list[Outcome]:
        return []

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        if not self._queue:
            return []
        index = self._next_index()
        handle, fn, args, call_timeout = self._queue[index]
        del self._queue[index]
        return [_run_inline(handle, fn, args, call_timeout)]

    def pending(self) -> int:
        return len(self._queue)

    def shutdown(self) -> None:
        self._queue.clear()


class SimulatedExecutor(SerialExecutor):
    """In-process, but completes the outstanding calls in a seeded random order.

    Emulates `workers` asynchronous workers (results arriving out of order) at the cost of one
    call at a time: for load tests and for exercising out-of-order tells.
    """

    name = "simulated"

    def __init__(self, workers: int = 8, seed: int = 0):
        super().__init__(workers)
        self._rng = np.random.default_rng(seed)

    def _next_index(self) -> int:
        return int(self._rng.integers(len(self._queue)))


# -- local processes ---------------------------------------------------------------------------------
def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(1.0)
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass


def _child_main(conn: Any, parent_pid: int, fn: Callable[..., Any], args: tuple) -> None:
    # Ctrl-C reaches the whole process group; the parent decides what happens to its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    try:
        value = fn(*args)
        message: tuple = ("ok", value)
    except BaseException as exc:  # noqa: BLE001 - everything is reported to the parent
        message = ("error", describe_exception(exc), traceback.format_exc())
    try:
        conn.send(message)
    except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable return value
        conn.send(("error", f"cannot send the result back: {describe_exception(exc)}", None))
    finally:
        conn.close()


@dataclass
class _Running:
    handle: Handle
    process: Any
    conn: Any
    started: float
    deadline: float | None
    timeout: float | None


class QueuedExecutor(Executor):
    """Shared bookkeeping of backends that run calls elsewhere (processes, Ray tasks).

    Calls wait in a FIFO queue until fewer than `workers` run; a running entry has a `deadline`
    (monotonic seconds, or None). Subclasses say how to start one call (`_launch`), how to wait
    for some to finish and turn them into outcomes (`_gather`), and how to stop one (`_kill`).
    """

    def __init__(self, workers: int) -> None:
        super().__init__()
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError("workers", f"must be at least 1, got {workers!r}")
        self.workers = workers
        self._queue: deque[tuple[Handle, Callable[..., Any], tuple, float | None]] = deque()
        self._running: dict[Any, Any] = {}
        self._done: list[Outcome] = []

    @abstractmethod
    def _launch(self, handle: Handle, fn: Callable[..., Any], args: tuple, timeout: float | None) -> None:
        """Start one call and add its entry to `_running`."""

    @abstractmethod
    def _gather(self, wait_for: float | None) -> None:
        """Wait up to `wait_for` seconds (None: until one finishes); move finished calls to `_done`."""

    @abstractmethod
    def _kill(self, key: Any) -> None:
        """Stop running call `key` and drop its entry."""

    def submit(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Handle:
        handle = self._new_handle()
        self._queue.append((handle, fn, args, timeout))
        self._start_queued()
        return handle

    def _start_queued(self) -> None:
        while self._queue and len(self._running) < self.workers:
            self._launch(*self._queue.popleft())

    def _expire(self) -> None:
        now = time.monotonic()
        for key, run in list(self._running.items()):
            if run.deadline is not None and now >= run.deadline and not self._finished_in_time(key):
                self._kill(key)
                self._done.append(
                    Outcome(
                        run.handle,
                        error=f"timed out after {run.timeout:g} s",
                        started=run.started,
                        finished=time.time(),
                    )
                )

    def _finished_in_time(self, key: Any) -> bool:
        """Whether a call past its deadline has a result waiting anyway (then it is not a timeout)."""
        return False

    def _take(self) -> list[Outcome]:
        out, self._done = self._done, []
        self._start_queued()
        return out

    def poll(self) -> list[Outcome]:
        return self.wait(timeout=0)

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._done:
                return self._take()
            if not self._running:
                self._start_queued()
                if not self._running:
                    return []
            now = time.monotonic()
            limits = [r.deadline - now for r in self._running.values() if r.deadline is not None]
            if end is not None:
                limits.append(end - now)
            self._gather(max(0.0, min(limits)) if limits else None)
            self._expire()
            if self._done:
                return self._take()
            if end is not None and time.monotonic() >= end:
                return []

    def pending(self) -> int:
        return len(self._queue) + len(self._running) + len(self._done)

    def shutdown(self) -> None:
        self._queue.clear()
        for key in list(self._running):
            self._kill(key)


def _default_context() -> str:
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


class ProcessExecutor(QueuedExecutor):
    """Runs each call in a fresh local process, at most `workers` at once.

    A fresh process per call keeps memory flat over a long search and isolates crashes: a worker
    that dies (segfault, out-of-memory kill, os._exit) fails only its own call, with the exit
    code or signal as the reason. `timeout` kills a call's process when it runs too long.

    Processes come from the 'forkserver' start method where available (else 'spawn'); the
    forkserver imports `preload` once, so each worker starts in milliseconds with torch loaded.
    Functions and arguments must be picklable (module-level functions, plain objects).
    """

    name = "process"
    DEFAULT_PRELOAD = ("torch", "nasforge.spaces", "nasforge.evaluators", "nasforge.experiment.executors")

    def __init__(self, workers: int = 2, *, context: str | None = None, preload: tuple[str, ...] | None = None):
        super().__init__(workers)
        method = context or _default_context()
        if method not in multiprocessing.get_all_start_methods():
            raise ConfigError("context", f"unknown start method {method!r}", multiprocessing.get_all_start_methods())
        self._ctx = multiprocessing.get_context(method)
        if method == "forkserver":
            self._ctx.set_forkserver_preload(list(self.DEFAULT_PRELOAD if preload is None else preload))

    def _launch(self, handle: Handle, fn: Callable[..., Any], args: tuple, timeout: float | None) -> None:
        recv_conn, send_conn = self._ctx.Pipe(duplex=False)
        # typeshed types get_context(str) as a BaseContext; every start method's context has Process
        process = self._ctx.Process(  # type: ignore[attr-defined]
            target=_child_main, args=(send_conn, os.getpid(), fn, args), name=f"nasforge-worker-{handle.id}"
        )
        started = time.time()
        try:
            process.start()
        except Exception as exc:
            recv_conn.close()
            send_conn.close()
            raise ConfigError(
                "executor",
                f"cannot start a worker process for {getattr(fn, '__name__', fn)}: {describe_exception(exc)}",
            ) from None
        send_conn.close()  # the child holds the write end now
        deadline = None if timeout is None else time.monotonic() + float(timeout)
        self._running[handle] = _Running(handle, process, recv_conn, started, deadline, timeout)

    def _finish(self, run: _Running, outcome: Outcome) -> None:
        del self._running[run.handle]
        try:
            run.conn.close()
        except OSError:
            pass
        run.process.join(timeout=5)
        if run.process.is_alive():
            run.process.kill()
            run.process.join()
        run.process.close()
        self._done.append(outcome)

    def _collect(self, ready: list[Any]) -> None:
        by_conn = {r.conn: r for r in self._running.values()}
        by_sentinel = {r.process.sentinel: r for r in self._running.values()}
        seen: set[Handle] = set()
        for obj in ready:
            run = by_conn.get(obj) or by_sentinel.get(obj)
            if run is None or run.handle in seen:
                continue
            seen.add(run.handle)
            message = None
            if run.conn.poll():
                try:
                    message = run.conn.recv()
                except (EOFError, OSError):
                    message = None
                except Exception as exc:  # noqa: BLE001 - e.g. the result cannot be unpickled here
                    message = ("error", f"cannot read the result: {describe_exception(exc)}", None)
            now = time.time()
            if message is None:
                if obj is run.conn and run.process.is_alive():
                    run.process.join(timeout=5)
                run.process.join(timeout=5)
                code = run.process.exitcode
                if code is not None and code < 0:
                    try:
                        why = f"killed by signal {signal.Signals(-code).name}"
                    except ValueError:
                        why = f"killed by signal {-code}"
                else:
                    why = f"exited with code {code}"
                outcome = Outcome(
                    run.handle,
                    error=f"worker process {why} before returning a result",
                    started=run.started,
                    finished=now,
                )
            elif message[0] == "ok":
                outcome = Outcome(run.handle, value=message[1], started=run.started, finished=now)
            else:
                outcome = Outcome(run.handle, error=message[1], started=run.started, finished=now, traceback=message[2])
            self._finish(run, outcome)

    def _gather(self, wait_for: float | None) -> None:
        objs = [r.conn for r in self._running.values()] + [r.process.sentinel for r in self._running.values()]
        self._collect(mp_wait(objs, timeout=wait_for))

    def _finished_in_time(self, key: Handle) -> bool:
        return self._running[key].conn.poll()

    def _kill(self, key: Handle) -> None:
        run = self._running.pop(key)
        try:
            run.process.kill()
            run.process.join(timeout=5)
            run.conn.close()
            run.process.close()
        except (OSError, ValueError):
            pass

    def shutdown(self) -> None:
        super().shutdown()
        self._done.clear()


# -- registry ----------------------------------------------------------------------------------------
#: executor name (configs, --executor) -> factory taking `workers`; Ray is imported only when used.
EXECUTORS: Registry[Executor] = Registry("executor", supplied=("workers",))
EXECUTORS.register("serial", SerialExecutor)
EXECUTORS.register("simulated", SimulatedExecutor)
EXECUTORS.register("process", ProcessExecutor)
EXECUTORS.register(
    "ray",
    "nasforge.experiment.ray_executor:RayExecutor",
    description="trials as Ray tasks, on this machine or a cluster (pip install nasforge[ray])",
)


@EXECUTORS.register("auto", description="serial for one worker, else local processes")
def _auto(workers: int = 1) -> Executor:
    return SerialExecutor() if workers <= 1 else ProcessExecutor(workers=workers)


def create_executor(name: str = "auto", workers: int = 1, **options: Any) -> Executor:
    """Build an executor by name; "auto" is serial for one worker, else local processes."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ConfigError("workers", f"must be a positive integer, got {workers!r}")
    return EXECUTORS.create(name, workers=workers, **options)


__all__ = [
    "EXECUTORS",
    "Executor",
    "Handle",
    "Outcome",
    "ProcessExecutor",
    "SerialExecutor",
    "SimulatedExecutor",
    "create_executor",
]

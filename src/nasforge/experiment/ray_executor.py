"""Run trials as Ray tasks, on a local Ray or an existing cluster.

Ray is an optional extra (`pip install nasforge[ray]`); it is imported only when a run asks for
`executor="ray"`. The cluster is the one `address` (or Ray's own RAY_ADDRESS variable) names, or a
local instance started for the run. Each trial is one task with its CPU/GPU request, so Ray's
scheduler places trials where the resources are; a task whose worker dies fails only its trial.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nasforge.errors import ConfigError
from nasforge.experiment.executors import Executor, Handle, Outcome, describe_exception


def _call(fn: Callable[..., Any], args: tuple) -> tuple[float, float, Any]:
    started = time.time()
    value = fn(*args)
    return started, time.time(), value


@dataclass
class _Task:
    handle: Handle
    submitted: float
    deadline: float | None
    timeout: float | None


class RayExecutor(Executor):
    """At most `workers` trials in flight as Ray tasks.

    Args:
        workers: trials running at once.
        address: Ray cluster address ("auto", "ray://host:10001", ...); None starts a local Ray
            unless RAY_ADDRESS is set.
        cpus_per_trial, gpus_per_trial: each task's resource request (fractions allowed);
            defaults from NASFORGE_RAY_CPUS / NASFORGE_RAY_GPUS, else 1 CPU and no GPU.
    """

    name = "ray"

    def __init__(self, workers: int = 2, address: str | None = None, cpus_per_trial: float | None = None,
                 gpus_per_trial: float | None = None):
        super().__init__()
        try:
            import ray
        except ModuleNotFoundError:
            raise ConfigError("executor", "the ray executor needs Ray: pip install 'nasforge[ray]'") from None
        self._ray = ray
        self.workers = int(workers)
        address = address or os.environ.get("RAY_ADDRESS")
        if not ray.is_initialized():
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise ConfigError("ray-address", f"cannot connect to Ray at {address!r}: "
                                                 f"{describe_exception(exc)}") from None
        cpus = float(os.environ.get("NASFORGE_RAY_CPUS", 1) if cpus_per_trial is None else cpus_per_trial)
        gpus = float(os.environ.get("NASFORGE_RAY_GPUS", 0) if gpus_per_trial is None else gpus_per_trial)
        self._remote = ray.remote(_call).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)
        self._queue: list[tuple[Handle, Callable[..., Any], tuple, float | None]] = []
        self._running: dict[Any, _Task] = {}
        self._done: list[Outcome] = []

    def submit(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Handle:
        handle = self._new_handle()
        self._queue.append((handle, fn, args, timeout))
        self._start_queued()
        return handle

    def _start_queued(self) -> None:
        while self._queue and len(self._running) < self.workers:
            handle, fn, args, timeout = self._queue.pop(0)
            ref = self._remote.remote(fn, args)
            deadline = None if timeout is None else time.monotonic() + timeout
            self._running[ref] = _Task(handle, time.time(), deadline, timeout)

    def _collect(self, ready: list[Any]) -> None:
        exceptions = self._ray.exceptions
        for ref in ready:
            task = self._running.pop(ref)
            try:
                started, finished, value = self._ray.get(ref)
                outcome = Outcome(task.handle, value=value, started=started, finished=finished)
            except exceptions.RayTaskError as exc:
                cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                outcome = Outcome(task.handle, error=describe_exception(cause), started=task.submitted,
                                  finished=time.time(), traceback=str(exc))
            except (exceptions.WorkerCrashedError, exceptions.RayError) as exc:
                outcome = Outcome(task.handle, error=f"Ray worker failed: {describe_exception(exc)}",
                                  started=task.submitted, finished=time.time())
            self._done.append(outcome)

    def _expire(self) -> None:
        now = time.monotonic()
        for ref, task in list(self._running.items()):
            if task.deadline is not None and now >= task.deadline:
                self._ray.cancel(ref, force=True)
                del self._running[ref]
                self._done.append(Outcome(task.handle, error=f"timed out after {task.timeout:g} s",
                                          started=task.submitted, finished=time.time()))

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
            limits = [t.deadline - now for t in self._running.values() if t.deadline is not None]
            if end is not None:
                limits.append(end - now)
            wait_for = max(0.0, min(limits)) if limits else None
            ready, _ = self._ray.wait(list(self._running), num_returns=1, timeout=wait_for)
            self._collect(ready)
            self._expire()
            if self._done:
                return self._take()
            if end is not None and time.monotonic() >= end:
                return []

    def pending(self) -> int:
        return len(self._queue) + len(self._running) + len(self._done)

    def shutdown(self) -> None:
        self._queue.clear()
        for ref in list(self._running):
            self._ray.cancel(ref, force=True)
        self._running.clear()

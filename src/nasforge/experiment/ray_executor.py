"""Run trials as Ray tasks, on a local Ray or an existing cluster.

Ray is an optional extra (`pip install nasforge[ray]`); it is imported only when a run asks for
`executor="ray"`. The cluster is the one `address` (or Ray's own RAY_ADDRESS variable) names, or a
local instance started for the run. Each trial is one task with its CPU/GPU request, so Ray's
scheduler places trials where the resources are; a task whose worker dies fails only its trial,
and so does a task whose node dies (Ray's NodeDiedError): the experiment's retries run it again on
a live node. Ray's own task retries stay off, so that every attempt is the experiment's to count
and record.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nasforge.errors import ConfigError
from nasforge.experiment.executors import Handle, Outcome, QueuedExecutor, describe_exception


def _call(fn: Callable[..., Any], args: tuple) -> tuple[float, float, Any]:
    started = time.time()
    value = fn(*args)
    return started, time.time(), value


@dataclass
class _Task:
    handle: Handle
    started: float  # when it was submitted to Ray
    deadline: float | None
    timeout: float | None


def _resources_from_env() -> dict[str, float]:
    text = os.environ.get("NASFORGE_RAY_RESOURCES", "")
    try:
        resources = json.loads(text) if text else {}
    except json.JSONDecodeError:
        resources = None
    # CPUs and GPUs have their own settings (NASFORGE_RAY_CPUS/GPUS); Ray refuses them here
    if (
        not isinstance(resources, dict)
        or {"CPU", "GPU"} & resources.keys()
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in resources.values())
    ):
        raise ConfigError(
            "NASFORGE_RAY_RESOURCES",
            f'must be a JSON object of custom resource amounts, e.g. {{"gpu_a100": 1}}, got {text!r}',
        )
    return resources


class RayExecutor(QueuedExecutor):
    """At most `workers` trials in flight as Ray tasks.

    Args:
        workers: trials running at once.
        address: Ray cluster address ("auto", "ray://host:10001", ...); None starts a local Ray
            unless RAY_ADDRESS is set.
        cpus_per_trial, gpus_per_trial: each task's resource request (fractions allowed);
            defaults from NASFORGE_RAY_CPUS / NASFORGE_RAY_GPUS, else 1 CPU and no GPU.
        resources: custom Ray resources each task requests, e.g. {"nasforge_worker": 1} to run
            trials only on the nodes started with that resource (not on the head, whose memory
            and CPUs the cluster needs); default from NASFORGE_RAY_RESOURCES (a JSON object).
    """

    name = "ray"

    def __init__(
        self,
        workers: int = 2,
        address: str | None = None,
        cpus_per_trial: float | None = None,
        gpus_per_trial: float | None = None,
        resources: dict[str, float] | None = None,
    ):
        super().__init__(int(workers))
        try:
            import ray
        except ModuleNotFoundError:
            raise ConfigError("executor", "the ray executor needs Ray: pip install 'nasforge[ray]'") from None
        self._ray = ray
        address = address or os.environ.get("RAY_ADDRESS")
        if not ray.is_initialized():
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise ConfigError(
                    "ray-address", f"cannot connect to Ray at {address!r}: {describe_exception(exc)}"
                ) from None
        cpus = float(os.environ.get("NASFORGE_RAY_CPUS", 1) if cpus_per_trial is None else cpus_per_trial)
        gpus = float(os.environ.get("NASFORGE_RAY_GPUS", 0) if gpus_per_trial is None else gpus_per_trial)
        if resources is None:
            resources = _resources_from_env()
        self._remote = ray.remote(_call).options(num_cpus=cpus, num_gpus=gpus, resources=resources, max_retries=0)

    def _launch(self, handle: Handle, fn: Callable[..., Any], args: tuple, timeout: float | None) -> None:
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
                outcome = Outcome(
                    task.handle,
                    error=describe_exception(cause),
                    started=task.started,
                    finished=time.time(),
                    traceback=str(exc),
                )
            except (exceptions.WorkerCrashedError, exceptions.RayError) as exc:
                outcome = Outcome(
                    task.handle,
                    error=f"Ray worker failed: {describe_exception(exc)}",
                    started=task.started,
                    finished=time.time(),
                )
            self._done.append(outcome)

    def _gather(self, wait_for: float | None) -> None:
        ready, _ = self._ray.wait(list(self._running), num_returns=1, timeout=wait_for)
        self._collect(ready)

    def _kill(self, key: Any) -> None:
        self._ray.cancel(key, force=True)
        del self._running[key]

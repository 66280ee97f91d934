"""Toy evaluators the tests share: real behaviour with outcomes known in advance."""

from __future__ import annotations

import hashlib
import json
import time

from nasforge.evaluators.base import Evaluation, Evaluator


class Curves(Evaluator):
    """A child's validation accuracy after e epochs is q * (1 - 0.5 ** e), q a fixed function of
    its architecture, so the ranking at every rung is the ranking by q. Its "state" is the number
    of epochs trained; it honours a fidelity's deadline (`sleep` seconds per epoch) and can raise
    KeyboardInterrupt at its `interrupt_at`-th call, as a killed process would stop."""

    name = "curves"
    supports_fidelity = True

    def __init__(self, sleep: float = 0.0, interrupt_at: int | None = None):
        self.sleep = sleep
        self.interrupt_at = interrupt_at
        self.calls: list[tuple[str, int, int]] = []  # (key, epochs at start, epochs at end)

    @staticmethod
    def quality(space, arch) -> float:
        return int(hashlib.sha256(space.key(arch).encode()).hexdigest()[:8], 16) / 2**32

    def evaluate(self, space, arch, seed, fidelity=None):
        if self.interrupt_at is not None and len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt  # the process is killed with this job in flight
        horizon = (fidelity.horizon if fidelity else None) or 12
        target = (fidelity.epochs if fidelity else None) or horizon
        start = json.loads(fidelity.state)["epochs"] if fidelity and fidelity.state else 0
        epochs = start
        while epochs < target:
            if fidelity and fidelity.deadline and time.time() >= fidelity.deadline:
                break
            time.sleep(self.sleep)
            epochs += 1
        self.calls.append((space.key(arch), start, epochs))
        metrics = {"val_accuracy": self.quality(space, arch) * (1 - 0.5 ** epochs),
                   "epochs": float(epochs), "fidelity": epochs / horizon,
                   "wall_seconds": 1e-3 + self.sleep * (epochs - start)}
        if epochs < target:
            metrics["stopped"] = "deadline"
        if fidelity is None:
            return metrics
        return Evaluation(metrics, json.dumps({"epochs": epochs}).encode() if epochs < horizon else None)

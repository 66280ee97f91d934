"""A third-party nasforge plug-in as small as one can be: a space, a strategy and an evaluator.

It is not installed; tests/test_plugins.py puts it on PYTHONPATH next to a ``dist-info`` folder
whose entry_points.txt names this module in the ``nasforge.plugins`` group, which is all that
``pip install`` of a real plug-in package leaves behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from nasforge.errors import ArchitectureError
from nasforge.evaluators.base import EVALUATORS, Evaluator
from nasforge.spaces.base import SPACES, Decision, SearchSpace
from nasforge.strategies.base import STRATEGIES, AskTellStrategy, Result


@SPACES.register("dial")
class DialSpace(SearchSpace[tuple[int, ...]]):
    """Four dials of eight positions; an architecture is the tuple of positions."""

    name = "dial"

    def __init__(self, dials: int = 4, positions: int = 8):
        self.dials, self.positions = dials, positions

    @property
    def decisions(self) -> tuple[Decision, ...]:
        return tuple(Decision(f"dial{i}", self.positions) for i in range(self.dials))

    def encode(self, arch: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(arch)

    def decode(self, choices: Sequence[int]) -> tuple[int, ...]:
        return tuple(self.check_choices(choices))

    def validate(self, arch: tuple[int, ...]) -> tuple[int, ...]:
        return self.decode(arch)

    def to_json(self, arch: tuple[int, ...]) -> Any:
        return {"space": self.name, "dials": list(arch)}

    def from_json(self, data: Any) -> tuple[int, ...]:
        if not isinstance(data, dict) or not isinstance(data.get("dials"), list):
            raise ArchitectureError("dials", "expected {\"space\": \"dial\", \"dials\": [...]}")
        return self.decode(data["dials"])

    def key(self, arch: tuple[int, ...]) -> str:
        return "dial-" + "".join(map(str, arch))

    def mutate(self, arch: tuple[int, ...], rng: np.random.Generator) -> tuple[int, ...]:
        i = int(rng.integers(self.dials))
        turned = list(arch)
        turned[i] = (turned[i] + int(rng.choice([-1, 1]))) % self.positions
        return tuple(turned)

    def build(self, arch: tuple[int, ...], **network_config: Any) -> torch.nn.Module:
        width = 1 + sum(arch)
        return torch.nn.Sequential(torch.nn.Conv2d(network_config.get("in_channels", 3), width, 3),
                                   torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                   torch.nn.Linear(width, network_config.get("num_classes", 10)))


@STRATEGIES.register("hill")
class HillClimb(AskTellStrategy):
    """Turns one dial of the best architecture so far; starts from a random one."""

    name = "hill"

    def _propose(self) -> tuple[Any, Any]:
        best = self.best()
        return (self.space.sample(self.rng) if best is None else self.space.mutate(best[0], self.rng)), None

    def _learn(self, arch: Any, payload: Any, result: Result) -> None:
        pass  # the base class keeps the best result, which is all a hill climber needs


@EVALUATORS.register("target")
class DistanceToTarget(Evaluator):
    """Reward 1 at the target positions, less the further the dials are from it."""

    name = "target"

    def __init__(self, target: Sequence[int] = (5, 5, 5, 5)):
        self.target = tuple(int(t) for t in target)

    def evaluate(self, space: SearchSpace, arch: Any, seed: int = 0) -> dict[str, float]:
        distance = sum(abs(a - t) for a, t in zip(arch, self.target))
        return {"val_accuracy": 1.0 / (1.0 + distance)}

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "target": list(self.target)}

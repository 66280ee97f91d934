"""Random search: every ask is an independent sample of the space (`space.sample`)."""

from __future__ import annotations

from typing import Any

from nasforge.spaces.base import SearchSpace
from nasforge.strategies.base import STRATEGIES, AskTellStrategy, Result


@STRATEGIES.register("random")
class RandomSearch(AskTellStrategy):
    """Uniform random search (NASNet §4.4's RS baseline: every decision drawn uniformly).

    Results do not change what is asked; failures are simply ignored. `best()` gives the best
    successful result told so far.
    """

    name = "random"

    def __init__(self, space: SearchSpace, seed: int = 0):
        super().__init__(space, seed)

    def _propose(self) -> tuple[Any, Any]:
        return self.space.sample(self.rng), None

    def _learn(self, arch: Any, payload: Any, result: Result) -> None:
        pass

"""Regularized (aging) evolution, Real et al. 2019, "Regularized Evolution for Image Classifier
Architecture Search", Algorithm 1."""

from __future__ import annotations

from collections import deque
from typing import Any

from nasforge.errors import ConfigError
from nasforge.spaces.base import SearchSpace
from nasforge.strategies.base import AskTellStrategy, Result


class RegularizedEvolution(AskTellStrategy):
    """Tournament selection with aging.

    - Until `population_size` (P) successful results have been told, every ask is a random sample
      (`space.sample`); with asks outstanding this also holds for asks made before those results
      arrive, as in the paper's asynchronous workers.
    - After that, an ask draws `sample_size` (S) members of the population uniformly *with
      replacement*; the one with the highest reward (the earliest drawn on ties) is the parent and
      the ask is `space.mutate(parent, rng)`.
    - Each successful tell appends its architecture to the population and the history; when the
      population exceeds P, its oldest member is removed. Failed results join neither.

    Paper defaults P=100, S=25 (Real et al. 2019, CIFAR-10 experiments).
    """

    name = "evolution"

    def __init__(self, space: SearchSpace, seed: int = 0, population_size: int = 100, sample_size: int = 25):
        super().__init__(space, seed)
        if isinstance(population_size, bool) or not isinstance(population_size, int) or population_size < 1:
            raise ConfigError("population_size", f"must be an integer >= 1, got {population_size!r}")
        if isinstance(sample_size, bool) or not isinstance(sample_size, int) or sample_size < 1:
            raise ConfigError("sample_size", f"must be an integer >= 1, got {sample_size!r}")
        self.population_size = population_size
        self.sample_size = sample_size
        self.population: deque[tuple[Any, float]] = deque()
        self.history: list[tuple[Any, float]] = []

    def options(self) -> dict[str, Any]:
        return {"population_size": self.population_size, "sample_size": self.sample_size}

    def _propose(self) -> tuple[Any, Any]:
        if len(self.history) < self.population_size:
            return self.space.sample(self.rng), None
        members = self.rng.integers(len(self.population), size=self.sample_size).tolist()
        parent, parent_reward = self.population[members[0]]
        for i in members[1:]:
            arch, reward = self.population[i]
            if reward > parent_reward:
                parent, parent_reward = arch, reward
        return self.space.mutate(parent, self.rng), None

    def _learn(self, arch: Any, payload: Any, result: Result) -> None:
        if result.failed:
            return
        self.population.append((arch, result.reward))
        self.history.append((arch, result.reward))
        while len(self.population) > self.population_size:
            self.population.popleft()

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        to_json = self.space.to_json
        state.update(
            history=[[to_json(a), r] for a, r in self.history],
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        from_json = self.space.from_json
        self.history = [(from_json(a), float(r)) for a, r in state["history"]]
        # The population is always the last P successful results, i.e. the tail of the history.
        self.population = deque(self.history[-self.population_size:])

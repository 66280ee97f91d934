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
    - Each successful tell appends its architecture to the population; when the population
      exceeds P, its oldest member is removed. Failed results do not join.

    The state holds the population only (not the whole history), so that checkpointing after every
    tell costs the same at trial 10,000 as at trial 100.

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
        self.num_successes = 0
        self._population_json: deque[Any] = deque()  # the members' JSON, for cheap checkpoints

    def options(self) -> dict[str, Any]:
        return {"population_size": self.population_size, "sample_size": self.sample_size}

    def _propose(self) -> tuple[Any, Any]:
        if self.num_successes < self.population_size:
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
        self._population_json.append(self.space.to_json(arch))
        self.num_successes += 1
        while len(self.population) > self.population_size:
            self.population.popleft()
            self._population_json.popleft()

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(num_successes=self.num_successes,
                     population=[[j, r] for j, (_, r) in zip(self._population_json, self.population)])
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.num_successes = int(state["num_successes"])
        self._population_json = deque(j for j, _ in state["population"])
        self.population = deque((self.space.from_json(j), float(r)) for j, r in state["population"])

"""Regularized (aging) evolution, Real et al. 2019, "Regularized Evolution for Image Classifier
Architecture Search", Algorithm 1."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from nasforge.errors import ConfigError
from nasforge.spaces.base import SearchSpace
from nasforge.strategies.base import STRATEGIES, AskTellStrategy, Result


@STRATEGIES.register("evolution")
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
    - A proposal the loop turns down as already asked (a duplicate) does not join either; after
      every `DUPLICATES_PER_STEP` duplicates in a row the child is mutated one step further, so
      a population whose one-step neighbourhood was all asked still reaches new cells.

    The state holds the population only (not the whole history), so that checkpointing after every
    tell costs the same at trial 10,000 as at trial 100.

    P and S left unset are fitted to the budget the loop announces (`plan`): P = budget / 10
    within [10, 100] and S = ceil(P / 4), which gives the paper's P=100, S=25 (Real et al. 2019,
    CIFAR-10 experiments) from 1,000 queries on and NAS-Bench-201's P=10, S=3 (Dong & Yang 2020,
    their REA script) at 100, so evolution always has generations left to evolve; with no
    budget known (a time budget), the 200-query setting P=20, S=5. Only a P given explicitly can
    make evolution random search.
    The sizes in use are part of the checkpoint, so a resumed run keeps them whatever its budget.
    """

    name = "evolution"
    DUPLICATES_PER_STEP = 10

    def __init__(
        self, space: SearchSpace, seed: int = 0, population_size: int | None = None, sample_size: int | None = None
    ):
        super().__init__(space, seed)
        for name, value in (("population_size", population_size), ("sample_size", sample_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(name, f"must be an integer >= 1 (or unset: fitted to the budget), got {value!r}")
        self._given = {"population_size": population_size, "sample_size": sample_size}
        self.population_size, self.sample_size = self.sizes_for(None, population_size, sample_size)
        self.population: deque[tuple[Any, float]] = deque()
        self.num_successes = 0
        self.duplicate_streak = 0
        self._population_json: deque[Any] = deque()  # the members' JSON, for cheap checkpoints

    @staticmethod
    def sizes_for(
        budget: int | None, population_size: int | None = None, sample_size: int | None = None
    ) -> tuple[int, int]:
        """(P, S) for a budget of `budget` queries (None: unknown), keeping the sizes given."""
        if population_size is None:
            population_size = 20 if budget is None else min(100, max(10, int(budget) // 10))
        if sample_size is None:
            sample_size = -(-population_size // 4)
        return population_size, sample_size

    def plan(self, budget: int | None) -> None:
        if self.num_asked == 0:
            self.population_size, self.sample_size = self.sizes_for(budget, **self._given)

    def options(self) -> dict[str, Any]:
        return dict(self._given)

    def _propose(self) -> tuple[Any, Any]:
        if self.num_successes < self.population_size:
            return self.space.sample(self.rng), None
        members = self.rng.integers(len(self.population), size=self.sample_size).tolist()
        parent, parent_reward = self.population[members[0]]
        for i in members[1:]:
            arch, reward = self.population[i]
            if reward > parent_reward:
                parent, parent_reward = arch, reward
        child = self.space.mutate(parent, self.rng)
        for _ in range(self.duplicate_streak // self.DUPLICATES_PER_STEP):
            child = self.space.mutate(child, self.rng)
        return child, None

    def _learn(self, arch: Any, payload: Any, result: Result) -> None:
        self.duplicate_streak = self.duplicate_streak + 1 if result.duplicate else 0
        if result.failed:
            return
        assert result.reward is not None  # not failed
        self.population.append((arch, result.reward))
        self._population_json.append(self.space.to_json(arch))
        self.num_successes += 1
        while len(self.population) > self.population_size:
            self.population.popleft()
            self._population_json.popleft()

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            population_size=self.population_size,
            sample_size=self.sample_size,
            num_successes=self.num_successes,
            duplicate_streak=self.duplicate_streak,
            population=[[j, r] for j, (_, r) in zip(self._population_json, self.population)],
        )
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.population_size = int(state.get("population_size", self.population_size))
        self.sample_size = int(state.get("sample_size", self.sample_size))
        self.num_successes = int(state["num_successes"])
        self.duplicate_streak = int(state.get("duplicate_streak", 0))
        self._population_json = deque(j for j, _ in state["population"])
        self.population = deque((self.space.from_json(j), float(r)) for j, r in state["population"])

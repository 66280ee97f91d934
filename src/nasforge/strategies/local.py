"""Local search: hill climbing over one-step neighbourhoods, with random restarts.

White, Nolen and Savani, "Exploring the Loss Landscape in Neural Architecture Search" (UAI 2021)
found this simple climber competitive with far more elaborate strategies on cell-based benchmarks,
because their landscapes are locally smooth under one-decision changes. It is a useful yardstick:
a strategy that cannot beat it is not learning more than the landscape's smoothness.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nasforge.errors import ArchitectureError, ConfigError
from nasforge.spaces.base import SearchSpace
from nasforge.strategies.base import STRATEGIES, AskTellStrategy, Result

#: what an ask was, kept as its payload: it decides what the tell may start or move
_INIT, _RANDOM, _RESTART, _NEIGHBOUR = "init", "random", "restart", "neighbour"


@STRATEGIES.register("local")
class LocalSearch(AskTellStrategy):
    """Hill climbing with first improvement and random restarts (White et al., UAI 2021).

    - The first `num_init` asks are random samples; the climb starts at the best result so far.
    - The centre's neighbourhood is every architecture one decision away from it (each decision
      set to each of its other options), deduplicated by canonical key because isomorphic
      neighbours would cost an evaluation for nothing, and proposed in a shuffled order so that
      the climb is not biased towards the first decisions.
    - The first neighbour told with a higher reward than the centre becomes the new centre (first
      improvement: with expensive evaluations, moving at once saves the rest of the neighbourhood).
    - Once the whole neighbourhood was told without improvement (a local optimum), the climb
      restarts from a fresh random sample.

    Every successful result is remembered (key -> reward), so a neighbour met before is never
    asked again; its known reward is used at once, which may move the centre without an
    evaluation. Failed results, and proposals the search loop turned down as already asked
    (`Result.duplicate`), are skipped: nothing is learned from them and they are not proposed again.

    Asynchronous tells: asks come from the current centre's queue; any successful result that
    beats the centre (a late neighbour of an earlier centre, a late initial sample) moves it there,
    since it is the better place to climb from. While the last neighbours are outstanding, asks are
    random samples rather than idle workers. Once every architecture is known (tiny spaces) asks
    are random samples, repeats included.
    """

    name = "local"

    #: draws of `space.sample` tried for an architecture this search has not met yet
    FRESH_TRIES = 100

    def __init__(self, space: SearchSpace, seed: int = 0, num_init: int = 10):
        super().__init__(space, seed)
        if isinstance(num_init, bool) or not isinstance(num_init, int) or num_init < 0:
            raise ConfigError("num_init", f"must be an integer >= 0, got {num_init!r}")
        self.num_init = num_init
        self.memory: dict[str, float] = {}  # key -> reward of every successful result
        self.dead: dict[str, None] = {}  # keys that failed or were turned down (an ordered set)
        # (choices, key, reward) of the climb's current position; None before a climb or after a restart
        self.centre: tuple[tuple[int, ...], str, float] | None = None
        self.queue: list[tuple[tuple[int, ...], str]] = []  # neighbours still to ask, popped from the end
        self.awaited: dict[str, None] = {}  # the centre's neighbours not told yet (asked or not)
        self.climbed = False  # a climb has started: a lost centre means a restart, not the first climb
        self.num_moves = 0  # centres taken, each climb's start included
        self.num_restarts = 0  # local optima left for a fresh random sample
        self._outstanding: dict[str, int] = {}  # key -> asks of it waiting for a tell

    def options(self) -> dict[str, Any]:
        return {"num_init": self.num_init}

    # -- the neighbourhood ---------------------------------------------------------------------------
    def neighbours(self, arch: Any) -> list[Any]:
        """The architectures one decision away from `arch`, one per canonical key, unshuffled."""
        choices = tuple(self.space.encode(arch))
        return [self.space.decode(c) for c, _ in self._neighbourhood(choices, self.space.key(arch))]

    def _neighbourhood(self, choices: tuple[int, ...], key: str) -> list[tuple[tuple[int, ...], str]]:
        seen = {key}
        out = []
        for i, decision in enumerate(self.space.decisions):
            for option in range(decision.num_options):
                if option == choices[i]:
                    continue
                changed = choices[:i] + (option,) + choices[i + 1 :]
                try:
                    k = self.space.key(self.space.decode(changed))
                except ArchitectureError:  # a space may forbid some combinations of options
                    continue
                if k not in seen:
                    seen.add(k)
                    out.append((changed, k))
        return out

    def _climb_from(self, choices: tuple[int, ...], key: str, reward: float) -> None:
        """Make `choices` the centre; a neighbour already known to be better moves it on at once."""
        self.climbed = True
        while True:
            self.centre = (choices, key, reward)
            self.num_moves += 1
            neighbourhood = self._neighbourhood(choices, key)
            queue: list[tuple[tuple[int, ...], str]] = []
            awaited: dict[str, None] = {}
            better = None
            for i in self.rng.permutation(len(neighbourhood)).tolist():
                c, k = neighbourhood[i]
                known = self.memory.get(k)
                if known is not None:
                    if known > reward:
                        better = (c, k, known)
                        break
                elif k not in self.dead:
                    awaited[k] = None
                    if k not in self._outstanding:  # already asked: its tell will come anyway
                        queue.append((c, k))
            if better is None:
                break
            choices, key, reward = better
        queue.reverse()  # popped from the end: asked in the shuffled order
        self.queue, self.awaited = queue, awaited

    def _start(self) -> None:
        """The first climb starts at the best result so far."""
        best = self.best()
        assert best is not None  # called only once a result has succeeded
        arch, reward = best
        self._climb_from(tuple(self.space.encode(arch)), self.space.key(arch), reward)

    # -- ask / tell ----------------------------------------------------------------------------------------
    def _fresh(self) -> tuple[Any, str]:
        """A random sample not met yet when one turns up within `FRESH_TRIES` draws, else any."""
        for _ in range(self.FRESH_TRIES):
            arch = self.space.sample(self.rng)
            key = self.space.key(arch)
            if key not in self.memory and key not in self.dead and key not in self._outstanding:
                break
        return arch, key

    def _propose(self) -> tuple[Any, Any]:
        if self.num_asked < self.num_init:
            arch, key, kind = *self._fresh(), _INIT
        else:
            if self.centre is None and not self.climbed and self.best() is not None:
                self._start()
            arch, key, kind = self._next()
        self._outstanding[key] = self._outstanding.get(key, 0) + 1
        return arch, kind

    def _next(self) -> tuple[Any, str, str]:
        if self.centre is None:  # no result to climb from yet, or restarting
            return *self._fresh(), _RESTART if self.climbed else _RANDOM
        while self.queue:
            choices, key = self.queue.pop()
            # Asked or told since it was queued (as another centre's neighbour, or a random sample).
            if key not in self.memory and key not in self.dead and key not in self._outstanding:
                return self.space.decode(choices), key, _NEIGHBOUR
        if self.awaited:  # the last neighbours are being evaluated: keep the worker busy
            return *self._fresh(), _RANDOM
        self.centre = None  # a local optimum
        self.num_restarts += 1
        return *self._fresh(), _RESTART

    def _learn(self, arch: Any, payload: Any, result: Result) -> None:
        key = self.space.key(arch)
        left = self._outstanding.pop(key) - 1
        if left:
            self._outstanding[key] = left
        self.awaited.pop(key, None)
        if result.failed:  # a failure or a turned-down duplicate: skipped, never proposed again
            if key not in self.memory:
                self.dead[key] = None
            return
        assert result.reward is not None  # not failed
        reward = float(result.reward)
        self.memory[key] = reward
        self.dead.pop(key, None)
        if self.centre is not None:
            if reward > self.centre[2]:
                self._climb_from(tuple(self.space.encode(arch)), key, reward)
        elif self.num_asked >= self.num_init:
            if not self.climbed:
                self._start()
            elif payload == _RESTART:
                self._climb_from(tuple(self.space.encode(arch)), key, reward)

    # -- checkpoints -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            memory=dict(self.memory),
            dead=list(self.dead),
            centre=None if self.centre is None else [list(self.centre[0]), self.centre[1], self.centre[2]],
            queue=[[list(c), k] for c, k in self.queue],
            awaited=list(self.awaited),
            climbed=self.climbed,
            num_moves=self.num_moves,
            num_restarts=self.num_restarts,
        )
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.memory = {str(k): float(r) for k, r in state["memory"].items()}
        self.dead = dict.fromkeys(str(k) for k in state["dead"])
        centre = state["centre"]
        self.centre = None if centre is None else (tuple(map(int, centre[0])), str(centre[1]), float(centre[2]))
        self.queue = [(tuple(map(int, c)), str(k)) for c, k in state["queue"]]
        self.awaited = dict.fromkeys(str(k) for k in state["awaited"])
        self.climbed = bool(state["climbed"])
        self.num_moves = int(state["num_moves"])
        self.num_restarts = int(state["num_restarts"])
        self._outstanding = {}
        for key in self.pending.keys():
            self._outstanding[key] = self._outstanding.get(key, 0) + 1

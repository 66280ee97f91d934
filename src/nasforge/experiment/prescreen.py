"""A training-free pre-screen in front of an expensive evaluator, for every strategy.

For each trial, the experiment asks its strategy for `candidates` proposals, scores them all with
a cheap evaluator (a zero-cost score, typically: about a second each where training a child
takes minutes), evaluates only the best-scored one, and tells the strategy that the others were
screened out. A screened-out proposal is told as a failure (``Result.failure``), which every
strategy already handles without learning a reward from it: regularized evolution adds no member,
PPO/REINFORCE leave it out of their policy update, random search ignores it. So evolution's
mutants, PPO's samples and random search's draws are all filtered the same way, and the strategy
keeps learning only from real evaluations. This is the "score many, train few" pattern of
training-free NAS (Mellor et al., 2021, section 5; Abdelfattah et al., 2021, warm-up and move
proposal).

Scores are cached by canonical key for the run; the score of the cell that is evaluated is
recorded with its trial as metric "prescreen_score". Asks, scores and tells happen before the
trial is stored, and the score is a function of the architecture and the run seed alone, so a
resumed run screens exactly as an uninterrupted one.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

from nasforge.errors import ConfigError, NasforgeError
from nasforge.evaluators.base import ArchitectureEvaluator
from nasforge.registry import describe_component
from nasforge.spaces.base import SearchSpace


class PreScreen:
    """Score proposals with `evaluator` and keep the best of `candidates`."""

    def __init__(self, evaluator: ArchitectureEvaluator, candidates: int = 10, seed: int = 0):
        if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
            raise ConfigError("prescreen.candidates", f"must be a positive integer, got {candidates!r}")
        self.evaluator = evaluator
        self.candidates = candidates
        self.seed = seed
        self.metric = getattr(evaluator, "reward_metric", "val_accuracy")
        self._scores: dict[str, float | None] = {}

    @property
    def name(self) -> str:
        return getattr(self.evaluator, "name", type(self.evaluator).__name__)

    def prepare(self) -> None:
        prepare = getattr(self.evaluator, "prepare", None)
        if callable(prepare):
            prepare()

    def score(self, space: SearchSpace, arch: Any, key: str) -> float | None:
        """The cheap score of `arch` (None where it cannot be scored: such a cell is picked last)."""
        if key not in self._scores:
            seed = (self.seed * 1_000_003 + zlib.crc32(key.encode())) % 2**31
            try:
                value = float(self.evaluator.evaluate(space, arch, seed)[self.metric])
            except NasforgeError:
                raise  # a configuration mistake, not a property of this cell
            except Exception:  # noqa: BLE001 - the cell has no score; the search goes on
                value = math.nan
            self._scores[key] = value if math.isfinite(value) else None
        return self._scores[key]

    def choose(self, space: SearchSpace, archs: list[Any]) -> tuple[int, list[float | None]]:
        """Index of the best-scored of `archs` (the first among equals) and every score."""
        scores = [self.score(space, a, space.key(a)) for a in archs]
        best = max(range(len(archs)), key=lambda i: (scores[i] is not None, scores[i] or 0.0, -i))
        return best, scores

    def config(self) -> dict[str, Any]:
        return {"evaluator": describe_component(self.evaluator), "candidates": self.candidates}


__all__ = ["PreScreen"]

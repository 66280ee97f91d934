"""Grid search: every architecture of a space (or of a given list, or of given values per decision),
each proposed once, in a fixed order."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from nasforge.errors import ArchitectureError, ConfigError
from nasforge.spaces.base import SearchSpace
from nasforge.strategies.base import STRATEGIES, AskTellStrategy, Exhausted, Result

_END = object()


@STRATEGIES.register("grid")
class GridSearch(AskTellStrategy):
    """Enumerate architectures in a fixed order; `ask` raises `Exhausted` when none are left.

    The grid is one of
    - the space's full enumeration (`space.iter_all()`, decision-sequence order) — the default;
    - `architectures`: an explicit list (architecture objects or their JSON), in the given order;
    - `values`: a mapping from decision (name or index) to the option indices to try; decisions not
      named take all their options. The product is enumerated like `iter_all` (last decision
      fastest).

    With `deduplicate=True` (default) an architecture whose canonical key was already proposed is
    skipped. Results do not change the order; failures are ignored. `seed` is accepted for a uniform
    constructor and unused.
    """

    name = "grid"

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        architectures: Iterable[Any] | None = None,
        values: Mapping[str | int, Sequence[int]] | None = None,
        deduplicate: bool = True,
    ):
        super().__init__(space, seed)
        if architectures is not None and values is not None:
            raise ConfigError("grid", "give either 'architectures' or 'values', not both")
        self.deduplicate = bool(deduplicate)
        self._architectures = (
            None if architectures is None else [self._parse(a, i) for i, a in enumerate(architectures)]
        )
        self._values = None if values is None else self._parse_values(values)
        self._restart(0)

    # -- configuration -----------------------------------------------------------------------------
    def _parse(self, arch: Any, index: int) -> Any:
        try:
            return self.space.validate(arch)
        except ArchitectureError:
            pass
        try:
            return self.space.from_json(arch)
        except ArchitectureError as exc:
            raise ConfigError(f"architectures[{index}]", str(exc)) from None

    def _parse_values(self, values: Mapping[str | int, Sequence[int]]) -> list[list[int]]:
        decisions = self.space.decisions
        names = [d.name for d in decisions]
        grid = [list(range(d.num_options)) for d in decisions]
        for where, options in values.items():
            if isinstance(where, int) and not isinstance(where, bool) and 0 <= where < len(decisions):
                i = where
            elif where in names:
                i = names.index(where)
            else:
                raise ConfigError("values", f"unknown decision {where!r}", names)
            opts = list(options)
            n = decisions[i].num_options
            if not opts or any(isinstance(o, bool) or not isinstance(o, int) or not 0 <= o < n for o in opts):
                raise ConfigError(
                    f"values[{names[i]}]", f"expected a non-empty list of option indices, got {opts!r}", f"0..{n - 1}"
                )
            grid[i] = list(dict.fromkeys(opts))
        return grid

    @property
    def total(self) -> int:
        """Number of entries in the grid before deduplication."""
        if self._architectures is not None:
            return len(self._architectures)
        if self._values is not None:
            total = 1
            for opts in self._values:
                total *= len(opts)
            return total
        return self.space.size()

    # -- enumeration -------------------------------------------------------------------------------------
    def _source(self) -> Iterator[Any]:
        if self._architectures is not None:
            return iter(self._architectures)
        if self._values is not None:
            return (self.space.decode(c) for c in itertools.product(*self._values))
        return iter(self.space.iter_all())

    def _restart(self, position: int) -> None:
        """Rebuild the enumeration with the first `position` source entries already proposed."""
        self._iter = self._source()
        self._seen: set[str] = set()
        self._position = 0  # source entries consumed up to and including the last proposed one
        self._peeked: tuple[Any, int] | None = None
        for arch in itertools.islice(self._iter, position):
            self._position += 1
            if self.deduplicate:
                self._seen.add(self.space.key(arch))
        if self._position != position:
            raise ConfigError("grid", f"the checkpoint is at entry {position} but this grid has only {self._position}")

    def _peek(self) -> Any:
        if self._peeked is None:
            consumed = self._position
            arch: Any = _END
            for candidate in self._iter:
                consumed += 1
                if self.deduplicate and self.space.key(candidate) in self._seen:
                    continue
                arch = candidate
                break
            self._peeked = (arch, consumed)
        return self._peeked[0]

    @property
    def exhausted(self) -> bool:
        """True when every architecture of the grid has been proposed (the next ask raises)."""
        return self._peek() is _END

    def options(self) -> dict[str, Any]:
        source = (
            "architectures" if self._architectures is not None else "values" if self._values is not None else "space"
        )
        return {"source": source, "total": self.total, "deduplicate": self.deduplicate}

    def _propose(self) -> tuple[Any, Any]:
        arch = self._peek()
        if arch is _END:
            raise Exhausted(f"grid search: all {self.num_asked} architectures of the grid have been proposed")
        assert self._peeked is not None  # set by _peek
        self._position = self._peeked[1]
        self._peeked = None
        if self.deduplicate:
            self._seen.add(self.space.key(arch))
        return arch, None

    def _learn(self, arch: Any, payload: Any, result: Result) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(position=self._position)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._restart(int(state["position"]))

"""The contract every search space fulfils.

Strategies see a space only through its *decision sequence*: a fixed-length list of categorical
steps, each with its own number of options. That is what lets one LSTM controller, one random
sampler and one grid enumerator work on NASNet cells, NAS-Bench-201 cells or MBConv stage lists
alike. Everything else here (validation, canonical keys, JSON) is what the store and the
executors need to treat architectures as plain values.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, TypeVar

import numpy as np

from nasforge.errors import ArchitectureError
from nasforge.registry import Registry

A = TypeVar("A")


#: space name (the "space" field of an architecture's JSON) -> factory of the space; a space module
#: registers its class with ``@SPACES.register("name")``.
SPACES: Registry[SearchSpace[Any]] = Registry("space")


@dataclass(frozen=True)
class Decision:
    """One categorical step of a space's decision sequence."""

    name: str
    num_options: int
    labels: tuple[str, ...] = ()

    def label(self, index: int) -> str:
        return self.labels[index] if self.labels else str(index)


class SearchSpace(ABC, Generic[A]):
    """A set of architectures with the operations that search strategies need.

    Besides the operations, a space says what the rest of nasforge needs to know about it, so that
    the CLI, the pipeline and the scaling code ask the space instead of comparing names.
    """

    name: str = "space"
    #: the evaluator a search of this space uses unless told otherwise ("proxy" trains children;
    #: a space with a tabulated benchmark names its table's evaluator)
    default_evaluator: str = "proxy"
    #: `build` options of the child network a proxy search trains by default: small enough for a
    #: search on a few CPU cores (a user's --network-option overrides each)
    proxy_network: Mapping[str, Any] = MappingProxyType({})
    #: the `nasforge.scaling.FAMILIES` entry that scales this space's architectures into a model
    #: family (None: they have no scaling rule, so `nasforge run` and `nasforge scale` refuse them)
    scaling_family: str | None = None
    #: where a CSV table of results keeps the architecture, in order of preference: a column name,
    #: or a tuple of columns whose values together are the JSON list `from_json` reads
    table_columns: tuple[str | tuple[str, ...], ...] = ("arch", "arch_str", "architecture")
    #: the picture the run report draws of an architecture: "cells" (a NASNet cell pair),
    #: "stages" (a list of stages: the rows of `stage_rows`) or None (the report shows the JSON)
    drawing: str | None = None

    @property
    @abstractmethod
    def decisions(self) -> tuple[Decision, ...]:
        """The flat sequence of categorical steps that describes one architecture."""

    @abstractmethod
    def encode(self, arch: A) -> tuple[int, ...]:
        """Architecture -> one option index per decision."""

    @abstractmethod
    def decode(self, choices: Sequence[int]) -> A:
        """Option indices -> architecture (raises `ArchitectureError` on a bad sequence)."""

    @abstractmethod
    def validate(self, arch: A) -> A:
        """Return `arch` unchanged if it belongs to the space, else raise `ArchitectureError`."""

    @abstractmethod
    def to_json(self, arch: A) -> Any:
        """A JSON-serialisable value from which `from_json` rebuilds the same architecture."""

    @abstractmethod
    def from_json(self, data: Any) -> A:
        """Parse and validate; errors name the offending field."""

    @abstractmethod
    def key(self, arch: A) -> str:
        """Canonical key: equal for encodings that compute the same function."""

    @abstractmethod
    def mutate(self, arch: A, rng: np.random.Generator) -> A:
        """A small random change, as regularized evolution applies it."""

    @abstractmethod
    def build(self, arch: A, **network_config: Any):
        """Build a trainable `torch.nn.Module` for `arch`."""

    def stage_rows(self, arch: A) -> list[dict[str, Any]] | None:
        """The stages of `arch` as the "stages" picture draws them: one dict per stage, first to last,
        with "operator" (the text in its block), "repeats" (blocks), "channels" (output width),
        "stride" and "kernel" (None where they do not apply); any further keys are more columns of
        the stage table, in the order the first row lists them.

        None (the default): the picture reads the architecture's own `stages`, each with kernel,
        expansion, se_ratio, repeats and channels (an MBConv stage list), and the strides from this
        space's `strides()` where the stages keep none.
        """
        return None

    def sample(self, rng: np.random.Generator) -> A:
        """Uniform over each decision; spaces whose uniform distribution differs override it."""
        return self.decode([int(rng.integers(d.num_options)) for d in self.decisions])

    def size(self) -> int:
        """Number of decision sequences (an upper bound on distinct architectures)."""
        total = 1
        for d in self.decisions:
            total *= d.num_options
        return total

    def iter_all(self) -> Iterator[A]:
        """Every architecture, in decision-sequence order (only sensible for small spaces)."""
        sizes = [d.num_options for d in self.decisions]
        for flat in range(self.size()):
            choices = []
            for n in reversed(sizes):
                flat, r = divmod(flat, n)
                choices.append(r)
            yield self.decode(choices[::-1])

    def check_choices(self, choices: Sequence[int]) -> list[int]:
        """Validate a decision sequence's length and ranges; shared by every `decode`."""
        decisions = self.decisions
        if len(choices) != len(decisions):
            raise ArchitectureError("choices", f"expected {len(decisions)} decisions, got {len(choices)}")
        out = []
        for d, c in zip(decisions, choices):
            if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
                raise ArchitectureError(d.name, f"choice must be an integer, got {c!r}")
            if not 0 <= int(c) < d.num_options:
                raise ArchitectureError(d.name, f"option {c} out of range", f"0..{d.num_options - 1}")
            out.append(int(c))
        return out

    def from_table_cell(self, cell: str) -> A:
        """An architecture from one cell of a results table: JSON where it looks like JSON, else
        the text as it is (the compact forms `from_json` accepts)."""
        text = cell.strip()
        if text[:1] in "{[":
            try:
                return self.from_json(json.loads(text))
            except json.JSONDecodeError:
                pass
        return self.from_json(text)

    def dumps(self, arch: A) -> str:
        return json.dumps(self.to_json(arch), sort_keys=True)

    def loads(self, text: str) -> A:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArchitectureError("json", f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
        return self.from_json(data)


def unwrap_json(data: Any, space: str, expected: str) -> Any:
    """The payload of `{"space": NAME, "arch": PAYLOAD}`, or `data` itself when it is not a dict.

    Spaces whose architectures have a compact form (a benchmark string, a digit code) accept
    both the wrapped and the bare form; `expected` describes the payload for the error message.
    """
    if not isinstance(data, dict):
        return data
    if data.get("space", space) != space:
        raise ArchitectureError("space", f"expected {space!r}, got {data.get('space')!r}", [space])
    unknown = sorted(set(data) - {"space", "arch"})
    if unknown:
        raise ArchitectureError(unknown[0], "unknown field", ["space", "arch"])
    if "arch" not in data:
        raise ArchitectureError("arch", f"missing; expected {expected}")
    return data["arch"]


def stage_objects(data: Any, fields: Sequence[str], num_stages: int) -> list[dict[str, Any]]:
    """The ``"stages"`` list of a stage-list architecture's JSON, each stage an object with exactly
    `fields`; errors name the stage and the field (values are the space's to check)."""
    raw = data.get("stages")
    if not isinstance(raw, list):
        raise ArchitectureError("stages", f"expected a list of {num_stages} stage objects")
    for i, st in enumerate(raw):
        if not isinstance(st, dict):
            raise ArchitectureError(f"stages[{i}]", "expected an object with fields " + ", ".join(fields))
        missing = [f for f in fields if f not in st]
        if missing:
            raise ArchitectureError(f"stages[{i}].{missing[0]}", "missing", list(fields))
        extra = [f for f in st if f not in fields]
        if extra:
            raise ArchitectureError(f"stages[{i}].{extra[0]}", "unknown field", list(fields))
    return raw

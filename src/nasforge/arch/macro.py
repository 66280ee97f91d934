"""NAS-Bench-Macro architectures as values (Su et al., arXiv:2103.11922): one block per layer, written
as the benchmark's 8-digit code (layer 1 first; 0 identity, 1 MB3_K3, 2 MB6_K5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nasforge.errors import ArchitectureError

MACRO_OPS: tuple[str, ...] = ("identity", "MB3_K3", "MB6_K5")
#: (expansion, kernel) of the two inverted-residual choices.
BLOCKS: dict[str, tuple[int, int]] = {"MB3_K3": (3, 3), "MB6_K5": (6, 5)}
STAGE_LAYERS: tuple[int, ...] = (2, 3, 3)
NUM_LAYERS = sum(STAGE_LAYERS)


@dataclass(frozen=True)
class MacroArchitecture:
    """One block name per layer, layer 1 first."""

    layers: tuple[str, ...]

    @property
    def code(self) -> str:
        """The benchmark's digit code (unknown block names show as '?')."""
        return "".join(str(MACRO_OPS.index(op)) if op in MACRO_OPS else "?" for op in self.layers)

    @classmethod
    def from_code(cls, code: str) -> MacroArchitecture:
        return cls(tuple(parse_code(code)))

    def __str__(self) -> str:
        return self.code


def parse_code(code: Any) -> list[str]:
    """Block names of an 8-digit code; errors name the layer and the allowed digits."""
    if isinstance(code, int) and not isinstance(code, bool):
        raise ArchitectureError(
            "arch",
            f"expected the code as a string of {NUM_LAYERS} digits, got the "
            f"number {code}; a number loses leading zeros (read table columns "
            f"as strings)",
        )
    if not isinstance(code, str):
        raise ArchitectureError("arch", f"expected a string of {NUM_LAYERS} digits, got {code!r}")
    code = code.strip()
    if len(code) != NUM_LAYERS:
        hint = " (leading zeros lost?)" if code.isdigit() and len(code) < NUM_LAYERS else ""
        raise ArchitectureError("arch", f"expected {NUM_LAYERS} digits, got {len(code)} in {code!r}{hint}")
    ops = []
    for i, ch in enumerate(code):
        if ch not in "012":
            raise ArchitectureError(
                f"layers[{i}]", f"invalid digit {ch!r} in {code!r}", [f"{d}={op}" for d, op in enumerate(MACRO_OPS)]
            )
        ops.append(MACRO_OPS[int(ch)])
    return ops


def stage_of_layers() -> list[tuple[int, bool]]:
    """(stage index, is first layer of its stage) for each of the eight layers."""
    out = []
    for s, n in enumerate(STAGE_LAYERS):
        out += [(s, k == 0) for k in range(n)]
    return out


__all__ = ["BLOCKS", "MACRO_OPS", "MacroArchitecture", "NUM_LAYERS", "STAGE_LAYERS", "parse_code", "stage_of_layers"]

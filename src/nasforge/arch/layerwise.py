"""Layer-wise architectures as values (Zoph & Le, ICLR 2017, section 4.1): every layer's kernel, filters,
stride and the earlier layers it reads."""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral


@dataclass(frozen=True)
class Layer:
    """One conv layer: kernel `height` x `width`, `filters` outputs, `stride`, and the earlier
    layers (0-based) whose outputs it concatenates as input; () means the image."""

    height: int
    width: int
    filters: int
    stride: int = 1
    inputs: tuple[int, ...] = ()

    def __post_init__(self):
        inputs = self.inputs
        if isinstance(inputs, (list, tuple)) and all(
            isinstance(i, Integral) and not isinstance(i, bool)
            for i in inputs  # numpy ints too
        ):
            object.__setattr__(self, "inputs", tuple(sorted(int(i) for i in inputs)))


@dataclass(frozen=True)
class LayerwiseArchitecture:
    layers: tuple[Layer, ...]

    @property
    def depth(self) -> int:
        return len(self.layers)

    def output_layers(self) -> tuple[int, ...]:
        """Layers that no later layer consumes: the classifier concatenates these."""
        used = {i for layer in self.layers for i in layer.inputs}
        return tuple(i for i in range(len(self.layers)) if i not in used)


__all__ = ["Layer", "LayerwiseArchitecture"]

"""The layer-wise space of the original NAS paper (Zoph & Le, ICLR 2017, §4.1).

Every layer of the network is searched on its own, which is what cells later avoided: per layer
the controller picks a filter height and width in {1, 3, 5, 7}, a number of filters in
{24, 36, 48, 64} (optionally a stride), and, for each earlier layer, whether that layer's output
is one of this layer's inputs (the paper's anchor points: layer N has N-1 sigmoids). The number
of decisions therefore grows with `depth`: 3 per layer (4 with strides) plus depth(depth-1)/2
skip bits.

Wiring follows the paper:

* a layer's input is the channel concatenation of the outputs it chose; a layer that chose none
  reads the image;
* maps of different sizes (only when strides are searched) are zero-padded, centred, to the
  largest among them before concatenation;
* the classifier reads the concatenation of every layer output that no later layer consumed
  (the last layer's always is one), through global average pooling and a linear layer.

Each layer is conv (kh x kw, 'same' padding, no bias) -> BN -> ReLU.

The architecture JSON is ``{"space": "layerwise", "layers": [{"height": 3, "width": 5,
"filters": 36, "stride": 1, "inputs": [0, 2]}, ...]}`` with 0-based earlier-layer indices.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from nasforge.arch.layerwise import Layer, LayerwiseArchitecture
from nasforge.errors import ArchitectureError, ConfigError
from nasforge.models.layerwise import LayerwiseNetwork
from nasforge.spaces.base import SPACES, Decision, SearchSpace

KERNEL_SIZES: tuple[int, ...] = (1, 3, 5, 7)
FILTERS: tuple[int, ...] = (24, 36, 48, 64)
SKIP_LABELS: tuple[str, ...] = ("no", "yes")
LAYER_FIELDS: tuple[str, ...] = ("height", "width", "filters", "stride", "inputs")


def _values(name: str, values: Sequence[int]) -> tuple[int, ...]:
    values = tuple(values)
    if not values:
        raise ConfigError(name, "needs at least one value")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(name, f"values must be positive integers, got {v!r}")
    if len(set(values)) != len(values):
        raise ConfigError(name, f"repeated value in {list(values)}")
    return values


@SPACES.register("layerwise")
class LayerwiseSpace(SearchSpace[LayerwiseArchitecture]):
    """Zoph & Le's CIFAR-10 space with `depth` layers.

    Decision order, per layer i: height, width, filters, stride (only when more than one stride
    is allowed), then one skip bit per earlier layer j = 0..i-1 ("yes" = layer j feeds layer i).
    """

    name = "layerwise"

    def __init__(
        self,
        depth: int = 6,
        heights: Sequence[int] = KERNEL_SIZES,
        widths: Sequence[int] = KERNEL_SIZES,
        filters: Sequence[int] = FILTERS,
        strides: Sequence[int] = (1,),
    ):
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ConfigError("depth", f"must be a positive integer, got {depth!r}")
        self.depth = depth
        self.heights = _values("heights", heights)
        self.widths = _values("widths", widths)
        self.filters = _values("filters", filters)
        self.strides = _values("strides", strides)
        steps: list[Decision] = []
        for i in range(depth):
            p = f"layers[{i}]"
            steps += [
                Decision(f"{p}.height", len(self.heights), tuple(map(str, self.heights))),
                Decision(f"{p}.width", len(self.widths), tuple(map(str, self.widths))),
                Decision(f"{p}.filters", len(self.filters), tuple(map(str, self.filters))),
            ]
            if len(self.strides) > 1:
                steps.append(Decision(f"{p}.stride", len(self.strides), tuple(map(str, self.strides))))
            steps += [Decision(f"{p}.skip[{j}]", 2, SKIP_LABELS) for j in range(i)]
        self._decisions = tuple(steps)

    def __repr__(self) -> str:
        return (
            f"LayerwiseSpace(depth={self.depth}, heights={list(self.heights)}, widths={list(self.widths)}, "
            f"filters={list(self.filters)}, strides={list(self.strides)})"
        )

    @classmethod
    def for_json(cls, data: Any) -> LayerwiseSpace:
        """A default space whose depth is the JSON's number of layers (so any depth can be read)."""
        if isinstance(data, dict) and isinstance(data.get("layers"), list) and data["layers"]:
            strided = any(layer.get("stride", 1) != 1 for layer in data["layers"] if isinstance(layer, dict))
            return cls(depth=len(data["layers"]), strides=(1, 2, 3) if strided else (1,))
        return cls()

    @property
    def decisions(self) -> tuple[Decision, ...]:
        return self._decisions

    def encode(self, arch: LayerwiseArchitecture) -> tuple[int, ...]:
        self.validate(arch)
        out: list[int] = []
        for i, layer in enumerate(arch.layers):
            out += [self.heights.index(layer.height), self.widths.index(layer.width), self.filters.index(layer.filters)]
            if len(self.strides) > 1:
                out.append(self.strides.index(layer.stride))
            out += [int(j in layer.inputs) for j in range(i)]
        return tuple(out)

    def decode(self, choices: Sequence[int]) -> LayerwiseArchitecture:
        c = iter(self.check_choices(choices))
        layers = []
        for i in range(self.depth):
            h, w, f = self.heights[next(c)], self.widths[next(c)], self.filters[next(c)]
            s = self.strides[next(c)] if len(self.strides) > 1 else self.strides[0]
            inputs = tuple(j for j in range(i) if next(c))
            layers.append(Layer(h, w, f, s, inputs))
        return LayerwiseArchitecture(tuple(layers))

    def validate(self, arch: LayerwiseArchitecture) -> LayerwiseArchitecture:
        if not isinstance(arch, LayerwiseArchitecture):
            raise ArchitectureError("architecture", f"expected a LayerwiseArchitecture, got {type(arch).__name__}")
        if not isinstance(arch.layers, tuple) or len(arch.layers) != self.depth:
            n = len(arch.layers) if isinstance(arch.layers, (tuple, list)) else arch.layers
            raise ArchitectureError(
                "layers", f"expected {self.depth} layers, got {n} (a space of another depth: LayerwiseSpace(depth=...))"
            )
        for i, layer in enumerate(arch.layers):
            p = f"layers[{i}]"
            if not isinstance(layer, Layer):
                raise ArchitectureError(p, f"expected a Layer, got {type(layer).__name__}")
            for name, allowed in (
                ("height", self.heights),
                ("width", self.widths),
                ("filters", self.filters),
                ("stride", self.strides),
            ):
                value = getattr(layer, name)
                if isinstance(value, bool) or value not in allowed:
                    raise ArchitectureError(f"{p}.{name}", f"invalid value {value!r}", allowed)
            inputs = layer.inputs
            if not isinstance(inputs, tuple):
                raise ArchitectureError(f"{p}.inputs", f"expected a list of earlier layer indices, got {inputs!r}")
            for j in inputs:
                if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < i:
                    raise ArchitectureError(
                        f"{p}.inputs",
                        f"invalid input {j!r}: a layer reads earlier layers only",
                        list(range(i)) or "none; layer 0 reads the image",
                    )
            if len(set(inputs)) != len(inputs):
                raise ArchitectureError(f"{p}.inputs", f"repeated input in {list(inputs)}")
        return arch

    def to_json(self, arch: LayerwiseArchitecture) -> dict[str, Any]:
        self.validate(arch)
        return {
            "space": self.name,
            "layers": [
                {
                    "height": layer.height,
                    "width": layer.width,
                    "filters": layer.filters,
                    "stride": layer.stride,
                    "inputs": list(layer.inputs),
                }
                for layer in arch.layers
            ],
        }

    def from_json(self, data: Any) -> LayerwiseArchitecture:
        if not isinstance(data, dict):
            raise ArchitectureError("architecture", "expected a JSON object with a 'layers' list")
        if data.get("space", self.name) != self.name:
            raise ArchitectureError("space", f"expected {self.name!r}, got {data.get('space')!r}", [self.name])
        unknown = sorted(set(data) - {"space", "layers"})
        if unknown:
            raise ArchitectureError(unknown[0], "unknown field", ["space", "layers"])
        raw = data.get("layers")
        if not isinstance(raw, list):
            raise ArchitectureError("layers", "expected a list of layer objects")
        layers = []
        for i, item in enumerate(raw):
            p = f"layers[{i}]"
            if not isinstance(item, dict):
                raise ArchitectureError(p, "expected an object with height, width, filters, stride, inputs")
            extra = sorted(set(item) - set(LAYER_FIELDS))
            if extra:
                raise ArchitectureError(f"{p}.{extra[0]}", "unknown field", LAYER_FIELDS)
            missing = [k for k in ("height", "width", "filters") if k not in item]
            if missing:
                raise ArchitectureError(f"{p}.{missing[0]}", "missing")
            inputs = item.get("inputs", [])
            if not isinstance(inputs, list):
                raise ArchitectureError(f"{p}.inputs", f"expected a list of earlier layer indices, got {inputs!r}")
            layers.append(Layer(item["height"], item["width"], item["filters"], item.get("stride", 1), tuple(inputs)))
        return self.validate(LayerwiseArchitecture(tuple(layers)))

    # -- identity ----------------------------------------------------------------------------
    def key(self, arch: LayerwiseArchitecture) -> str:
        """Hash of the layers (inputs are kept sorted, so their order never matters)."""
        text = json.dumps(self.to_json(arch)["layers"], sort_keys=True)
        return f"layerwise-{hashlib.sha256(text.encode()).hexdigest()[:24]}"

    def mutate(self, arch: LayerwiseArchitecture, rng: np.random.Generator) -> LayerwiseArchitecture:
        """One decision (a kernel side, the filter count, the stride or one skip bit) changes."""
        choices = list(self.encode(arch))
        open_steps = [k for k, d in enumerate(self.decisions) if d.num_options > 1]
        if not open_steps:
            return arch
        k = open_steps[int(rng.integers(len(open_steps)))]
        options = [o for o in range(self.decisions[k].num_options) if o != choices[k]]
        choices[k] = options[int(rng.integers(len(options)))]
        return self.decode(choices)

    # -- networks ----------------------------------------------------------------------------
    def build(
        self,
        arch: LayerwiseArchitecture,
        num_classes: int = 10,
        in_channels: int = 3,
        dropout: float = 0.0,
        resolution: int | None = None,
        **unused: Any,
    ) -> LayerwiseNetwork:
        """A `LayerwiseNetwork`; `resolution` is accepted and unused (the network pools globally)."""
        if unused:
            raise ConfigError(
                f"network.{sorted(unused)[0]}",
                "unknown option for a layerwise network",
                ["num_classes", "in_channels", "dropout", "resolution"],
            )
        return LayerwiseNetwork(self.validate(arch), num_classes, in_channels, dropout)


__all__ = ["FILTERS", "KERNEL_SIZES", "LayerwiseSpace"]

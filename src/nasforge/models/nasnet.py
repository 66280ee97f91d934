"""Networks stacked from a pair of NASNet cells, following TensorFlow slim's `nasnet.py`.

The builder is generic: any `NASNetArchitecture` gives a network, and with the published NASNet-A
cells and configurations it reproduces the reference's parameter and multiply-add counts. Shapes
are tracked as (channels, level) where level counts stride-2 reductions, so the network itself
does not depend on the input resolution (only the optional auxiliary head does).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nasforge.arch.nasnet import NUM_INPUTS, Cell, NASNetArchitecture
from nasforge.errors import ConfigError
from nasforge.nn.layers import ConvBNSequential, DropPath, FactorizedReduce, conv_bn, inference_layout
from nasforge.nn.ops import build_op

STEMS = ("cifar", "imagenet")


@dataclass(frozen=True)
class _Shape:
    channels: int
    level: int


class _Half(nn.Module):
    """One op on one state, with its drop path (never on identity, as in the reference)."""

    def __init__(self, op_name: str, in_ch: int, out_ch: int, stride: int, bn: dict):
        super().__init__()
        self.op = build_op(op_name, in_ch, out_ch, stride, bn=bn)
        self.drop = DropPath() if op_name != "identity" else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.op(x))


class _Block(nn.Module):
    def __init__(self, input_a: int, half_a: _Half, input_b: int, half_b: _Half, concat: bool):
        super().__init__()
        self.input_a = input_a
        self.input_b = input_b
        self.concat = concat
        self.half_a = half_a
        self.half_b = half_b

    def forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        a = self.half_a(states[self.input_a])
        b = self.half_b(states[self.input_b])
        if self.concat:
            return torch.cat([a, b], dim=1)
        return a + b


class _Tap(nn.Module):
    """Picks one state for the cell output, adapting a cell input to the output's shape."""

    def __init__(self, state: int, adapt: nn.Module):
        super().__init__()
        self.state = state
        self.adapt = adapt

    def forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        return self.adapt(states[self.state])


class NASNetCell(nn.Module):
    """One normal or reduction cell.

    `prev_prev=None` is the reference's "no earlier layer" case (first cell after a stem): h_{i-1}
    is then the raw previous output, unadapted.
    """

    def __init__(self, cell: Cell, prev_prev: _Shape | None, prev: _Shape, filters: int, reduction: bool, bn: dict):
        super().__init__()
        self.reduction = reduction
        self.preprocess1 = conv_bn(prev.channels, filters, 1, bn=bn)
        if prev_prev is None:
            self.preprocess0: nn.Module = nn.Identity()
            s0 = prev
        elif prev_prev.level != prev.level:
            if prev_prev.level != prev.level - 1:
                raise ConfigError("cells", "a cell input is more than one reduction behind the other")
            self.preprocess0 = FactorizedReduce(prev_prev.channels, filters, bn=bn)
            s0 = _Shape(filters, prev.level)
        elif prev_prev.channels != filters:
            self.preprocess0 = conv_bn(prev_prev.channels, filters, 1, bn=bn)
            s0 = _Shape(filters, prev.level)
        else:
            self.preprocess0 = nn.Identity()
            s0 = prev_prev
        out_level = prev.level + (1 if reduction else 0)
        states = [s0, _Shape(filters, prev.level)]
        blocks = []
        for b in cell.blocks:
            halves = []
            for state, op in b.halves():
                stride = 2 if reduction and state < NUM_INPUTS else 1
                halves.append(_Half(op, states[state].channels, filters, stride, bn))
            blocks.append(_Block(b.input_a, halves[0], b.input_b, halves[1], b.combine == "concat"))
            states.append(_Shape(filters * (2 if b.combine == "concat" else 1), out_level))
        self.blocks = nn.ModuleList(blocks)
        taps = []
        for s in cell.output_states():
            shape = states[s]
            if shape.level != out_level:
                adapt: nn.Module = FactorizedReduce(shape.channels, filters, relu_first=False, bn=bn)
                shape = _Shape(filters, out_level)
            elif s < NUM_INPUTS and shape.channels != filters:
                adapt = conv_bn(shape.channels, filters, 1, relu_first=False, bn=bn)
                shape = _Shape(filters, out_level)
            else:
                adapt = nn.Identity()
            taps.append(_Tap(s, adapt))
            states[s] = shape
        self.taps = nn.ModuleList(taps)
        self.out_shape = _Shape(sum(states[s].channels for s in cell.output_states()), out_level)

    def forward(self, prev_prev: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(prev_prev), self.preprocess1(prev)]
        for block in self.blocks:
            states.append(block(states))
        return torch.cat([tap(states) for tap in self.taps], dim=1)


class _AuxHead(nn.Module):
    """The reference's auxiliary classifier; the pooled size follows the input resolution."""

    def __init__(self, channels: int, spatial: int, num_classes: int, bn: dict):
        super().__init__()
        pool = min(5, spatial)
        pooled = (spatial - pool) // 3 + 1
        self.features = nn.Sequential(
            nn.ReLU(),
            nn.AvgPool2d(pool, stride=3),
            nn.Conv2d(channels, 128, 1, bias=False),
            nn.BatchNorm2d(128, **bn),
            nn.ReLU(),
            nn.Conv2d(128, 768, pooled, bias=False),
            nn.BatchNorm2d(768, **bn),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class NASNet(nn.Module):
    """A NASNet-style network: stem, then three stacks of `num_cells` normal cells with a
    reduction cell (filters doubled) between stacks, then ReLU, global pool, dropout, classifier.

    Args:
        arch: the normal/reduction cell pair.
        num_classes: classifier width.
        num_cells: N, normal cells per stack.
        num_filters: F, filters of the first stack's cells.
        stem: "cifar" (3x3 conv) or "imagenet" (strided 3x3 conv + two reduction cells).
        stem_multiplier: stem conv width factor (CIFAR: of F; ImageNet: of 32).
        skip_reduction_layer_input: the reference's NASNet-A Large wiring, where the normal cell
            after a reduction takes its h_{i-1} from before the reduction cell's input.
        drop_path_keep_prob: ScheduledDropPath's final keep probability (1.0 turns it off).
        dropout: dropout rate before the classifier.
        aux_head: add the auxiliary classifier (see `forward_with_aux`).
        resolution: input resolution, used only to size the auxiliary head.
        bn_momentum, bn_eps: BatchNorm settings (PyTorch momentum = 1 - TF decay).
    """

    def __init__(
        self,
        arch: NASNetArchitecture,
        num_classes: int = 10,
        num_cells: int = 6,
        num_filters: int = 32,
        stem: str = "cifar",
        stem_multiplier: float = 3.0,
        skip_reduction_layer_input: bool = False,
        drop_path_keep_prob: float = 1.0,
        dropout: float = 0.0,
        aux_head: bool = False,
        resolution: int = 32,
        in_channels: int = 3,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
    ):
        super().__init__()
        _check_config(num_classes, num_cells, num_filters, stem, drop_path_keep_prob, dropout, resolution)
        bn: dict[str, Any] = {"momentum": bn_momentum, "eps": bn_eps}
        self.arch = arch
        self.resolution = resolution
        # (tensor index of h_{i-1} or None, tensor index of h_i) for every cell, in order.
        shapes: list[_Shape] = []
        if stem == "cifar":
            width = int(num_filters * stem_multiplier)
            self.stem = ConvBNSequential(
                nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width, **bn)
            )
            shapes.append(_Shape(width, 0))
            stem_cells: list[tuple[int, bool]] = []
        else:
            width = int(32 * stem_multiplier)
            self.stem = ConvBNSequential(
                nn.Conv2d(in_channels, width, 3, stride=2, bias=False), nn.BatchNorm2d(width, **bn)
            )
            shapes.append(_Shape(width, 1))
            stem_cells = [(int(num_filters / 4), True), (int(num_filters / 2), True)]

        plan: list[tuple[int, bool, int | None]] = []  # (filters, reduction, h_{i-1} index)
        outputs: list[int | None] = [None, 0]  # tensor indices, None = "no layer"
        for filters, _ in stem_cells:
            plan.append((filters, True, outputs[-2]))
            outputs.append(len(outputs) - 1)
        scale = 1
        for i in range(3 * num_cells):
            skip_prev = outputs[-2]
            if i in (num_cells, 2 * num_cells):
                scale *= 2
                plan.append((num_filters * scale, True, outputs[-2]))
                outputs.append(len(outputs) - 1)
            plan.append((num_filters * scale, False, skip_prev if skip_reduction_layer_input else outputs[-2]))
            outputs.append(len(outputs) - 1)

        cells = []
        self._inputs: list[tuple[int, int]] = []
        aux_after = len(stem_cells) + 2 * num_cells  # last normal cell before the 2nd reduction
        self.aux_after = -1
        for k, (filters, reduction, pp_index) in enumerate(plan):
            prev_index = len(shapes) - 1
            pp_shape = None if pp_index is None else shapes[pp_index]
            cell = NASNetCell(
                arch.reduction if reduction else arch.normal, pp_shape, shapes[prev_index], filters, reduction, bn
            )
            cells.append(cell)
            self._inputs.append((prev_index if pp_index is None else pp_index, prev_index))
            shapes.append(cell.out_shape)
            if k == aux_after:
                self.aux_after = k
        self.cells = nn.ModuleList(cells)
        # tensor indices no cell reads after cell k: forward drops them, so a deep network does not
        # hold every cell's output (gigabytes for NASNet-A Large at batch 16) until it returns
        last_read = {i: k for k, pair in enumerate(self._inputs) for i in pair}
        self._last_read = [last_read.get(i, len(cells)) for i in range(len(cells) + 1)]  # output -> last reader
        self.total_cells = len(cells)
        self.num_features = shapes[-1].channels
        self.head_dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.num_features, num_classes)
        self.aux = None
        if aux_head:
            aux_shape = shapes[self.aux_after + 1]
            spatial = _spatial_size(resolution, aux_shape.level, stem)
            self.aux = _AuxHead(aux_shape.channels, spatial, num_classes, bn)
        self.drop_path_keep_prob = drop_path_keep_prob
        self._init_weights()
        self.set_drop_path_progress(0.0)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def set_drop_path_progress(self, progress: float) -> None:
        """ScheduledDropPath: drop rate = (cell+1)/cells * (1 - keep) * min(1, progress)."""
        ramp = min(1.0, max(0.0, progress))
        for k, cell in enumerate(self.cells):
            rate = (k + 1) / self.total_cells * (1.0 - self.drop_path_keep_prob) * ramp
            for m in cell.modules():
                if isinstance(m, DropPath):
                    m.rate = rate

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        outputs = [self.stem(inference_layout(x, self.training))]
        aux = None
        for k, cell in enumerate(self.cells):
            pp, p = self._inputs[k]
            outputs.append(cell(outputs[pp], outputs[p]))
            for i, last in enumerate(self._last_read):
                if last == k:
                    outputs[i] = outputs[i].new_empty(0)
            if self.aux is not None and k == self.aux_after and self.training:
                aux = self.aux(outputs[-1])
        x = torch.relu(outputs[-1]).mean((2, 3))
        return self.classifier(self.head_dropout(x)), aux

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_aux(x)[0]


def _spatial_size(resolution: int, level: int, stem: str) -> int:
    size = resolution if stem == "cifar" else (resolution - 3) // 2 + 1
    for _ in range(level - (1 if stem == "imagenet" else 0)):
        size = math.ceil(size / 2)
    return size


def _check_config(num_classes, num_cells, num_filters, stem, keep, dropout, resolution) -> None:
    if stem not in STEMS:
        raise ConfigError("stem", f"unknown stem {stem!r}", STEMS)
    for name, value, low in (
        ("num_classes", num_classes, 1),
        ("num_cells", num_cells, 1),
        ("num_filters", num_filters, 4),
        ("resolution", resolution, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(name, f"must be an integer >= {low}, got {value!r}")
    if num_filters % 4:
        raise ConfigError("num_filters", f"must be a multiple of 4 (factorized reductions halve it), got {num_filters}")
    if not 0.0 < keep <= 1.0:
        raise ConfigError("drop_path_keep_prob", f"must be in (0, 1], got {keep}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError("dropout", f"must be in [0, 1), got {dropout}")
    if stem == "imagenet" and resolution < 3:
        raise ConfigError("resolution", f"the imagenet stem needs at least 3 px, got {resolution}")


def _register() -> None:
    from nasforge.arch.nasnet_cells import AMOEBANET_A, DARTS_V2, NASNET_A
    from nasforge.models.registry import register_model

    tf_imagenet_bn: dict[str, Any] = {"bn_momentum": 0.0003, "bn_eps": 1e-3}

    def cells(arch: NASNetArchitecture):
        return functools.partial(NASNet, arch)  # `create` then sees the network options only

    register_model(
        "nasnet_a_cifar",
        cells(NASNET_A),
        resolution=32,
        num_classes=10,
        family="nasnet",
        description="NASNet-A 6@768 (CIFAR)",
        num_cells=6,
        num_filters=32,
        stem="cifar",
        stem_multiplier=3.0,
        drop_path_keep_prob=0.6,
    )
    register_model(
        "nasnet_a_mobile",
        cells(NASNET_A),
        resolution=224,
        num_classes=1000,
        family="nasnet",
        description="NASNet-A Mobile 4@1056",
        num_cells=4,
        num_filters=44,
        stem="imagenet",
        stem_multiplier=1.0,
        drop_path_keep_prob=1.0,
        dropout=0.5,
        **tf_imagenet_bn,
    )
    register_model(
        "nasnet_a_large",
        cells(NASNET_A),
        resolution=331,
        num_classes=1000,
        family="nasnet",
        description="NASNet-A Large 6@4032",
        num_cells=6,
        num_filters=168,
        stem="imagenet",
        stem_multiplier=3.0,
        skip_reduction_layer_input=True,
        drop_path_keep_prob=0.7,
        dropout=0.5,
        **tf_imagenet_bn,
    )
    register_model(
        "amoebanet_a_cifar",
        cells(AMOEBANET_A),
        resolution=32,
        num_classes=10,
        family="nasnet",
        description="AmoebaNet-A N=6, F=36 (CIFAR)",
        num_cells=6,
        num_filters=36,
        stem="cifar",
        stem_multiplier=3.0,
        drop_path_keep_prob=0.7,
    )
    register_model(
        "darts_v2_cifar",
        cells(DARTS_V2),
        resolution=32,
        num_classes=10,
        family="nasnet",
        description="DARTS (2nd order) cells in a NASNet network, 6@36 (CIFAR)",
        num_cells=6,
        num_filters=36,
        stem="cifar",
        stem_multiplier=3.0,
        drop_path_keep_prob=0.8,
    )


_register()

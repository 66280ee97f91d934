"""Small layers that several networks share."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def conv_bn(
    in_ch: int,
    out_ch: int,
    kernel: int | tuple[int, int] = 1,
    stride: int | tuple[int, int] = 1,
    relu_first: bool = True,
    bn: dict | None = None,
) -> nn.Sequential:
    """ReLU -> conv -> BN, the unit TF's NASNet uses to adapt channel counts."""
    k = (kernel, kernel) if isinstance(kernel, int) else kernel
    padding = (k[0] // 2, k[1] // 2)
    layers: list[nn.Module] = [nn.ReLU()] if relu_first else []
    layers += [
        nn.Conv2d(in_ch, out_ch, k, stride=stride, padding=padding, bias=False),
        nn.BatchNorm2d(out_ch, **(bn or {})),
    ]
    return nn.Sequential(*layers)


class FactorizedReduce(nn.Module):
    """Halve the spatial size without losing every other pixel.

    Two strided 1x1 paths, the second shifted by one pixel, each producing half of the output
    channels; a strided 1x1 conv alone would only ever see the even-indexed pixels.

    The maths is TF slim's `factorized_reduction` (nasnet_utils.py): path 1 reads pixels (2i, 2j),
    path 2 pixels (2i + 1, 2j + 1), zero where that falls off an odd-sized map. It is computed
    without the reference's padded copy of the whole map and its 1x1 average pools: path 1 is a
    stride-2 conv, path 2 convolves the odd pixels' quarter-sized slice, padded only when the map
    is odd-sized (on a CPU the full-size pad cost as much as both convs).
    """

    def __init__(self, in_ch: int, out_ch: int, relu_first: bool = True, bn: dict | None = None):
        super().__init__()
        if out_ch % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {out_ch}")
        self.relu = nn.ReLU() if relu_first else nn.Identity()
        self.path1 = nn.Conv2d(in_ch, out_ch // 2, 1, stride=2, bias=False)
        self.path2 = nn.Conv2d(in_ch, out_ch // 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, **(bn or {}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        a = self.path1(x)
        odd = x[:, :, 1::2, 1::2]
        short_h, short_w = a.shape[-2] - odd.shape[-2], a.shape[-1] - odd.shape[-1]
        if short_h or short_w:
            odd = F.pad(odd, (0, short_w, 0, short_h))
        return self.bn(torch.cat([a, self.path2(odd)], dim=1))


class DropPath(nn.Module):
    """Drops a whole path per sample (inverted scaling), at a rate the owner schedules.

    `rate` is a plain attribute so that a training loop can move it (ScheduledDropPath) without
    rebuilding the model; at rate 0 or in eval mode the module is the identity.
    """

    def __init__(self, rate: float = 0.0):
        super().__init__()
        self.rate = float(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate <= 0.0:
            return x
        keep = 1.0 - self.rate
        mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
        return x * mask.bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"rate={self.rate:.4f}"

"""What a model costs: parameters, multiply-accumulates, latency and peak memory.

MACs are counted with PyTorch's own `FlopCounterMode` (conv, linear and matmul FLOPs, halved),
the convention of the published counts (EfficientNet's and NASNet's "multiply-adds"); pooling,
activations and BN are not counted. Latency is the median wall time of a batch in eval mode. Peak memory is the CUDA
allocator's peak on GPUs; on CPUs, where PyTorch keeps no such statistic, it is the peak of live
tensor bytes tracked at the operator level during one forward pass.

With ``deploy=True`` latency and memory are those of `nasforge.deploy`'s inference copy (BN folded,
channels_last on CPU), what a served model costs; parameters and MACs stay the trained network's.
"""

from __future__ import annotations

import statistics
import time
import weakref
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Profile:
    params: int
    macs: int
    resolution: int
    latency_ms: float | None = None
    peak_memory_bytes: int | None = None
    batch_size: int = 1
    device: str = "cpu"
    deployed: bool = False  # latency and memory measured on `nasforge.deploy(model)`

    def to_dict(self) -> dict:
        return asdict(self)


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _example(model: nn.Module, resolution: int, batch_size: int, in_channels: int | None) -> torch.Tensor:
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    channels = in_channels or _in_channels(model)
    return torch.randn(batch_size, channels, resolution, resolution, device=device, dtype=dtype)


def _in_channels(model: nn.Module) -> int:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return 3


def count_macs(model: nn.Module, resolution: int, in_channels: int | None = None) -> int:
    """Multiply-accumulates of one forward pass of one image."""
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(_example(model, resolution, 1, in_channels))
        return counter.get_total_flops() // 2
    finally:
        model.train(was_training)


def measure_latency(
    model: nn.Module,
    resolution: int,
    batch_size: int = 1,
    warmup: int = 2,
    repeats: int = 5,
    in_channels: int | None = None,
) -> float:
    """Median milliseconds per forward pass of a batch, after `warmup` untimed passes."""
    was_training = model.training
    model.eval()
    x = _example(model, resolution, batch_size, in_channels)
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    times = []
    try:
        with torch.inference_mode():
            for i in range(warmup + repeats):
                sync()
                start = time.perf_counter()
                model(x)
                sync()
                if i >= warmup:
                    times.append((time.perf_counter() - start) * 1e3)
    finally:
        model.train(was_training)
    return statistics.median(times)


class _LiveTensorBytes(TorchDispatchMode):
    """Tracks bytes of storages created by operators and not yet freed.

    Tensors are keyed by storage, so views do not count twice; a storage is released when the
    last tensor seen on it is garbage-collected (PyTorch keeps a tensor's Python object alive as
    long as C++ holds the tensor, so this sees real lifetimes).
    """

    def __init__(self) -> None:
        super().__init__()
        self.refs: dict[int, list[int]] = {}
        self.current = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        entry = self.refs.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self.refs[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if not key:
                    continue
                entry = self.refs.get(key)
                if entry is None:
                    entry = self.refs[key] = [storage.nbytes(), 0]
                    self.current += entry[0]
                    self.peak = max(self.peak, self.current)
                entry[1] += 1
                weakref.finalize(t, self._release, key)
        return out


def measure_peak_memory(model: nn.Module, resolution: int, batch_size: int = 1, in_channels: int | None = None) -> int:
    """Peak bytes of activations (beyond weights and the input) during one eval forward pass."""
    was_training = model.training
    model.eval()
    x = _example(model, resolution, batch_size, in_channels)
    try:
        with torch.no_grad():
            if x.is_cuda:
                torch.cuda.synchronize()
                base = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
                model(x)
                torch.cuda.synchronize()
                return torch.cuda.max_memory_allocated() - base
            tracker = _LiveTensorBytes()
            with tracker:
                model(x)
            return tracker.peak
    finally:
        model.train(was_training)


def profile_model(
    model: nn.Module,
    resolution: int,
    batch_size: int = 1,
    latency: bool = True,
    memory: bool = True,
    in_channels: int | None = None,
    deploy: bool = False,
) -> Profile:
    """Parameters and MACs of `model`; latency and memory of it, or with `deploy` of its inference
    copy (`nasforge.deploy`), which is what serving it would cost."""
    param = next(model.parameters(), None)
    device = str(param.device) if param is not None else "cpu"
    timed = model
    if deploy and (latency or memory):
        from nasforge.deploy import deploy as deployed_copy

        timed = deployed_copy(model, _example(model, resolution, batch_size, in_channels))
    return Profile(
        params=count_params(model),
        macs=count_macs(model, resolution, in_channels),
        resolution=resolution,
        latency_ms=measure_latency(timed, resolution, batch_size, in_channels=in_channels) if latency else None,
        peak_memory_bytes=measure_peak_memory(timed, resolution, batch_size, in_channels) if memory else None,
        batch_size=batch_size,
        device=device,
        deployed=deploy,
    )

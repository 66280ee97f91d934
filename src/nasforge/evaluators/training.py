"""Training a child network: the loop shared by proxy evaluation and full training.

The recipe is NASNet's: SGD with Nesterov momentum, one cosine period, weight decay, label
smoothing, gradient-norm clipping, ScheduledDropPath and an auxiliary head where the network has
them. On CUDA it uses AMP (bf16 where supported); on every device it runs channels_last, which on
CPU makes oneDNN's convolutions 1.5-1.8x faster for these networks (benchmarks/child_training.py;
NCHW batches of one channel were being picked up as channels_last by accident, which is how this
showed). On CPU it is deterministic under a seed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from nasforge.data.loader import Augment, DataSplits, Split, batches
from nasforge.errors import ConfigError
from nasforge.evaluators.base import EvaluationError


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 3
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    grad_clip: float = 5.0
    aux_weight: float = 0.4
    eval_batch_size: int = 512
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True

    def __post_init__(self):
        for name in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"train.{name}", f"must be a positive integer, got {value!r}")
        for name in ("lr", "weight_decay", "label_smoothing", "grad_clip", "aux_weight", "momentum"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0 or not math.isfinite(value):
                raise ConfigError(f"train.{name}", f"must be a finite number >= 0, got {value!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError("train.device", f"unknown device {self.device!r}", ["auto", "cpu", "cuda", "cuda:N"])

    def resolve_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    val_accuracy: float
    val_loss: float
    train_loss: list[float] = field(default_factory=list)  # per epoch
    train_seconds: float = 0.0
    images_per_second: float = 0.0
    test_accuracy: float | None = None
    epochs: float = 0.0  # trained so far, counting earlier sessions of a continued run
    state: dict | None = None  # what continues the run (when it stopped before its horizon)
    stopped: str | None = None  # "deadline" when the deadline cut it short


def _forward(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    forward_with_aux = getattr(model, "forward_with_aux", None)
    return forward_with_aux(x) if forward_with_aux is not None else (model(x), None)


def evaluate_accuracy(
    model: nn.Module, split: Split, splits: DataSplits, config: TrainConfig, resolution: int | None = None
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of `model` on `split`, in eval mode."""
    device = next(model.parameters()).device
    model.eval()
    correct, loss, seen = 0, 0.0, 0
    use_amp = config.amp and device.type == "cuda"
    with torch.inference_mode(), torch.autocast(device.type, enabled=use_amp, dtype=_amp_dtype(device)):
        for x, y in batches(
            split,
            config.eval_batch_size,
            splits,
            resolution=resolution,
            device=device,
            channels_last=config.channels_last,
        ):
            logits = model(x).float()
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
    return correct / seen, loss / seen


def _amp_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on conv/linear weights only; BN and biases are not decayed."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_model(
    model: nn.Module,
    splits: DataSplits,
    config: TrainConfig,
    seed: int,
    augment: Augment | None = None,
    resolution: int | None = None,
    evaluate_test: bool = False,
    on_epoch: Callable[[int, float], None] | None = None,
    *,
    horizon: int | None = None,
    until: int | None = None,
    resume: dict | None = None,
    deadline: float | None = None,
) -> TrainResult:
    """Train `model` on `splits.train` and score it on `splits.val` (the reward's source).

    The learning rate follows one cosine period over `horizon` epochs (default `config.epochs`);
    training stops after `until` of them (default: all) and returns in `TrainResult.state` what
    `resume=` needs to continue exactly as if it had not stopped (weights, optimizer, schedule,
    data order and drop-path RNG). At `deadline` (a `time.time()` value) it stops after the batch
    in flight and scores what it has (`stopped="deadline"`, fractional `epochs`).

    The test split is evaluated only when `evaluate_test` is set, for final reports.
    Raises `EvaluationError` when the loss stops being finite.
    """
    device = config.resolve_device()
    use_channels_last = config.channels_last
    model.to(device)
    if use_channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stub lacks memory_format
    use_amp = config.amp and device.type == "cuda"
    amp_dtype = _amp_dtype(device)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    optimizer = torch.optim.SGD(
        _param_groups(model, config.weight_decay),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
    )
    n = len(splits.train)
    horizon = int(horizon or config.epochs)
    until = horizon if until is None else min(int(until), horizon)
    steps_per_epoch = max(1, n // config.batch_size) if n >= config.batch_size else 1
    total_steps = steps_per_epoch * horizon
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    )
    generator = torch.Generator().manual_seed(seed)
    set_progress = getattr(model, "set_drop_path_progress", None)
    result = TrainResult(val_accuracy=0.0, val_loss=float("nan"))
    step, images, first_epoch = 0, 0, 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        generator.set_state(resume["generator"])
        torch.set_rng_state(resume["rng"])
        first_epoch = int(resume["epoch"])
        step = first_epoch * steps_per_epoch
        result.train_loss = list(resume["train_loss"])
    start = time.perf_counter()
    epoch_steps = 0
    for epoch in range(first_epoch, until):
        model.train()
        epoch_loss, epoch_batches = torch.zeros((), device=device), 0
        for x, y in batches(
            splits.train,
            config.batch_size,
            splits,
            shuffle=True,
            generator=generator,
            augment=augment,
            resolution=resolution,
            device=device,
            channels_last=use_channels_last,
            drop_last=True,
        ):
            if deadline is not None and time.time() >= deadline:
                result.stopped = "deadline"
                break
            if set_progress is not None:
                set_progress(step / total_steps)
            with torch.autocast(device.type, enabled=use_amp, dtype=amp_dtype):
                logits, aux = _forward(model, x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
                if aux is not None and config.aux_weight > 0:
                    loss = loss + config.aux_weight * F.cross_entropy(
                        aux.float(), y, label_smoothing=config.label_smoothing
                    )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            epoch_loss += loss.detach()
            epoch_batches += 1
            step += 1
            images += len(y)
        if epoch_batches:
            mean_loss = (epoch_loss / epoch_batches).item()  # one sync per epoch
            if not math.isfinite(mean_loss):
                raise EvaluationError(f"training loss is {mean_loss} in epoch {epoch + 1}")
            result.train_loss.append(mean_loss)
            if on_epoch is not None and result.stopped is None:
                on_epoch(epoch, mean_loss)
        if result.stopped is not None:
            epoch_steps = epoch_batches
            break
        result.epochs = epoch + 1
    else:
        result.epochs = max(first_epoch, until)
    if result.stopped is not None:
        result.epochs = epoch + epoch_steps / steps_per_epoch
    result.train_seconds = time.perf_counter() - start
    result.images_per_second = images / result.train_seconds if result.train_seconds > 0 else 0.0
    if result.stopped is None and until < horizon:
        result.state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "generator": generator.get_state(),
            "rng": torch.get_rng_state(),
            "epoch": until,
            "train_loss": list(result.train_loss),
        }
    if set_progress is not None:
        set_progress(1.0)
    result.val_accuracy, result.val_loss = evaluate_accuracy(model, splits.val, splits, config, resolution)
    if evaluate_test and splits.test is not None:
        result.test_accuracy, _ = evaluate_accuracy(model, splits.test, splits, config, resolution)
    return result

"""Zero-cost scores: rank untrained networks from one batch of the user's training data.

A search can afford thousands of these where it affords tens of trained children, so they serve
as cheap evaluators and as a pre-screen in front of training. Each score follows its paper and
the authors' code (one batch, the network in training mode so BatchNorm uses batch statistics,
cross-entropy on the batch's labels):

* ``naswot`` -- Mellor et al., "Neural Architecture Search without Training" (ICML 2021): the
  log-determinant of K = C C^T + (1 - C)(1 - C)^T, C the binary codes (pre-activation > 0) of every
  rectifier the batch passes through (github.com/BayesWatch/nas-without-training, score.py).
* ``jacob_cov`` -- the earlier version of the same paper (arXiv:2006.04647v1): from the
  correlation matrix of the per-image input Jacobians, -sum(log(v + k) + 1 / (v + k)), k = 1e-5.
* ``snip`` (Lee et al., 2019), ``grasp`` (Wang et al., 2020), ``fisher`` (Theis et al., 2018;
  Turner et al., 2020), ``synflow`` (Tanaka et al., 2020) as summed over all weights by
  Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS" (ICLR 2021;
  github.com/SamsungLabs/zero-cost-nas, foresight/pruners/measures/). synflow runs on a copy
  without BatchNorm (their ``bn=False``), with |weights| and an all-ones input, in float64 so deep
  networks don't overflow.
* ``params`` and ``flops`` (multiply-adds), the baselines every proxy has to beat.

A score that is not finite (a network with no path from input to output has a zero Jacobian,
say) raises `EvaluationError`, which a search records as a failed trial.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nasforge.data.loader import batches
from nasforge.errors import ConfigError
from nasforge.evaluators.base import EVALUATORS, EvaluationError, Metrics
from nasforge.evaluators.proxy import DataEvaluator
from nasforge.profile import count_macs, count_params
from nasforge.spaces.base import SearchSpace

Batch = tuple[torch.Tensor, torch.Tensor]
_WEIGHTED = (nn.Conv2d, nn.Linear)
_RECTIFIERS = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.GELU, nn.LeakyReLU)


def _weighted_layers(model: nn.Module) -> list[nn.Conv2d | nn.Linear]:
    return [m for m in model.modules() if isinstance(m, _WEIGHTED)]


def _forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return out[0] if isinstance(out, tuple) else out


def naswot(model: nn.Module, batch: Batch) -> float:
    x, _ = batch
    n = x.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64)

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        # C C^T + (1-C)(1-C)^T = 2 C C^T - s_i - s_j + d, s the rows' counts of ones and d the
        # code length: one matrix product, exact in float32 while d < 2^24.
        codes = (inputs[0].detach().reshape(n, -1) > 0).float()
        ones = codes.sum(1, dtype=torch.float64)
        same = 2 * (codes @ codes.T).double() - ones[:, None] - ones[None, :] + codes.shape[1]
        kernel.add_(same.cpu())

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _RECTIFIERS)]
    try:
        with torch.no_grad():
            _forward(model, x)
    finally:
        for h in handles:
            h.remove()
    if not handles:
        raise EvaluationError("naswot needs rectifier modules (nn.ReLU and the like); the network has none")
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if float(sign) > 0 else float("-inf")


def jacob_cov(model: nn.Module, batch: Batch) -> float:
    x, _ = batch
    x = x.detach().clone().requires_grad_(True)
    out = _forward(model, x)
    grad = torch.autograd.grad(out, x, torch.ones_like(out), allow_unused=True)[0] if out.requires_grad else None
    if grad is None:
        return float("nan")  # the output does not depend on the input
    jacobians = grad.detach().reshape(x.shape[0], -1).double().numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.corrcoef(jacobians)
    if not np.all(np.isfinite(corr)):
        return float("nan")  # an image whose Jacobian is constant: no gradient reaches the input
    eig = np.linalg.eigvalsh(corr)
    k = 1e-5
    return float(-np.sum(np.log(eig + k) + 1.0 / (eig + k)))


def _loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(_forward(model, x), y)


def snip(model: nn.Module, batch: Batch) -> float:
    layers = _weighted_layers(model)
    grads = torch.autograd.grad(_loss(model, batch), [m.weight for m in layers], allow_unused=True)
    return float(sum((m.weight.detach() * g).abs().sum() for m, g in zip(layers, grads) if g is not None))


def grasp(model: nn.Module, batch: Batch) -> float:
    layers = _weighted_layers(model)
    weights = [m.weight for m in layers]
    first = torch.autograd.grad(_loss(model, batch), weights, allow_unused=True)
    second = torch.autograd.grad(_loss(model, batch), weights, create_graph=True, allow_unused=True)
    z = sum((g.detach() * h).sum() for g, h in zip(first, second) if g is not None and h is not None)
    if not torch.is_tensor(z) or not z.requires_grad:
        return 0.0
    hg = torch.autograd.grad(z, weights, allow_unused=True)  # the Hessian-gradient product H g
    return float(sum((-w.detach() * v).sum() for w, v in zip(weights, hg) if v is not None))


def fisher(model: nn.Module, batch: Batch) -> float:
    total = torch.zeros((), dtype=torch.float64)

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if not output.requires_grad:
            return
        act = output.detach()

        def on_grad(grad: torch.Tensor) -> None:
            g = act * grad.detach()
            per_channel = g.sum(dim=tuple(range(2, g.ndim))) if g.ndim > 2 else g
            total.add_(0.5 * per_channel.double().pow(2).mean(0).sum())

        output.register_hook(on_grad)

    handles = [m.register_forward_hook(hook) for m in _weighted_layers(model)]
    try:
        _loss(model, batch).backward()
    finally:
        for h in handles:
            h.remove()
    return float(total)


def synflow(model: nn.Module, batch: Batch) -> float:
    x, _ = batch
    net = _without_batchnorm(copy.deepcopy(model)).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    out = _forward(net, torch.ones((1, *x.shape[1:]), dtype=torch.float64))
    out.sum().backward()
    return float(
        sum((m.weight.detach() * m.weight.grad).abs().sum() for m in _weighted_layers(net) if m.weight.grad is not None)
    )


def _without_batchnorm(model: nn.Module) -> nn.Module:
    for name, child in model.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(model, name, nn.Identity())
        else:
            _without_batchnorm(child)
    return model


#: score name -> function(model, batch); every one reads one batch and a fresh copy of the network.
SCORE_FUNCTIONS: dict[str, Callable[[nn.Module, Batch], float]] = {
    "naswot": naswot,
    "jacob_cov": jacob_cov,
    "snip": snip,
    "grasp": grasp,
    "fisher": fisher,
    "synflow": synflow,
}
#: every score, those counted on the network included.
SCORES: tuple[str, ...] = (*SCORE_FUNCTIONS, "params", "flops")


def compute_scores(model: nn.Module, batch: Batch, names: Sequence[str], resolution: int) -> dict[str, float]:
    """Each named score of `model` (left untouched: every score works on its own copy)."""
    out: dict[str, float] = {}
    for name in names:
        if name == "params":
            out[name] = float(count_params(model))
        elif name == "flops":
            out[name] = float(count_macs(model, resolution, batch[0].shape[1]))
        else:
            net = copy.deepcopy(model).train()
            out[name] = SCORE_FUNCTIONS[name](net, batch)
    return out


def check_scores(names: Any, field: str = "scores") -> tuple[str, ...]:
    if isinstance(names, str):
        names = (names,)
    if not isinstance(names, (list, tuple)) or not names:
        raise ConfigError(field, f"must be a list of score names, got {names!r}", SCORES)
    for name in names:
        if name not in SCORES:
            raise ConfigError(field, f"unknown zero-cost score {name!r}", SCORES)
    return tuple(dict.fromkeys(names))


@EVALUATORS.register("zero_cost")
class ZeroCostEvaluator(DataEvaluator):
    """Score an untrained child on one batch of the training split: the reward is metric "score",
    the first of `scores`; each score is also recorded as "zc_NAME".

    Args:
        scores: score names (see `SCORES`); the first is the reward.
        dataset, val_fraction, split_seed, train_size, val_size, resolution: the data, split as
            `ProxyTrainer` splits it (the batch comes from the training part only).
        network: keyword arguments for `space.build`.
        batch_size: images in the batch (Mellor et al. use 128, Abdelfattah et al. 64).
        batch_seed: which batch; fixed for a whole search so every cell sees the same images.
        device: "auto", "cpu" or "cuda".
    """

    name = "zero_cost"
    reward_metric = "score"
    default_scores: tuple[str, ...] = ("naswot",)

    def __init__(
        self,
        scores: Sequence[str] | str | None = None,
        dataset: str = "digits",
        network: dict[str, Any] | None = None,
        batch_size: int = 64,
        batch_seed: int = 0,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        train_size: int | None = None,
        val_size: int | None = None,
        resolution: int | None = None,
        device: str = "auto",
    ):
        self.scores = check_scores(self.default_scores if scores is None else scores)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
            raise ConfigError("evaluator.batch_size", f"must be an integer >= 2, got {batch_size!r}")
        if device not in ("auto", "cpu", "cuda") and not str(device).startswith("cuda:"):
            raise ConfigError("evaluator.device", f"unknown device {device!r}", ["auto", "cpu", "cuda", "cuda:N"])
        self._set_data(dataset, network, val_fraction, split_seed, train_size, val_size, resolution)
        self.batch_size = batch_size
        self.batch_seed = batch_seed
        self.device = device
        self._batch: Batch | None = None

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scores": list(self.scores),
            **self.data_config(),
            "batch_size": self.batch_size,
            "batch_seed": self.batch_seed,
            "device": self.device,
        }

    def prepare(self) -> None:
        self._check_data()

    def _check_data(self) -> None:
        splits = self.splits()
        if len(splits.train) < self.batch_size:
            raise ConfigError(
                "evaluator.batch_size",
                f"{self.batch_size} is more than the {len(splits.train)} training images of {self.dataset!r}",
            )

    def _device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def batch(self) -> Batch:
        """The batch every cell is scored on, drawn once per evaluator."""
        if self._batch is None:
            splits = self.splits()
            self._check_data()
            gen = torch.Generator().manual_seed(self.batch_seed)
            self._batch = next(
                batches(
                    splits.train,
                    self.batch_size,
                    splits,
                    shuffle=True,
                    generator=gen,
                    resolution=self.resolution,
                    device=self._device(),
                )
            )
        return self._batch

    def evaluate(self, space: SearchSpace, arch: Any, seed: int) -> Metrics:
        splits = self.splits()
        batch = self.batch()
        start = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self.build(space, arch, splits).to(self._device())
            values = compute_scores(model, batch, self.scores, self.resolution or splits.resolution)
        for name, value in values.items():
            if not math.isfinite(value):
                raise EvaluationError(
                    f"zero-cost score {name} is {value} for this network "
                    f"(no usable signal from its input to its output)"
                )
        metrics: Metrics = {f"zc_{k}": v for k, v in values.items()}
        metrics["score"] = values[self.scores[0]]
        metrics["params"] = float(count_params(model))
        metrics["score_seconds"] = time.perf_counter() - start
        return metrics


#: scores whose magnitude spans orders (sums over weights, counts): compared on a log scale.
_LOG_SCALE = frozenset({"synflow", "snip", "grasp", "fisher", "params", "flops"})


def _transform(name: str, values: np.ndarray) -> np.ndarray:
    if name in _LOG_SCALE:
        return np.sign(values) * np.log1p(np.abs(values))
    return values


@EVALUATORS.register("zc_ensemble")
class ZeroCostEnsemble(ZeroCostEvaluator):
    """Several zero-cost scores combined into one: each is put on a common scale by a reference
    sample of the space's architectures (median 0, interquartile range 1, after a log for the
    scores that span orders of magnitude; clipped at +-`clip`), and the reward is their mean.

    Published comparisons find that no single score beats parameter counting by much, while
    scores that fail on different cells make up for each other (Abdelfattah et al., 2021, voting;
    Krishnakumar et al., NAS-Bench-Suite-Zero, 2022). The reference sample (`reference` random
    architectures drawn with `reference_seed`) is scored once, before the first cell, so each
    cell's reward depends on that cell alone and a search can use it like any evaluator.
    """

    name = "zc_ensemble"
    default_scores = ("jacob_cov", "synflow")

    def __init__(
        self,
        scores: Sequence[str] | str | None = None,
        *,
        space: SearchSpace | None = None,
        reference: int = 32,
        reference_seed: int = 0,
        clip: float = 3.0,
        **options: Any,
    ):
        super().__init__(scores, **options)
        if isinstance(reference, bool) or not isinstance(reference, int) or reference < 4:
            raise ConfigError("evaluator.reference", f"must be an integer >= 4, got {reference!r}")
        if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not clip > 0:
            raise ConfigError("evaluator.clip", f"must be a number > 0, got {clip!r}")
        self.space = space
        self.reference = reference
        self.reference_seed = reference_seed
        self.clip = float(clip)
        self._scale: dict[str, tuple[float, float]] | None = None  # pickled along to worker processes

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "reference": self.reference,
            "reference_seed": self.reference_seed,
            "clip": self.clip,
        }

    def scale(self, space: SearchSpace) -> dict[str, tuple[float, float]]:
        """(median, interquartile range) of each score over the reference sample."""
        if self._scale is None:
            rng = np.random.default_rng(self.reference_seed)
            rows = []
            for k in range(self.reference):
                try:
                    rows.append(self._raw(space, space.sample(rng), seed=10_000_019 + k))
                except EvaluationError:
                    continue  # a reference cell without a score is left out
            if len(rows) < 4:
                raise EvaluationError(
                    f"only {len(rows)} of {self.reference} reference architectures could be "
                    f"scored; the ensemble needs at least 4"
                )
            scale = {}
            for name in self.scores:
                t = _transform(name, np.array([r[name] for r in rows], dtype=np.float64))
                q1, med, q3 = np.percentile(t, [25, 50, 75])
                scale[name] = (float(med), float(q3 - q1) or 1.0)
            self._scale = scale
        return self._scale

    def prepare(self) -> None:
        super().prepare()
        if self.space is not None:
            self.scale(self.space)

    def _raw(self, space: SearchSpace, arch: Any, seed: int) -> dict[str, float]:
        metrics = super().evaluate(space, arch, seed)
        return {name: metrics[f"zc_{name}"] for name in self.scores}

    def evaluate(self, space: SearchSpace, arch: Any, seed: int) -> Metrics:
        scale = self.scale(space)
        metrics = super().evaluate(space, arch, seed)
        parts = []
        for name in self.scores:
            med, iqr = scale[name]
            z = (float(_transform(name, np.array([metrics[f"zc_{name}"]]))[0]) - med) / iqr
            parts.append(min(self.clip, max(-self.clip, z)))
        metrics["score"] = float(np.mean(parts))
        return metrics


def _single_score_evaluator(score: str) -> type[ZeroCostEvaluator]:
    """`--evaluator naswot` and the like: the zero-cost evaluator with that score as reward."""
    cls_name = f"ZeroCost_{score}"
    cls = type(
        cls_name,
        (ZeroCostEvaluator,),
        {
            "name": score,
            "default_scores": (score,),
            "__qualname__": cls_name,
            "__module__": __name__,
            "__doc__": f"`ZeroCostEvaluator` rewarding the {score} score.",
        },
    )
    globals()[cls_name] = cls  # so the class pickles by name into worker processes
    EVALUATORS.register(score, cls)
    return cls


#: one registered evaluator per score, named after it.
SCORE_EVALUATORS: dict[str, type[ZeroCostEvaluator]] = {s: _single_score_evaluator(s) for s in SCORES}

__all__ = [
    "SCORES",
    "SCORE_EVALUATORS",
    "SCORE_FUNCTIONS",
    "ZeroCostEnsemble",
    "ZeroCostEvaluator",
    "compute_scores",
    "fisher",
    "grasp",
    "jacob_cov",
    "naswot",
    "snip",
    "synflow",
]

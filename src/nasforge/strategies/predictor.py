"""Predictor-guided search in the style of BANANAS (White, Neiswanger and Savani, "BANANAS:
Bayesian Optimization with Neural Architectures for Neural Architecture Search", AAAI 2021).

Why this recipe: BANANAS showed that Bayesian optimisation for NAS needs no Gaussian process -- an
ensemble of small MLPs gives both a prediction and, through its members' disagreement, an
uncertainty; mutating the best architectures found so far is a cheap and effective way to
optimise the acquisition; and independent Thompson sampling (one draw per candidate) picks a whole
batch of diverse candidates at once, which suits parallel workers. The encoding differs from the
paper's: BANANAS' path encoding needs a cell's graph, whereas the one-hot of each decision's choice
works for any space through its decision sequence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from nasforge.errors import ConfigError
from nasforge.spaces.base import SearchSpace
from nasforge.strategies.base import STRATEGIES, AskTellStrategy, Result


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(name, f"must be an integer >= {minimum}, got {value!r}")
    return value


def _check_positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(name, f"must be a number > 0, got {value!r}")
    return float(value)


# -- the ensemble ------------------------------------------------------------------------------------------
# E independent MLPs (D -> H -> H -> 1, ReLU) kept as batched weight tensors, one slice per member,
# so that a forward or backward pass of the whole ensemble is one batched matrix product per
# layer. The backward pass and Adam are written out by hand: for networks this small, autograd's
# and torch.optim's per-operation overhead costs more than the arithmetic (measured: about half of
# a fit step on the 6x5 toy space), and a fit runs with every refit of a search.


def init_ensemble(members: int, inputs: int, hidden: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Weights `[W1, b1, W2, b2, W3, b3]`, uniform in +-1/sqrt(fan_in) as `torch.nn.Linear` draws them."""
    shapes = [
        ((members, inputs, hidden), inputs),
        ((members, 1, hidden), inputs),
        ((members, hidden, hidden), hidden),
        ((members, 1, hidden), hidden),
        ((members, hidden, 1), hidden),
        ((members, 1, 1), hidden),
    ]
    return [(torch.rand(shape, generator=generator) * 2.0 - 1.0) / math.sqrt(fan_in) for shape, fan_in in shapes]


def ensemble_forward(weights: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Every member's prediction for inputs `x` of shape (n, D) (shared) or (E, n, D): (E, n)."""
    w1, b1, w2, b2, w3, b3 = weights
    if x.dim() == 2:
        x = x.expand(w1.shape[0], *x.shape)
    h = torch.baddbmm(b1, x, w1).clamp_(min=0.0)
    h = torch.baddbmm(b2, h, w2).clamp_(min=0.0)
    return torch.baddbmm(b3, h, w3).squeeze(-1)


def ensemble_gradients(
    weights: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor, out: list[torch.Tensor] | None = None
) -> list[torch.Tensor]:
    """Gradients of each member's mean squared error on (x (E, n, D), y (E, n)), members summed.

    Written into `out` (tensors shaped like `weights`) when it is given.
    """
    w1, b1, w2, b2, w3, b3 = weights
    g = out if out is not None else [torch.empty_like(w) for w in weights]
    h1 = torch.baddbmm(b1, x, w1).clamp_(min=0.0)
    h2 = torch.baddbmm(b2, h1, w2).clamp_(min=0.0)
    d3 = torch.baddbmm(b3, h2, w3).sub_(y.unsqueeze(-1)).mul_(2.0 / y.shape[1])  # (E, n, 1)
    d2 = torch.bmm(d3, w3.transpose(1, 2)).masked_fill_(h2 <= 0.0, 0.0)
    d1 = torch.bmm(d2, w2.transpose(1, 2)).masked_fill_(h1 <= 0.0, 0.0)
    torch.bmm(x.transpose(1, 2), d1, out=g[0])
    torch.sum(d1, 1, keepdim=True, out=g[1])
    torch.bmm(h1.transpose(1, 2), d2, out=g[2])
    torch.sum(d2, 1, keepdim=True, out=g[3])
    torch.bmm(h2.transpose(1, 2), d3, out=g[4])
    torch.sum(d3, 1, keepdim=True, out=g[5])
    return g


def _flat(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One buffer holding copies of `tensors`, and views of it shaped like them."""
    buffer = torch.cat([t.reshape(-1) for t in tensors])
    views, start = [], 0
    for t in tensors:
        views.append(buffer[start : start + t.numel()].view(t.shape))
        start += t.numel()
    return buffer, views


def fit_ensemble(
    weights: list[torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    lr: float,
    generator: torch.Generator,
    batch: int,
) -> None:
    """`steps` Adam steps (Kingma & Ba's defaults besides `lr`) on every member at once, in place.

    Up to `batch` results every step is full-batch; beyond, each member draws its own minibatch of
    `batch` results (with replacement) per step, which bounds the cost of a refit however long the
    search has run and adds bootstrap-like diversity between the members. Weights, gradients and
    Adam's moments each live in one flat buffer, so that an Adam step is a handful of operations.
    """
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    members, n = weights[0].shape[0], x.shape[0]
    params, views = _flat(weights)
    grad, grad_views = _flat([torch.empty_like(w) for w in weights])
    m, v, denom = torch.zeros_like(params), torch.zeros_like(params), torch.empty_like(params)
    full = n <= batch
    if full:
        xs, ys = x.expand(members, *x.shape).contiguous(), y.expand(members, n).contiguous()
    for t in range(1, steps + 1):
        if not full:
            rows = torch.randint(n, (members * batch,), generator=generator)
            xs, ys = x.index_select(0, rows).view(members, batch, -1), y.index_select(0, rows).view(members, batch)
        ensemble_gradients(views, xs, ys, grad_views)
        m.lerp_(grad, 1.0 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        torch.sqrt(v, out=denom).div_(math.sqrt(1.0 - beta2**t)).add_(eps)
        params.addcdiv_(m, denom, value=-lr / (1.0 - beta1**t))
    for w, view in zip(weights, views):
        w.copy_(view)


# -- the strategy ------------------------------------------------------------------------------------------


@STRATEGIES.register("predictor")
class PredictorStrategy(AskTellStrategy):
    """BANANAS-style search: an MLP ensemble, mutation of the best cells and Thompson sampling.

    - The first `num_init` asks are random samples (and any ask before a success is told).
    - The predictor: `ensemble_size` MLPs (2 hidden layers of `HIDDEN` units, ReLU) on the one-hot
      encoding, trained with Adam (`epochs` steps, learning rate `lr`, squared error) on all
      successful results, rewards standardised so that one learning rate suits any reward scale.
      The members start from independent random initialisations (their disagreement is the
      uncertainty) and each refit continues from the current weights (BANANAS retrains from
      scratch): a refit then costs the same `epochs` steps at trial 1,000 as at trial 20, while the
      training the ensemble has had keeps growing with the data.
    - A refit happens at the first ask after `batch_size` new successful results (the first at the
      first ask after the initial samples); it replaces the queue with a new batch. When the queue
      runs dry first (results outstanding or failed), a new batch is made with the current models.
    - A batch: `num_candidates` candidates, about 90% made by `space.mutate` from the top
      `num_parents` architectures in turn (mutating again while the result is known, so that well
      explored parents still give new children), 10% fresh random samples to keep some global
      exploration; candidates this strategy has asked before are dropped. Each candidate is scored
      by one draw from Normal(ensemble mean, ensemble std) (independent Thompson sampling) and the
      best `batch_size` are queued, best first.
    - Failed results and proposals turned down as duplicates teach nothing (their keys are already
      remembered as asked, so they are not proposed again).

    Randomness: `self.rng` (numpy) for sampling, mutation and Thompson draws, a private
    `torch.Generator` for initialisation and minibatches; neither global generator is touched.
    """

    name = "predictor"

    HIDDEN = 32
    #: results per member and step beyond which a fit step uses a random minibatch
    FIT_BATCH = 64
    #: fraction of a batch's candidates that are fresh random samples
    RANDOM_FRACTION = 0.1
    #: mutations applied in a row while the child is already known, before giving the slot up
    MUTATION_TRIES = 5
    #: draws of `space.sample` tried for an architecture not asked before
    FRESH_TRIES = 100

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        num_init: int = 10,
        batch_size: int = 10,
        ensemble_size: int = 5,
        num_candidates: int = 100,
        num_parents: int = 10,
        epochs: int = 50,
        lr: float = 0.01,
    ):
        super().__init__(space, seed)
        self.num_init = _check_int("num_init", num_init, 0)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.ensemble_size = _check_int("ensemble_size", ensemble_size, 1)
        self.num_candidates = _check_int("num_candidates", num_candidates, 1)
        self.num_parents = _check_int("num_parents", num_parents, 1)
        self.epochs = _check_int("epochs", epochs, 1)
        self.lr = _check_positive("lr", lr)
        sizes = [d.num_options for d in space.decisions]
        self._offsets = torch.tensor(np.cumsum([0] + sizes[:-1]), dtype=torch.long)
        self._width = int(sum(sizes))
        self.generator = torch.Generator().manual_seed(int(seed))
        self.data_choices: list[tuple[int, ...]] = []  # every successful result, in the order told
        self.data_rewards: list[float] = []
        self.asked: dict[str, None] = {}  # keys this strategy has asked (an ordered set)
        self.queue: list[tuple[int, ...]] = []  # the current batch, best first
        self.weights: list[torch.Tensor] | None = None
        self.reward_scale: tuple[float, float] = (0.0, 1.0)  # (mean, std) of the rewards of the last fit
        self.new_since_fit = 0
        self.num_fits = 0
        self.num_batches = 0
        self._encoded = torch.zeros(0, self._width)  # one-hot rows of data_choices (a cache)

    def options(self) -> dict[str, Any]:
        return {
            "num_init": self.num_init,
            "batch_size": self.batch_size,
            "ensemble_size": self.ensemble_size,
            "num_candidates": self.num_candidates,
            "num_parents": self.num_parents,
            "epochs": self.epochs,
            "lr": self.lr,
        }

    # -- the predictor -----------------------------------------------------------------------------------
    def one_hot(self, choices: list[tuple[int, ...]] | list[list[int]]) -> torch.Tensor:
        """One-hot of each decision's choice, concatenated: (len(choices), sum of options)."""
        out = torch.zeros(len(choices), self._width)
        if choices:
            out.scatter_(1, torch.tensor(choices, dtype=torch.long) + self._offsets, 1.0)
        return out

    def _fit(self) -> None:
        n = len(self.data_choices)
        if self._encoded.shape[0] < n:
            self._encoded = torch.cat([self._encoded, self.one_hot(self.data_choices[self._encoded.shape[0] :])])
        rewards = torch.tensor(self.data_rewards, dtype=torch.float32)
        mean = float(rewards.mean())
        std = float(rewards.std(unbiased=False)) if n > 1 else 0.0
        std = std if std > 1e-12 else 1.0
        self.reward_scale = (mean, std)
        if self.weights is None:
            self.weights = init_ensemble(self.ensemble_size, self._width, self.HIDDEN, self.generator)
        fit_ensemble(
            self.weights, self._encoded, (rewards - mean) / std, self.epochs, self.lr, self.generator, self.FIT_BATCH
        )
        self.new_since_fit = 0
        self.num_fits += 1

    def predict(self, archs: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        """Ensemble mean and std of the reward of each architecture (in reward units)."""
        if self.weights is None:
            raise RuntimeError("the predictor has not been fitted yet (it fits at the first ask after num_init)")
        mean, std = self._predict([tuple(self.space.encode(a)) for a in archs])
        return mean * self.reward_scale[1] + self.reward_scale[0], std * self.reward_scale[1]

    def _predict(self, choices: list[tuple[int, ...]]) -> tuple[np.ndarray, np.ndarray]:
        assert self.weights is not None  # callers fit first
        out = ensemble_forward(self.weights, self.one_hot(choices)).double().numpy()  # (E, n)
        return out.mean(0), out.std(0)

    # -- batches -------------------------------------------------------------------------------------------
    def _fresh(self) -> tuple[Any, str]:
        """A random sample not asked before when one turns up within `FRESH_TRIES` draws, else any."""
        for _ in range(self.FRESH_TRIES):
            arch = self.space.sample(self.rng)
            key = self.space.key(arch)
            if key not in self.asked:
                break
        return arch, key

    def _candidates(self) -> list[tuple[int, ...]]:
        rewards = np.asarray(self.data_rewards)
        top = np.argsort(-rewards, kind="stable")[: self.num_parents].tolist()
        parents = [self.space.decode(self.data_choices[i]) for i in top]
        num_random = int(self.num_candidates * self.RANDOM_FRACTION)
        seen: set[str] = set()
        out = []
        for i in range(self.num_candidates):
            if i < self.num_candidates - num_random:
                child = parents[i % len(parents)]
                for _ in range(self.MUTATION_TRIES):
                    child = self.space.mutate(child, self.rng)
                    key = self.space.key(child)
                    if key not in self.asked and key not in seen:
                        break
            else:
                child, key = self._fresh()
            if key not in self.asked and key not in seen:
                seen.add(key)
                out.append(tuple(self.space.encode(child)))
        return out

    def _new_batch(self) -> list[tuple[int, ...]]:
        """The best `batch_size` candidates by one Thompson draw each (best first)."""
        self.num_batches += 1
        candidates = self._candidates()
        if not candidates:
            return []
        mean, std = self._predict(candidates)
        score = mean + std * self.rng.standard_normal(len(candidates))
        return [candidates[i] for i in np.argsort(-score, kind="stable")[: self.batch_size].tolist()]

    # -- ask / tell --------------------------------------------------------------------------------------
    def _propose(self) -> tuple[Any, Any]:
        arch = key = None
        if self.num_asked >= self.num_init and self.data_rewards:
            if self.weights is None or self.new_since_fit >= self.batch_size:
                self._fit()
                self.queue = self._new_batch()
            elif not self.queue:
                self.queue = self._new_batch()
            if self.queue:  # its candidates were new when it was made, and only this queue asks since
                arch = self.space.decode(self.queue.pop(0))
                key = self.space.key(arch)
        if arch is None:  # still initial, or nothing new left (a tiny space)
            arch, key = self._fresh()
        assert key is not None  # set with arch
        self.asked[key] = None
        return arch, None

    def _learn(self, arch: Any, payload: Any, result: Result) -> None:
        if result.failed:
            return
        assert result.reward is not None  # not failed
        self.data_choices.append(tuple(self.space.encode(arch)))
        self.data_rewards.append(float(result.reward))
        self.new_since_fit += 1

    # -- checkpoints -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            torch_rng=self.generator.get_state(),
            data_choices=[list(c) for c in self.data_choices],
            data_rewards=list(self.data_rewards),
            asked=list(self.asked),
            queue=[list(c) for c in self.queue],
            weights=None if self.weights is None else [w.clone() for w in self.weights],
            reward_scale=list(self.reward_scale),
            new_since_fit=self.new_since_fit,
            num_fits=self.num_fits,
            num_batches=self.num_batches,
        )
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.generator.set_state(state["torch_rng"].clone())
        self.data_choices = [tuple(map(int, c)) for c in state["data_choices"]]
        self.data_rewards = [float(r) for r in state["data_rewards"]]
        self.asked = dict.fromkeys(str(k) for k in state["asked"])
        self.queue = [tuple(map(int, c)) for c in state["queue"]]
        weights = state["weights"]
        self.weights = None if weights is None else [w.detach().clone().float() for w in weights]
        mean, std = state["reward_scale"]
        self.reward_scale = (float(mean), float(std))
        self.new_since_fit = int(state["new_since_fit"])
        self.num_fits = int(state["num_fits"])
        self.num_batches = int(state["num_batches"])
        self._encoded = torch.zeros(0, self._width)

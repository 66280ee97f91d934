"""Policy-gradient search with the NASNet controller: PPO (NASNet) and REINFORCE (Zoph & Le).

An ask samples a decision sequence from the controller (`Controller`, a one-layer LSTM) with the
strategy's private `torch.Generator` and decodes it; the log-probability of that sequence under the
policy that sampled it is recorded with the ask. A successful tell appends
`(choices, log-prob at sampling time, reward)` to a buffer; when the buffer holds `batch_size`
results the controller is updated on them and the buffer is emptied. Failed results are dropped
(their ask is released, nothing is learned from them). Asks outstanding across an update keep the
log-probability of the policy that sampled them, which is what PPO's ratio needs.

Baseline: an exponential moving average of rewards, `b <- decay * b + (1 - decay) * R`, decay 0.95
(NASNet App. A). The advantages of a minibatch are `R - b` with `b` as it was before that minibatch
(initialised to the mean reward of the first minibatch); `b` is then updated with the minibatch's
rewards in the order they were told. With `normalize_advantages` the advantages of a minibatch are
standardised (mean 0, std 1), which makes an update independent of the reward's units.

Duplicates: the search loop turns down a proposal whose canonical key was already asked in the run
and tells it `Result.already_asked` (`nasforge.strategies.base.ask_new`). Nothing is learned from
such a tell; it only makes the next asks sample from a flatter policy: after every
`DUPLICATES_PER_TEMPERATURE` duplicates in a row the temperature goes up (2, 4, 8, 16, 64), so a
policy that has converged on cells already asked still finds new ones, and it drops back to 1 at
the first tell of a real result. The recorded log-probability is always the policy's own
(temperature 1) one, which is what the update needs. Draws are made `DUPLICATES_PER_TEMPERATURE`
at a time in one batched pass and handed out one per ask (independent draws, so the same
distribution as one draw per ask, at a fraction of the cost when a run of duplicates needs many);
unused draws are dropped at a real result or a change of temperature.

Two sets of defaults (`preset`): "default", made for budgets of hundreds of queries (see
docs/strategies.md for the measurements behind it), and "nasnet", the paper's settings for
20,000 children. Options given explicitly override the preset.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from nasforge.errors import ConfigError
from nasforge.spaces.base import SearchSpace
from nasforge.strategies.base import STRATEGIES, AskTellStrategy, Result
from nasforge.strategies.controller import Controller

#: preset name -> option values; `None` for an option means "the preset's value".
PRESETS: dict[str, dict[str, Any]] = {
    # Small budgets (a few hundred queries): frequent updates, a 14x larger step than NASNet's,
    # advantages in reward-independent units, an entropy bonus on that scale. lr, batch_size and
    # entropy_weight were chosen on NAS-Bench-201's 12-epoch validation reward only, on seeds the
    # reported benchmarks do not use (benchmarks/select_presets.py, docs/strategies.md).
    "default": {
        "batch_size": 5,
        "lr": 0.005,
        "entropy_weight": 0.01,
        "baseline_decay": 0.95,
        "hidden_size": 100,
        "init_range": 0.1,
        "normalize_advantages": True,
        "max_grad_norm": None,
        "epochs": 4,
        "clip": 0.2,
    },
    # NASNet App. A (Zoph et al. 2018): 20,000 children, PPO minibatches of 20.
    "nasnet": {
        "batch_size": 20,
        "lr": 0.00035,
        "entropy_weight": 0.00001,
        "baseline_decay": 0.95,
        "hidden_size": 100,
        "init_range": 0.1,
        "normalize_advantages": False,
        "max_grad_norm": None,
        "epochs": 4,
        "clip": 0.2,
    },
}


def _check(
    name: str, value: Any, kind: type, low: float | None = None, high: float | None = None, low_open: bool = False
) -> Any:
    ok = isinstance(value, (int, float) if kind is float else kind) and not isinstance(value, bool)
    if ok and kind is float:
        ok = math.isfinite(float(value))
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        bounds = []
        if low is not None:
            bounds.append(f"{'>' if low_open else '>='} {low}")
        if high is not None:
            bounds.append(f"<= {high}")
        what = "an integer" if kind is int else "a number"
        raise ConfigError(name, f"must be {what}{' ' + ' and '.join(bounds) if bounds else ''}, got {value!r}")
    return kind(value)


def _preset(preset: Any) -> dict[str, Any]:
    if not isinstance(preset, str) or preset not in PRESETS:
        raise ConfigError("preset", f"unknown preset {preset!r}", sorted(PRESETS))
    return PRESETS[preset]


class PolicyGradientStrategy(AskTellStrategy):
    """Shared machinery of `PPOStrategy` and `ReinforceStrategy`; subclasses implement `_optimize`.

    Every option left at None takes the value of `preset` (see `PRESETS`).
    """

    #: sampling temperatures after runs of duplicates: the policy, then ever flatter versions of it.
    RESAMPLE_TEMPERATURES = (1.0, 2.0, 4.0, 8.0, 16.0, 64.0)
    DUPLICATES_PER_TEMPERATURE = 16

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        *,
        preset: str = "default",
        batch_size: int | None = None,
        lr: float | None = None,
        entropy_weight: float | None = None,
        baseline_decay: float | None = None,
        hidden_size: int | None = None,
        init_range: float | None = None,
        normalize_advantages: bool | None = None,
        max_grad_norm: float | None = None,
    ):
        super().__init__(space, seed)
        values = _preset(preset)
        self.preset = preset

        def pick(name: str, value: Any) -> Any:
            return values[name] if value is None else value

        self.batch_size = _check("batch_size", pick("batch_size", batch_size), int, 1)
        self.lr = _check("lr", pick("lr", lr), float, 0, low_open=True)
        self.entropy_weight = _check("entropy_weight", pick("entropy_weight", entropy_weight), float)
        self.baseline_decay = _check("baseline_decay", pick("baseline_decay", baseline_decay), float, 0, 1)
        self.hidden_size = _check("hidden_size", pick("hidden_size", hidden_size), int, 1)
        self.init_range = _check("init_range", pick("init_range", init_range), float, 0)
        normalize = pick("normalize_advantages", normalize_advantages)
        if not isinstance(normalize, bool):
            raise ConfigError("normalize_advantages", f"must be true or false, got {normalize!r}")
        self.normalize_advantages = normalize
        grad_norm = pick("max_grad_norm", max_grad_norm)
        self.max_grad_norm = None if grad_norm is None else _check("max_grad_norm", grad_norm, float, 0, low_open=True)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.controller = Controller(
            [d.num_options for d in space.decisions], self.hidden_size, self.init_range, generator=self.generator
        )
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=self.lr)
        self.baseline: float | None = None
        self.buffer: list[list[Any]] = []  # [choices, log-prob at sampling time, reward]
        self.duplicate_streak = 0  # duplicates told since the last real result
        self.draws: list[list[Any]] = []  # [choices, log-prob] drawn in one pass, handed out in order
        self.num_updates = 0
        self.last_update: dict[str, float] = {}

    def options(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "entropy_weight": self.entropy_weight,
            "baseline_decay": self.baseline_decay,
            "hidden_size": self.hidden_size,
            "init_range": self.init_range,
            "normalize_advantages": self.normalize_advantages,
            "max_grad_norm": self.max_grad_norm,
        }

    # -- ask / tell --------------------------------------------------------------------------------------
    def _propose(self) -> tuple[Any, Any]:
        if not self.draws:
            level = min(self.duplicate_streak // self.DUPLICATES_PER_TEMPERATURE, len(self.RESAMPLE_TEMPERATURES) - 1)
            batch, log_probs = self.controller.sample_batch(
                self.DUPLICATES_PER_TEMPERATURE, self.generator, self.RESAMPLE_TEMPERATURES[level]
            )
            self.draws = [[row, float(lp)] for row, lp in zip(batch.tolist(), log_probs.tolist())]
        row, log_prob = self.draws.pop(0)
        return self.space.decode(row), [row, log_prob]

    def _learn(self, arch: Any, payload: Any, result: Result) -> None:
        if result.duplicate:
            self.duplicate_streak += 1
            if self.duplicate_streak % self.DUPLICATES_PER_TEMPERATURE == 0:
                self.draws = []  # the next draws are flatter
            return
        self.duplicate_streak = 0
        self.draws = []
        if result.failed:
            return
        assert result.reward is not None  # not failed
        choices, old_log_prob = payload
        self.buffer.append([list(choices), float(old_log_prob), float(result.reward)])
        if len(self.buffer) >= self.batch_size:
            batch, self.buffer = self.buffer, []
            self._update(batch)

    def _update(self, batch: list[list[Any]]) -> None:
        rewards = [r for _, _, r in batch]
        if self.baseline is None:
            self.baseline = sum(rewards) / len(rewards)
        advantages = [r - self.baseline for r in rewards]
        for r in rewards:
            self.baseline = self.baseline_decay * self.baseline + (1.0 - self.baseline_decay) * r
        choices = torch.tensor([c for c, _, _ in batch], dtype=torch.long)
        old_log_prob = torch.tensor([lp for _, lp, _ in batch], dtype=torch.float32)
        adv = torch.tensor(advantages, dtype=torch.float32)
        if self.normalize_advantages and len(batch) > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        self.controller.train()
        stats = self._optimize(choices, old_log_prob, adv)
        self.num_updates += 1
        self.last_update = {"baseline": float(self.baseline), "mean_reward": sum(rewards) / len(rewards), **stats}

    def _step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.controller.parameters(), self.max_grad_norm)
        self.optimizer.step()

    def _optimize(self, choices: torch.Tensor, old_log_prob: torch.Tensor, adv: torch.Tensor) -> dict[str, float]:
        raise NotImplementedError

    # -- inspection --------------------------------------------------------------------------------------
    def most_likely(self) -> Any:
        """The architecture made of each step's most probable option (greedy decoding)."""
        return self.space.decode(self.controller.greedy())

    # -- checkpoints -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            torch_rng=self.generator.get_state(),
            controller={k: v.detach().clone() for k, v in self.controller.state_dict().items()},
            optimizer=_snapshot(self.optimizer.state_dict()),
            baseline=self.baseline,
            buffer=[[list(c), lp, r] for c, lp, r in self.buffer],
            duplicate_streak=self.duplicate_streak,
            draws=[[list(c), lp] for c, lp in self.draws],
            num_updates=self.num_updates,
            last_update=dict(self.last_update),
        )
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.generator.set_state(state["torch_rng"].clone())
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(_snapshot(state["optimizer"]))
        self.baseline = None if state["baseline"] is None else float(state["baseline"])
        self.buffer = [[list(map(int, c)), float(lp), float(r)] for c, lp, r in state["buffer"]]
        self.duplicate_streak = int(state.get("duplicate_streak", 0))
        self.draws = [[list(map(int, c)), float(lp)] for c, lp in state.get("draws", [])]
        self.num_updates = int(state["num_updates"])
        self.last_update = dict(state.get("last_update", {}))


@STRATEGIES.register("ppo")
class PPOStrategy(PolicyGradientStrategy):
    """NASNet's controller training: PPO's clipped surrogate objective (Schulman et al. 2017).

    For every minibatch of `batch_size` successful results the controller takes `epochs`
    full-batch Adam steps on

        loss = -mean(min(ratio * A, clip(ratio, 1 - clip, 1 + clip) * A)) - entropy_weight * mean(H)

    with `ratio = exp(log pi(a) - log pi_old(a))`, `pi_old` the policy that sampled each
    architecture and `A = R - b` (standardised within the minibatch with `normalize_advantages`).

    `preset="default"`: minibatch 5, lr 0.005, entropy weight 0.01, standardised advantages:
    made for budgets of a few hundred queries. `preset="nasnet"`: NASNet App. A: lr 0.00035,
    entropy weight 0.00001, minibatch 20, raw advantages. Both: baseline decay 0.95, 100 LSTM units,
    init U(-0.1, 0.1) (NASNet),
    clip 0.2 (PPO paper), epochs 4 (NASNet gives none; PPO's own Atari setting is 3, MuJoCo 10).
    """

    name = "ppo"

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        *,
        preset: str = "default",
        batch_size: int | None = None,
        epochs: int | None = None,
        clip: float | None = None,
        lr: float | None = None,
        entropy_weight: float | None = None,
        baseline_decay: float | None = None,
        hidden_size: int | None = None,
        init_range: float | None = None,
        normalize_advantages: bool | None = None,
        max_grad_norm: float | None = None,
    ):
        values = _preset(preset)
        self.epochs = _check("epochs", values["epochs"] if epochs is None else epochs, int, 1)
        self.clip = _check("clip", values["clip"] if clip is None else clip, float, 0, low_open=True)
        super().__init__(
            space,
            seed,
            preset=preset,
            batch_size=batch_size,
            lr=lr,
            entropy_weight=entropy_weight,
            baseline_decay=baseline_decay,
            hidden_size=hidden_size,
            init_range=init_range,
            normalize_advantages=normalize_advantages,
            max_grad_norm=max_grad_norm,
        )

    def options(self) -> dict[str, Any]:
        return {**super().options(), "epochs": self.epochs, "clip": self.clip}

    def _optimize(self, choices: torch.Tensor, old_log_prob: torch.Tensor, adv: torch.Tensor) -> dict[str, float]:
        clipped = 0.0
        for _ in range(self.epochs):
            log_prob, entropy = self.controller.log_prob(choices)
            ratio = torch.exp(log_prob - old_log_prob)
            surrogate = torch.min(ratio * adv, ratio.clamp(1.0 - self.clip, 1.0 + self.clip) * adv)
            loss = -surrogate.mean() - self.entropy_weight * entropy.mean()
            self._step(loss)
            clipped = float(((ratio - 1.0).abs() > self.clip).float().mean())
        return {"loss": float(loss.detach()), "entropy": float(entropy.detach().mean()), "clip_fraction": clipped}


@STRATEGIES.register("reinforce")
class ReinforceStrategy(PolicyGradientStrategy):
    """REINFORCE (Williams 1992) as in Zoph & Le 2017, with the NASNet controller.

    For every minibatch of `batch_size` successful results one Adam step on
    `loss = -mean(A * log pi(a)) - entropy_weight * mean(H)`, with `log pi` re-evaluated under
    the current policy. Presets as `PPOStrategy`'s (without epochs and clip), so the two differ
    only in the update rule; Zoph & Le used lr 0.0006 with a two-layer, 35-unit LSTM.
    """

    name = "reinforce"

    def _optimize(self, choices: torch.Tensor, old_log_prob: torch.Tensor, adv: torch.Tensor) -> dict[str, float]:
        log_prob, entropy = self.controller.log_prob(choices)
        loss = -(adv * log_prob).mean() - self.entropy_weight * entropy.mean()
        self._step(loss)
        return {"loss": float(loss.detach()), "entropy": float(entropy.detach().mean())}


def _snapshot(value: Any) -> Any:
    """A copy of a nested optimizer state that shares no tensor with it; `copy.deepcopy` does
    the same several times slower, and a checkpoint is taken after every ask and tell."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_snapshot(v) for v in value)
    return value

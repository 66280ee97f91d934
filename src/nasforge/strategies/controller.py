"""The NASNet controller: a one-layer LSTM that emits a space's decisions one step at a time.

Zoph et al. 2018 (NASNet, §4 and App. A): a one-layer LSTM with 100 hidden units makes one softmax
prediction per decision; the architecture's probability is the product of those softmaxes; weights
are initialised uniformly in [-0.1, 0.1]. Here every step has its own softmax head over that step's
options (`Decision.num_options`) and its own embedding table through which its choice is fed into
the next step; step 0 is fed a learned start input. The controller knows only the list of option
counts, so it works on any space's decision sequence.

Storage: the per-step heads and embedding tables are kept as slices of padded tensors
(`head_weight[i, :n_i]`, `head_bias[i, :n_i]`, `embedding[i, :n_i]`), so a whole batch of sequences
is re-evaluated with one LSTM call and one contraction instead of a Python loop over heads. The
padding rows are zero, masked out of every softmax and never looked up, so they receive no gradient
and stay zero: the model is exactly "one head and one table per step".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from nasforge.errors import ConfigError


class Controller(nn.Module):
    """LSTM policy over a sequence of categorical decisions.

    Args:
        num_options: number of options of each step, in order.
        hidden_size: LSTM units (and embedding size); NASNet used 100.
        init_range: every parameter is drawn from U(-init_range, init_range); NASNet used 0.1.
        generator: the `torch.Generator` the initial weights are drawn from (a fresh one seeded
            with 0 if None); the global RNG is never used.
    """

    mask: torch.Tensor  # a buffer: [steps, width], True where an option exists

    def __init__(
        self,
        num_options: Sequence[int],
        hidden_size: int = 100,
        init_range: float = 0.1,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        num_options = [int(n) for n in num_options]
        if not num_options or any(n < 1 for n in num_options):
            raise ConfigError("num_options", f"expected a non-empty list of option counts >= 1, got {num_options}")
        if hidden_size < 1:
            raise ConfigError("hidden_size", f"must be >= 1, got {hidden_size}")
        steps, width, hidden = len(num_options), max(num_options), int(hidden_size)
        self.num_options = tuple(num_options)
        self.hidden_size = hidden
        mask = torch.zeros(steps, width, dtype=torch.bool)
        for i, n in enumerate(num_options):
            mask[i, :n] = True
        self.register_buffer("mask", mask, persistent=False)
        self.start = nn.Parameter(torch.empty(hidden))
        # Built on the meta device: nn.LSTM's default initialisation would draw from the global RNG.
        self.lstm = nn.LSTM(hidden, hidden, num_layers=1, batch_first=True, device="meta").to_empty(device="cpu")
        # embedding[i] feeds step i's choice into step i + 1 (the last step feeds nothing).
        self.embedding = nn.Parameter(torch.empty(steps - 1, width, hidden))
        self.head_weight = nn.Parameter(torch.empty(steps, width, hidden))
        self.head_bias = nn.Parameter(torch.empty(steps, width))
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-init_range, init_range, generator=generator)
            self.embedding.mul_(mask[:-1, :, None])
            self.head_weight.mul_(mask[:, :, None])
            self.head_bias.mul_(mask)

    @property
    def num_steps(self) -> int:
        return len(self.num_options)

    def head(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Step `step`'s softmax head: weight `[num_options, hidden]` and bias `[num_options]`."""
        n = self.num_options[step]
        return self.head_weight[step, :n], self.head_bias[step, :n]

    def sample(self, generator: torch.Generator | None = None) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        """Sample one decision sequence.

        Returns `(choices, log_prob, entropy)`: the option index of every step, the sum of the
        log-probabilities of those choices and the sum of the steps' entropies (0-d tensors, with
        a graph when grad mode is on).
        """
        x = self.start.view(1, -1)
        state = (x.new_zeros(1, self.hidden_size), x.new_zeros(1, self.hidden_size))
        choices: list[int] = []
        log_prob = x.new_zeros(())
        entropy = x.new_zeros(())
        for i, n in enumerate(self.num_options):
            state = self._cell(x, state)
            log_p = F.log_softmax(self.head_bias[i, :n] + self.head_weight[i, :n] @ state[0][0], dim=-1)
            p = log_p.exp()
            choice = torch.multinomial(p, 1, generator=generator)
            log_prob = log_prob + log_p[choice[0]]
            entropy = entropy - (p * log_p).sum()
            choices.append(int(choice[0]))
            if i < self.num_steps - 1:
                x = self.embedding[i, choice]
        return choices, log_prob, entropy

    def sample_batch(
        self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample `n` independent decision sequences in one pass (no graph is built).

        Returns `(choices, log_prob)`: `[n, steps]` option indices and `[n]` summed
        log-probabilities *under the policy* (temperature 1). With `temperature` T > 1 the choices
        are drawn from each step's softmax of logits / T, a flatter distribution. Rows are
        independent draws, so taking the first row that meets a condition is rejection sampling
        at the cost of one batched pass.
        """
        with torch.no_grad():
            x = self.start.expand(n, -1)
            state = (x.new_zeros(n, self.hidden_size), x.new_zeros(n, self.hidden_size))
            columns = []
            log_prob = x.new_zeros(n)
            for i, k in enumerate(self.num_options):
                state = self._cell(x, state)
                logits = state[0] @ self.head_weight[i, :k].T + self.head_bias[i, :k]
                log_p = F.log_softmax(logits, dim=-1)
                p = log_p.exp() if temperature == 1.0 else F.softmax(logits / temperature, dim=-1)
                choice = torch.multinomial(p, 1, generator=generator)  # [n, 1]
                log_prob = log_prob + log_p.gather(1, choice)[:, 0]
                columns.append(choice[:, 0])
                if i < self.num_steps - 1:
                    x = self.embedding[i, choice[:, 0]]
        return torch.stack(columns, dim=1), log_prob

    def greedy(self) -> list[int]:
        """The sequence made of each step's most probable option, given the previous choices."""
        with torch.no_grad():
            x = self.start.view(1, -1)
            state = (x.new_zeros(1, self.hidden_size), x.new_zeros(1, self.hidden_size))
            choices = []
            for i, n in enumerate(self.num_options):
                state = self._cell(x, state)
                choice = int((self.head_bias[i, :n] + self.head_weight[i, :n] @ state[0][0]).argmax())
                choices.append(choice)
                if i < self.num_steps - 1:
                    x = self.embedding[i, choice].view(1, -1)
        return choices

    def _cell(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of `self.lstm` (the same weights), without nn.LSTM's per-call overhead."""
        lstm = self.lstm
        # nn.LSTM's per-layer parameters are registered by name, so mypy sees only Module.__getattr__
        weights = cast(
            tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
            (lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0),
        )
        return torch.lstm_cell(x, state, *weights)

    def log_prob(self, choices: torch.Tensor | Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Re-evaluate a batch of decision sequences (shape `[B, steps]`) under the current policy.

        Returns `(log_prob, entropy)`, each of shape `[B]`: per sequence, the summed log-probability
        of its choices and the summed entropy of the step distributions along it.
        """
        choices = torch.as_tensor(choices, dtype=torch.long)
        steps = self.num_steps
        if choices.dim() != 2 or choices.shape[1] != steps:
            raise ConfigError("choices", f"expected shape [batch, {steps}], got {list(choices.shape)}")
        if bool(((choices < 0) | (choices >= torch.tensor(self.num_options))).any()):
            raise ConfigError("choices", "an option index is out of range for its step")
        batch = choices.shape[0]
        inputs = [self.start.expand(batch, 1, -1)]
        if steps > 1:
            inputs.append(self.embedding[torch.arange(steps - 1), choices[:, :-1]])  # [B, steps-1, H]
        out, _ = self.lstm(torch.cat(inputs, dim=1))  # [B, steps, H]
        logits = torch.einsum("bth,tnh->btn", out, self.head_weight) + self.head_bias
        log_p = F.log_softmax(logits.masked_fill(~self.mask, float("-inf")), dim=-1)
        log_prob = log_p.gather(2, choices[:, :, None])[:, :, 0].sum(dim=1)
        entropy = -(log_p.exp() * log_p.masked_fill(~self.mask, 0.0)).sum(dim=(1, 2))
        return log_prob, entropy

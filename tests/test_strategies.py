"""Search strategies: the ask/tell contract, failures, checkpoints, determinism and learning."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from toys import TargetSpace, make_script, roundtrip, run_ops, toy_result

from nasforge.arch.nasnet import NASNetArchitecture
from nasforge.errors import ConfigError, NasforgeError
from nasforge.spaces import NASNetSpace
from nasforge.spaces.base import SearchSpace
from nasforge.strategies import (
    STRATEGIES,
    Controller,
    Exhausted,
    GridSearch,
    NotAskedError,
    PPOStrategy,
    RandomSearch,
    RegularizedEvolution,
    ReinforceStrategy,
    Result,
    create_strategy,
    strategy_options,
)
from nasforge.strategies.base import RepeatedProposals, ask_new


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The controller's ops are tiny: intra-op threads only add synchronisation on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make(name: str, space: SearchSpace, seed: int = 0):
    """Small, fast settings so that every code path (population full, updates) is reached quickly."""
    options = {"evolution": {"population_size": 5, "sample_size": 3},
               "ppo": {"batch_size": 3, "hidden_size": 16, "lr": 0.01},
               "reinforce": {"batch_size": 3, "hidden_size": 16, "lr": 0.01},
               "local": {"num_init": 4},
               "predictor": {"num_init": 4, "batch_size": 3, "ensemble_size": 2, "num_candidates": 12,
                             "num_parents": 3, "epochs": 5}}.get(name, {})
    return create_strategy(name, space, seed, **options)


def assert_plain(value, where="state"):
    """Only plain Python values and tensors: what torch.load(weights_only=True) and JSON-ish tools take."""
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, (str, int)), f"{where}: key {k!r}"
            assert_plain(v, f"{where}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            assert_plain(v, f"{where}[{i}]")
    else:
        assert value is None or type(value) in (str, int, float, bool) or isinstance(value, torch.Tensor), \
            f"{where}: {type(value).__name__}"


# -- the registry ------------------------------------------------------------------------------------------

def test_registry_and_one_line_errors():
    space = TargetSpace()
    assert set(STRATEGIES) == {"random", "evolution", "grid", "ppo", "reinforce", "local", "predictor"}
    for name, cls in STRATEGIES.items():
        strategy = create_strategy(name, space, 3)
        assert isinstance(strategy, cls) and strategy.name == name and strategy.seed == 3
    with pytest.raises(ConfigError, match="unknown strategy 'nope'.*ppo") as info:
        create_strategy("nope", space)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="^strategy.population: unknown option for strategy 'evolution'.*population_size"):
        create_strategy("evolution", space, population=3)
    assert "epochs" in strategy_options("ppo") and "epochs" not in strategy_options("reinforce")
    for name, bad in [("evolution", {"population_size": 0}), ("evolution", {"sample_size": -1}),
                      ("ppo", {"batch_size": 0}), ("ppo", {"lr": 0}), ("ppo", {"clip": -0.1}),
                      ("reinforce", {"baseline_decay": 1.5}), ("grid", {"values": {"nope": [0]}}),
                      ("grid", {"values": {"s0": [9]}}), ("grid", {"architectures": [(9, 9, 9, 9, 9, 9)]})]:
        with pytest.raises(ConfigError) as info:
            create_strategy(name, space, **bad)
        assert "\n" not in str(info.value)


# -- the ask/tell contract -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_out_of_order_tells_and_unasked_tells(name):
    space = TargetSpace()
    strategy = make(name, space)
    archs = [strategy.ask() for _ in range(8)]
    assert strategy.num_pending == 8
    for arch in reversed(archs):
        strategy.tell(arch, space.reward(arch))  # a plain number is a successful reward
    assert strategy.num_pending == 0 and strategy.num_told == 8
    best_arch, best_reward = strategy.best()
    assert best_reward == max(space.reward(a) for a in archs) and space.reward(best_arch) == best_reward
    with pytest.raises(NotAskedError, match="no outstanding ask") as info:
        strategy.tell(archs[0], 0.5)  # already told
    assert isinstance(info.value, ConfigError) and isinstance(info.value, NasforgeError)
    assert "\n" not in str(info.value)
    never = next(a for a in space.iter_all() if space.key(a) not in {space.key(b) for b in archs})
    with pytest.raises(NotAskedError):
        strategy.tell(never, Result.ok(1.0))
    with pytest.raises(ConfigError, match="expected a Result or a number"):
        strategy.tell(strategy.ask(), "0.5")


def test_tells_match_the_first_outstanding_ask_with_the_key():
    space = TargetSpace(2, 3, symmetric=True)
    grid = GridSearch(space, architectures=[(0, 1), (1, 0), (2, 2)], deduplicate=False)
    a, b, c = grid.ask(), grid.ask(), grid.ask()
    assert space.key(a) == space.key(b)
    grid.tell(b, 0.1)  # matches the ask of `a`, the first outstanding one with that key
    grid.tell(a, 0.2)
    with pytest.raises(NotAskedError):
        grid.tell((1, 0), 0.3)
    grid.tell(c, 0.0)
    assert grid.num_pending == 0


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_failures_are_not_rewards(name):
    space = TargetSpace()
    strategy = make(name, space)
    archs = [strategy.ask() for _ in range(6)]
    for arch in archs:
        strategy.tell(arch, Result.failure("out of memory"))
    assert strategy.num_failed == 6 and strategy.num_pending == 0 and strategy.best() is None
    arch = strategy.ask()
    strategy.tell(arch, float("nan"))  # a NaN reward counts as a failure, not as a number
    assert strategy.num_failed == 7 and strategy.best() is None
    if name == "evolution":
        assert strategy.num_successes == 0 and len(strategy.population) == 0
    if name in ("ppo", "reinforce"):
        assert strategy.buffer == [] and strategy.num_updates == 0 and strategy.baseline is None


# -- determinism and checkpoints ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_same_seed_same_asks_and_no_global_rng(name):
    space = TargetSpace()
    ops = make_script(60, 1)
    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()
    first = run_ops(make(name, space, seed=7), space, ops, [])
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == numpy_state[1].tolist()
    assert run_ops(make(name, space, seed=7), space, ops, []) == first
    if name != "grid":
        assert run_ops(make(name, space, seed=8), space, ops, []) != first


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_restore_at_any_point_continues_identically(name):
    """Checkpoint after every ask and tell (with asks outstanding), restore into a fresh object
    (directly and through torch.save/torch.load(weights_only=True)) and get the same future asks."""
    space = TargetSpace()
    cheap = name in ("random", "evolution", "grid", "local")
    ops = make_script(70 if cheap else 46, 2)
    original = make(name, space, seed=5)
    outstanding: list = []
    checkpoints = []
    asked: list[str] = []
    for i, op in enumerate(ops):
        asked += run_ops(original, space, [op], outstanding)
        state = original.state_dict()
        assert_plain(state)
        checkpoints.append((i + 1, state, roundtrip(state), list(outstanding), len(asked)))
    for k, (position, state, saved, pending, n_asked) in enumerate(checkpoints):
        # `state` was taken before the original went on (no aliasing); `saved` went through torch.save.
        sources = (state, saved) if cheap else ((state,) if k % 2 else (saved,))
        for source in sources:
            restored = make(name, space, seed=123)  # the seed comes from the checkpoint
            restored.load_state_dict(source)
            assert restored.num_pending == len(pending)
            assert run_ops(restored, space, ops[position:], list(pending)) == asked[n_asked:]
            assert restored.best() == original.best()
            assert restored.num_told == original.num_told


def test_checkpoint_of_other_options_or_strategy_is_refused():
    space = TargetSpace()
    state = RegularizedEvolution(space, population_size=5).state_dict()
    with pytest.raises(ConfigError, match="population_size"):
        RegularizedEvolution(space, population_size=6).load_state_dict(state)
    with pytest.raises(ConfigError, match="strategy 'evolution'"):
        RandomSearch(space).load_state_dict(state)


# -- random search ------------------------------------------------------------------------------------------------

def test_random_search_is_uniform_per_decision():
    space = TargetSpace(3, 4)
    strategy = RandomSearch(space, seed=0)
    counts = np.zeros((3, 4))
    for _ in range(2000):
        arch = strategy.ask()
        strategy.tell(arch, 0.0)
        for i, c in enumerate(arch):
            counts[i, c] += 1
    assert np.abs(counts / 2000 - 0.25).max() < 0.04


# -- regularized evolution ----------------------------------------------------------------------------------------

def test_evolution_random_until_population_then_aging_tournament():
    space = TargetSpace()
    strategy = RegularizedEvolution(space, seed=0, population_size=4, sample_size=200)
    paper = RegularizedEvolution(space)
    paper.plan(20_000)  # the paper's CIFAR-10 search: P=100, S=25
    assert (paper.population_size, paper.sample_size) == (100, 25)
    first = [strategy.ask() for _ in range(6)]  # all random: nothing has been told yet
    strategy.tell(first[0], Result.failure("nan loss"))
    for arch in first[1:4]:
        strategy.tell(arch, space.reward(arch))
    assert strategy.num_successes == 3
    # Only 3 successes: still sampling at random (a random 6-step sequence is rarely 1 step from them).
    strategy.tell(first[4], space.reward(first[4]))
    strategy.tell(first[5], space.reward(first[5]))
    assert [a for a, _ in strategy.population] == first[2:6]  # oldest (first[1]) removed
    assert strategy.num_successes == 5
    rewards = [space.reward(a) for a in first[1:6]]
    for _ in range(30):
        top = max(r for _, r in strategy.population)
        child = strategy.ask()
        # S=200 draws with replacement from 4 members: the parent is (almost surely) a best member.
        assert any(sum(a != b for a, b in zip(child, m)) == 1 for m, r in strategy.population if r == top)
        strategy.tell(child, space.reward(child))
        assert len(strategy.population) == 4
        assert strategy.population[-1][0] == child
        rewards.append(space.reward(child))
    assert strategy.best()[1] == max(rewards)


def test_evolution_finds_the_toy_optimum():
    space = TargetSpace()
    strategy = RegularizedEvolution(space, seed=0, population_size=20, sample_size=5)
    for _ in range(400):
        arch = strategy.ask()
        strategy.tell(arch, space.reward(arch))
    assert strategy.best() == (space.target, 1.0)


# -- grid search -----------------------------------------------------------------------------------------------------

def test_grid_enumerates_the_space_then_is_exhausted():
    space = TargetSpace(2, 3)
    grid = GridSearch(space)
    assert grid.total == 9 and not grid.exhausted
    archs = [grid.ask() for _ in range(9)]
    assert archs == list(space.iter_all())
    assert grid.exhausted
    with pytest.raises(Exhausted):
        grid.ask()
    for arch in archs:
        grid.tell(arch, space.reward(arch))
    assert grid.best()[1] == 1.0


def test_grid_explicit_list_values_and_deduplication():
    space = TargetSpace(2, 3, symmetric=True)
    # (1, 0) has the key of (0, 1): skipped
    assert iter_grid(GridSearch(space)) == [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    assert len(iter_grid(GridSearch(space, deduplicate=False))) == 9
    listed = GridSearch(space, architectures=[(2, 2), [1, 1], (2, 2)])  # JSON values are accepted
    assert iter_grid(listed) == [(2, 2), (1, 1)]
    by_values = GridSearch(space, values={"s0": [2, 0], 1: [1]}, deduplicate=False)
    assert by_values.total == 2 and iter_grid(by_values) == [(2, 1), (0, 1)]
    with pytest.raises(ConfigError, match="not both"):
        GridSearch(space, architectures=[(0, 0)], values={"s0": [0]})


def iter_grid(grid):
    out = []
    while not grid.exhausted:
        out.append(grid.ask())
    return out


# -- the controller -------------------------------------------------------------------------------------------------

def test_controller_structure_init_and_probabilities():
    controller = Controller([3, 2, 4], hidden_size=10, generator=torch.Generator().manual_seed(0))
    assert [tuple(t.shape) for t in controller.head(0)] == [(3, 10), (3,)]
    assert [controller.head(i)[1].shape[0] for i in range(3)] == [3, 2, 4]
    assert controller.embedding.shape == (2, 4, 10)  # steps 0 and 1 feed the next step; padded to 4 rows
    assert controller.lstm.hidden_size == 10 and controller.lstm.num_layers == 1 and controller.start.shape == (10,)
    for p in controller.parameters():
        assert 0 < p.abs().max() <= 0.1
    # The policy is a distribution over all 24 sequences.
    every = torch.tensor([[a, b, c] for a in range(3) for b in range(2) for c in range(4)])
    log_prob, entropy = controller.log_prob(every)
    assert log_prob.shape == (24,) and entropy.shape == (24,)
    assert math.isclose(float(log_prob.detach().exp().sum()), 1.0, rel_tol=1e-5)
    choices, lp, ent = controller.sample(torch.Generator().manual_seed(1))
    assert math.isclose(float(lp.detach()), float(controller.log_prob([choices])[0][0].detach()), abs_tol=1e-5)
    assert 0 < float(ent.detach()) <= math.log(3) + math.log(2) + math.log(4) + 1e-5
    lp2, _ = controller.log_prob([choices])
    lp2.sum().backward()
    assert all(p.grad is not None for p in controller.parameters())
    assert float(controller.head_weight.grad[1, 2:].abs().sum()) == 0.0  # padding: no gradient
    with pytest.raises(ConfigError):
        controller.log_prob([[0, 0]])


def test_nasnet_space_controller_has_fifty_steps():
    space = NASNetSpace()
    strategy = PPOStrategy(space, seed=0, batch_size=4)
    controller = strategy.controller
    assert controller.num_steps == 50 and controller.hidden_size == 100
    assert controller.num_options == tuple(d.num_options for d in space.decisions)
    archs = [strategy.ask() for _ in range(5)]
    assert all(isinstance(a, NASNetArchitecture) for a in archs)
    for i, arch in enumerate(archs[:4]):
        strategy.tell(arch, 0.5 + 0.1 * i)
    assert strategy.num_updates == 1
    restored = PPOStrategy(space, seed=0, batch_size=4)
    restored.load_state_dict(roundtrip(strategy.state_dict()))
    restored.tell(archs[4], 0.9)  # an ask outstanding at checkpoint time is still known
    assert [space.key(strategy.ask()) for _ in range(3)] == [space.key(restored.ask()) for _ in range(3)]


def test_ppo_uses_the_log_prob_of_the_sampling_policy():
    space = TargetSpace()
    strategy = PPOStrategy(space, seed=0, batch_size=3, lr=0.05, hidden_size=16)
    early = strategy.ask()
    (choices, old_log_prob), = [p for _, p in strategy.pending.state_dict()]
    for _ in range(3):  # an update happens while `early` is outstanding
        arch = strategy.ask()
        strategy.tell(arch, space.reward(arch))
    assert strategy.num_updates == 1
    now = float(strategy.controller.log_prob([choices])[0][0].detach())
    assert abs(now - old_log_prob) > 1e-4
    strategy.tell(early, 0.7)
    assert strategy.buffer == [[list(early), old_log_prob, 0.7]]


def test_presets_paper_and_small_budget_defaults():
    space = TargetSpace()
    ppo = PPOStrategy(space, preset="nasnet")
    assert (ppo.batch_size, ppo.lr, ppo.entropy_weight, ppo.baseline_decay, ppo.clip, ppo.hidden_size) == \
        (20, 0.00035, 0.00001, 0.95, 0.2, 100)
    assert (ppo.epochs, ppo.normalize_advantages, ppo.max_grad_norm) == (4, False, None)
    assert ppo.optimizer.param_groups[0]["lr"] == 0.00035
    reinforce = ReinforceStrategy(space, preset="nasnet")
    assert (reinforce.batch_size, reinforce.lr, reinforce.baseline_decay) == (20, 0.00035, 0.95)
    default = PPOStrategy(space)  # made for budgets of hundreds of queries (docs/strategies.md)
    assert (default.preset, default.batch_size, default.lr, default.entropy_weight, default.normalize_advantages,
            default.epochs, default.clip, default.hidden_size) == \
        ("default", 5, 0.005, 0.01, True, 4, 0.2, 100)
    mixed = PPOStrategy(space, preset="nasnet", lr=0.01)  # explicit options override the preset
    assert (mixed.lr, mixed.batch_size, mixed.options()["preset"]) == (0.01, 20, "nasnet")
    with pytest.raises(ConfigError, match="unknown preset 'fast'.*nasnet"):
        PPOStrategy(space, preset="fast")
    with pytest.raises(ConfigError, match="normalize_advantages"):
        ReinforceStrategy(space, normalize_advantages="yes")
    with pytest.raises(ConfigError, match="preset"):  # a checkpoint of the other preset is refused
        PPOStrategy(space).load_state_dict(ppo.state_dict())


class Constant(RandomSearch):
    """Proposes the same architecture every time: a search that can only repeat itself."""

    name = "constant"

    def _propose(self):
        return (0, 0, 0, 0, 0, 0), None


def test_the_duplicate_filter_reasks_then_stops_with_a_reason():
    space = TargetSpace()
    strategy = Constant(space)
    arch, key, repeats = ask_new(strategy, space, set())
    assert (arch, repeats) == ((0,) * 6, 0)
    strategy.tell(arch, 0.5)
    with pytest.raises(RepeatedProposals, match=r"only architectures already asked in this run \(4 in a row\)"):
        ask_new(strategy, space, {key}, limit=3)
    # every repeat was told as a duplicate: no ask is left outstanding, none counts as a failure
    assert (strategy.num_asked, strategy.num_duplicates, strategy.num_failed, strategy.num_pending) == (5, 4, 0, 0)
    state = strategy.state_dict()
    assert state["num_duplicates"] == 4
    restored = Constant(space)
    restored.load_state_dict(state)
    assert restored.num_duplicates == 4


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_runs_under_the_filter_without_repeats(name):
    space = TargetSpace(3, 3, symmetric=True)  # 10 distinct keys among 27 sequences
    strategy = make(name, space)
    seen: set[str] = set()
    try:
        for _ in range(10):
            arch, key, _ = ask_new(strategy, space, seen, limit=200)
            seen.add(key)
            strategy.tell(arch, toy_result(space, arch))
    except (Exhausted, RepeatedProposals):
        assert name in ("grid", "constant")
    assert len(seen) == 10 or name == "grid"  # grid: 27 sequences in key order, all 10 keys reachable
    assert strategy.num_pending == 0 and strategy.best() is not None
    assert strategy.num_duplicates + len(seen) == strategy.num_told  # each new key told once


@pytest.mark.parametrize("cls", [PPOStrategy, ReinforceStrategy])
def test_duplicates_flatten_the_policy_until_a_real_result(cls):
    space = TargetSpace()
    strategy = cls(space, seed=0, batch_size=2, hidden_size=8)
    for _ in range(2 * cls.DUPLICATES_PER_TEMPERATURE):
        arch = strategy.ask()
        strategy.tell(arch, Result.already_asked(space.key(arch)))
    assert strategy.duplicate_streak == 32 and strategy.num_updates == 0 and strategy.buffer == []
    arch = strategy.ask()  # drawn at temperature 4; its log-prob is the policy's own
    (choices, log_prob), = [p for _, p in strategy.pending.state_dict()]
    assert abs(float(strategy.controller.log_prob([choices])[0][0].detach()) - log_prob) < 1e-5
    strategy.tell(arch, 0.5)
    assert strategy.duplicate_streak == 0 and strategy.state_dict()["duplicate_streak"] == 0


def test_evolution_population_is_fitted_to_the_budget():
    space = TargetSpace()
    sizes = RegularizedEvolution.sizes_for
    assert [sizes(b) for b in (50, 100, 200, 1000, 20000, None)] == \
        [(10, 3), (10, 3), (20, 5), (100, 25), (100, 25), (20, 5)]
    assert sizes(100, population_size=50) == (50, 13) and sizes(100, sample_size=2) == (10, 2)
    evolution = RegularizedEvolution(space)
    evolution.plan(100)
    assert (evolution.population_size, evolution.sample_size) == (10, 3)
    assert evolution.options() == {"population_size": None, "sample_size": None}
    arch = evolution.ask()
    evolution.tell(arch, 0.5)
    evolution.plan(1000)  # a plan after the first ask changes nothing: the run keeps its sizes
    assert evolution.population_size == 10
    resumed = RegularizedEvolution(space)
    resumed.load_state_dict(evolution.state_dict())
    assert (resumed.population_size, resumed.sample_size) == (10, 3)
    given = RegularizedEvolution(space, population_size=7)
    given.plan(1000)
    assert (given.population_size, given.sample_size) == (7, 2)


def mean_rewards(strategy, space, n):
    rewards = []
    for _ in range(n):
        arch = strategy.ask()
        rewards.append(space.reward(arch))
        strategy.tell(arch, rewards[-1])
    return np.array(rewards)


@pytest.mark.parametrize("cls", [PPOStrategy, ReinforceStrategy])
def test_policy_gradient_learns_the_toy_optimum(cls):
    """6 steps x 5 options, reward = fraction of steps at the optimum (random: 0.2 on average)."""
    space = TargetSpace()
    random_mean = mean_rewards(RandomSearch(space, seed=0), space, 300)[-100:].mean()
    assert random_mean < 0.3
    # The policy itself (its raw asks, repeats included, show what it prefers) concentrates on the optimum.
    policy = cls(space, seed=0)
    rewards = mean_rewards(policy, space, 300)
    assert rewards[-100:].mean() > random_mean + 0.4
    assert policy.best() == (space.target, 1.0)
    assert policy.most_likely() == space.target
    # Under the loop's duplicate filter the optimum is asked once, then its neighbours; it is found early.
    strategy, seen, rewards = cls(space, seed=0), set(), []
    for _ in range(150):
        arch, key, _ = ask_new(strategy, space, seen)
        seen.add(key)
        rewards.append(space.reward(arch))
        strategy.tell(arch, rewards[-1])
    assert strategy.best() == (space.target, 1.0) and rewards.count(1.0) == 1

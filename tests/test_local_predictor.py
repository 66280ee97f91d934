"""Local search and the BANANAS-style predictor strategy: neighbourhoods, moves, restarts, batches,
failures and duplicates, and both finding the toy optimum faster than random search.

The ask/tell contract, determinism and exact resume are checked for them by the parametrized tests
of test_strategies.py.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

from nasforge.errors import ConfigError
from nasforge.spaces import SPACES
from nasforge.strategies import STRATEGIES, LocalSearch, PredictorStrategy, RandomSearch, Result, create_strategy
from nasforge.strategies.base import ask_new
from nasforge.strategies.predictor import ensemble_forward, ensemble_gradients, init_ensemble
from toys import TargetSpace, make_script, roundtrip, run_ops, toy_result


def one_step(arch, options: int = 5) -> set[tuple[int, ...]]:
    """Every sequence one decision away from `arch` in a TargetSpace with `options` options per decision."""
    out = set()
    for i, c in enumerate(arch):
        for o in range(options):
            if o != c:
                out.add(arch[:i] + (o,) + arch[i + 1:])
    return out


# -- local search ------------------------------------------------------------------------------------------

def test_local_neighbourhood_is_exactly_the_one_step_neighbours():
    space = TargetSpace()
    strategy = LocalSearch(space, seed=0)
    arch = (0, 1, 2, 3, 4, 0)
    neighbours = strategy.neighbours(arch)
    assert len(neighbours) == 6 * 4 and set(neighbours) == one_step(arch)
    # Isomorphic neighbours (same canonical key) are proposed once; none has the centre's key.
    symmetric = TargetSpace(3, 5, symmetric=True)
    centre = (0, 1, 1)
    keys = [symmetric.key(a) for a in LocalSearch(symmetric).neighbours(centre)]
    expected = {symmetric.key(a) for a in one_step(centre)} - {symmetric.key(centre)}
    assert len(keys) == len(set(keys)) and set(keys) == expected


def test_local_asks_the_shuffled_neighbourhood_then_restarts_at_a_local_optimum():
    space = TargetSpace()
    strategy = LocalSearch(space, seed=1, num_init=3)
    init = [strategy.ask() for _ in range(3)]
    for i, arch in enumerate(init):
        strategy.tell(arch, 0.9 if i == 1 else 0.5)
    centre = init[1]  # the best initial sample
    assert strategy.centre[1] == space.key(centre)
    expected = one_step(centre) - set(init)
    asked = []
    for _ in range(len(expected)):
        arch = strategy.ask()
        asked.append(arch)
        strategy.tell(arch, 0.1)  # no neighbour improves: the centre is a local optimum
    assert set(asked) == expected and len(asked) == len(set(asked))
    assert asked != sorted(asked)  # shuffled, not enumerated
    assert strategy.num_restarts == 0
    restart = strategy.ask()  # a fresh random sample, and the climb continues from it
    assert strategy.num_restarts == 1 and strategy.centre is None
    assert space.key(restart) not in strategy.memory
    strategy.tell(restart, 0.6)  # beats every known neighbour it could have (0.5 at most)
    assert strategy.centre[1] == space.key(restart)
    assert strategy.ask() in one_step(restart)


def test_local_moves_to_the_first_improving_neighbour_even_of_an_old_centre():
    space = TargetSpace()
    strategy = LocalSearch(space, seed=2, num_init=1)
    start = strategy.ask()
    strategy.tell(start, 0.5)
    a, b = strategy.ask(), strategy.ask()  # two neighbours of `start`, both outstanding
    assert {a, b} <= one_step(start)
    strategy.tell(a, 0.6)  # first improvement: move at once
    assert strategy.centre[1] == space.key(a)
    assert strategy.ask() in one_step(a)
    strategy.tell(b, 0.7)  # a late neighbour of the old centre that beats the new one
    assert strategy.centre[1] == space.key(b)
    assert strategy.ask() in one_step(b)
    assert strategy.num_moves == 3


def test_local_uses_known_rewards_without_asking_again():
    """After a restart, a known better neighbour moves the centre at once, back up to the optimum."""
    space = TargetSpace(2, 3)
    strategy = LocalSearch(space, seed=0, num_init=1)
    start = strategy.ask()
    strategy.tell(start, 0.9)
    neighbours = set()
    for _ in range(4):  # 2 decisions x 2 other options
        arch = strategy.ask()
        neighbours.add(arch)
        strategy.tell(arch, 0.8)
    restart = strategy.ask()
    assert strategy.num_restarts == 1 and restart not in neighbours | {start}
    moves = strategy.num_moves
    strategy.tell(restart, 0.1)  # its neighbourhood holds known 0.8s, whose neighbourhood holds the 0.9
    assert strategy.centre[1] == space.key(start) and strategy.num_moves == moves + 3
    strategy.ask()  # nothing left around the optimum: a restart, no repeat of a known architecture
    assert strategy.num_restarts == 2


def test_local_skips_failures_and_duplicates():
    space = TargetSpace()
    strategy = LocalSearch(space, seed=3, num_init=2)
    init = [strategy.ask() for _ in range(2)]
    for arch in init:
        strategy.tell(arch, space.reward(arch))
    centre = strategy.centre
    failed, duplicate = strategy.ask(), strategy.ask()
    strategy.tell(failed, Result.failure("out of memory"))
    strategy.tell(duplicate, Result.already_asked(space.key(duplicate)))
    assert strategy.centre == centre  # nothing learned
    assert space.key(failed) not in strategy.memory and space.key(duplicate) not in strategy.memory
    rest = []
    while strategy.num_restarts == 0:
        arch = strategy.ask()
        rest.append(arch)
        if strategy.num_restarts == 0:
            strategy.tell(arch, 0.0)
    assert failed not in rest and duplicate not in rest  # not proposed again
    # every other neighbour, then the restart
    assert len(rest) == len(one_step(tuple(centre[0])) - set(init)) - 2 + 1


def test_local_keeps_asking_when_every_architecture_is_known():
    space = TargetSpace(1, 2)
    strategy = LocalSearch(space, seed=0, num_init=1)
    for _ in range(12):
        arch = strategy.ask()
        strategy.tell(arch, space.reward(arch))
    assert strategy.best()[1] == 1.0 and len(strategy.memory) == 2 and strategy.num_pending == 0


def test_local_resumes_exactly_across_restarts():
    """A small space, so that the checkpoints fall in every phase: climbs, restarts, known neighbours."""
    space = TargetSpace(3, 3)
    ops = make_script(60, 3)
    original = LocalSearch(space, seed=5, num_init=2)
    outstanding: list = []
    checkpoints, asked = [], []
    for i, op in enumerate(ops):
        asked += run_ops(original, space, [op], outstanding)
        checkpoints.append((i + 1, roundtrip(original.state_dict()), list(outstanding), len(asked)))
    assert original.num_restarts >= 3
    for position, state, pending, n_asked in checkpoints[::2]:
        restored = LocalSearch(space, seed=9, num_init=2)
        restored.load_state_dict(state)
        assert run_ops(restored, space, ops[position:], list(pending)) == asked[n_asked:]
        assert (restored.centre, restored.num_restarts) == (original.centre, original.num_restarts)


# -- the predictor strategy ---------------------------------------------------------------------------------

def test_ensemble_gradients_match_autograd():
    generator = torch.Generator().manual_seed(0)
    weights = [w.double() for w in init_ensemble(3, 7, 5, generator)]
    x = torch.rand(3, 4, 7, generator=generator, dtype=torch.float64)
    y = torch.rand(3, 4, generator=generator, dtype=torch.float64)
    leaves = [w.clone().requires_grad_() for w in weights]
    ((ensemble_forward(leaves, x) - y) ** 2).mean(1).sum().backward()
    for leaf, grad in zip(leaves, ensemble_gradients(weights, x, y)):
        assert torch.allclose(leaf.grad, grad, rtol=1e-9, atol=1e-12)


def test_predictor_options_are_checked():
    space = TargetSpace()
    for name, bad in [("num_init", -1), ("batch_size", 0), ("ensemble_size", 0), ("num_candidates", 0),
                      ("num_parents", 1.5), ("epochs", 0), ("lr", 0), ("lr", float("nan")), ("batch_size", True)]:
        with pytest.raises(ConfigError, match=name) as info:
            create_strategy("predictor", space, **{name: bad})
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="num_init"):
        create_strategy("local", space, num_init=-1)
    defaults = PredictorStrategy(space).options()
    assert defaults == {"num_init": 10, "batch_size": 10, "ensemble_size": 5, "num_candidates": 100,
                        "num_parents": 10, "epochs": 50, "lr": 0.01}


def test_predictor_refits_per_batch_and_fills_a_dry_queue_with_the_current_models():
    space = TargetSpace()
    strategy = PredictorStrategy(space, seed=0, num_init=3, batch_size=3, ensemble_size=2, num_candidates=20,
                                 epochs=5)
    first = [strategy.ask() for _ in range(3)]
    assert strategy.num_fits == 0
    for arch in first:
        strategy.tell(arch, space.reward(arch))
    batch = [strategy.ask() for _ in range(3)]  # one fit, one batch of 3
    assert (strategy.num_fits, strategy.num_batches) == (1, 1)
    extra = strategy.ask()  # results outstanding: a new batch from the same models
    assert (strategy.num_fits, strategy.num_batches) == (1, 2)
    keys = [space.key(a) for a in first + batch + [extra]]
    assert len(set(keys)) == len(keys)  # never an architecture asked before
    for arch in batch:
        strategy.tell(arch, space.reward(arch))
    strategy.ask()
    assert (strategy.num_fits, strategy.num_batches) == (2, 3)
    mean, std = strategy.predict([space.target, first[0]])
    assert mean.shape == std.shape == (2,) and (std >= 0).all()


def test_predictor_learns_nothing_from_failures_and_duplicates():
    space = TargetSpace()
    strategy = PredictorStrategy(space, seed=0, num_init=2, batch_size=2, ensemble_size=2, epochs=5)
    a, b, c = strategy.ask(), strategy.ask(), strategy.ask()
    strategy.tell(a, Result.failure("boom"))
    strategy.tell(b, Result.already_asked(space.key(b)))
    strategy.tell(c, float("nan"))
    assert strategy.data_rewards == [] and strategy.weights is None
    arch = strategy.ask()  # still random: nothing to fit
    assert strategy.num_fits == 0 and space.key(arch) not in {space.key(x) for x in (a, b, c)}
    strategy.tell(arch, 0.4)
    strategy.ask()
    assert strategy.num_fits == 1 and strategy.data_rewards == [0.4]


def test_predictor_ranks_unseen_architectures():
    space = TargetSpace()
    strategy = PredictorStrategy(space, seed=0, num_init=80, epochs=200)
    for _ in range(80):
        arch = strategy.ask()
        strategy.tell(arch, space.reward(arch))
    strategy.ask()  # the first fit
    assert strategy.num_fits == 1
    rng = np.random.default_rng(0)
    test = [space.sample(rng) for _ in range(50)]
    mean, _ = strategy.predict(test)
    assert np.corrcoef(mean, [space.reward(a) for a in test])[0, 1] > 0.7


# -- both against random search ------------------------------------------------------------------------------

def best_after(strategy, space, n: int) -> tuple[float, int | None]:
    """Best reward within `n` asks (toy failures included) and the ask that first reached 1.0."""
    best, hit = 0.0, None
    for i in range(n):
        arch = strategy.ask()
        result = toy_result(space, arch)
        strategy.tell(arch, result)
        if not result.failed:
            best = max(best, result.reward)
            if best == 1.0 and hit is None:
                hit = i + 1
    return best, hit


@pytest.mark.parametrize("cls", [LocalSearch, PredictorStrategy])
def test_finds_the_toy_optimum_sooner_than_random_search(cls):
    space = TargetSpace()  # 15,625 sequences, one optimum; every 7th key fails
    n = 120
    found, bests, random_bests = [], [], []
    for seed in range(4):
        best, hit = best_after(cls(space, seed=seed), space, n)
        found.append(hit)
        bests.append(best)
        random_bests.append(best_after(RandomSearch(space, seed=seed), space, n)[0])
    assert all(hit is not None for hit in found), found
    assert np.mean(bests) > np.mean(random_bests)  # random search: about 120 / 15,625 chances of the optimum


# -- every strategy on every space ---------------------------------------------------------------------------

@pytest.mark.parametrize("space_name", sorted(SPACES))
@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_searches_every_space_under_the_filter(space_name, name):
    """15 evaluated cells (a made-up reward from the key) through the loop's filter, with a checkpoint
    round trip half way: what `nasforge search` does with any strategy on any space."""
    space = SPACES[space_name]()
    options = {"local": {"num_init": 3}, "predictor": {"num_init": 3, "batch_size": 3, "num_candidates": 12,
                                                       "epochs": 5},
               "ppo": {"batch_size": 3, "hidden_size": 16}, "reinforce": {"batch_size": 3, "hidden_size": 16}}
    strategy = create_strategy(name, space, 0, **options.get(name, {}))
    strategy.plan(15)
    seen: set[str] = set()
    for i in range(15):
        if i == 7:
            restored = create_strategy(name, space, 1, **options.get(name, {}))
            restored.load_state_dict(roundtrip(strategy.state_dict()))
            strategy = restored
        arch, key, _ = ask_new(strategy, space, seen)
        space.validate(arch)
        seen.add(key)
        strategy.tell(arch, (zlib.crc32(key.encode()) % 1000) / 1000)
    assert len(seen) == 15 and strategy.num_pending == 0 and strategy.best() is not None

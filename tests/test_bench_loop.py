"""nasforge.benchmarking searches through `Experiment` (an in-memory store): what each duplicate
protocol looks up, and what a seed's result says about the search."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from nasforge.benchmarking import BenchTable, run_seed_budgets
from nasforge.spaces import NB201Space
from nasforge.strategies import create_strategy


@pytest.fixture(scope="module")
def literal_table(tmp_path_factory):
    """Every NB201 cell with a score that counts the pooling ops on all six edges, unused ones too:
    cells with the same canonical key (isomorphic, or differing only on unused edges) score
    differently, as the rows of a real table may."""
    space = NB201Space()
    path = tmp_path_factory.mktemp("bench") / "literal.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arch_str", "score"])
        for arch in space.iter_all():
            text = space.to_json(arch)["arch"]
            writer.writerow([text, text.count("avg_pool_3x3") + 0.1 * text.count("nor_conv_3x3")])
    return BenchTable(str(path), space=space, reward_column="score", arch_column="arch_str")


@pytest.mark.parametrize("duplicates", ["reuse", "reask"])
def test_every_query_is_looked_up_in_its_own_row(literal_table, monkeypatch, duplicates):
    """"reuse" (the published protocol) looks every ask up again: a cell with the key of an earlier
    one gets its own row's reward, not the earlier cell's; "reask" asks again instead."""
    table, space = literal_table, literal_table.space
    looked_up = []
    lookup = table.lookup
    monkeypatch.setattr(table, "lookup", lambda arch: looked_up.append(arch) or lookup(arch))
    for seed in range(3):
        looked_up.clear()
        result = run_seed_budgets(table, "random", [100, 400], seed, duplicates=duplicates)
        assert len(looked_up) == 400  # one lookup per query, repeats included
        keys = [space.key(a) for a in looked_up]
        assert result[400].distinct == len(set(keys)) == (400 if duplicates == "reask" else result[400].distinct)
        if duplicates == "reuse":  # random search's asks do not depend on its tells: replay them
            strategy = create_strategy("random", space, seed=seed)
            assert [space.key(strategy.ask()) for _ in range(400)] == keys
            assert len(set(keys)) < 400  # the seed did repeat keys
        for budget in (100, 400):
            rewards = [table.lookup(a).reward for a in looked_up[:budget]]
            best = int(np.argmax(rewards))  # the first of equals
            r = result[budget]
            assert (r.queries, r.best_reward, r.report, r.best_query) == (budget, rewards[best], rewards[best],
                                                                          best + 1)
            assert r.best_arch == space.to_json(looked_up[best]) and r.failures == 0 and r.stop == ""
            assert r.asks >= budget and 0 < r.strategy_seconds

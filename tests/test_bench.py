"""`nasforge bench` and nasforge.benchmarking: seed loops against tables, statistics, errors."""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import math

import numpy as np
import pytest
import torch

from nasforge.arch.nb201 import EDGE_NAMES, OPS
from nasforge.benchmarking import BenchTable, SeedResult, mean_std, run_bench, run_bench_budgets, summarize
from nasforge.cli import main
from nasforge.data.paths import data_path
from nasforge.spaces import NB201Space

NB201 = data_path("nasbench201", "nb201_cifar10.csv.gz")
needs_nb201 = pytest.mark.skipif(NB201 is None, reason="the shared NAS-Bench-201 table is not here ($NASFORGE_DATA)")
MACRO = data_path("nasbench_macro", "nb_macro_cifar10.csv.gz")
needs_macro = pytest.mark.skipif(MACRO is None, reason="the shared NAS-Bench-Macro table is not here ($NASFORGE_DATA)")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def bench_json(capsys, *args) -> dict:
    assert main(["bench", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# -- statistics -----------------------------------------------------------------------------------------

def seed_result(seed, reward, report, failures=0, seconds=0.0):
    return SeedResult(seed=seed, queries=10, best_reward=reward, report=report, best_arch=None, best_query=None,
                      distinct=10, failures=failures, strategy_seconds=seconds)


def test_mean_std_arithmetic():
    assert mean_std([1.0, 2.0, 3.0, 4.0]) == (2.5, math.sqrt(1.25))  # ddof=0
    assert mean_std([7.0]) == (7.0, 0.0)
    assert all(math.isnan(v) for v in mean_std([]))
    results = [seed_result(0, 80.0, 93.0, seconds=0.1), seed_result(1, 82.0, 94.0, seconds=0.3),
               seed_result(2, None, None, failures=10, seconds=0.2)]
    summary = summarize("random", {}, 10, results)
    assert summary.seeds == 3 and summary.seeds_without_result == 1  # a seed with only failures has no report
    assert (summary.mean, summary.std) == (93.5, 0.5)
    assert (summary.mean_best_reward, summary.std_best_reward) == (81.0, 1.0)
    assert math.isclose(summary.sem, np.std([93.0, 94.0], ddof=1) / math.sqrt(2))
    assert summary.failures == 10
    assert math.isclose(summary.seconds_per_query, 0.6 / 30)


# -- a generic table with custom columns ------------------------------------------------------------------------

def write_nb201_like(path, rows=None):
    """A CSV with NB201's six op_* columns and made-up columns: reward = 3x3 convs, report = -reward."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*EDGE_NAMES, "my_score", "my_report", "words"])
        for ops in rows if rows is not None else itertools.product(OPS, repeat=6):
            score = sum(op == "nor_conv_3x3" for op in ops) + 0.01 * sum(op == "skip_connect" for op in ops)
            writer.writerow([*ops, f"{score:.2f}", f"{-score:.2f}", "x"])


def test_generic_table_with_custom_columns(tmp_path, capsys):
    table = tmp_path / "scores.csv"
    write_nb201_like(table)
    out = bench_json(capsys, "--space", "nb201", "--table", str(table), "--reward-column", "my_score",
                     "--report-column", "my_report", "--strategy", "random", "--queries", "30", "--seeds", "4",
                     "--per-seed")
    assert (out["strategy"], out["queries"], out["seeds"], out["failures"]) == ("random", 30, 4, 0)
    assert out["table"]["percent"] is False  # "my_score" is no accuracy: told to strategies as it is
    space = NB201Space()
    for seed in out["per_seed"]:
        # The best is chosen by reward; the report is that architecture's report column.
        ops = space.from_json(seed["best_arch"]).ops
        assert seed["best_reward"] == pytest.approx(sum(o == "nor_conv_3x3" for o in ops) +
                                                    0.01 * sum(o == "skip_connect" for o in ops))
        assert seed["report"] == pytest.approx(-seed["best_reward"])
    reports = [s["report"] for s in out["per_seed"]]
    assert out["mean"] == pytest.approx(np.mean(reports)) and out["std"] == pytest.approx(np.std(reports))
    # Evolution climbs this easy landscape: better best rewards than random with the same budget.
    evo = bench_json(capsys, "--space", "nb201", "--table", str(table), "--reward-column", "my_score",
                     "--strategy", "evolution", "--strategy-option", "population_size=10",
                     "--strategy-option", "sample_size=3", "--queries", "120", "--seeds", "4")
    assert evo["table"]["report_column"] == "my_score"  # no report column: the reward is reported
    assert evo["mean"] == evo["mean_best_reward"] >= 5.0


def test_both_duplicate_protocols(tmp_path, capsys):
    """reask (default): every query a new cell, repeats asked again; reuse: every ask is a query."""
    table = tmp_path / "scores.csv"
    write_nb201_like(table)
    base = ["--space", "nb201", "--table", str(table), "--reward-column", "my_score", "--strategy", "evolution",
            "--strategy-option", "population_size=5", "--queries", "150", "--seeds", "3", "--per-seed"]
    fair = bench_json(capsys, *base)
    assert fair["duplicates"] == "reask"
    assert all(s["distinct"] == s["queries"] == 150 and s["asks"] >= 150 for s in fair["per_seed"])
    published = bench_json(capsys, *base, "--duplicates", "reuse")
    assert all(s["asks"] == s["queries"] == 150 for s in published["per_seed"])
    assert published["mean_distinct"] < 150  # evolution repeats itself when nothing stops it
    assert fair["mean_best_reward"] >= published["mean_best_reward"]


def test_report_the_mean_of_several_columns(tmp_path):
    table = tmp_path / "scores.csv"
    write_nb201_like(table)
    bench = BenchTable(str(table), space="nb201", reward_column="my_score", report_column="my_report, my_score")
    assert bench.report_columns == ["my_report", "my_score"]
    hit = bench.lookup(bench.space.sample(np.random.default_rng(0)))
    assert hit.report == pytest.approx(0.0)  # mean of -score and score


def test_missing_architectures_are_failed_lookups(tmp_path, capsys):
    table = tmp_path / "partial.csv"
    rows = [ops for ops in itertools.product(OPS, repeat=6) if ops[0] == "nor_conv_3x3" and ops[5] != "none"]
    write_nb201_like(table, rows)
    bench = BenchTable(str(table), space="nb201", reward_column="my_score")
    result = run_bench(bench, "random", 40, 3)
    # match_key finds an isomorphic row for some cells; most of the rest are failures, not zeros.
    assert 0 < result.failures < 3 * 40
    assert result.seeds_without_result == 0 and result.mean >= 1.0
    lookups = [bench.lookup(bench.space.sample(np.random.default_rng(k))) for k in range(30)]
    assert any(hit.error and "not in the table" in hit.error for hit in lookups)


# -- the shared tables ----------------------------------------------------------------------------------------

@needs_nb201
@pytest.mark.parametrize("strategy", ["random", "ppo"])
def test_cli_json_on_nb201(capsys, strategy):
    out = bench_json(capsys, "--space", "nb201", "--table", str(NB201), "--reward-column", "c10_valid_acc_12ep",
                     "--report-column", "c10_test_acc_200ep", "--strategy", strategy, "--queries", "25",
                     "--seeds", "3")
    assert {"strategy", "queries", "seeds", "mean", "std"} <= set(out)
    assert (out["strategy"], out["queries"], out["seeds"], out["failures"]) == (strategy, 25, 3, 0)
    assert out["table"]["percent"] is True  # a 0-100 accuracy column: strategies get fractions
    assert 85.0 < out["mean"] < 94.4 and 0 <= out["std"] < 5
    assert 70.0 < out["mean_best_reward"] < 85.0 and out["seconds_per_query"] > 0
    # The shortcut names the same table and protocol.
    assert bench_json(capsys, "--table", "nb201", "--strategy", strategy, "--queries", "25", "--seeds", "3")["mean"] \
        == out["mean"]


@needs_nb201
def test_human_output(capsys):
    assert main(["bench", "--table", "nb201", "--strategy", "random", "--queries", "10", "--seeds", "2"]) == 0
    text = capsys.readouterr().out
    assert "random on nb201" in text and "mean" in text and "ms per query" in text


@needs_macro
def test_macro_reports_runs_it_did_not_search_on():
    table = BenchTable("macro")
    assert (table.reward_column, table.report_columns) == ("test_acc_run1", ["test_acc_run2", "test_acc_run3"])
    result = run_bench(table, "random", 20, 2)
    with gzip.open(MACRO, "rt") as f:
        rows = {r["arch"]: r for r in csv.DictReader(f)}
    for seed in result.per_seed:
        row = rows[seed.best_arch["arch"]]
        assert seed.best_reward == pytest.approx(float(row["test_acc_run1"]))
        assert seed.report == pytest.approx((float(row["test_acc_run2"]) + float(row["test_acc_run3"])) / 2)


@needs_nb201
def test_budgets_share_one_run_per_seed():
    """Strategies do not know the budget: a 200-query run's first 100 asks are a 100-query run."""
    table = BenchTable("nb201")
    options = {"hidden_size": 16}
    both = run_bench_budgets(table, "ppo", [12, 30], 2, options)
    for queries in (12, 30):
        alone = run_bench(table, "ppo", queries, 2, options)
        assert [(s.report, s.best_arch, s.distinct) for s in alone.per_seed] == \
            [(s.report, s.best_arch, s.distinct) for s in both[queries].per_seed]


# -- bad input -----------------------------------------------------------------------------------------------------

def one_line_error(capsys, *args) -> str:
    try:
        code = main(["bench", *args])
    except SystemExit as exc:  # argparse's own errors (a bad flag value) exit from parse_args
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err
    return err


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    table = tmp_path / "t.csv"
    write_nb201_like(table, [("nor_conv_3x3",) * 6, ("skip_connect",) * 6])
    base = ["--space", "nb201", "--table", str(table), "--reward-column", "my_score", "--queries", "5", "--seeds", "1"]
    assert "unknown strategy 'nope'" in one_line_error(capsys, *base, "--strategy", "nope")
    assert "unknown option" in one_line_error(capsys, *base, "--strategy", "ppo", "--strategy-option", "nope=1")
    assert "unknown space 'hexagons'" in one_line_error(
        capsys, "--space", "hexagons", "--table", str(table), "--reward-column", "my_score", "--strategy", "random")
    err = one_line_error(capsys, "--space", "nb201", "--table", str(table), "--reward-column", "accuracy",
                         "--strategy", "random")
    assert "no column 'accuracy'" in err and "my_score" in err
    err = one_line_error(capsys, *base[:-4], "--report-column", "nope", "--strategy", "random")
    assert "report_column" in err and "no column 'nope'" in err
    assert "not a number" in one_line_error(capsys, "--space", "nb201", "--table", str(table), "--reward-column",
                                            "words", "--strategy", "random")
    assert "no such table file" in one_line_error(capsys, "--space", "nb201", "--table", str(tmp_path / "none.csv"),
                                                  "--reward-column", "x", "--strategy", "random")
    garbage = tmp_path / "garbage.csv.gz"
    garbage.write_bytes(b"\x1f\x8b\x08 not really gzip")
    assert "cannot read the table" in one_line_error(capsys, "--space", "nb201", "--table", str(garbage),
                                                     "--reward-column", "x", "--strategy", "random")
    assert "needs the space" in one_line_error(capsys, "--table", str(table), "--reward-column", "my_score",
                                               "--strategy", "random")
    assert "--queries" in one_line_error(capsys, *base[:-4], "--queries", "0", "--strategy", "random")
    if NB201 is not None:
        assert "not 'macro'" in one_line_error(capsys, "--space", "macro", "--table", "nb201", "--strategy", "random")

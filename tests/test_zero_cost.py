"""Zero-cost scores against values worked out by hand (NumPy, not autograd) on tiny networks, the
evaluator's determinism and failures, and `rank_quality` / `check_evaluator` on synthetic tables."""

from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from toys import run_main

from nasforge.arch.nb201 import NB201Cell
from nasforge.errors import ConfigError
from nasforge.evaluators import create_evaluator
from nasforge.evaluators.base import EvaluationError
from nasforge.evaluators.quality import check_evaluator, rank_quality
from nasforge.evaluators.zero_cost import (
    SCORES,
    ZeroCostEvaluator,
    compute_scores,
    fisher,
    grasp,
    jacob_cov,
    naswot,
    snip,
    synflow,
)
from nasforge.spaces import SPACES
from nasforge.spaces.nb201 import NB201Space

W1 = np.array([[0.5, -1.0], [1.5, 0.25], [-0.75, 0.5]])  # 2 -> 3
W2 = np.array([[1.0, -0.5, 0.25], [-0.25, 0.75, 1.0]])  # 3 -> 2
X = np.array([[1.0, 2.0], [-1.0, 0.5], [0.5, -1.5], [2.0, 1.5]])  # no pre-activation at 0
Y = np.array([0, 1, 1, 0])


def _mlp() -> nn.Module:
    net = nn.Sequential(nn.Linear(2, 3, bias=False), nn.ReLU(), nn.Linear(3, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(W1))
        net[2].weight.copy_(torch.tensor(W2))
    return net.double()


def _batch():
    return torch.tensor(X), torch.tensor(Y)


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _grads(w1, w2):
    """Gradients of the mean cross-entropy of the MLP, by hand."""
    pre = X @ w1.T
    h = np.maximum(pre, 0)
    logits = h @ w2.T
    d_logits = (_softmax(logits) - np.eye(2)[Y]) / len(X)
    g2 = d_logits.T @ h
    d_pre = (d_logits @ w2) * (pre > 0)
    g1 = d_pre.T @ X
    return g1, g2, logits, d_logits


def test_naswot_is_the_logdet_of_the_hamming_kernel():
    codes = (X @ W1.T > 0).astype(float)
    k = codes @ codes.T + (1 - codes) @ (1 - codes).T
    assert naswot(_mlp(), _batch()) == pytest.approx(np.linalg.slogdet(k)[1], abs=1e-9)


def test_naswot_small_case_worked_by_hand():
    # two images whose codes are [1,0,1] and [1,1,0]: they agree in one place of three, so
    # K = [[3, 1], [1, 3]] and log det K = log 8.
    net = nn.Sequential(nn.Identity(), nn.ReLU())
    x = torch.tensor([[1.0, -1.0, 2.0], [3.0, 0.5, -2.0]])
    assert naswot(net, (x, torch.zeros(2, dtype=torch.long))) == pytest.approx(math.log(8))


def test_snip_sums_weight_times_gradient():
    g1, g2, _, _ = _grads(W1, W2)
    expected = np.abs(W1 * g1).sum() + np.abs(W2 * g2).sum()
    assert snip(_mlp(), _batch()) == pytest.approx(expected, rel=1e-9)


def test_grasp_is_minus_weight_times_hessian_gradient():
    g1, g2, _, _ = _grads(W1, W2)
    eps = 1e-5  # H g by central differences of the hand-written gradient
    p1, p2, _, _ = _grads(W1 + eps * g1, W2 + eps * g2)
    m1, m2, _, _ = _grads(W1 - eps * g1, W2 - eps * g2)
    hg1, hg2 = (p1 - m1) / (2 * eps), (p2 - m2) / (2 * eps)
    expected = -(W1 * hg1).sum() - (W2 * hg2).sum()
    assert grasp(_mlp(), _batch()) == pytest.approx(expected, rel=1e-5, abs=1e-10)


def test_fisher_sums_half_mean_square_of_activation_times_gradient():
    pre = X @ W1.T
    h = np.maximum(pre, 0)
    logits = h @ W2.T
    d_logits = (_softmax(logits) - np.eye(2)[Y]) / len(X)
    d_pre = (d_logits @ W2) * (pre > 0)  # gradient at the first layer's output (before the ReLU)
    expected = 0.5 * ((pre * d_pre) ** 2).mean(0).sum() + 0.5 * ((logits * d_logits) ** 2).mean(0).sum()
    assert fisher(_mlp(), _batch()) == pytest.approx(expected, rel=1e-9)


def test_synflow_of_a_two_layer_net_is_twice_its_all_ones_output():
    # R = 1^T |W2| |W1| 1; each layer's sum of |w * dR/dw| equals R, so the score is 2R.
    out = np.abs(W2) @ np.abs(W1) @ np.ones(2)
    net = _mlp()
    net.insert(1, nn.BatchNorm1d(3))  # synflow ignores BatchNorm, as its authors' code does
    assert synflow(net, _batch()) == pytest.approx(2 * out.sum(), rel=1e-12)


def test_synflow_does_not_overflow_deep_networks():
    layers = []
    for _ in range(60):
        layers += [nn.Linear(64, 64, bias=False), nn.ReLU()]
    net = nn.Sequential(*layers)
    torch.manual_seed(0)
    for m in net:
        if isinstance(m, nn.Linear):
            nn.init.constant_(m.weight, 0.5)  # each layer multiplies the signal by 32
    value = synflow(net, (torch.ones(2, 64), torch.zeros(2, dtype=torch.long)))
    assert math.isfinite(value) and value > 1e80  # far past float32's 3.4e38


def test_jacob_cov_from_the_correlation_of_input_jacobians():
    pre = X @ W1.T
    jac = ((pre > 0) * (np.ones(2) @ W2)) @ W1  # d(sum of outputs)/dx per image
    eig = np.linalg.eigvalsh(np.corrcoef(jac))
    expected = -np.sum(np.log(eig + 1e-5) + 1 / (eig + 1e-5))
    assert jacob_cov(_mlp(), _batch()) == pytest.approx(expected, rel=1e-9)


def test_compute_scores_leaves_the_model_untouched():
    net = _mlp()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    names = [s for s in SCORES if s != "flops"]  # flops needs an image network
    values = compute_scores(net, _batch(), names, resolution=1)
    assert set(values) == set(names)
    assert values["params"] == W1.size + W2.size
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(p.grad is None for p in net.parameters())


# -- the evaluator --------------------------------------------------------------------------------------
SPACE = NB201Space()
CELL = NB201Cell.from_str("|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|skip_connect~0|none~1|nor_conv_3x3~2|")
SMALL = {"channels": 4, "cells_per_stage": 1}


def test_evaluator_is_deterministic_under_a_seed_and_records_every_score():
    ev = ZeroCostEvaluator(scores=SCORES, dataset="digits", network=SMALL, batch_size=16)
    a = ev.evaluate(SPACE, CELL, seed=3)
    b = ev.evaluate(SPACE, CELL, seed=3)
    c = ev.evaluate(SPACE, CELL, seed=4)
    assert {k: v for k, v in a.items() if k != "score_seconds"} == {k: v for k, v in b.items() if k != "score_seconds"}
    assert a["zc_naswot"] != c["zc_naswot"]
    assert a["score"] == a["zc_naswot"]
    assert {f"zc_{s}" for s in SCORES} <= set(a)


#: smaller networks than a search trains, where a space's own is slow to score; every other registered
#: space (a plug-in's too) is scored with the network its search trains (its `proxy_network`)
SCORED_NETWORKS = {"nasnet": {"num_cells": 1, "num_filters": 8, "stem": "cifar"},
                   "mbconv": {"width_mult": 0.25, "depth_mult": 0.25}, "nb201": SMALL}


@pytest.mark.parametrize("space_name", sorted(SPACES))
def test_every_space_that_builds_a_network_is_scored(space_name):
    space = SPACES[space_name]()
    network = SCORED_NETWORKS.get(space_name, dict(space.proxy_network))
    arch = space.sample(np.random.default_rng(0))
    ev = ZeroCostEvaluator(scores=["naswot", "synflow", "jacob_cov", "params"], dataset="digits", network=network,
                           batch_size=8)
    metrics = ev.evaluate(space, arch, seed=0)
    assert all(math.isfinite(metrics[f"zc_{s}"]) for s in ev.scores)
    assert metrics["zc_params"] == metrics["params"] > 0


def test_each_score_is_a_registered_evaluator_rewarding_metric_score():
    for name in SCORES:
        ev = create_evaluator(name, dataset="digits", network=SMALL, batch_size=8)
        assert ev.reward_metric == "score" and ev.scores == (name,)
        assert ev.config()["name"] == name
    rebuilt = create_evaluator(**{k: v for k, v in ev.config().items() if k != "name"} | {"name": "flops"})
    assert rebuilt.config() == ev.config()


def test_ensemble_averages_scores_scaled_by_a_reference_sample():
    import pickle

    from nasforge.evaluators.zero_cost import ZeroCostEnsemble

    ev = create_evaluator("zc_ensemble", space=SPACE, scores=["synflow", "params"], dataset="digits",
                          network=SMALL, batch_size=8, reference=6)
    assert isinstance(ev, ZeroCostEnsemble)
    ev.prepare()  # scores the reference sample once
    scale = dict(ev._scale)
    clone = pickle.loads(pickle.dumps(ev))  # worker processes get the scale, not a new sample
    assert clone._scale == scale
    metrics = clone.evaluate(SPACE, CELL, seed=1)
    parts = []
    for name in ("synflow", "params"):
        med, iqr = scale[name]
        z = (math.log1p(metrics[f"zc_{name}"]) - med) / iqr
        parts.append(max(-3.0, min(3.0, z)))
    assert metrics["score"] == pytest.approx(sum(parts) / 2)
    assert ev.evaluate(SPACE, CELL, seed=1)["score"] == metrics["score"]
    with pytest.raises(ConfigError, match="reference"):
        create_evaluator("zc_ensemble", reference=2)
    with pytest.raises(ConfigError, match="unknown option"):
        create_evaluator("zc_ensemble", epochs=3)


def test_a_cell_without_a_path_to_the_output_is_a_failure_not_a_crash():
    dead = NB201Cell.from_str("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    ev = ZeroCostEvaluator(scores=["jacob_cov"], dataset="digits", network=SMALL, batch_size=8)
    with pytest.raises(EvaluationError, match="jacob_cov"):
        ev.evaluate(SPACE, dead, seed=0)


def test_bad_options_are_one_line_config_errors():
    with pytest.raises(ConfigError, match="unknown zero-cost score 'nope'"):
        ZeroCostEvaluator(scores=["nope"])
    with pytest.raises(ConfigError, match="batch_size"):
        ZeroCostEvaluator(batch_size=1)
    ev = ZeroCostEvaluator(dataset="digits", batch_size=5000)
    with pytest.raises(ConfigError, match="5000 is more than the .* training images"):
        ev.prepare()


def test_evaluator_pickles_for_worker_processes():
    import pickle

    ev = create_evaluator("synflow", dataset="digits", network=SMALL)
    clone = pickle.loads(pickle.dumps(ev))
    assert type(clone) is type(ev) and clone.config() == ev.config()


# -- ranking quality ------------------------------------------------------------------------------------
def test_rank_quality_perfect_reversed_and_failed():
    truth = np.arange(20.0)
    assert rank_quality(truth * 3 + 1, truth).kendall_tau == pytest.approx(1.0)
    q = rank_quality(-truth, truth)
    assert q.kendall_tau == pytest.approx(-1.0) and q.top10_precision == 0.0
    scores = list(truth)
    scores[-1] = None  # the best cell failed: ranked last
    q = rank_quality(scores, truth)
    assert q.failed == 1 and q.top10_precision == 0.5 and q.kendall_tau < 1.0


def test_rank_quality_of_random_scores_is_near_zero():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=2000)
    assert abs(rank_quality(rng.normal(size=2000), truth).kendall_tau) < 0.05


def _synthetic_table(tmp_path, n=60):
    """An NB201-style table whose 'truth' is a known function of the cell."""
    rng = np.random.default_rng(1)
    rows = ["arch_str,truth_acc,noise"]
    seen = set()
    while len(rows) <= n:
        cell = SPACE.sample(rng)
        if cell.to_str() in seen:
            continue
        seen.add(cell.to_str())
        convs = sum(op.startswith("nor_conv") for op in cell.ops)
        rows.append(f"{cell.to_str()},{convs},{rng.normal()}")
    path = tmp_path / "table.csv.gz"
    path.write_bytes(gzip.compress("\n".join(rows).encode()))
    return path


class _CountConvs:
    """A perfect evaluator for the synthetic table (its truth is the conv count)."""

    reward_metric = "val_accuracy"

    def config(self):
        return {"name": "count"}

    def evaluate(self, space, arch, seed):
        return {"val_accuracy": sum(op.startswith("nor_conv") for op in arch.ops)}


class _Noise(_CountConvs):
    def evaluate(self, space, arch, seed):
        return {"val_accuracy": float(np.random.default_rng(seed).normal())}


def test_check_evaluator_perfect_and_random(tmp_path):
    table = _synthetic_table(tmp_path)
    good = check_evaluator(SPACE, _CountConvs(), table, "truth_acc", sample=50, seed=0)
    bad = check_evaluator(SPACE, _Noise(), table, "truth_acc", sample=50, seed=0)
    assert good.quality.kendall_tau == pytest.approx(1.0) and good.quality.spearman_rho == pytest.approx(1.0)
    assert abs(bad.quality.kendall_tau) < 0.3
    assert [c["row"] for c in good.cells] == [c["row"] for c in bad.cells]  # the same sample
    again = check_evaluator(SPACE, _Noise(), table, "truth_acc", sample=50, seed=1)
    assert [c["row"] for c in again.cells] != [c["row"] for c in bad.cells]


def test_check_evaluator_cache_resumes_and_refuses_other_settings(tmp_path):
    table = _synthetic_table(tmp_path)
    cache = tmp_path / "scores.jsonl"
    first = check_evaluator(SPACE, _Noise(), table, "truth_acc", sample=20, seed=0, cache=cache)
    lines = cache.read_text().splitlines()
    assert len(lines) == 21 and json.loads(lines[0])["evaluator"] == {"name": "count"}
    cache.write_text("\n".join(lines[:11]) + "\n" + lines[11][:7])  # killed while writing a line
    second = check_evaluator(SPACE, _Noise(), table, "truth_acc", sample=20, seed=0, cache=cache)
    assert second.quality == first.quality
    with pytest.raises(ConfigError, match="another evaluator configuration"):
        check_evaluator(SPACE, _Noise(), table, "truth_acc", sample=20, seed=0, eval_seed=1, cache=cache)


def test_check_evaluator_bad_input(tmp_path):
    table = _synthetic_table(tmp_path, n=30)
    with pytest.raises(ConfigError, match="no column 'nope'"):
        check_evaluator(SPACE, _Noise(), table, "nope", sample=10)
    with pytest.raises(ConfigError, match="31 is more than the 30 rows"):
        check_evaluator(SPACE, _Noise(), table, "truth_acc", sample=31)
    with pytest.raises(ConfigError, match="no 'zc_naswot' metric"):
        check_evaluator(SPACE, _Noise(), table, "truth_acc", sample=10, metric="zc_naswot")


# -- the command line -----------------------------------------------------------------------------------
def _cli(*args, cwd=None):
    """The real console entry point, in a subprocess (the figures); the other tests run `main()` in
    this process (`toys.run_main`), which saves seconds of imports per call."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "nasforge.cli", *args], capture_output=True, text=True, cwd=cwd)
    return proc.returncode, proc.stdout, proc.stderr


TINY = ["--dataset", "digits", "--network-option", "channels=4", "--network-option", "cells_per_stage=1"]


def test_check_evaluator_command_prints_the_figures(tmp_path):
    table = _synthetic_table(tmp_path, n=30)
    code, out, err = _cli("check-evaluator", "--space", "nb201", "--table", str(table), "--truth-column",
                          "truth_acc", "--evaluator", "params", *TINY, "--sample", "12", "--json", "--per-cell")
    assert code == 0 and err == "", err  # a fresh interpreter: nothing else on stdout or stderr
    result = json.loads(out)
    assert {"kendall_tau", "spearman_rho", "top10_precision", "seconds_per_cell", "cells"} <= set(result)
    assert result["cells"] == 12 and len(result["per_cell"]) == 12
    # parameters grow with every convolution, so they rank this table's truth (the conv count) well
    assert result["kendall_tau"] > 0.5
    assert result["evaluator"]["name"] == "params" and result["evaluator"]["network"]["channels"] == 4


@pytest.mark.parametrize("args, message", [
    (["--evaluator", "nope"], "evaluator: unknown evaluator 'nope'"),
    (["--evaluator", "params", "--truth-column", "nope"], "truth_column: no column 'nope'"),
    (["--evaluator", "params", "--sample", "31"], "sample: 31 is more than the 30 rows"),
    (["--evaluator", "naswot", "--evaluator-option", "batch_size=5000"], "5000 is more than the"),
    (["--evaluator", "naswot", "--dataset", "npz:missing.npz"], "missing.npz"),
    (["--evaluator", "table", "--dataset", "digits"], "--dataset: evaluator 'table' does not read a dataset"),
])
def test_check_evaluator_bad_input_is_one_line(tmp_path, monkeypatch, capfd, args, message):
    table = _synthetic_table(tmp_path, n=30)
    base = ["check-evaluator", "--space", "nb201", "--table", str(table), "--truth-column", "truth_acc",
            "--sample", "5"]
    if "--dataset" not in args:
        base += ["--dataset", "digits"]
    if "--truth-column" in args:
        base = [a for a in base if a not in ("--truth-column", "truth_acc")]
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(capfd, *base, *args)
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_search_with_a_zero_cost_evaluator_rewards_its_score(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(capfd, "search", "--space", "nb201", "--evaluator", "synflow", *TINY, "--strategy",
                              "random", "--trials", "3", "--run", "runs/zc", "--json")
    assert code == 0, err
    top = json.loads(out)["top"]
    assert len(top) == 3 and all(t["reward"] == t["metrics"]["zc_synflow"] for t in top)
    # a bad dataset is refused before any run folder is made
    code, _, err = run_main(capfd, "search", "--space", "nb201", "--evaluator", "naswot", "--dataset", "npz:nope.npz",
                            "--run", "runs/bad")
    assert code == 2 and "nope.npz" in err and not (tmp_path / "runs" / "bad").exists()


def test_auto_is_recorded_under_the_recommended_name(tmp_path, monkeypatch, capfd):
    from nasforge.evaluators import RECOMMENDED

    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(capfd, "search", "--space", "nb201", "--evaluator", "auto", *TINY, "--strategy",
                              "random", "--trials", "2", "--run", "runs/auto", "--json")
    assert code == 0, err
    from nasforge.experiment import Store

    with Store.open(tmp_path / "runs" / "auto") as store:
        assert store.config()["evaluator"]["name"] == RECOMMENDED != "auto"

"""NAS-Bench-201 and NAS-Bench-Macro: spaces, networks and the table evaluators.

Tests that read the shared tables skip, with the reason, when the data folder is absent.
"""

import gzip
import json
import pickle
from collections import defaultdict

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from nasforge.arch.macro import MACRO_OPS, MacroArchitecture
from nasforge.arch.nb201 import EDGE_NAMES, OPS, NB201Cell
from nasforge.data.paths import ENV_VAR, data_path
from nasforge.errors import ArchitectureError, ConfigError, DatasetError
from nasforge.evaluators import EVALUATORS, create_evaluator
from nasforge.evaluators.table import ArchitectureNotInTable, MacroTable, NB201Table, TableEvaluator, read_table
from nasforge.profile import count_macs, count_params
from nasforge.spaces import SPACES, space_for_json
from nasforge.spaces.macro import MacroSpace
from nasforge.spaces.nb201 import NB201Space

NB = NB201Space()
MACRO = MacroSpace()
BEST_201 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"

NB201_CSV = data_path("nasbench201", "nb201_cifar10.csv.gz")
MACRO_CSV = data_path("nasbench_macro", "nb_macro_cifar10.csv.gz")
needs_nb201 = pytest.mark.skipif(NB201_CSV is None, reason=f"NAS-Bench-201 table not found: set {ENV_VAR} to the "
                                                           f"shared data folder (holding nasbench201/)")
needs_macro = pytest.mark.skipif(MACRO_CSV is None, reason=f"NAS-Bench-Macro table not found: set {ENV_VAR} to the "
                                                           f"shared data folder (holding nasbench_macro/)")


def choices(space):
    return st.tuples(*(st.integers(0, d.num_options - 1) for d in space.decisions)).map(list)


def meta_costs(space, arch, resolution=32, **network):
    with torch.device("meta"):
        model = space.build(arch, **network)
    return count_params(model), count_macs(model, resolution)


# -- NAS-Bench-201 space ---------------------------------------------------------------------------
def test_nb201_decisions_and_registration():
    assert [d.name for d in NB.decisions] == list(EDGE_NAMES)
    assert all(d.num_options == 5 and d.labels == OPS for d in NB.decisions)
    assert NB.size() == 15_625
    assert isinstance(SPACES["nb201"](), NB201Space)
    assert isinstance(space_for_json({"space": "nb201", "arch": BEST_201}), NB201Space)


@given(choices(NB))
def test_nb201_encode_decode_and_json_round_trips(cs):
    arch = NB.decode(cs)
    assert list(NB.encode(arch)) == cs
    data = NB.to_json(arch)
    assert set(data) == {"space", "arch"} and data["space"] == "nb201"
    assert NB.loads(NB.dumps(arch)) == arch
    assert NB.from_json(data["arch"]) == arch  # the bare benchmark string
    assert NB.from_json(list(arch.ops)) == arch
    assert NB201Cell.from_str(str(arch)) == arch and hash(NB.from_json(data)) == hash(arch)
    assert NB.key(NB.from_json(data)) == NB.key(arch)


def test_nb201_string_format():
    arch = NB.from_json(BEST_201)
    assert arch.op_0to1 == "nor_conv_3x3" and arch.op_0to3 == "skip_connect" and arch.op_2to3 == "nor_conv_1x1"
    assert arch.to_str() == BEST_201


@pytest.mark.parametrize("text, field, words", [
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|conv_5x5~1|+|skip_connect~0|nor_conv_3x3~1|none~2|",
     "edge 1->2 (op_1to2)", ["conv_5x5", "avg_pool_3x3"]),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~1|none~1|+|skip_connect~0|nor_conv_3x3~1|none~2|", "arch edge 0->2", ["op~0"]),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|none~2|", "arch node 2", ["2 incoming"]),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|", "arch", ["3 node groups"]),
])
def test_nb201_errors_name_the_edge(text, field, words):
    with pytest.raises(ArchitectureError) as info:
        NB.from_json({"space": "nb201", "arch": text})
    assert info.value.field == field
    for w in words:
        assert w in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(ArchitectureError, match="space"):
        NB.from_json({"space": "macro", "arch": BEST_201})
    with pytest.raises(ArchitectureError, match="unknown field"):
        NB.from_json({"arch": BEST_201, "extra": 1})


def test_nb201_key_collapses_equivalent_cells():
    def key(*ops):
        return NB.key(NB201Cell(*ops))

    # node 3 reads only node 0 through a conv: edges into nodes 1, 2 are dead
    dead = {key(a, b, c, "nor_conv_3x3", "none", "none") for a in OPS for b in OPS for c in OPS}
    assert len(dead) == 1
    # a path through a zero node disappears: node 1 is zero, so 1->3 does not matter
    assert key("none", "none", "none", "skip_connect", "nor_conv_3x3", "none") == \
        key("none", "none", "none", "skip_connect", "none", "none")
    # sums through skips flatten: conv(x) reaching node 3 via node 1 or node 2 is the same function
    assert key("nor_conv_1x1", "none", "none", "none", "skip_connect", "none") == \
        key("none", "nor_conv_1x1", "none", "none", "none", "skip_connect")
    # average pooling is linear, so it distributes over a sum
    assert NB.canonical_form(NB201Cell("skip_connect", "skip_connect", "none", "none", "none", "avg_pool_3x3")) \
        == "avg_pool_3x3(x)"
    pooled_sum = NB201Cell("nor_conv_1x1", "skip_connect", "skip_connect", "none", "none", "avg_pool_3x3")
    sum_of_pools = NB201Cell("nor_conv_1x1", "none", "none", "avg_pool_3x3", "avg_pool_3x3", "none")
    assert NB.canonical_form(pooled_sum) == NB.canonical_form(sum_of_pools) == \
        "avg_pool_3x3(nor_conv_1x1(x))+avg_pool_3x3(x)"
    # the all-zero cell
    assert NB.canonical_form(NB201Cell(*["none"] * 6)) == "0"
    # a different op on a live edge changes the key; 2x skip is not 1x skip
    assert key(*["nor_conv_3x3"] * 6) != key(*(["nor_conv_3x3"] * 5 + ["nor_conv_1x1"]))
    assert key("none", "none", "none", "skip_connect", "none", "none") != \
        key("skip_connect", "none", "none", "skip_connect", "skip_connect", "none")


@given(choices(NB), st.integers(0, 2 ** 32 - 1))
def test_nb201_mutation_changes_one_edge(cs, seed):
    arch = NB.decode(cs)
    child = NB.mutate(arch, np.random.default_rng(seed))
    assert sum(a != b for a, b in zip(arch.ops, child.ops)) == 1


def test_nb201_network_trains_and_costs_match_the_profiler():
    arch = NB.from_json(BEST_201)
    model = NB.build(arch, num_classes=3, channels=4, cells_per_stage=1)
    x = torch.randn(2, 3, 12, 12)
    out = model(x)
    assert out.shape == (2, 3)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    # the benchmark-sized network of the best cell, and small odd-sized ones, counted in closed form
    assert NB.costs(arch) == {"params": 1_073_466, "macs": 153_272_960}
    assert meta_costs(NB, arch) == (1_073_466, 153_272_960)
    rng = np.random.default_rng(1)
    for _ in range(2):
        a = NB.sample(rng)
        c = NB.costs(a, num_classes=7, channels=6, cells_per_stage=2, resolution=15)
        assert meta_costs(NB, a, 15, num_classes=7, channels=6, cells_per_stage=2) == (c["params"], c["macs"])
    empty = NB.build(NB201Cell(*["none"] * 6), channels=4, cells_per_stage=1)
    assert empty(x).shape == (2, 10)
    with pytest.raises(ConfigError, match="network.width"):
        NB.build(arch, width=3)


# -- NAS-Bench-Macro space -------------------------------------------------------------------------
def test_macro_decisions_and_codes():
    assert len(MACRO.decisions) == 8 and all(d.labels == MACRO_OPS for d in MACRO.decisions)
    assert MACRO.size() == 6561
    arch = MACRO.from_json({"space": "macro", "arch": "01201122"})
    assert arch.layers[:3] == ("identity", "MB3_K3", "MB6_K5") and arch.code == "01201122"
    assert MACRO.to_json(arch) == {"space": "macro", "arch": "01201122"}
    assert isinstance(space_for_json({"space": "macro", "arch": "01201122"}), MacroSpace)


@given(choices(MACRO))
def test_macro_round_trips(cs):
    arch = MACRO.decode(cs)
    assert list(MACRO.encode(arch)) == cs
    assert MACRO.loads(MACRO.dumps(arch)) == arch
    assert MACRO.from_json(arch.code) == arch == MacroArchitecture.from_code(arch.code)


def test_macro_errors():
    with pytest.raises(ArchitectureError, match="leading zeros"):
        MACRO.from_json({"arch": 1201122})
    with pytest.raises(ArchitectureError, match="leading zeros"):
        MACRO.from_json("1201122")
    with pytest.raises(ArchitectureError) as info:
        MACRO.from_json("01231122")
    assert info.value.field == "layers[3]" and "2=MB6_K5" in str(info.value)
    with pytest.raises(ArchitectureError, match="layers\\[0\\]"):
        MACRO.validate(MacroArchitecture(("MB9",) + ("identity",) * 7))


def test_macro_key_follows_the_benchmark_duplicate_rule():
    assert MACRO.canonical_code(MACRO.from_json("00000001")) == "00000010"
    assert MACRO.canonical_code(MACRO.from_json("22212202")) == "22212220"
    assert MACRO.key(MACRO.from_json("10201102")) == MACRO.key(MACRO.from_json("10210120"))
    # a stage's first layer keeps its place: an identity there is a strided projection
    assert MACRO.key(MACRO.from_json("01000000")) != MACRO.key(MACRO.from_json("10000000"))
    keys = {MACRO.key(a) for a in MACRO.iter_all()}
    assert len(keys) == 3969


@given(choices(MACRO), st.integers(0, 2 ** 32 - 1))
def test_macro_mutation_changes_one_layer(cs, seed):
    arch = MACRO.decode(cs)
    child = MACRO.mutate(arch, np.random.default_rng(seed))
    assert sum(a != b for a, b in zip(arch.layers, child.layers)) == 1


def test_macro_network_trains_and_matches_published_counts():
    model = MACRO.build(MACRO.from_json("01201122"), num_classes=4)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 4)
    out.sum().backward()
    # the benchmark's own parameter and MAC counts (table columns params, flops)
    assert meta_costs(MACRO, MACRO.from_json("00000000")) == (387_882, 7_713_280)
    assert meta_costs(MACRO, MACRO.from_json("22212202")) == (1_985_514, 85_164_544)


# -- tables ------------------------------------------------------------------------------------------
@needs_nb201
def test_nb201_table_rows_and_known_optimum():
    ev = NB201Table()
    assert len(ev) == 15_625
    best, acc = ev.best("c10_test_acc_200ep")
    assert best.to_str() == BEST_201 and abs(acc - 94.37) < 0.01
    # the same cell also has the best 200-epoch validation accuracy (published 91.61)
    best_val, val = ev.best("c10_valid_acc_200ep")
    assert best_val == best and abs(val - 91.61) < 0.01
    m = ev.evaluate(NB, best, seed=0)
    assert m["val_accuracy"] == m["val_accuracy_12ep"] and abs(m["val_accuracy_200ep"] - 0.916067) < 1e-5
    assert abs(m["test_accuracy"] - 0.943733) < 1e-5  # fractions, not percent
    assert m["params"] == 1_073_466 and m["macs"] == 153_272_960
    assert m["cost_seconds"] == pytest.approx(12 * 0.5 * m["train_time_per_epoch_s"])
    all_none = ev.evaluate(NB, NB201Cell(*["none"] * 6), 0)
    assert abs(all_none["test_accuracy"] - 0.10) < 1e-4
    assert NB201Table(epochs=200).evaluate(NB, best, 0)["val_accuracy"] == m["val_accuracy_200ep"]


@needs_nb201
def test_nb201_key_is_coarser_than_the_benchmark_unique_str():
    table = read_table(NB201_CSV)
    groups = defaultdict(set)
    for s, u in zip(table.text["arch_str"], table.text["unique_str"]):
        groups[u].add(NB.key(NB.from_json(s)))
    assert len(groups) == 6466  # the benchmark's isomorphism classes
    assert all(len(keys) == 1 for keys in groups.values())  # never splits one of them
    assert len(set().union(*groups.values())) == 4660  # merges some (see docs/benchmarks.md)


@needs_macro
def test_macro_table_rows_optimum_and_duplicates():
    ev = MacroTable()
    assert len(ev) == 6561
    best, acc = ev.best()
    assert abs(acc - 93.13) < 0.01
    assert MACRO.canonical_code(best) == "22212220"
    m = ev.evaluate(MACRO, best, 0)
    assert m["val_accuracy"] == m["test_accuracy"] and m["val_is_test"] == 1.0
    assert (m["params"], m["macs"]) == (1_985_514, 85_164_544) and m["cost_seconds"] > 0
    table = ev.load()
    assert all(MACRO.canonical_code(MACRO.from_json(a)) == c
               for a, c in zip(table.text["arch"], table.text["canonical_arch"]))
    # codes with one canonical form share one result
    assert ev.evaluate(MACRO, MACRO.from_json("10201102"), 0) == ev.evaluate(MACRO, MACRO.from_json("10210120"), 0)
    worst = ev.evaluate(MACRO, MACRO.from_json("00000000"), 0)
    assert abs(worst["val_accuracy"] - 0.4536) < 1e-4
    noisy = MacroTable(sample_runs=True)
    runs = {noisy.evaluate(MACRO, best, s)["val_accuracy"] for s in range(20)}
    assert len(runs) == 3 and noisy.evaluate(MACRO, best, 5) == noisy.evaluate(MACRO, best, 5)
    assert MACRO.from_json(table.text["arch"][1]).code == "00000001"


@needs_nb201
def test_table_evaluator_any_columns_and_registry():
    ev = create_evaluator("table", space=NB, table=str(NB201_CSV), reward_column="c10_valid_acc_200ep",
                          report_column="c10_test_acc_12ep", cost_column="c10_train_time_200ep_s",
                          columns={"test_v1": "c10_test_acc_200ep_nb201v1"})
    m = ev.evaluate(NB, NB.from_json(BEST_201), 0)
    # an accuracy column in percent (guessed from its name and values) arrives as a fraction
    assert abs(m["val_accuracy"] - 0.916067) < 1e-5 and set(m) == {"val_accuracy", "test_accuracy", "test_v1",
                                                                   "cost_seconds"}
    assert ev.percent and ev.config()["percent"] is None
    raw = create_evaluator("table", space=NB, table=str(NB201_CSV), reward_column="c10_valid_acc_200ep", percent=False)
    assert abs(raw.evaluate(NB, NB.from_json(BEST_201), 0)["val_accuracy"] - 91.6067) < 1e-3
    assert ev.static_metrics(NB, NB.from_json(BEST_201)) == {"params": 1_073_466, "macs": 153_272_960}
    again = pickle.loads(pickle.dumps(ev))
    assert again._table is None and again.evaluate(NB, NB.from_json(BEST_201), 0) == m
    assert json.loads(json.dumps(ev.config()))["reward_column"] == "c10_valid_acc_200ep"
    assert set(EVALUATORS) >= {"table", "nb201", "macro", "proxy"}
    with pytest.raises(ConfigError, match="^reward_column: no column 'valid'"):
        create_evaluator("table", space=NB, table=str(NB201_CSV), reward_column="valid").load()
    with pytest.raises(ConfigError, match="^columns.acc: column 'c10_test_acc_12ep' holds test results"):
        create_evaluator("table", space=NB, table=str(NB201_CSV), reward_column="c10_valid_acc_12ep",
                         columns={"acc": "c10_test_acc_12ep"})
    with pytest.raises(ConfigError, match="^evaluator.reward_colum: unknown option"):
        create_evaluator("table", space=NB, table=str(NB201_CSV), reward_colum="x")
    with pytest.raises(ConfigError, match="^evaluator.reward_column: is required"):
        create_evaluator("table", space=NB, table=str(NB201_CSV))
    with pytest.raises(ConfigError, match="^evaluator: unknown evaluator 'tabel'"):
        create_evaluator("tabel")


def test_table_evaluator_plain_csv_lookup_and_errors(tmp_path):
    # a plain (not gzip) CSV with a leading-zero-less code, the NB201 op columns only, and a missing row
    path = tmp_path / "macro.csv"
    path.write_text("arch,acc,secs\n1201122,91.5,10\n22222222,92.0,20\n")
    ev = TableEvaluator(path, space="macro", reward_column="acc", cost_column="secs", cost_scale=2.0, match_key=False)
    # "acc" in percent: reported as a fraction, like every accuracy nasforge reports
    assert ev.evaluate(MACRO, MACRO.from_json("01201122"), 0) == {"val_accuracy": 0.915, "cost_seconds": 20.0}
    with pytest.raises(ArchitectureNotInTable, match="architecture 00000000 is not in the table"):
        ev.evaluate(MACRO, MACRO.from_json("00000000"), 0)
    # with key matching, an equivalent architecture's row answers
    keyed = TableEvaluator(path, space="macro", reward_column="acc")
    assert keyed.evaluate(MACRO, MACRO.from_json("01210122"), 0)["val_accuracy"] == 0.915

    ops_path = tmp_path / "nb.csv.gz"
    with gzip.open(ops_path, "wt") as f:
        f.write(",".join(EDGE_NAMES) + ",acc\n" + ",".join(NB.from_json(BEST_201).ops) + ",94.4\n")
    ev = TableEvaluator(ops_path, space=NB, reward_column="acc")
    assert ev.evaluate(NB, NB.from_json(BEST_201), 0)["val_accuracy"] == pytest.approx(0.944)

    bad = tmp_path / "bad.csv"
    bad.write_text("arch,acc\n01201122,high\n")
    with pytest.raises(DatasetError, match="row 2: 'high' is not a number"):
        TableEvaluator(bad, space="macro", reward_column="acc").evaluate(MACRO, MACRO.from_json("01201122"), 0)
    bad.write_text("arch,acc\n01291122,1\n")
    with pytest.raises(DatasetError, match="row 2, column arch: layers\\[3\\]"):
        TableEvaluator(bad, space="macro", reward_column="acc").load()
    with pytest.raises(DatasetError, match="no such table file"):
        TableEvaluator(tmp_path / "none.csv", space="macro", reward_column="acc").load()
    with pytest.raises(ConfigError, match="^space: this table lists 'macro'"):
        TableEvaluator(path, space="macro", reward_column="acc").evaluate(NB, NB.from_json(BEST_201), 0)


def test_missing_data_folder_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nowhere"))
    for cls in (NB201Table, MacroTable):
        with pytest.raises(DatasetError, match=f"{ENV_VAR}=.*nowhere is not a folder"):
            cls()
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    with pytest.raises(DatasetError, match=f"nb201_cifar10.csv.gz: not found in the shared data folder.*{ENV_VAR}"):
        NB201Table()

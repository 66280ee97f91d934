"""Cell diagrams, MBConv stage pictures and the search/scaling plots of `nasforge.report`."""

from __future__ import annotations

import itertools
import math
import shutil

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nasforge.errors import ConfigError
from nasforge.report import (
    cell_dot,
    cell_graph,
    cost_quality,
    draw_architecture,
    mbconv_diagram,
    mbconv_table,
    pareto_front,
    parse_dot,
    render,
    scaling_curve,
    search_progress,
)
from nasforge.report import diagrams
from nasforge.spaces import NASNetSpace
from nasforge.spaces.nasnet import NUM_INPUTS
from nasforge.spaces.nasnet_cells import DARTS_V2, NASNET_A

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HAS_DOT = shutil.which("dot") is not None


def random_arch():
    return NASNetSpace().sample(np.random.default_rng(0))


def state_id(cell_name: str, s: int) -> str:
    return f"{cell_name}_h{s}" if s < NUM_INPUTS else f"{cell_name}_b{s - NUM_INPUTS}"


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000


# ------------------------------------------------------------------------------------------------
# The .dot text
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", [NASNET_A, random_arch(), DARTS_V2], ids=["nasnet_a", "random", "darts_v2"])
def test_cell_dot_has_every_input_block_op_and_edge(arch):
    text = cell_dot(arch, title="t")
    g = parse_dot(text)
    assert list(g.clusters) == ["cluster_normal", "cluster_reduction"]
    assert g.attrs["rankdir"] == "BT"
    edges = {(u, v) for u, v, _ in g.edges}
    for cell_name, cell in arch.cells():
        cluster = f"cluster_{cell_name}"
        assert g.clusters[cluster]["label"] == f"{cell_name} cell"
        assert g.nodes[f"{cell_name}_h0"].label == "h_{i-1}"
        assert g.nodes[f"{cell_name}_h1"].label == "h_i"
        for j, block in enumerate(cell.blocks):
            comb = g.nodes[f"{cell_name}_b{j}"]
            assert comb.label == f"{block.combine}\nblock {j}" and comb.cluster == cluster
            for half, (inp, op) in zip("ab", block.halves()):
                node = g.nodes[f"{cell_name}_b{j}_{half}"]
                assert node.label == op and node.cluster == cluster
                assert (state_id(cell_name, inp), node.id) in edges
                assert (node.id, comb.id) in edges
        out = g.nodes[f"{cell_name}_out"]
        assert out.label.startswith("concat")
        into_out = {u for u, v in edges if v == out.id}
        assert into_out == {state_id(cell_name, s) for s in cell.output_states()}
        # every node of the cell: 2 inputs, 3 per block, the output
        assert sum(n.cluster == cluster for n in g.nodes.values()) == NUM_INPUTS + 3 * len(cell.blocks) + 1
    # labels appear verbatim in the text as well (escaped newlines)
    for _, cell in arch.cells():
        for b in cell.blocks:
            assert f'label="{b.op_a}"' in text and f'label="{b.op_b}"' in text
    assert 'label="h_{i-1}"' in text and 'label="h_i"' in text


def test_nasnet_a_concat_includes_h_prev_in_normal_cell():
    g = cell_graph(NASNET_A)
    assert ("normal_h0", "normal_out", {}) in g.edges
    assert ("reduction_h0", "reduction_out", {}) not in g.edges


def test_dot_text_round_trips_and_json_input_matches():
    g = cell_graph(NASNET_A, "NASNet-A")
    assert parse_dot(g.to_dot()) == g
    assert cell_dot(NASNetSpace().to_json(NASNET_A)) == cell_dot(NASNET_A)
    single = cell_graph(NASNET_A.normal)
    assert list(single.clusters) == ["cluster_cell"]


def test_parse_dot_reads_plain_digraphs_and_rejects_garbage():
    g = parse_dot("""
        // a comment
        digraph x { node [shape=box]; a -> b -> c [color=red]; "d e" ;
          subgraph cluster_1 { label="one"; f; g -> f } {rank=same; a; c} }
    """)
    assert list(g.nodes) == ["a", "b", "c", "d e", "f", "g"]
    assert g.node_defaults == {"shape": "box"}
    assert g.edges[:2] == [("a", "b", {"color": "red"}), ("b", "c", {"color": "red"})]
    assert g.nodes["f"].cluster == "cluster_1" and g.clusters["cluster_1"]["label"] == "one"
    assert g.same_rank == [(None, ("a", "c"))]
    for bad in ("digraph { a -> }", "graph", "hello { }", "digraph { a [label=] }", "digraph { a"):
        with pytest.raises(ConfigError):
            parse_dot(bad)
    with pytest.raises(ConfigError):
        cell_graph(object())


# ------------------------------------------------------------------------------------------------
# Rendering
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", [NASNET_A, random_arch()], ids=["nasnet_a", "random"])
def test_matplotlib_fallback_writes_image_and_dot(tmp_path, arch):
    out = tmp_path / "cells.png"
    assert render(arch, out, renderer="matplotlib", title="cells") == "matplotlib"
    assert_png(out)
    assert out.with_suffix(".dot").read_text() == cell_dot(arch, title="cells")


def test_fallback_draws_from_dot_text_and_to_svg(tmp_path):
    out = tmp_path / "from_text.svg"
    assert render(cell_dot(DARTS_V2), out, renderer="matplotlib") == "matplotlib"
    svg = out.read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert (tmp_path / "from_text.dot").exists()


def test_auto_falls_back_without_dot(tmp_path, monkeypatch):
    monkeypatch.setattr(diagrams.shutil, "which", lambda name: None)
    out = tmp_path / "auto.png"
    assert render(NASNET_A, out) == "matplotlib"
    assert_png(out)
    with pytest.raises(ConfigError, match="renderer"):
        render(NASNET_A, tmp_path / "x.png", renderer="dot")


def test_auto_falls_back_when_dot_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(diagrams.shutil, "which", lambda name: "/nonexistent/dot")
    monkeypatch.setattr(diagrams, "_run_dot", lambda *a: "exit status 1")
    out = tmp_path / "auto.png"
    assert render(NASNET_A, out) == "matplotlib"
    assert_png(out)


def test_render_rejects_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="renderer"):
        render(NASNET_A, tmp_path / "x.png", renderer="tikz")
    with pytest.raises(ConfigError, match="path"):
        render(NASNET_A, tmp_path / "x.jpg", renderer="matplotlib")


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz 'dot' is not installed")
@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_graphviz_renders(tmp_path, suffix):
    out = tmp_path / f"cells{suffix}"
    assert render(random_arch(), out, renderer="dot") == "dot"
    assert out.stat().st_size > 1000
    assert out.with_suffix(".dot").exists()
    assert render(NASNET_A, tmp_path / f"auto{suffix}") == "dot"
    if suffix == ".svg":
        text = out.read_text()
        assert "h_{i&#45;1}" in text and ">h_i<" in text and "block 4" in text


# ------------------------------------------------------------------------------------------------
# MBConv stage pictures
# ------------------------------------------------------------------------------------------------
STAGES = [
    {"kernel": 3, "expansion": 1, "se": 0.25, "repeats": 1, "channels": 16, "stride": 1},
    {"kernel": 5, "expansion": 6, "se": 0.0, "repeats": 3, "channels": 40, "stride": 2},
]


def test_mbconv_table_reads_plain_stages_and_resolutions():
    rows = mbconv_table({"stages": STAGES}, resolution=64)
    assert [r["operator"] for r in rows] == ["MBConv1 3x3 SE", "MBConv6 5x5"]
    assert [r["resolution"] for r in rows] == [32, 32]  # after the stride-2 stem
    assert [r["stride"] for r in rows] == [1, 2]
    with pytest.raises(ConfigError, match=r"stages\[0\].channels"):
        mbconv_table([{"kernel": 3, "expansion": 1, "repeats": 1, "stride": 1}])


def test_mbconv_space_architecture_and_plan(tmp_path):
    from nasforge.models import efficientnet
    from nasforge.spaces import mbconv

    rows = mbconv_table(mbconv.B0_ARCH, resolution=224)
    # EfficientNet-B0's Table 1: input resolution and strides of each stage
    assert [r["resolution"] for r in rows] == [112, 112, 56, 28, 14, 14, 7]
    assert [r["stride"] for r in rows] == [s for s, _, _ in mbconv.B0_SKELETON]
    assert draw_architecture(mbconv.B0_ARCH, tmp_path / "b0.png", title="B0") == "matplotlib"
    assert_png(tmp_path / "b0.png")
    plan = efficientnet.efficientnet_plan(width_mult=1.1, depth_mult=1.2)
    rows = mbconv_table(plan)
    assert rows[0]["stage"] == "stem" and rows[-1]["stage"] == "head"
    assert [r["repeats"] for r in rows[1:-1]] == list(plan.repeats)


def test_mbconv_diagram_writes_png_and_svg(tmp_path):
    out = mbconv_diagram(STAGES, tmp_path / "stages.png", title="two stages", svg=True)
    assert out == tmp_path / "stages.png"
    assert_png(out)
    assert (tmp_path / "stages.svg").stat().st_size > 1000


# ------------------------------------------------------------------------------------------------
# Pareto front
# ------------------------------------------------------------------------------------------------
def dominates(p, q):
    return p[0] <= q[0] and p[1] >= q[1] and (p[0] < q[0] or p[1] > q[1])


def test_pareto_front_examples():
    pts = [(1, 0.5), (2, 0.7), (2, 0.6), (3, 0.7), (0.5, 0.1), (1, 0.5), (4, 0.9), (None, 1.0),
           (5, float("nan"))]
    assert pareto_front(pts) == [4, 0, 5, 1, 6]
    assert pareto_front([]) == []


costs = st.one_of(st.integers(0, 6), st.floats(0, 100, allow_nan=False))
qualities = st.one_of(st.integers(0, 6), st.floats(0, 1, allow_nan=False))


@given(st.lists(st.tuples(costs, qualities), max_size=40))
def test_pareto_front_property(points):
    front = pareto_front(points)
    on = set(front)
    assert len(on) == len(front)
    # cheapest first
    assert [points[i][0] for i in front] == sorted(points[i][0] for i in front)
    for i in front:
        assert not any(dominates(q, points[i]) for q in points)
    for i, p in enumerate(points):
        if i not in on:
            assert any(dominates(points[j], p) for j in front)


# ------------------------------------------------------------------------------------------------
# Plots from a small synthetic run
# ------------------------------------------------------------------------------------------------
def synthetic_runs():
    rng = np.random.default_rng(1)
    runs = {}
    for name, slope in (("random", 0.01), ("evolution", 0.02)):
        t, trials = 0.0, []
        for i in range(25):
            t += float(rng.uniform(1, 3))
            reward = None if i % 9 == 4 else float(min(1.0, 0.4 + slope * i + rng.normal(0, 0.05)))
            trials.append({"trial": i, "reward": reward, "elapsed": t})
        runs[name] = trials
    return runs


def synthetic_trials():
    rng = np.random.default_rng(2)
    out = []
    for i in range(30):
        macs = float(10 ** rng.uniform(5, 7))
        out.append({"strategy": "evolution" if i % 2 else "random", "macs": macs,
                    "params": macs / float(rng.uniform(10, 40)), "label": f"t{i}",
                    "accuracy": float(0.3 + 0.08 * math.log10(macs) + rng.normal(0, 0.03))})
    out.append({"macs": None, "params": 1e4, "accuracy": 0.5})  # missing MACs: right panel only
    return out


def synthetic_family():
    curves = {}
    for name, gain in (("compound", 0.05), ("depth", 0.03), ("width", 0.03), ("resolution", 0.035)):
        curves[name] = [{"phi": k, "macs": 1e6 * 2 ** k, "accuracy": 0.6 + gain * math.log1p(k)}
                        for k in range(4)]
    return curves


def test_search_progress_png_and_svg(tmp_path):
    out = search_progress(synthetic_runs(), tmp_path / "progress.png", svg=True, title="synthetic")
    assert out == tmp_path / "progress.png"
    assert_png(out)
    assert (tmp_path / "progress.svg").stat().st_size > 1000
    # one plain list, no wall times, all failed: still a picture
    assert_png(search_progress([{"reward": None}, {"reward": float("nan")}], tmp_path / "failed.png"))


def test_cost_quality_png(tmp_path):
    assert_png(cost_quality(synthetic_trials(), tmp_path / "cost.png"))
    assert_png(cost_quality([], tmp_path / "empty.png"))


def test_scaling_curve_png_is_deterministic(tmp_path):
    a = scaling_curve(synthetic_family(), tmp_path / "a.png")
    b = scaling_curve(synthetic_family(), tmp_path / "b")  # no suffix: PNG
    assert b == tmp_path / "b.png"
    assert_png(a)
    assert a.read_bytes() == b.read_bytes()
    with pytest.raises(ConfigError, match="path"):
        scaling_curve(synthetic_family(), tmp_path / "c.gif")


def test_plot_helpers_unique_front_per_panel():
    # the same trial set gives a front per cost: quick sanity of what cost_quality marks
    trials = synthetic_trials()
    for key in ("macs", "params"):
        pts = [(t[key], t["accuracy"]) for t in trials if t[key] is not None]
        front = pareto_front(pts)
        best = max(range(len(pts)), key=lambda i: (pts[i][1], -pts[i][0]))
        assert best in front
        assert all(a[1] < b[1] for a, b in itertools.pairwise([pts[i] for i in front]))

"""Cell diagrams, stage pictures (MBConv and other stage lists) and the search/scaling plots of `nasforge.report`."""

from __future__ import annotations

import itertools
import math
import re
import shutil
import xml.etree.ElementTree as ET

import graphviz
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nasforge.arch.mbconv import B0_ARCH, B0_SKELETON
from nasforge.arch.nasnet import NUM_INPUTS, Block, Cell, NASNetArchitecture
from nasforge.arch.nasnet_cells import DARTS_V2, NASNET_A
from nasforge.errors import ConfigError
from nasforge.report import (
    CellDiagram,
    cell_diagram,
    cell_dot,
    cell_graph,
    cost_quality,
    dot_available,
    draw_architecture,
    mbconv_diagram,
    mbconv_table,
    pareto_front,
    render,
    scaling_curve,
    search_progress,
    stage_diagram,
    stage_table,
)
from nasforge.report.graph_render import layout
from nasforge.report.mbconv_pictures import stage_columns
from nasforge.spaces import SPACES, MBConvSpace, NASNetSpace

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HAS_DOT = shutil.which("dot") is not None
SVG_NS = "{http://www.w3.org/2000/svg}"
# h_{i-1} is unused here: nothing but the layout keeps it beside h_i on the bottom layer
H_PREV_UNUSED = NASNetArchitecture(
    Cell((Block(1, "identity", 1, "sep_conv_3x3"), Block(2, "max_pool_3x3", 1, "avg_pool_3x3"))),
    Cell((Block(1, "sep_conv_5x5", 1, "identity", "concat"),)),
)


def random_arch():
    return NASNetSpace().sample(np.random.default_rng(0))


ARCHS = pytest.mark.parametrize(
    "arch", [NASNET_A, random_arch(), DARTS_V2, H_PREV_UNUSED], ids=["nasnet_a", "random", "darts_v2", "h_prev_unused"]
)


def state_id(cell_name: str, s: int) -> str:
    return f"{cell_name}_h{s}" if s < NUM_INPUTS else f"{cell_name}_b{s - NUM_INPUTS}"


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000


def svg_root(path):
    root = ET.parse(path).getroot()  # raises on anything but well-formed XML
    assert root.tag == f"{SVG_NS}svg"
    return root


def no_dot_on_path(monkeypatch, tmp_path):
    """The Graphviz binding finds `dot` on PATH; an empty PATH is a machine without Graphviz."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


# ------------------------------------------------------------------------------------------------
# The graph and its DOT text
# ------------------------------------------------------------------------------------------------
@ARCHS
def test_cell_diagram_has_every_input_block_op_and_edge(arch):
    d = cell_diagram(arch, title="t")
    assert d.cells == ("normal", "reduction") and d.title == "t"
    edges = set(d.edges)
    assert len(edges) == len(d.edges)
    for cell_name, cell in arch.cells():
        assert d.node(f"{cell_name}_h0").label == "h_{i-1}"
        assert d.node(f"{cell_name}_h1").label == "h_i"
        for j, block in enumerate(cell.blocks):
            comb = d.node(f"{cell_name}_b{j}")
            assert comb.label == f"{block.combine}\nblock {j}" and comb.kind == block.combine
            for half, (inp, op) in zip("ab", block.halves()):
                node = d.node(f"{cell_name}_b{j}_{half}")
                assert node.label == op and node.kind == "op" and node.cell == cell_name
                assert (state_id(cell_name, inp), node.id) in edges
                assert (node.id, comb.id) in edges
        out = d.node(f"{cell_name}_out")
        assert out.label.startswith("concat") and out.kind == "output"
        assert {u for u, v in edges if v == out.id} == {state_id(cell_name, s) for s in cell.output_states()}
        # every node of the cell: 2 inputs, 3 per block, the output
        assert sum(n.cell == cell_name for n in d.nodes) == NUM_INPUTS + 3 * len(cell.blocks) + 1
    assert len({n.id for n in d.nodes}) == len(d.nodes)


@ARCHS
def test_dot_text_declares_every_node_edge_and_cluster(arch):
    d = cell_diagram(arch, title="t")
    text = cell_dot(arch, title="t")
    assert text == d.source and text.startswith("digraph nasnet_cells {")
    assert re.search(r"\brankdir=BT\b", text) and "label=t " in text
    for cell_name in d.cells:
        assert f"subgraph cluster_{cell_name} {{" in text
        assert f'label="{cell_name} cell"' in text
    for n in d.nodes:
        label = n.label.replace("\n", "\\n")
        m = re.search(rf"^\s*{n.id} \[label=(\"{re.escape(label)}\"|{re.escape(label)}) ", text, re.M)
        assert m, n
    for u, v in d.edges:
        assert re.search(rf"^\s*{u} -> {v}$", text, re.M), (u, v)


def test_nasnet_a_concat_includes_h_prev_in_normal_cell():
    edges = set(cell_diagram(NASNET_A).edges)
    assert ("normal_h0", "normal_out") in edges
    assert ("reduction_h0", "reduction_out") not in edges


def test_cell_graph_is_a_graphviz_digraph_and_inputs_agree():
    g = cell_graph(NASNET_A, "NASNet-A")
    assert isinstance(g, graphviz.Digraph)
    assert g.source == cell_dot(NASNET_A, "NASNet-A")
    assert cell_dot(NASNetSpace().to_json(NASNET_A)) == cell_dot(NASNET_A)
    assert cell_diagram([("x", NASNET_A.normal)]).cells == ("x",)
    single = cell_diagram(NASNET_A.normal)
    assert single.cells == ("cell",) and "subgraph cluster_cell {" in single.source
    with pytest.raises(ConfigError):
        cell_graph(object())


# ------------------------------------------------------------------------------------------------
# Rendering with Graphviz (where `dot` is installed)
# ------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not HAS_DOT, reason="Graphviz 'dot' is not installed")
@pytest.mark.parametrize("arch", [NASNET_A, random_arch()], ids=["nasnet_a", "random"])
def test_graphviz_draws_every_node_and_edge(tmp_path, arch):
    assert dot_available()
    out = tmp_path / "cells.svg"
    assert render(arch, out, renderer="dot") == "dot"
    assert out.with_suffix(".dot").read_text() == cell_dot(arch)
    root = svg_root(out)
    titles = {"node": set(), "edge": set(), "cluster": set()}  # Graphviz titles each group by its DOT name
    for g in root.iter(f"{SVG_NS}g"):
        if g.get("class") in titles:
            titles[g.get("class")].add(g.find(f"{SVG_NS}title").text)
    d = cell_diagram(arch)
    assert titles["node"] == {n.id for n in d.nodes}
    assert {f"{u}->{v}" for u, v in d.edges} <= titles["edge"]
    assert titles["cluster"] == {"cluster_normal", "cluster_reduction"}
    texts = {t.text for t in root.iter(f"{SVG_NS}text")}
    assert {"h_{i-1}", "h_i", "block 4"} <= texts
    assert {b.op_a for _, c in arch.cells() for b in c.blocks} <= texts


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz 'dot' is not installed")
def test_auto_uses_graphviz_when_present(tmp_path):
    out = tmp_path / "auto.png"
    assert render(NASNET_A, out) == "dot"
    assert_png(out)
    assert render(cell_diagram(DARTS_V2), tmp_path / "auto.pdf") == "dot"
    assert (tmp_path / "auto.pdf").read_bytes().startswith(b"%PDF")


# ------------------------------------------------------------------------------------------------
# Rendering without Graphviz: grandalf's layout drawn by matplotlib
# ------------------------------------------------------------------------------------------------
def test_auto_falls_back_without_dot(tmp_path, monkeypatch):
    no_dot_on_path(monkeypatch, tmp_path)
    assert not dot_available()
    out = tmp_path / "auto.png"
    assert render(NASNET_A, out, title="cells") == "matplotlib"
    assert_png(out)
    assert out.with_suffix(".dot").read_text() == cell_dot(NASNET_A, title="cells")
    with pytest.raises(ConfigError, match="not on PATH"):
        render(NASNET_A, tmp_path / "x.png", renderer="dot")


def test_auto_falls_back_when_dot_fails(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "dot"
    fake.write_text("#!/bin/sh\necho 'Error: this dot is broken' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert dot_available()
    out = tmp_path / "auto.png"
    assert render(NASNET_A, out) == "matplotlib"
    assert_png(out)
    with pytest.raises(ConfigError, match="this dot is broken"):
        render(NASNET_A, tmp_path / "x.png", renderer="dot")


@ARCHS
def test_fallback_svg_has_every_node_and_edge(tmp_path, arch):
    out = tmp_path / "cells.svg"
    assert render(arch, out, renderer="matplotlib") == "matplotlib"
    ids = {g.get("id") for g in svg_root(out).iter(f"{SVG_NS}g")}
    d = cell_diagram(arch)
    assert {n.id for n in d.nodes} <= ids
    assert {f"{n.id}:label" for n in d.nodes} <= ids
    assert {f"{u}->{v}" for u, v in d.edges} <= ids


def test_fallback_pdf_and_same_bytes_twice(tmp_path):
    assert render(random_arch(), tmp_path / "a.pdf", renderer="matplotlib") == "matplotlib"
    assert (tmp_path / "a.pdf").read_bytes().startswith(b"%PDF")
    render(random_arch(), tmp_path / "b.png", renderer="matplotlib")
    render(random_arch(), tmp_path / "c.png", renderer="matplotlib")
    assert_png(tmp_path / "b.png")
    assert (tmp_path / "b.png").read_bytes() == (tmp_path / "c.png").read_bytes()


@ARCHS
def test_fallback_layout_is_layered_bottom_to_top(arch):
    d = cell_diagram(arch)
    lay = layout(d)
    assert set(lay.pos) == {n.id for n in d.nodes}
    for cell_name in d.cells:
        h0, h1, out = (lay.pos[f"{cell_name}_{k}"] for k in ("h0", "h1", "out"))
        members = [n.id for n in d.nodes if n.cell == cell_name]
        # the inputs side by side on the bottom layer, h_{i-1} on the left; the output on top
        assert h0[1] == h1[1] == min(lay.pos[n][1] for n in members)
        assert h0[0] < h1[0]
        assert out[1] == max(lay.pos[n][1] for n in members)
        # every node inside its cell's box
        bx, by, bw, bh = lay.clusters[cell_name]
        for n in members:
            (x, y), (w, h) = lay.pos[n], lay.size[n]
            assert bx <= x - w / 2 and x + w / 2 <= bx + bw and by <= y - h / 2 and y + h / 2 <= by + bh
        # nodes of one layer do not overlap
        by_layer = {}
        for n in members:
            by_layer.setdefault(lay.pos[n][1], []).append(n)
        for row in by_layer.values():
            row.sort(key=lambda n: lay.pos[n][0])
            for a, b in itertools.pairwise(row):
                assert lay.pos[a][0] + lay.size[a][0] / 2 < lay.pos[b][0] - lay.size[b][0] / 2
    # every arrow points up, through bends that climb too
    for u, v in d.edges:
        ys = [lay.pos[u][1], *(y for _, y in lay.bends.get((u, v), [])), lay.pos[v][1]]
        assert ys == sorted(ys) and ys[0] < ys[-1], (u, v)
    # the normal cell left of the reduction cell
    (nx, _, nw, _), (rx, _, _, _) = lay.clusters["normal"], lay.clusters["reduction"]
    assert nx + nw < rx


def test_render_rejects_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="renderer"):
        render(NASNET_A, tmp_path / "x.png", renderer="tikz")
    with pytest.raises(ConfigError, match="path"):
        render(NASNET_A, tmp_path / "x.jpg", renderer="matplotlib")
    assert isinstance(cell_diagram(NASNET_A), CellDiagram)


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
    assert [r["stride"] for r in mbconv_table(STAGES, strides=[2, 1])] == [2, 1]
    with pytest.raises(ConfigError, match=r"stages\[0\].channels"):
        mbconv_table([{"kernel": 3, "expansion": 1, "repeats": 1, "stride": 1}])
    with pytest.raises(ConfigError, match="strides"):
        mbconv_table(STAGES, strides=[1])


def test_mbconv_strides_come_from_the_space_not_the_report(tmp_path):
    # an MBConv-space architecture keeps no strides: its space's skeleton has them
    rows = mbconv_table(B0_ARCH, resolution=224, space=MBConvSpace())
    # EfficientNet-B0's Table 1: input resolution and strides of each stage
    assert [r["resolution"] for r in rows] == [112, 112, 56, 28, 14, 14, 7]
    assert [r["stride"] for r in rows] == [s for s, _, _ in B0_SKELETON]
    # without its space the report does not guess
    assert [r["stride"] for r in mbconv_table(B0_ARCH)] == [None] * len(B0_ARCH.stages)
    # another skeleton, other strides
    flat = MBConvSpace(skeleton=[(1, ch, reps) for _, ch, reps in B0_SKELETON])
    assert [r["stride"] for r in mbconv_table(B0_ARCH, space=flat)] == [1] * len(B0_SKELETON)
    # the JSON names its space
    data = MBConvSpace().to_json(B0_ARCH)
    assert [r["stride"] for r in mbconv_table(data)] == [s for s, _, _ in B0_SKELETON]
    assert draw_architecture(data, tmp_path / "json.png") == "matplotlib"
    assert_png(tmp_path / "json.png")
    assert draw_architecture(B0_ARCH, tmp_path / "b0.png", title="B0", space=MBConvSpace()) == "matplotlib"
    assert_png(tmp_path / "b0.png")


def test_mbconv_table_of_a_scaled_plan():
    from nasforge.models import efficientnet

    plan = efficientnet.efficientnet_plan(width_mult=1.1, depth_mult=1.2)
    rows = mbconv_table(plan)
    assert rows[0]["stage"] == "stem" and rows[-1]["stage"] == "head"
    assert [r["repeats"] for r in rows[1:-1]] == list(plan.repeats)
    assert all(r["stride"] is not None for r in rows)


def test_mbconv_diagram_writes_png_and_svg(tmp_path):
    out = mbconv_diagram(STAGES, tmp_path / "stages.png", title="two stages", svg=True)
    assert out == tmp_path / "stages.png"
    assert_png(out)
    svg_root(tmp_path / "stages.svg")
    assert (tmp_path / "stages.svg").stat().st_size > 1000
    with pytest.raises(ConfigError, match="path"):
        mbconv_diagram(STAGES, tmp_path / "stages.gif")


def test_mbconv_stage_columns_are_efficientnets_table():
    rows = mbconv_table(B0_ARCH, space=MBConvSpace())
    assert [label for _, label in stage_columns(rows)] == ["stage", "operator", "kernel", "expansion", "SE",
                                                          "repeats", "channels", "stride"]
    rows = mbconv_table(B0_ARCH, resolution=224, space=MBConvSpace())
    assert [key for key, _ in stage_columns(rows)][:4] == ["stage", "operator", "resolution", "kernel"]


@pytest.fixture
def towers(request):
    """The toy stage-list space, registered (for the JSON that names it) while the test runs."""
    from toys import TowerSpace

    SPACES.register(TowerSpace.name, TowerSpace)
    request.addfinalizer(lambda: SPACES.unregister(TowerSpace.name))
    return TowerSpace()


def test_any_space_that_describes_its_stages_is_drawn_as_stages(tmp_path, towers):
    arch = (0, 1, 1, 0, 2, 2)  # floors, width of each of three towers
    rows = stage_table(arch, resolution=32, stem_stride=1, space=towers)
    assert [r["stage"] for r in rows] == ["1", "2", "3"]
    assert [r["operator"] for r in rows] == ["Tower 16", "Tower 8", "Tower 24"]
    assert [r["repeats"] for r in rows] == [1, 2, 3] and [r["channels"] for r in rows] == [16, 8, 24]
    assert [r["resolution"] for r in rows] == [32, 16, 8] and [r["kernel"] for r in rows] == [None] * 3
    assert [r["roof"] for r in rows] == ["gable", "flat", "gable"]
    # the space's own column, no kernel column (no stage has a kernel), nothing of MBConv's
    assert [label for _, label in stage_columns(rows)] == ["stage", "operator", "resolution", "roof", "repeats",
                                                          "channels", "stride"]
    assert [r["stride"] for r in stage_table(arch, strides=[1, 2, 2], space=towers)] == [1, 2, 2]
    with pytest.raises(ConfigError, match="strides"):
        stage_table(arch, strides=[1], space=towers)
    # the JSON names its space, which describes the stages
    data = towers.to_json(arch)
    assert stage_table(data) == stage_table(arch, space=towers)
    assert draw_architecture(data, tmp_path / "json.png") == "matplotlib"
    assert_png(tmp_path / "json.png")
    # a value is drawn as the space given says, not guessed from the value
    assert draw_architecture(arch, tmp_path / "value.png", title="towers", space=towers) == "matplotlib"
    assert_png(tmp_path / "value.png")
    out = stage_diagram(arch, tmp_path / "towers.png", svg=True, space=towers)
    assert_png(out)
    svg = (tmp_path / "towers.svg").read_text()
    assert "roof" in svg and "Tower 24" in svg and "MBConv" not in svg


def test_a_stage_row_without_what_the_picture_needs_is_named(towers, monkeypatch):
    monkeypatch.setattr(type(towers), "stage_rows",
                        lambda self, arch: [{"operator": "Tower", "repeats": 1, "stride": 1}])
    with pytest.raises(ConfigError, match=r"stages\[0\]\.channels"):
        stage_table((0, 0, 0, 0, 0, 0), space=towers)


def test_draw_architecture_picks_the_picture_of_the_space(tmp_path):
    assert draw_architecture(NASNET_A, tmp_path / "cells.png", renderer="matplotlib") == "matplotlib"
    assert_png(tmp_path / "cells.png")
    assert (tmp_path / "cells.dot").is_file()
    data = NASNetSpace().to_json(NASNET_A)
    assert draw_architecture(data, tmp_path / "json.svg", renderer="matplotlib") == "matplotlib"
    assert (tmp_path / "json.dot").read_text() == cell_dot(NASNET_A)
    with pytest.raises(ConfigError, match="architecture"):
        draw_architecture({"space": "nb201", "arch": "x"}, tmp_path / "nb.png")


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

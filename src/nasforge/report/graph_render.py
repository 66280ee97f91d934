"""Drawing a cell diagram to a file: Graphviz where it is installed, grandalf and matplotlib where not.

`render` writes the diagram's DOT text beside the image and asks Graphviz's `dot` for the image
through the Graphviz Python binding (https://graphviz.readthedocs.io/). Where `dot` is not on
PATH, or fails, it lays the same `CellDiagram` out with grandalf's Sugiyama layout
(https://grandalf.readthedocs.io/; the layered method of Sugiyama, Tagawa and Toda, "Methods for
Visual Understanding of Hierarchical System Structures", IEEE Trans. SMC 11(2), 1981, which is
also what `dot` does) and draws it with matplotlib, so a plain `pip install` still produces a
picture with the same nodes, labels, colours and arrows.

matplotlib and grandalf are imported only when the fallback draws.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasforge.errors import ConfigError
from nasforge.report.cell_graph import (
    CLUSTER_COLOR,
    CLUSTER_FONTSIZE,
    EDGE_COLOR,
    NODE_FONTSIZE,
    STYLE,
    TITLE_FONTSIZE,
    CellDiagram,
    DiagramNode,
    cell_diagram,
)
from nasforge.report.figure_files import image_format, save_figure

if TYPE_CHECKING:
    import numpy as np

RENDERERS: tuple[str, ...] = ("auto", "dot", "matplotlib")

# Fallback geometry, in points.
LAYER_GAP = 34.0  # between the bottom of one layer and the top of the next
NODE_GAP = 14.0  # between neighbouring nodes of a layer
DUMMY_WIDTH = 6.0  # room reserved in a layer for a long edge passing through it
CLUSTER_PAD = 14.0
CLUSTER_GAP = 30.0
CLUSTER_TITLE = 22.0


def dot_available() -> bool:
    """Whether Graphviz's `dot` program is on PATH."""
    import graphviz

    return shutil.which(str(graphviz.DOT_BINARY)) is not None


def render(source: Any, path: str | Path, *, renderer: str = "auto", title: str | None = None) -> str:
    """Draw a cell diagram to `path` (.png, .svg or .pdf) and write its DOT text beside it (.dot).

    `source` is a `CellDiagram` or anything `cell_diagram` accepts (an architecture, a `Cell`,
    NASNet JSON). `renderer`: "dot" (Graphviz; a `ConfigError` if it is missing or fails),
    "matplotlib" (grandalf's layout drawn by matplotlib), or "auto" (Graphviz when it works, else
    matplotlib). Returns the renderer used.
    """
    if renderer not in RENDERERS:
        raise ConfigError("renderer", f"unknown renderer {renderer!r}", RENDERERS)
    path = Path(path)
    fmt = image_format(path)
    diagram = source if isinstance(source, CellDiagram) else cell_diagram(source, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    dot_path = path.with_suffix(".dot")
    dot_path.write_text(diagram.source)
    if renderer in ("auto", "dot"):
        error = _graphviz_render(dot_path, path, fmt)
        if error is None:
            return "dot"
        if renderer == "dot":
            raise ConfigError("renderer", f"Graphviz could not draw the diagram: {error}", ["auto", "matplotlib"])
    draw_graph(diagram, path)
    return "matplotlib"


def _graphviz_render(dot_path: Path, out: Path, fmt: str) -> str | None:
    """Run `dot` on `dot_path` through the binding; None on success, else a one-line reason."""
    import graphviz

    try:
        graphviz.render("dot", fmt, dot_path, outfile=out, quiet=True)
    except graphviz.ExecutableNotFound:
        return "Graphviz's 'dot' is not on PATH (install graphviz)"
    except graphviz.CalledProcessError as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else str(exc.stderr or "")
        return (stderr.strip().splitlines() or [f"exit status {exc.returncode}"])[-1]
    except OSError as exc:
        return str(exc)
    if not out.is_file() or out.stat().st_size == 0:
        return "wrote no image"
    return None


# ------------------------------------------------------------------------------------------------
# The fallback: grandalf's Sugiyama layout, one cell at a time, drawn by matplotlib
# ------------------------------------------------------------------------------------------------
class _Box:
    """What grandalf reads (w, h) and writes (xy, the centre) for a vertex."""

    def __init__(self, w: float, h: float):
        self.w, self.h = w, h
        self.xy = (0.0, 0.0)


class _Route:
    """What grandalf writes for an edge: the points from tail centre through bends to head centre."""

    def __init__(self) -> None:
        self.points: list[tuple[float, float]] = []

    def setpath(self, points: list[tuple[float, float]]) -> None:
        self.points = [(float(x), float(y)) for x, y in points]


@dataclass
class Layout:
    """Where the fallback puts everything, in points, y up (inputs at the bottom)."""

    pos: dict[str, tuple[float, float]]  # node centres
    size: dict[str, tuple[float, float]]
    bends: dict[tuple[str, str], list[tuple[float, float]]]  # an edge's bends between its ends
    clusters: dict[str, tuple[float, float, float, float]]  # cell -> x, y, width, height
    width: float
    height: float


_ANCHOR = "\0anchor"


def _layout_cell(
    nodes: list[str], edges: list[tuple[str, str]], size: dict[str, tuple[float, float]], inputs: list[str]
) -> tuple[dict[str, tuple[float, float]], dict[tuple[str, str], list[tuple[float, float]]], float, float]:
    """Sugiyama layout of one cell by grandalf, layer 0 (the inputs) at the bottom.

    Ranks are optimised (grandalf's `optimize=True` moves every node up under its consumers, as
    Graphviz's ranking does), and an invisible, empty sink fed by every input keeps the inputs on
    the bottom layer, as rank=same does for Graphviz. Were parts of a graph unconnected, they would
    be laid out one by one and set side by side. The cell is mirrored if that puts h_{i-1} left of
    h_i, as in the paper's figures (a mirror image has the same crossings).
    """
    from grandalf.graphs import Edge, Graph, Vertex, graph_core
    from grandalf.layouts import SugiyamaLayout

    sizes = dict(size)
    pairs = list(edges)
    if inputs:
        sizes[_ANCHOR] = (0.0, 0.0)
        pairs += [(n, _ANCHOR) for n in inputs]
    names = [*nodes, _ANCHOR] if inputs else list(nodes)
    # grandalf's Graph finds the connected parts but keeps each part's edges in a set, whose order
    # (and so the layout) changes from run to run: each part is rebuilt with its edges in order.
    probe = {n: Vertex(n) for n in names}
    parts = Graph(list(probe.values()), [Edge(probe[u], probe[w]) for u, w in pairs]).C
    order = {n: i for i, n in enumerate(names)}
    components = []
    for part in sorted(parts, key=lambda c: min(order[v.data] for v in c.sV)):
        members = sorted((v.data for v in part.sV), key=order.__getitem__)
        vertices = {n: Vertex(n) for n in members}
        for n, v in vertices.items():
            v.view = _Box(*sizes[n])
        part_edges = []
        for u, w in pairs:
            if u in vertices:
                e = Edge(vertices[u], vertices[w])
                e.view = _Route()
                part_edges.append(e)
        components.append(graph_core(list(vertices.values()), part_edges))

    pos: dict[str, tuple[float, float]] = {}
    bends: dict[tuple[str, str], list[tuple[float, float]]] = {}
    cursor, height = 0.0, 0.0
    for comp in components:
        sug = SugiyamaLayout(comp)
        sug.xspace, sug.yspace = NODE_GAP, LAYER_GAP
        sug.dw, sug.dh = DUMMY_WIDTH, 1.0  # dummy vertices (bends of long edges) stay thin
        sug.init_all(optimize=True)
        sug.draw()
        left = min(v.view.xy[0] - v.view.w / 2 for v in comp.sV)
        right = max(v.view.xy[0] + v.view.w / 2 for v in comp.sV)
        bottom = min(v.view.xy[1] - v.view.h / 2 for v in comp.sV if v.data != _ANCHOR)
        dx, dy = cursor - left, -bottom
        for v in comp.sV:
            x, y = v.view.xy
            pos[v.data] = (x + dx, y + dy)
            height = max(height, y + dy + v.view.h / 2)
        for e in comp.sE:
            bends[(e.v[0].data, e.v[1].data)] = [(x + dx, y + dy) for x, y in e.view.points[1:-1]]
        cursor += right - left + NODE_GAP
    width = max(cursor - NODE_GAP, 0.0)
    pos.pop(_ANCHOR, None)
    if len(inputs) >= 2 and pos[inputs[0]][0] > pos[inputs[-1]][0]:
        pos = {n: (width - x, y) for n, (x, y) in pos.items()}
        bends = {e: [(width - x, y) for x, y in pts] for e, pts in bends.items()}
    return pos, bends, width, height


def layout(diagram: CellDiagram) -> Layout:
    """The fallback's layout of `diagram`: every cell laid out on its own, cells side by side."""
    size = {n.id: _node_size(n) for n in diagram.nodes}
    cell_of = {n.id: n.cell for n in diagram.nodes}
    pos: dict[str, tuple[float, float]] = {}
    bends: dict[tuple[str, str], list[tuple[float, float]]] = {}
    boxes: dict[str, tuple[float, float, float, float]] = {}
    cursor, top = 0.0, 0.0
    for cell in diagram.cells:
        members = [n.id for n in diagram.nodes if n.cell == cell]
        inner = [(u, v) for u, v in diagram.edges if cell_of[u] == cell and cell_of[v] == cell]
        inputs = [n.id for n in diagram.nodes if n.cell == cell and n.kind == "input"]
        cpos, cbends, w, h = _layout_cell(members, inner, size, inputs)
        ox = cursor + CLUSTER_PAD
        pos.update({n: (ox + x, y) for n, (x, y) in cpos.items()})
        bends.update({edge: [(ox + x, y) for x, y in pts] for edge, pts in cbends.items()})
        box_h = h + 2 * CLUSTER_PAD + CLUSTER_TITLE
        boxes[cell] = (cursor, -CLUSTER_PAD, w + 2 * CLUSTER_PAD, box_h)
        top = max(top, box_h - CLUSTER_PAD)
        cursor += w + 2 * CLUSTER_PAD + CLUSTER_GAP
    return Layout(pos, size, bends, boxes, max(cursor - CLUSTER_GAP, 1.0), top)


def draw_graph(diagram: CellDiagram, path: str | Path) -> Path:
    """Lay `diagram` out with grandalf and draw it with matplotlib to `path` (.png, .svg, .pdf).

    In an SVG every node's shapes are grouped under its id and every arrow under `tail->head`.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Ellipse, FancyArrowPatch, FancyBboxPatch
    from matplotlib.path import Path as MplPath

    path = Path(path)
    image_format(path)
    lay = layout(diagram)
    top = lay.height + (26.0 if diagram.title else 4.0)
    bottom = -CLUSTER_PAD - 4.0
    margin = 8.0
    fig = Figure(figsize=((lay.width + 2 * margin) / 72, (top - bottom) / 72), dpi=120)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-margin, lay.width + margin)
    ax.set_ylim(bottom, top)
    ax.set_axis_off()

    for cell, (bx, by, bw, bh) in lay.clusters.items():
        ax.add_patch(
            FancyBboxPatch(
                (bx, by),
                bw,
                bh,
                boxstyle="round,pad=0,rounding_size=8",
                facecolor="none",
                edgecolor=CLUSTER_COLOR,
                linewidth=1.0,
            )
        )
        label_y = by + bh - CLUSTER_TITLE / 2 - 2
        ax.text(bx + bw / 2, label_y, f"{cell} cell", ha="center", va="center", fontsize=CLUSTER_FONTSIZE)
    if diagram.title:
        ax.text(
            lay.width / 2, top - 14, diagram.title, ha="center", va="center", fontsize=TITLE_FONTSIZE, fontweight="bold"
        )

    for u, v in diagram.edges:
        (xu, yu), (xv, yv) = lay.pos[u], lay.pos[v]
        sgn = 1 if yv > yu else -1
        # leave the tail through its top and enter the head through its bottom, as dot does
        start = (xu, yu + sgn * lay.size[u][1] / 2) if yu != yv else (xu, yu)
        end = (xv, yv - sgn * lay.size[v][1] / 2) if yu != yv else (xv, yv)
        verts, codes = _spline([start, *lay.bends.get((u, v), []), end])
        arrow = FancyArrowPatch(
            path=MplPath(verts, codes), arrowstyle="-|>", mutation_scale=9, color=EDGE_COLOR, linewidth=0.9, zorder=1
        )
        arrow.set_gid(f"{u}->{v}")
        ax.add_patch(arrow)

    for node in diagram.nodes:
        cx, cy = lay.pos[node.id]
        w, h = lay.size[node.id]
        style = STYLE[node.kind]
        patch: Ellipse | FancyBboxPatch
        common: dict[str, Any] = {"facecolor": style["fillcolor"], "edgecolor": "#333333", "linewidth": 1.0}
        if style["shape"] == "ellipse":
            patch = Ellipse((cx, cy), w, h, zorder=2, **common)
        else:
            rounded = "rounded" in style["style"]
            box = "round,pad=0,rounding_size=5" if rounded else "square,pad=0"
            patch = FancyBboxPatch((cx - w / 2, cy - h / 2), w, h, boxstyle=box, zorder=2, **common)
        patch.set_gid(node.id)
        ax.add_patch(patch)
        label = "\n".join(_math_label(line) for line in node.label.split("\n"))
        text = ax.text(cx, cy, label, ha="center", va="center", fontsize=NODE_FONTSIZE, zorder=3, linespacing=1.1)
        text.set_gid(f"{node.id}:label")

    return save_figure(fig, path)


def _math_label(line: str) -> str:
    """`h_{i-1}` -> `$h_{i-1}$` so matplotlib sets the subscript; other text unchanged."""
    if re.fullmatch(r"[A-Za-z]+_(\{[^{}$]*\}|\w)", line):
        return f"${line}$"
    return line


def _node_size(node: DiagramNode) -> tuple[float, float]:
    """Width and height (points) of a node: its label's extent plus padding, as Graphviz sizes them."""
    from matplotlib.textpath import TextPath

    lines = node.label.split("\n")
    width = max(
        (TextPath((0, 0), _math_label(line), size=NODE_FONTSIZE).get_extents().width for line in lines if line.strip()),
        default=0.0,
    )
    height = NODE_FONTSIZE * 1.25 * len(lines)
    if STYLE[node.kind]["shape"] == "ellipse":
        return max(width * 1.2 + 14, 44.0), max(height * 1.25 + 6, 26.0)
    return max(width + 16, 40.0), max(height + 10, 24.0)


def _spline(points: list[tuple[float, float]]) -> tuple[list[tuple[float, float]], list[np.uint8]]:
    """Cubic segments with vertical tangents at every point: smooth S-curves through the bends
    of a layered drawing, arriving straight into the head node as Graphviz's splines do."""
    from matplotlib.path import Path as MplPath

    verts, codes = [points[0]], [MplPath.MOVETO]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if abs(y1 - y0) < 1e-9:
            verts.append((x1, y1))
            codes.append(MplPath.LINETO)
            continue
        dy = (y1 - y0) / 2
        verts += [(x0, y0 + dy), (x1, y1 - dy), (x1, y1)]
        codes += [MplPath.CURVE4] * 3
    return verts, codes


__all__ = ["RENDERERS", "Layout", "dot_available", "draw_graph", "layout", "render"]

"""NASNet cells as a graph to draw: which nodes, labels, colours and arrows a cell diagram has.

The diagram follows the NASNet paper's figures (Zoph et al., "Learning Transferable Architectures
for Scalable Image Recognition", CVPR 2018): the two cell inputs h_{i-1} and h_i at the bottom,
every block as two op boxes feeding its combiner (add or concat), and the concatenated cell
output on top; the normal and the reduction cell sit side by side as two clusters of one graph.

`cell_diagram` builds the graph as a small `CellDiagram` value; `cell_graph` turns it into a
`graphviz.Digraph` (the Graphviz Python binding, https://graphviz.readthedocs.io/) and `cell_dot`
into its DOT text. The value exists because `nasforge.report.graph_render` must also draw the
graph where Graphviz's `dot` is not installed, and a `Digraph` holds nothing but DOT source lines:
reading nodes and edges back out of it would take a DOT parser.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nasforge.arch.nasnet import NUM_INPUTS, Cell, NASNetArchitecture
from nasforge.errors import ConfigError

if TYPE_CHECKING:
    import graphviz

# NASNet-paper-like palette: inputs blue, ops yellow, add green, concat orange, output red.
STYLE: dict[str, dict[str, str]] = {
    "input": {"shape": "box", "style": "filled,rounded", "fillcolor": "#cfe2f3"},
    "op": {"shape": "box", "style": "filled,rounded", "fillcolor": "#fff2cc"},
    "add": {"shape": "ellipse", "style": "filled", "fillcolor": "#d9ead3"},
    "concat": {"shape": "ellipse", "style": "filled", "fillcolor": "#fce5cd"},
    "output": {"shape": "box", "style": "filled,rounded", "fillcolor": "#f4cccc"},
}
INPUT_LABELS = ("h_{i-1}", "h_i")
OUTPUT_LABEL = "concat\nh_{i+1}"
FONT = "Helvetica"
NODE_FONTSIZE = 11.0
CLUSTER_FONTSIZE = 13.0
TITLE_FONTSIZE = 14.0
CLUSTER_COLOR = "#999999"
EDGE_COLOR = "#444444"


@dataclass(frozen=True)
class DiagramNode:
    """One box or ellipse: `kind` is a key of `STYLE`, `cell` the cell (cluster) it belongs to."""

    id: str
    label: str
    kind: str
    cell: str


@dataclass(frozen=True)
class CellDiagram:
    """The cell diagram of one architecture: its cells (in drawing order), nodes and arrows."""

    cells: tuple[str, ...]
    nodes: tuple[DiagramNode, ...]
    edges: tuple[tuple[str, str], ...]
    title: str | None = None

    def node(self, node_id: str) -> DiagramNode:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def digraph(self) -> graphviz.Digraph:
        """The diagram as a `graphviz.Digraph`, laid out bottom to top (rankdir=BT)."""
        import graphviz

        graph_attr = {"rankdir": "BT", "nodesep": "0.25", "ranksep": "0.35", "fontname": FONT}
        graph_attr.update(fontsize=f"{TITLE_FONTSIZE:g}", labelloc="t")
        if self.title:
            graph_attr["label"] = _dot_label(self.title)
        g = graphviz.Digraph(
            "nasnet_cells",
            graph_attr=graph_attr,
            node_attr={"fontname": FONT, "fontsize": f"{NODE_FONTSIZE:g}", "penwidth": "1.2"},
            edge_attr={"arrowsize": "0.7", "color": EDGE_COLOR},
        )
        for cell in self.cells:
            with g.subgraph(name=f"cluster_{cell}") as c:
                # with rankdir=BT Graphviz flips labelloc: "b" puts the cluster's label on top
                c.attr(label=f"{cell} cell", labelloc="b", style="rounded", color=CLUSTER_COLOR)
                c.attr(fontname=FONT, fontsize=f"{CLUSTER_FONTSIZE:g}")
                members = [n for n in self.nodes if n.cell == cell]
                for n in members:
                    c.node(n.id, _dot_label(n.label), **STYLE[n.kind])
                inputs = [n.id for n in members if n.kind == "input"]
                with c.subgraph() as same:
                    same.attr(rank="same")
                    for n_id in inputs:
                        same.node(n_id)
                # keeps h_{i-1} left of h_i
                for left, right in zip(inputs, inputs[1:]):
                    c.edge(left, right, style="invis")
        for tail, head in self.edges:
            g.edge(tail, head)
        return g

    @property
    def source(self) -> str:
        """The DOT text of `digraph()`."""
        return self.digraph().source


def _dot_label(text: str) -> str:
    """Line breaks as DOT's `\\n` escape (the binding quotes, but does not escape, strings)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _as_cells(arch: Any) -> list[tuple[str, Cell]]:
    if isinstance(arch, NASNetArchitecture):
        return list(arch.cells())
    if isinstance(arch, Cell):
        return [("cell", arch)]
    if isinstance(arch, Mapping):
        from nasforge.spaces import space_for_json

        parsed = space_for_json(arch).from_json(dict(arch))
        if isinstance(parsed, NASNetArchitecture):
            return list(parsed.cells())
    if (
        isinstance(arch, Sequence)
        and arch
        and all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[1], Cell) for p in arch)
    ):
        return [(str(n), c) for n, c in arch]
    raise ConfigError(
        "architecture",
        f"cannot draw cells of a {type(arch).__name__}",
        "NASNetArchitecture, Cell, NASNet JSON, or (name, Cell) pairs",
    )


def cell_diagram(arch: Any, title: str | None = None) -> CellDiagram:
    """The diagram of a NASNet architecture (or one `Cell`, its JSON, or (name, Cell) pairs).

    Node ids are `<cell>_h0`, `<cell>_h1` (the inputs h_{i-1}, h_i), `<cell>_b<j>_a` and
    `<cell>_b<j>_b` (block j's two ops), `<cell>_b<j>` (its combiner) and `<cell>_out` (the
    concatenated output); in Graphviz each cell is the cluster `cluster_<cell>`.
    """
    cells = _as_cells(arch)
    nodes: list[DiagramNode] = []
    edges: list[tuple[str, str]] = []
    for cell_name, cell in cells:

        def state(s: int, cell_name: str = cell_name) -> str:
            return f"{cell_name}_h{s}" if s < NUM_INPUTS else f"{cell_name}_b{s - NUM_INPUTS}"

        nodes += [DiagramNode(state(s), label, "input", cell_name) for s, label in enumerate(INPUT_LABELS)]
        for j, block in enumerate(cell.blocks):
            comb = state(NUM_INPUTS + j)
            for half, (inp, op) in zip("ab", block.halves()):
                nodes.append(DiagramNode(f"{comb}_{half}", op, "op", cell_name))
                edges += [(state(inp), f"{comb}_{half}"), (f"{comb}_{half}", comb)]
            kind = "add" if block.combine == "add" else "concat"
            nodes.append(DiagramNode(comb, f"{block.combine}\nblock {j}", kind, cell_name))
        out = f"{cell_name}_out"
        nodes.append(DiagramNode(out, OUTPUT_LABEL, "output", cell_name))
        edges += [(state(s), out) for s in cell.output_states()]
    return CellDiagram(tuple(name for name, _ in cells), tuple(nodes), tuple(edges), title)


def cell_graph(arch: Any, title: str | None = None) -> graphviz.Digraph:
    """The cell diagram as a `graphviz.Digraph` (render it with `.render()` or `.pipe()`)."""
    return cell_diagram(arch, title).digraph()


def cell_dot(arch: Any, title: str | None = None) -> str:
    """Graphviz text of the cell diagram: every input, block, op and the output, labelled."""
    return cell_diagram(arch, title).source


__all__ = ["CellDiagram", "DiagramNode", "STYLE", "cell_diagram", "cell_dot", "cell_graph"]

"""Architecture pictures: NASNet cell diagrams and MBConv stage tables.

Cell diagrams follow the NASNet paper's figures: the two cell inputs h_{i-1} and h_i at the
bottom, every block as two op boxes feeding its combiner (add or concat), and the concatenated
cell output on top; the normal and the reduction cell sit side by side as two clusters of one
graph.

The Graphviz text is the primary artefact. `cell_graph` builds it as a small `DotGraph` value,
`cell_dot` prints it, and `render` draws it: with Graphviz's `dot` program when it is installed,
otherwise with a pure-Python layered layout drawn by matplotlib, so a plain `pip install` still
produces a picture. The fallback reads the same graph (it parses `.dot` text too), so both
renderers show the same nodes, labels and edges.

MBConv / EfficientNet stage lists have no graph worth drawing; `mbconv_diagram` draws them as a
strip of stage blocks above the paper-style stage table (operator, kernel, expansion, SE,
repeats, channels, stride).

matplotlib is imported only by the functions that draw, so `cell_dot` works without it.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasforge.errors import ConfigError
from nasforge.spaces.nasnet import NUM_INPUTS, Cell, NASNetArchitecture, NASNetSpace

if TYPE_CHECKING:
    import numpy as np

RENDERERS: tuple[str, ...] = ("auto", "dot", "matplotlib")
IMAGE_FORMATS: tuple[str, ...] = ("png", "svg", "pdf")

# NASNet-paper-like palette: inputs blue, ops yellow, add green, concat orange, output grey-orange.
STYLE = {
    "input": {"shape": "box", "style": "filled,rounded", "fillcolor": "#cfe2f3"},
    "op": {"shape": "box", "style": "filled,rounded", "fillcolor": "#fff2cc"},
    "add": {"shape": "ellipse", "style": "filled", "fillcolor": "#d9ead3"},
    "concat": {"shape": "ellipse", "style": "filled", "fillcolor": "#fce5cd"},
    "output": {"shape": "box", "style": "filled,rounded", "fillcolor": "#f4cccc"},
}
INPUT_LABELS = ("h_{i-1}", "h_i")
OUTPUT_LABEL = "concat\nh_{i+1}"


# ------------------------------------------------------------------------------------------------
# A small DOT graph value: what cell_dot prints and what the fallback renderer lays out.
# ------------------------------------------------------------------------------------------------
@dataclass
class DotNode:
    id: str
    attrs: dict[str, str] = field(default_factory=dict)
    cluster: str | None = None

    @property
    def label(self) -> str:
        return self.attrs.get("label", self.id)


@dataclass
class DotGraph:
    """The subset of DOT that the diagrams use: one directed graph, flat clusters, rank groups."""

    name: str = "G"
    attrs: dict[str, str] = field(default_factory=dict)
    node_defaults: dict[str, str] = field(default_factory=dict)
    edge_defaults: dict[str, str] = field(default_factory=dict)
    clusters: dict[str, dict[str, str]] = field(default_factory=dict)
    nodes: dict[str, DotNode] = field(default_factory=dict)
    edges: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    same_rank: list[tuple[str | None, tuple[str, ...]]] = field(default_factory=list)

    def add_node(self, node_id: str, cluster: str | None = None, **attrs: str) -> DotNode:
        node = self.nodes.get(node_id)
        if node is None:
            node = self.nodes[node_id] = DotNode(node_id, {}, cluster)
        elif node.cluster is None:
            node.cluster = cluster
        node.attrs.update(attrs)
        return node

    def add_edge(self, tail: str, head: str, **attrs: str) -> None:
        for n in (tail, head):
            if n not in self.nodes:
                self.add_node(n)
        self.edges.append((tail, head, dict(attrs)))

    def node_attrs(self, node_id: str) -> dict[str, str]:
        """A node's attributes with the graph-wide defaults filled in."""
        return {**self.node_defaults, **self.nodes[node_id].attrs}

    def to_dot(self) -> str:
        lines = [f"digraph {_quote(self.name)} {{"]
        lines += [f"  {k}={_quote(v)};" for k, v in self.attrs.items()]
        if self.node_defaults:
            lines.append(f"  node [{_attr_list(self.node_defaults)}];")
        if self.edge_defaults:
            lines.append(f"  edge [{_attr_list(self.edge_defaults)}];")

        def node_lines(cluster: str | None, indent: str) -> list[str]:
            out = []
            for node in self.nodes.values():
                if node.cluster == cluster:
                    attrs = f" [{_attr_list(node.attrs)}]" if node.attrs else ""
                    out.append(f"{indent}{_quote(node.id)}{attrs};")
            for c, group in self.same_rank:
                if c == cluster:
                    out.append(f"{indent}{{rank=same; {' '.join(_quote(n) + ';' for n in group)}}}")
            return out

        for cluster, cattrs in self.clusters.items():
            lines.append(f"  subgraph {_quote(cluster)} {{")
            lines += [f"    {k}={_quote(v)};" for k, v in cattrs.items()]
            lines += node_lines(cluster, "    ")
            lines.append("  }")
        lines += node_lines(None, "  ")
        for tail, head, attrs in self.edges:
            extra = f" [{_attr_list(attrs)}]" if attrs else ""
            lines.append(f"  {_quote(tail)} -> {_quote(head)}{extra};")
        lines.append("}")
        return "\n".join(lines) + "\n"


def _quote(value: str) -> str:
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def _attr_list(attrs: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={_quote(v)}" for k, v in attrs.items())


# ------------------------------------------------------------------------------------------------
# A DOT reader, enough for cell_dot's output and for plain hand-written digraphs.
# ------------------------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/|^\#[^\n]*)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<html><[^<>]*(?:<[^<>]*>[^<>]*)*>)
  | (?P<arrow>->|--)
  | (?P<sym>[{}\[\];,=:])
  | (?P<id>[A-Za-z_\x80-\uffff][\w\x80-\uffff]*|-?(?:\.\d+|\d+(?:\.\d*)?))
""",
    re.VERBOSE | re.DOTALL | re.MULTILINE,
)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ConfigError("dot", f"cannot read DOT text at character {pos}: {text[pos : pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup
        assert kind is not None  # every alternative of _TOKEN is a named group
        if kind == "ws":
            continue
        value = m.group()
        if kind == "str":
            value = value[1:-1]
            value = re.sub(
                r"\\([\"\\nlr])", lambda g: {"n": "\n", "l": "\n", "r": "\n"}.get(g.group(1), g.group(1)), value
            )
            kind = "id"
        elif kind == "html":
            value, kind = value[1:-1], "id"
        tokens.append((kind, value))
    return tokens


class _DotParser:
    def __init__(self, text: str):
        self.tokens = _tokenize(text)
        self.i = 0
        self.graph = DotGraph()

    def peek(self, offset: int = 0) -> tuple[str, str]:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else ("eof", "")

    def take(self, value: str | None = None) -> str:
        kind, tok = self.peek()
        if kind == "eof" or (value is not None and tok.lower() != value):
            raise ConfigError("dot", f"expected {value or 'a token'!r}, found {tok or 'end of text'!r}")
        self.i += 1
        return tok

    def parse(self) -> DotGraph:
        if self.peek()[1].lower() == "strict":
            self.take()
        kind = self.take().lower()
        if kind not in ("digraph", "graph"):
            raise ConfigError("dot", f"expected 'digraph', found {kind!r}")
        if self.peek()[1] != "{":
            self.graph.name = self.take()
        self.take("{")
        self.stmt_list(cluster=None, defaults={}, top=True)
        self.take("}")
        return self.graph

    def attr_list(self) -> dict[str, str]:
        attrs: dict[str, str] = {}
        while self.peek()[1] == "[":
            self.take("[")
            while self.peek()[1] != "]":
                key = self.take()
                self.take("=")
                attrs[key] = self.take()
                if self.peek()[1] in (",", ";"):
                    self.take()
            self.take("]")
        return attrs

    def stmt_list(
        self, cluster: str | None, defaults: dict[str, str], top: bool, graph_attrs: dict[str, str] | None = None
    ) -> list[str]:
        """Parse statements up to the closing brace; returns the node ids mentioned."""
        g = self.graph
        mentioned: list[str] = []
        defaults = dict(defaults)
        while self.peek()[1] != "}":
            kind, tok = self.peek()
            if kind == "eof":
                raise ConfigError("dot", "unexpected end of text (missing '}')")
            if tok == ";":
                self.take()
                continue
            low = tok.lower()
            if low in ("subgraph", "{") and kind in ("id", "sym"):
                mentioned += self.subgraph(cluster, defaults)
                continue
            if low in ("graph", "node", "edge") and self.peek(1)[1] == "[":
                self.take()
                attrs = self.attr_list()
                if low == "node":
                    if top:
                        g.node_defaults.update(attrs)
                    else:
                        defaults.update(attrs)
                elif low == "edge":
                    if top:
                        g.edge_defaults.update(attrs)
                elif graph_attrs is not None:
                    graph_attrs.update(attrs)
                elif top:
                    g.attrs.update(attrs)
                continue
            if self.peek(1)[1] == "=":
                key = self.take()
                self.take("=")
                value = self.take()
                if graph_attrs is not None:
                    graph_attrs[key] = value
                elif top:
                    g.attrs[key] = value
                continue
            # a node or an edge chain
            chain = [self.node_id()]
            while self.peek()[0] == "arrow":
                self.take()
                chain.append(self.node_id())
            attrs = self.attr_list()
            if len(chain) == 1:
                node_attrs = {**defaults, **attrs}
                g.add_node(chain[0], cluster, **node_attrs)
            else:
                for n in chain:
                    g.add_node(n, cluster, **({} if n in g.nodes else defaults))
                for tail, head in zip(chain, chain[1:]):
                    g.edges.append((tail, head, dict(attrs)))
            mentioned += chain
        return mentioned

    def node_id(self) -> str:
        kind, tok = self.peek()
        if kind != "id":
            raise ConfigError("dot", f"expected a node id, found {tok!r}")
        self.take()
        while self.peek()[1] == ":":  # ports: ignored
            self.take(":")
            self.take()
        return tok

    def subgraph(self, cluster: str | None, defaults: dict[str, str]) -> list[str]:
        name = None
        if self.peek()[1].lower() == "subgraph":
            self.take()
            if self.peek()[1] != "{":
                name = self.take()
        self.take("{")
        sub_attrs: dict[str, str] = {}
        is_cluster = name is not None and name.startswith("cluster")
        inner = name if is_cluster else cluster
        if is_cluster and name not in self.graph.clusters:
            assert name is not None  # is_cluster
            self.graph.clusters[name] = sub_attrs
        elif is_cluster:
            assert name is not None  # is_cluster
            sub_attrs = self.graph.clusters[name]
        mentioned = self.stmt_list(inner, defaults, top=False, graph_attrs=sub_attrs)
        self.take("}")
        if not is_cluster and sub_attrs.get("rank") == "same" and mentioned:
            self.graph.same_rank.append((cluster, tuple(dict.fromkeys(mentioned))))
        return mentioned


def parse_dot(text: str) -> DotGraph:
    """Read DOT text (the subset used here: one digraph, clusters, rank groups, attributes).

    Raises `ConfigError` naming the position when the text is not DOT this reader understands.
    """
    return _DotParser(text).parse()


# ------------------------------------------------------------------------------------------------
# NASNet cells -> graph
# ------------------------------------------------------------------------------------------------
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


def cell_graph(arch: Any, title: str | None = None) -> DotGraph:
    """The diagram of a NASNet architecture (or one `Cell`) as a `DotGraph`.

    Node ids are `<cell>_h0`, `<cell>_h1` (the inputs h_{i-1}, h_i), `<cell>_b<j>_a` and
    `<cell>_b<j>_b` (block j's two ops), `<cell>_b<j>` (its combiner) and `<cell>_out` (the
    concatenated output); each cell is the cluster `cluster_<cell>`. `arch` may also be the
    architecture's JSON.
    """
    g = DotGraph(name="nasnet_cells")
    g.attrs = {
        "rankdir": "BT",
        "nodesep": "0.25",
        "ranksep": "0.35",
        "fontname": "Helvetica",
        "fontsize": "14",
        "labelloc": "t",
    }
    if title:
        g.attrs["label"] = title
    g.node_defaults = {"fontname": "Helvetica", "fontsize": "11", "penwidth": "1.2"}
    g.edge_defaults = {"arrowsize": "0.7", "color": "#444444"}
    for cell_name, cell in _as_cells(arch):
        cluster = f"cluster_{cell_name}"
        # with rankdir=BT Graphviz flips labelloc: "b" puts the cluster's label on top
        g.clusters[cluster] = {
            "label": f"{cell_name} cell",
            "labelloc": "b",
            "style": "rounded",
            "color": "#999999",
            "fontname": "Helvetica",
            "fontsize": "13",
        }

        def state_node(s: int, cell_name: str = cell_name) -> str:
            return f"{cell_name}_h{s}" if s < NUM_INPUTS else f"{cell_name}_b{s - NUM_INPUTS}"

        for s, label in enumerate(INPUT_LABELS):
            g.add_node(state_node(s), cluster, label=label, **STYLE["input"])
        g.same_rank.append((cluster, tuple(state_node(s) for s in range(NUM_INPUTS))))
        # keeps h_{i-1} left of h_i in Graphviz; the fallback skips invisible edges
        g.edges.append((state_node(0), state_node(1), {"style": "invis"}))
        for j, block in enumerate(cell.blocks):
            comb = state_node(NUM_INPUTS + j)
            for half, (_, op) in zip("ab", block.halves()):
                g.add_node(f"{comb}_{half}", cluster, label=op, **STYLE["op"])
            style = STYLE["add"] if block.combine == "add" else STYLE["concat"]
            g.add_node(comb, cluster, label=f"{block.combine}\nblock {j}", **style)
        out = f"{cell_name}_out"
        g.add_node(out, cluster, label=OUTPUT_LABEL, **STYLE["output"])
        for j, block in enumerate(cell.blocks):
            comb = state_node(NUM_INPUTS + j)
            for half, (inp, _) in zip("ab", block.halves()):
                g.edges.append((state_node(inp), f"{comb}_{half}", {}))
                g.edges.append((f"{comb}_{half}", comb, {}))
        for s in cell.output_states():
            g.edges.append((state_node(s), out, {}))
    return g


def cell_dot(arch: Any, title: str | None = None) -> str:
    """Graphviz text of the cell diagram: every input, block, op and the output, labelled."""
    return cell_graph(arch, title).to_dot()


# ------------------------------------------------------------------------------------------------
# Rendering
# ------------------------------------------------------------------------------------------------
def dot_available() -> bool:
    return shutil.which("dot") is not None


def _image_format(path: Path) -> str:
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in IMAGE_FORMATS:
        raise ConfigError(
            "path", f"unsupported image type {path.suffix or '(none)'!r}", [f".{f}" for f in IMAGE_FORMATS]
        )
    return fmt


def render(
    source: Any, path: str | Path, *, renderer: str = "auto", timeout: float = 30.0, title: str | None = None
) -> str:
    """Draw a cell diagram to `path` (.png, .svg or .pdf) and write the `.dot` beside it.

    `source` is DOT text, a `DotGraph`, or anything `cell_graph` accepts (an architecture, a
    `Cell`, NASNet JSON). `renderer`: "dot" (Graphviz, an error if it is not on PATH), "matplotlib"
    (the built-in layered layout), or "auto" (dot when installed and working, else matplotlib).
    Returns the renderer used.
    """
    if renderer not in RENDERERS:
        raise ConfigError("renderer", f"unknown renderer {renderer!r}", RENDERERS)
    path = Path(path)
    fmt = _image_format(path)
    if isinstance(source, DotGraph):
        graph, text = source, source.to_dot()
    elif isinstance(source, str):
        text, graph = source, None
    else:
        graph = cell_graph(source, title)
        text = graph.to_dot()
    path.parent.mkdir(parents=True, exist_ok=True)
    dot_path = path.with_suffix(".dot")
    dot_path.write_text(text)

    if renderer in ("auto", "dot"):
        exe = shutil.which("dot")
        if exe is None:
            if renderer == "dot":
                raise ConfigError(
                    "renderer", "Graphviz 'dot' is not on PATH; install graphviz or use", ["auto", "matplotlib"]
                )
        else:
            error = _run_dot(exe, dot_path, path, fmt, timeout)
            if error is None:
                return "dot"
            if renderer == "dot":
                raise ConfigError("renderer", f"Graphviz 'dot' failed: {error}")
    if graph is None:
        graph = parse_dot(text)
    draw_graph(graph, path)
    return "matplotlib"


def _run_dot(exe: str, dot_path: Path, out: Path, fmt: str, timeout: float) -> str | None:
    """Run Graphviz; None on success, else a one-line reason."""
    try:
        proc = subprocess.run(
            [exe, f"-T{fmt}", "-o", str(out), str(dot_path)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:g} s"
    except OSError as exc:
        return str(exc)
    if proc.returncode != 0:
        return (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    if not out.exists() or out.stat().st_size == 0:
        return "wrote no image"
    return None


# ------------------------------------------------------------------------------------------------
# The matplotlib fallback: a small Sugiyama-style layered layout.
# ------------------------------------------------------------------------------------------------
LAYER_GAP = 34.0  # points between the bottom of one layer and the top of the next
NODE_GAP = 14.0  # points between neighbouring nodes of a layer
DUMMY_WIDTH = 6.0  # width reserved for a long edge passing through a layer
CLUSTER_PAD = 14.0
CLUSTER_GAP = 30.0


def _math_label(line: str) -> str:
    """`h_{i-1}` -> `$h_{i-1}$` so matplotlib sets the subscript; other text unchanged."""
    if re.fullmatch(r"[A-Za-z]+_(\{[^{}$]*\}|\w)", line):
        return f"${line}$"
    return line


def _text_size(label: str, fontsize: float) -> tuple[float, float]:
    from matplotlib.textpath import TextPath

    width, lines = 0.0, label.split("\n")
    for line in lines:
        text = _math_label(line)
        if text.strip():
            ext = TextPath((0, 0), text, size=fontsize).get_extents()
            width = max(width, ext.width)
    return width, fontsize * 1.25 * len(lines)


def _node_size(attrs: Mapping[str, str]) -> tuple[float, float]:
    fontsize = float(attrs.get("fontsize", 11))
    tw, th = _text_size(attrs.get("label", ""), fontsize)
    if attrs.get("shape", "ellipse") in ("ellipse", "oval", "circle"):
        return max(tw * 1.2 + 14, 44.0), max(th * 1.25 + 6, 26.0)
    return max(tw + 16, 40.0), max(th + 10, 24.0)


def _toposort(nodes: list[str], succ: dict[str, list[str]]) -> list[str]:
    """Kahn's algorithm in node order; back edges of cycles are broken by taking the first node left."""
    indeg = {n: 0 for n in nodes}
    for n in nodes:
        for m in succ[n]:
            indeg[m] += 1
    order: list[str] = []
    done: set[str] = set()
    ready = [n for n in nodes if indeg[n] == 0]
    while len(order) < len(nodes):
        if not ready:  # a cycle: take the first remaining node
            ready = [next(n for n in nodes if n not in done)]
        n = ready.pop(0)
        if n in done:
            continue
        done.add(n)
        order.append(n)
        for m in succ[n]:
            indeg[m] -= 1
            if indeg[m] == 0 and m not in done:
                ready.append(m)
    return order


@dataclass
class _Layout:
    pos: dict[str, tuple[float, float]]  # node centre (points)
    size: dict[str, tuple[float, float]]
    routes: list[tuple[str, str, list[tuple[float, float]]]]  # tail, head, bend points
    width: float
    height: float


def _layout_component(nodes: list[str], edges: list[tuple[str, str]], size: dict[str, tuple[float, float]]) -> _Layout:
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for u, v in edges:
        succ[u].append(v)
    order = _toposort(nodes, succ)
    rank = {n: i for i, n in enumerate(order)}
    forward = [(u, v) if rank[u] < rank[v] else (v, u) for u, v in edges if u != v]
    fsucc: dict[str, list[str]] = {n: [] for n in nodes}
    fpred: dict[str, list[str]] = {n: [] for n in nodes}
    for u, v in forward:
        fsucc[u].append(v)
        fpred[v].append(u)

    # longest-path layers; sinks on top; everything else pulled up under its consumers
    layer = {n: 0 for n in nodes}
    for n in order:
        for m in fsucc[n]:
            layer[m] = max(layer[m], layer[n] + 1)
    top = max(layer.values(), default=0)
    for n in nodes:
        if fpred[n] and not fsucc[n]:
            layer[n] = top
    for n in reversed(order):
        if fpred[n] and fsucc[n]:
            layer[n] = min(layer[m] for m in fsucc[n]) - 1

    # long edges become chains through dummy nodes
    chains: list[tuple[str, str, list[str]]] = []
    layers: list[list[str]] = [[] for _ in range(top + 1)]
    for n in nodes:
        layers[layer[n]].append(n)
    up: dict[str, list[str]] = {n: [] for n in nodes}  # neighbours one layer below
    down: dict[str, list[str]] = {n: [] for n in nodes}  # neighbours one layer above
    dummy_count = 0
    for u, v in forward:
        chain = []
        prev = u
        for lay in range(layer[u] + 1, layer[v]):
            d = f"\x00dummy{dummy_count}"
            dummy_count += 1
            layer[d] = lay
            layers[lay].append(d)
            up[d], down[d] = [], []
            chain.append(d)
            down[prev].append(d)
            up[d].append(prev)
            prev = d
        down[prev].append(v)
        up[v].append(prev)
        chains.append((u, v, chain))
    width_of = {n: (size[n][0] if n in size else DUMMY_WIDTH) for n in layer}

    # crossing reduction: barycentre sweeps, keeping the best ordering seen
    def crossings(ls: list[list[str]]) -> int:
        total = 0
        for lower, upper in zip(ls, ls[1:]):
            pos_u = {n: i for i, n in enumerate(upper)}
            segs = [(i, pos_u[m]) for i, n in enumerate(lower) for m in down[n] if m in pos_u]
            for a in range(len(segs)):
                for b in range(a + 1, len(segs)):
                    if (segs[a][0] - segs[b][0]) * (segs[a][1] - segs[b][1]) < 0:
                        total += 1
        return total

    def sweep(ls: list[list[str]], upward: bool) -> list[list[str]]:
        ls = [list(x) for x in ls]
        rng = range(1, len(ls)) if upward else range(len(ls) - 2, -1, -1)
        for i in rng:
            ref = ls[i - 1] if upward else ls[i + 1]
            idx = {n: k for k, n in enumerate(ref)}
            nbrs = up if upward else down
            scale = len(ref) / max(len(ls[i]), 1)

            def bary(item: tuple[int, str], idx=idx, nbrs=nbrs, scale=scale) -> float:
                k, n = item
                ps = [idx[m] for m in nbrs[n] if m in idx]
                return sum(ps) / len(ps) if ps else float(k) * scale

            ls[i] = [n for _, n in sorted(enumerate(ls[i]), key=lambda it: (bary(it), it[0]))]
        return ls

    best, best_cross = layers, crossings(layers)
    current = layers
    for it in range(8):
        current = sweep(current, upward=it % 2 == 0)
        c = crossings(current)
        if c < best_cross:
            best, best_cross = current, c
        if best_cross == 0:
            break
    layers = best

    # x coordinates: pack, then relax towards neighbours' mean while keeping order and spacing
    x: dict[str, float] = {}
    for ls in layers:
        cursor = 0.0
        for n in ls:
            x[n] = cursor + width_of[n] / 2
            cursor += width_of[n] + NODE_GAP
        shift = (cursor - NODE_GAP) / 2
        for n in ls:
            x[n] -= shift

    def place(ls: list[str], desired: dict[str, float]) -> None:
        if not ls:
            return
        sep = [(width_of[a] + width_of[b]) / 2 + NODE_GAP for a, b in zip(ls, ls[1:])]
        left = [desired[ls[0]]]
        for k in range(1, len(ls)):
            left.append(max(desired[ls[k]], left[-1] + sep[k - 1]))
        right = [desired[ls[-1]]]
        for k in range(len(ls) - 2, -1, -1):
            right.append(min(desired[ls[k]], right[-1] - sep[k]))
        right.reverse()
        for k, n in enumerate(ls):
            x[n] = (left[k] + right[k]) / 2

    for it in range(12):
        upward = it % 2 == 0
        seq = layers[1:] if upward else layers[-2::-1]
        for ls in seq:
            desired = {}
            for n in ls:
                nb = (up if upward else down)[n] + (down if upward else up)[n]
                desired[n] = sum(x[m] for m in nb) / len(nb) if nb else x[n]
            place(ls, desired)
    if layers and layers[0]:
        # the bottom layer once more, so unconnected inputs sit beside the connected ones
        place(layers[0], {n: (sum(x[m] for m in down[n]) / len(down[n]) if down[n] else x[n]) for n in layers[0]})

    # y coordinates: layer bands as tall as their tallest node
    heights = [max((size[n][1] for n in ls if n in size), default=0.0) for ls in layers]
    y_of_layer, cursor = [], 0.0
    for h in heights:
        y_of_layer.append(cursor + h / 2)
        cursor += h + LAYER_GAP
    height = cursor - LAYER_GAP if layers else 0.0

    lo = min((x[n] - width_of[n] / 2 for n in x), default=0.0)
    hi = max((x[n] + width_of[n] / 2 for n in x), default=0.0)
    pos = {n: (x[n] - lo, y_of_layer[layer[n]]) for n in x}
    routes = [(u, v, [pos[d] for d in chain]) for u, v, chain in chains]
    return _Layout({n: pos[n] for n in nodes}, {n: size[n] for n in nodes}, routes, hi - lo, height)


def draw_graph(graph: DotGraph, path: str | Path) -> Path:
    """Lay out `graph` (clusters side by side, each bottom-to-top for rankdir=BT) and save it."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Ellipse, FancyArrowPatch, FancyBboxPatch
    from matplotlib.path import Path as MplPath

    path = Path(path)
    fmt = _image_format(path)
    bottom_up = graph.attrs.get("rankdir", "TB").upper() == "BT"
    groups: dict[str | None, list[str]] = {}
    for node in graph.nodes.values():
        groups.setdefault(node.cluster if node.cluster in graph.clusters else None, []).append(node.id)
    order = [c for c in graph.clusters if c in groups] + ([None] if None in groups else [])
    size = {n: _node_size(graph.node_attrs(n)) for n in graph.nodes}
    member = {n: c for c, ns in groups.items() for n in ns}

    layouts: dict[str | None, _Layout] = {}
    visible = [(u, v, a) for u, v, a in graph.edges if "invis" not in a.get("style", "")]
    for c in order:
        inner = [(u, v) for u, v, _ in visible if member[u] == c and member[v] == c]
        layouts[c] = _layout_component(groups[c], inner, size)

    # place the clusters side by side, bottoms aligned
    pos: dict[str, tuple[float, float]] = {}
    boxes: list[tuple[str, float, float, float, float]] = []  # the clusters
    routes: list[tuple[str, str, list[tuple[float, float]]]] = []
    title_h = 22.0
    max_h = max((lay.height for lay in layouts.values()), default=0.0)
    cursor = 0.0
    for c in order:
        lay = layouts[c]
        pad = CLUSTER_PAD if c is not None else 0.0
        ox = cursor + pad

        def place(p: tuple[float, float], ox: float = ox) -> tuple[float, float]:
            return (ox + p[0], p[1] if bottom_up else max_h - p[1])

        for n, p in lay.pos.items():
            pos[n] = place(p)
        routes += [(u, v, [place(p) for p in pts]) for u, v, pts in lay.routes]
        if c is not None:
            low = -pad if bottom_up else max_h - lay.height - pad
            high = (lay.height if bottom_up else max_h) + pad + title_h
            boxes.append((c, cursor, low, lay.width + 2 * pad, high - low))
        cursor += lay.width + 2 * pad + CLUSTER_GAP
    total_w = max(cursor - CLUSTER_GAP, 1.0)
    graph_title = graph.attrs.get("label")
    top = max_h + CLUSTER_PAD + title_h + (26.0 if graph_title else 4.0)
    bottom = -CLUSTER_PAD - 4.0
    margin = 8.0

    fig = Figure(figsize=((total_w + 2 * margin) / 72, (top - bottom) / 72), dpi=120)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-margin, total_w + margin)
    ax.set_ylim(bottom, top)
    ax.set_axis_off()

    for c, bx, by, bw, bh in boxes:
        cattrs = graph.clusters[c]
        ax.add_patch(
            FancyBboxPatch(
                (bx, by),
                bw,
                bh,
                boxstyle="round,pad=0,rounding_size=8",
                facecolor="none",
                edgecolor=_color(cattrs.get("color"), "#999999"),
                linewidth=1.0,
            )
        )
        ax.text(
            bx + bw / 2,
            by + bh - title_h / 2 - 2,
            cattrs.get("label", c.removeprefix("cluster_")),
            ha="center",
            va="center",
            fontsize=float(cattrs.get("fontsize", 13)),
        )
    if graph_title:
        ax.text(
            total_w / 2,
            top - 14,
            graph_title,
            ha="center",
            va="center",
            fontsize=float(graph.attrs.get("fontsize", 14)),
            fontweight="bold",
        )

    edge_color = _color(graph.edge_defaults.get("color"), "#444444")
    bends: dict[tuple[str, str], list[list[tuple[float, float]]]] = {}
    for u, v, pts in routes:
        bends.setdefault((u, v), []).append(pts)
    for u, v, eattrs in visible:
        pu, pv = pos[u], pos[v]
        via = bends.get((u, v), [[]]).pop(0) if bends.get((u, v)) else None
        if via is None:
            rev = bends.get((v, u))
            via = list(reversed(rev.pop(0))) if rev else []
        going_up = pv[1] > pu[1]
        sgn = 1 if going_up else -1
        start = (pu[0], pu[1] + sgn * size[u][1] / 2) if pu[1] != pv[1] else pu
        end = (pv[0], pv[1] - sgn * size[v][1] / 2) if pu[1] != pv[1] else pv
        verts, codes = _spline([start, *via, end])
        color = _color(eattrs.get("color"), edge_color)
        ax.add_patch(
            FancyArrowPatch(
                path=MplPath(verts, codes), arrowstyle="-|>", mutation_scale=9, color=color, linewidth=0.9, zorder=1
            )
        )

    for n, (cx, cy) in pos.items():
        attrs = graph.node_attrs(n)
        w, h = size[n]
        style = attrs.get("style", "")
        face = _color(attrs.get("fillcolor"), "white") if "filled" in style else "white"
        edge = _color(attrs.get("color"), "#333333")
        patch: Ellipse | FancyBboxPatch
        if attrs.get("shape", "ellipse") in ("ellipse", "oval", "circle"):
            patch = Ellipse((cx, cy), w, h, facecolor=face, edgecolor=edge, linewidth=1.0, zorder=2)
        else:
            rounding = 5 if "rounded" in style else 0
            patch = FancyBboxPatch(
                (cx - w / 2, cy - h / 2),
                w,
                h,
                facecolor=face,
                edgecolor=edge,
                linewidth=1.0,
                zorder=2,
                boxstyle=f"round,pad=0,rounding_size={rounding}" if rounding else "square,pad=0",
            )
        ax.add_patch(patch)
        label = "\n".join(_math_label(line) for line in attrs.get("label", n).split("\n"))
        ax.text(
            cx,
            cy,
            label,
            ha="center",
            va="center",
            fontsize=float(attrs.get("fontsize", 11)),
            zorder=3,
            linespacing=1.1,
        )

    path.parent.mkdir(parents=True, exist_ok=True)
    _savefig(fig, path, fmt)
    return path


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


def _color(value: str | None, default: str) -> Any:
    from matplotlib.colors import is_color_like

    if value and is_color_like(value):
        return value
    return default


def _savefig(fig: Any, path: Path, fmt: str) -> None:
    """Save with metadata that does not change between runs (no dates), so outputs are reproducible."""
    import matplotlib

    metadata: dict[str, Any] = {"Software": None} if fmt == "png" else {"Date": None}
    if fmt == "pdf":
        metadata = {"CreationDate": None, "ModDate": None}
    with matplotlib.rc_context({"svg.hashsalt": "nasforge", "svg.fonttype": "path"}):
        fig.savefig(path, format=fmt, metadata=metadata)


# ------------------------------------------------------------------------------------------------
# MBConv / EfficientNet stage lists
# ------------------------------------------------------------------------------------------------
_STAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "kernel": ("kernel", "kernel_size", "k"),
    "expansion": ("expansion", "expand_ratio", "expand", "e"),
    "se": ("se", "se_ratio"),
    "repeats": ("repeats", "num_repeat", "layers", "depth", "n"),
    "channels": ("channels", "out_channels", "filters", "output_filters", "c"),
    "stride": ("stride", "strides", "s"),
}
_STAGE_DEFAULTS = {"se": 0.0}


def _default_strides(num_stages: int) -> tuple[int, ...] | None:
    """MBConv-space architectures store no strides: the space's skeleton (EfficientNet-B0's) has them."""
    try:
        from nasforge.spaces.mbconv import B0_SKELETON
    except ImportError:  # pragma: no cover - the space ships with nasforge
        return None
    strides = tuple(int(st[0]) for st in B0_SKELETON)
    return strides if len(strides) == num_stages else None


def _get(obj: Any, names: Iterable[str]) -> Any:
    for name in names:
        if isinstance(obj, Mapping):
            if name in obj:
                return obj[name]
        elif hasattr(obj, name):
            return getattr(obj, name)
    return None


def _stages_of(arch: Any) -> list[Any]:
    stages = _get(arch, ("stages",))
    if stages is None:
        stages = arch
    if isinstance(stages, (str, bytes)) or not isinstance(stages, Iterable):
        raise ConfigError(
            "architecture",
            f"cannot draw stages of a {type(arch).__name__}",
            "an object or mapping with 'stages', or a sequence of stages",
        )
    stages = list(stages)
    if not stages:
        raise ConfigError("architecture.stages", "no stages to draw")
    return stages


def mbconv_table(
    arch: Any, resolution: int | None = None, strides: Sequence[int] | None = None, stem_stride: int = 2
) -> list[dict[str, Any]]:
    """One row per stage: stage, operator, kernel, expansion, se, repeats, channels, stride, and
    the input resolution of the stage when the image `resolution` (or `arch.resolution`) is known;
    the stem (stride `stem_stride`, 2 in EfficientNet) comes before stage 1 whether or not it has
    a row.

    `arch` is an MBConv architecture, an `EfficientNetPlan`, a mapping with "stages", or a plain
    sequence of stages; a stage is an object or mapping with kernel, expansion (or expand_ratio),
    se (or se_ratio), repeats, channels and stride. The stem and head appear as their own rows
    when `arch` has `stem`/`stem_channels` and `head`/`head_channels` widths. Stages without a
    stride (an `MBConvArchitecture` keeps strides in its space) take them from `strides`, else
    from EfficientNet-B0's skeleton when the stage count matches, else show None.
    """
    if resolution is None:
        res = _get(arch, ("resolution",)) if not isinstance(arch, (list, tuple)) else None
        resolution = res if isinstance(res, int) else None
    rows: list[dict[str, Any]] = []
    res = resolution
    stem = None if isinstance(arch, (list, tuple)) else _get(arch, ("stem", "stem_channels"))
    if isinstance(stem, int):
        rows.append(
            {
                "stage": "stem",
                "operator": "Conv 3x3",
                "kernel": 3,
                "expansion": None,
                "se": None,
                "repeats": 1,
                "channels": stem,
                "stride": stem_stride,
                "resolution": res,
            }
        )
    res = None if res is None else math.ceil(res / stem_stride)
    stages = _stages_of(arch)
    if strides is not None and len(strides) != len(stages):
        raise ConfigError("strides", f"expected {len(stages)} strides, got {len(strides)}")
    fallback_strides = strides
    if fallback_strides is None and any(_get(st, _STAGE_FIELDS["stride"]) is None for st in stages):
        fallback_strides = _default_strides(len(stages))
    for i, st in enumerate(stages):
        row: dict[str, Any] = {"stage": str(i + 1)}
        for key, names in _STAGE_FIELDS.items():
            value = _get(st, names)
            if key == "stride" and (value is None or strides is not None):
                value = None if fallback_strides is None else fallback_strides[i]
            elif value is None:
                if key not in _STAGE_DEFAULTS:
                    raise ConfigError(f"stages[{i}].{key}", "missing", list(names))
                value = _STAGE_DEFAULTS[key]
            row[key] = value
        e = row["expansion"]
        e_text = f"{e:g}" if isinstance(e, (int, float)) else str(e)
        k = row["kernel"]
        row["operator"] = f"MBConv{e_text} {k}x{k}" + (" SE" if row["se"] else "")
        row["resolution"] = res
        if res is not None:
            res = math.ceil(res / int(row["stride"] or 1))
        rows.append(row)
    head = None if isinstance(arch, (list, tuple)) else _get(arch, ("head", "head_channels"))
    if isinstance(head, int):
        rows.append(
            {
                "stage": "head",
                "operator": "Conv 1x1, pool, FC",
                "kernel": 1,
                "expansion": None,
                "se": None,
                "repeats": 1,
                "channels": head,
                "stride": 1,
                "resolution": res,
            }
        )
    return rows


def mbconv_diagram(
    arch: Any,
    path: str | Path,
    *,
    title: str | None = None,
    svg: bool = False,
    resolution: int | None = None,
    strides: Sequence[int] | None = None,
) -> Path:
    """Draw an MBConv stage list: a strip of stage blocks above the stage table.

    In the strip each stage is one block, wide in proportion to its repeats and tall in
    proportion to log(channels), coloured by kernel size; SE ratio and stride are written under
    it. The table below lists every stage as `mbconv_table` returns it (EfficientNet's Table 1
    plus kernel, expansion, SE and stride columns). Writes `path` (.png, .svg or .pdf) and, with
    `svg=True`, an .svg beside it. Returns `path`.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    path = Path(path)
    fmt = _image_format(path)
    rows = mbconv_table(arch, resolution, strides)
    show_res = any(r["resolution"] is not None for r in rows)
    special = ("stem", "head")

    # the strip, in inches: block width grows with repeats, height with log(channels)
    widths = [max(1.05, 0.55 + 0.2 * int(r["repeats"])) for r in rows]
    gap, margin = 0.32, 0.25
    strip_w = sum(widths) + gap * (len(rows) - 1)
    fig_w = max(7.5, strip_w + 2 * margin)
    title_h = 0.45 if title else 0.1
    strip_h = 1.9
    table_h = 0.24 * (len(rows) + 1)
    fig_h = title_h + strip_h + 0.2 + table_h + 0.15
    fig = Figure(figsize=(fig_w, fig_h), dpi=120)
    ax = fig.add_axes((0, (fig_h - title_h - strip_h) / fig_h, 1, strip_h / fig_h))
    ax.set_axis_off()
    left = (fig_w - strip_w) / 2
    ax.set_xlim(0, fig_w)
    ax.set_ylim(-strip_h / 2 - 0.1, strip_h / 2 - 0.1)

    kernels = sorted({r["kernel"] for r in rows if r["stage"] not in special})
    palette = ["#fff2cc", "#d9ead3", "#cfe2f3", "#fce5cd", "#ead1dc", "#d0e0e3"]
    kcolor = {k: palette[i % len(palette)] for i, k in enumerate(kernels)}
    channels = [int(r["channels"]) for r in rows]
    lo, hi = min(channels), max(channels)
    cursor = left
    for i, (r, w) in enumerate(zip(rows, widths)):
        frac = math.log(r["channels"] / lo) / math.log(hi / lo) if hi > lo else 1.0
        h = 0.55 + 0.6 * frac
        is_special = r["stage"] in special
        color = "#eeeeee" if is_special else kcolor[r["kernel"]]
        ax.add_patch(
            FancyBboxPatch(
                (cursor, -h / 2),
                w,
                h,
                boxstyle="round,pad=0,rounding_size=0.05",
                facecolor=color,
                edgecolor="#333333",
                linewidth=1.0,
            )
        )
        if r["stage"] == "head":
            lines = ["Conv 1x1", "pool, FC"]
        else:
            lines = [r["operator"].replace(" SE", "")]
        if not is_special:
            lines.append(f"x{r['repeats']}")
        lines.append(f"{r['channels']} ch")
        ax.text(cursor + w / 2, 0, "\n".join(lines), ha="center", va="center", fontsize=8)
        below = []
        if r["se"]:
            below.append(f"SE {r['se']:g}")
        if r["stride"] is not None and int(r["stride"]) > 1:
            below.append(f"stride {r['stride']}")
        if below:
            ax.text(cursor + w / 2, -0.72, "\n".join(below), ha="center", va="top", fontsize=7, color="#555555")
        if i + 1 < len(rows):
            ax.add_patch(
                FancyArrowPatch(
                    (cursor + w + 0.03, 0),
                    (cursor + w + gap - 0.03, 0),
                    arrowstyle="-|>",
                    mutation_scale=8,
                    color="#444444",
                )
            )
        cursor += w + gap
    for i, k in enumerate(kernels):  # colour key
        x0 = left + i * 1.1
        ax.add_patch(
            FancyBboxPatch(
                (x0, 0.6), 0.16, 0.11, boxstyle="square,pad=0", facecolor=kcolor[k], edgecolor="#333333", linewidth=0.6
            )
        )
        ax.text(x0 + 0.22, 0.655, f"{k}x{k} kernel", fontsize=7, va="center", color="#333333")

    tab_ax = fig.add_axes((margin / fig_w, 0.15 / fig_h, 1 - 2 * margin / fig_w, table_h / fig_h))
    tab_ax.set_axis_off()
    header = ["stage", "operator", "kernel", "expansion", "SE", "repeats", "channels", "stride"]
    if show_res:
        header.insert(2, "resolution")
    cells = []
    for r in rows:
        line = [
            r["stage"],
            r["operator"],
            f"{r['kernel']}x{r['kernel']}",
            "" if r["expansion"] is None else f"{r['expansion']:g}",
            "" if r["se"] is None else f"{r['se']:g}",
            str(r["repeats"]),
            str(r["channels"]),
            "?" if r["stride"] is None else str(r["stride"]),
        ]
        if show_res:
            line.insert(2, "" if r["resolution"] is None else f"{r['resolution']}x{r['resolution']}")
        cells.append(line)
    # matplotlib's stub says a Bbox; Axes.table documents (and takes) [xmin, ymin, width, height] too
    table = tab_ax.table(
        cellText=cells,
        colLabels=header,
        loc="center",
        cellLoc="center",
        bbox=(0, 0, 1, 1),  # type: ignore[arg-type]
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    op_col = header.index("operator")
    weights = [2.6 if c == op_col else 1.0 for c in range(len(header))]
    for (row_i, col_i), cell in table.get_celld().items():
        cell.set_width(weights[col_i] / sum(weights))
        cell.set_edgecolor("#bbbbbb")
        if row_i == 0:
            cell.set_facecolor("#eeeeee")
            cell.set_text_props(fontweight="bold")
    if title:
        fig.text(0.5, 1 - 0.25 / fig_h, title, ha="center", va="center", fontsize=12, fontweight="bold")
    path.parent.mkdir(parents=True, exist_ok=True)
    _savefig(fig, path, fmt)
    if svg and fmt != "svg":
        _savefig(fig, path.with_suffix(".svg"), "svg")
    return path


def draw_architecture(
    arch: Any, path: str | Path, *, renderer: str = "auto", title: str | None = None, **kwargs: Any
) -> str:
    """Draw any architecture the report knows: NASNet cells via `render`, MBConv stage lists via
    `mbconv_diagram`. Returns the renderer used ("dot" or "matplotlib")."""
    if isinstance(arch, (NASNetArchitecture, Cell)) or (
        isinstance(arch, Mapping) and arch.get("space", NASNetSpace.name) == NASNetSpace.name and "normal" in arch
    ):
        return render(arch, path, renderer=renderer, title=title, **kwargs)
    mbconv_diagram(arch, path, title=title, **kwargs)
    return "matplotlib"


__all__ = [
    "DotGraph",
    "DotNode",
    "RENDERERS",
    "cell_dot",
    "cell_graph",
    "dot_available",
    "draw_architecture",
    "draw_graph",
    "mbconv_diagram",
    "mbconv_table",
    "parse_dot",
    "render",
]

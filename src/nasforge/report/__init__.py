"""Pictures and reports: cell diagrams, stage tables, search and scaling plots, the run report.

Everything here takes plain values (architectures, lists of dicts) and writes files; matplotlib,
grandalf and Graphviz are used only when something is drawn, so importing this package stays cheap.

- `nasforge.report.cell_graph`: a NASNet cell pair as a graph (`cell_diagram`, `cell_graph`, `cell_dot`);
- `nasforge.report.graph_render`: drawing it with Graphviz, or grandalf and matplotlib (`render`);
- `nasforge.report.mbconv_pictures`: stage lists, MBConv's or any space's that describes its stages
  (`stage_table`, `stage_diagram`; first named `mbconv_table`, `mbconv_diagram`);
- `nasforge.report.architecture_picture`: whichever of the two an architecture's space asks for;
- `nasforge.report.plots`: search progress, cost against quality, scaling curves;
- `nasforge.report.run_report`: the HTML report of a run.
"""

from nasforge.report.architecture_picture import draw_architecture
from nasforge.report.cell_graph import CellDiagram, cell_diagram, cell_dot, cell_graph
from nasforge.report.graph_render import dot_available, draw_graph, render
from nasforge.report.mbconv_pictures import mbconv_diagram, mbconv_table, stage_diagram, stage_table
from nasforge.report.plots import cost_quality, pareto_front, scaling_curve, search_progress
from nasforge.report.run_report import load_run, write_report

__all__ = [
    "CellDiagram",
    "cell_diagram",
    "cell_dot",
    "cell_graph",
    "cost_quality",
    "dot_available",
    "draw_architecture",
    "draw_graph",
    "load_run",
    "mbconv_diagram",
    "mbconv_table",
    "pareto_front",
    "render",
    "scaling_curve",
    "search_progress",
    "stage_diagram",
    "stage_table",
    "write_report",
]

"""Pictures and reports: cell diagrams, MBConv stage tables, search and scaling plots, the run report.

Everything here takes plain values (architectures, lists of dicts) and writes files; matplotlib is
imported only when something is drawn, so importing this package stays cheap.
"""

from nasforge.report.diagrams import (
    DotGraph,
    cell_dot,
    cell_graph,
    dot_available,
    draw_architecture,
    draw_graph,
    mbconv_diagram,
    mbconv_table,
    parse_dot,
    render,
)
from nasforge.report.plots import cost_quality, pareto_front, scaling_curve, search_progress
from nasforge.report.run_report import load_run, write_report

__all__ = [
    "DotGraph",
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
    "parse_dot",
    "render",
    "scaling_curve",
    "search_progress",
    "write_report",
]

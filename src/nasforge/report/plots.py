"""Search and scaling plots, from plain data (lists and dicts), drawn with matplotlib off screen.

- `search_progress`: every trial's reward and the best so far, against trial number and wall time,
  one colour per strategy when runs are compared.
- `cost_quality`: validation accuracy against MACs and against parameters (log x), with the
  Pareto front of each panel marked; `pareto_front` is the pure function behind it.
- `scaling_curve`: accuracy against MACs for a scaled family (phi = 0..K), compound scaling beside
  the single-dimension alternatives, as in the EfficientNet paper's figures.

Every function writes a PNG (or whatever `path`'s suffix names: .png, .svg, .pdf), also an .svg
beside it with `svg=True`, and returns the path. Figures are built with `matplotlib.figure.Figure`
directly, never pyplot, so nothing needs a display or touches global state, and the files carry
no dates: the same data gives the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeGuard, cast

from nasforge.errors import ConfigError
from nasforge.report.figure_files import save_figure

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")

SCALING_LABELS = {
    "compound": "compound scaling (depth, width, resolution)",
    "depth": "depth only",
    "width": "width only",
    "resolution": "resolution only",
}


# ------------------------------------------------------------------------------------------------
# Pareto front
# ------------------------------------------------------------------------------------------------
def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points that no other point dominates, cheapest first.

    Each point is (cost, quality): lower cost is better, higher quality is better. A point is
    dominated when another has cost <= and quality >= with at least one strictly better; equal
    points do not dominate each other, so duplicates on the front all stay. Points with a None or
    NaN coordinate are never on the front. Every point off the front is dominated by one on it.
    """
    valid = [(c, q, i) for i, (c, q) in enumerate(points) if _finite(c) and _finite(q)]
    valid.sort(key=lambda t: (t[0], -t[1], t[2]))
    front: list[int] = []
    best = -math.inf  # highest quality among strictly cheaper points
    k = 0
    while k < len(valid):
        cost = valid[k][0]
        group = []
        while k < len(valid) and valid[k][0] == cost:
            group.append(valid[k])
            k += 1
        top = group[0][1]  # sorted by quality descending within a cost
        if top > best:
            front += [i for c, q, i in group if q == top]
            best = top
    return front


def _finite(v: Any) -> TypeGuard[float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ------------------------------------------------------------------------------------------------
# Shared helpers
# ------------------------------------------------------------------------------------------------
def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=120, layout="constrained")


def _save(fig: Any, path: str | Path, svg: bool) -> Path:
    """A path without a suffix is a PNG."""
    path = Path(path)
    return save_figure(fig, path if path.suffix else path.with_suffix(".png"), svg=svg)


def _human(value: float, _pos: Any = None) -> str:
    """1.2K, 3.4M, 5G: tick labels for MACs and parameter counts."""
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= div:
            return f"{value / div:.3g}{suffix}"
    return f"{value:.3g}"


def _first(rec: Mapping[str, Any], names: Iterable[str], default: Any = None) -> Any:
    for n in names:
        if n in rec and rec[n] is not None:
            return rec[n]
    return default


def _accuracy_axis(ax: Any, values: Iterable[float], label: str) -> None:
    from matplotlib.ticker import PercentFormatter

    vals = [v for v in values if _finite(v)]
    if vals and all(0 <= v <= 1 for v in vals):
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=None))
    ax.set_ylabel(label)


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="#777777")


def _as_runs(runs: Any) -> dict[str, list[Mapping[str, Any]]]:
    if isinstance(runs, Mapping):
        return {str(k): list(v) for k, v in runs.items()}
    if isinstance(runs, Iterable):
        return {"run": list(runs)}
    raise ConfigError("runs", "expected a mapping strategy -> list of trials, or one list of trials")


# ------------------------------------------------------------------------------------------------
# Search progress
# ------------------------------------------------------------------------------------------------
def search_progress(
    runs: Mapping[str, Sequence[Mapping[str, Any]]] | Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    svg: bool = False,
    title: str | None = None,
    reward_label: str = "reward (validation accuracy)",
) -> Path:
    """Reward of every trial (points) and the best so far (a step line), against trial number
    (left) and against wall time (right); one colour per strategy.

    `runs` maps a strategy (or run) name to its trials, each a dict with "trial" (or "index";
    default: position), "reward" (None or NaN for a failed trial, drawn as an x on the bottom
    edge) and "elapsed" seconds since the run started (or "elapsed_s"/"wall_time"; trials without
    it are left out of the time panel). One plain list of trials is one run. Trials with
    "epochs" (a multi-fidelity or timed search) are drawn with a size that grows with the epochs
    the child was trained for, so promotions stand out from children stopped at the first rung.
    """
    from matplotlib.transforms import blended_transform_factory

    data = _as_runs(runs)
    fig = _new_figure(11, 4.2)
    ax_n, ax_t = fig.subplots(1, 2, sharey=True)
    all_rewards: list[float] = []
    max_elapsed = max(
        (float(_first(r, ("elapsed", "elapsed_s", "wall_time"), 0.0)) for trials in data.values() for r in trials),
        default=0.0,
    )
    t_div, t_unit = (3600.0, "h") if max_elapsed > 3 * 3600 else (60.0, "min") if max_elapsed > 600 else (1.0, "s")
    any_failed = False
    top_epochs = max(
        (float(r["epochs"]) for trials in data.values() for r in trials if _finite(r.get("epochs"))), default=0.0
    )
    for k, (name, trials) in enumerate(data.items()):
        color = COLORS[k % len(COLORS)]
        recs: list[tuple[float, float | None, float | None, float]] = []  # (trial, reward, time, size)
        for pos, r in enumerate(trials):
            reward = r.get("reward")
            elapsed = _first(r, ("elapsed", "elapsed_s", "wall_time"))
            epochs = r.get("epochs")
            size = 14.0 if not top_epochs or not _finite(epochs) else 6.0 + 60.0 * float(epochs) / top_epochs
            recs.append(
                (
                    _first(r, ("trial", "index"), pos),
                    float(reward) if _finite(reward) else None,
                    float(elapsed) / t_div if _finite(elapsed) else None,
                    size,
                )
            )
        all_rewards += [rec[1] for rec in recs if rec[1] is not None]
        for ax, xi in ((ax_n, 0), (ax_t, 2)):
            # pts holds the records whose x (rec[xi]) is not None
            pts = sorted((rec for rec in recs if rec[xi] is not None), key=lambda rec: cast(float, rec[xi]))
            ok_pts = [(cast(float, rec[xi]), rec[1]) for rec in pts if rec[1] is not None]
            sizes = [rec[3] for rec in pts if rec[1] is not None]
            failed = [rec[xi] for rec in pts if rec[1] is None]
            if ok_pts:
                xs, ys = zip(*ok_pts)
                ax.scatter(xs, ys, s=sizes, color=color, alpha=0.45, linewidths=0, zorder=2)
                best, bx, by = -math.inf, [], []
                for x, y in ok_pts:
                    best = max(best, y)
                    bx.append(x)
                    by.append(best)
                last_x = cast(float, pts[-1][xi])
                if last_x > bx[-1]:
                    bx.append(last_x)
                    by.append(by[-1])
                ax.step(
                    bx,
                    by,
                    where="post",
                    color=color,
                    linewidth=1.8,
                    zorder=3,
                    label=f"{name} (best {by[-1]:.4g})" if ax is ax_n else None,
                )
            elif ax is ax_n:
                ax.plot([], [], color=color, label=f"{name} (no successful trial)")
            if failed:
                any_failed = True
                tr = blended_transform_factory(ax.transData, ax.transAxes)
                ax.scatter(
                    failed,
                    [0.02] * len(failed),
                    marker="x",
                    s=18,
                    color=color,
                    transform=tr,
                    linewidths=1.0,
                    zorder=3,
                    clip_on=False,
                )
    if not data or not any(data.values()):
        _empty(ax_n, "no trials")
    if max_elapsed <= 0:
        _empty(ax_t, "no wall times recorded")
    ax_n.set_xlabel("trial")
    ax_t.set_xlabel(f"wall time ({t_unit})")
    _accuracy_axis(ax_n, all_rewards, reward_label)
    ax_n.set_title("against trial number")
    ax_t.set_title("against wall time")
    for ax in (ax_n, ax_t):
        ax.grid(True, alpha=0.3)
    handles, labels = ax_n.get_legend_handles_labels()
    if any_failed:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], marker="x", linestyle="none", color="#555555"))
        labels.append("failed trial")
    handles.append(_dot_handle())
    labels.append("each trial (points), best so far (line)")
    if top_epochs:
        handles.append(_dot_handle())
        labels.append(f"point size: epochs trained (largest {top_epochs:g})")
    ax_n.legend(handles, labels, loc="lower right", fontsize=8, framealpha=0.85)
    fig.suptitle(title or "Search progress")
    return _save(fig, path, svg)


def _dot_handle():
    from matplotlib.lines import Line2D

    return Line2D([], [], marker="o", linestyle="-", color="#555555", markersize=4, alpha=0.7)


# ------------------------------------------------------------------------------------------------
# Cost against quality
# ------------------------------------------------------------------------------------------------
def cost_quality(
    trials: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    svg: bool = False,
    title: str | None = None,
    accuracy_key: str = "accuracy",
    label_front: bool = True,
) -> Path:
    """Validation accuracy against MACs (left) and parameters (right), log x, every trial a
    point, the Pareto front (cheapest for its accuracy) joined by a step line and ringed.

    Each trial is a dict with `accuracy_key` (also read: "val_accuracy", "reward"), "macs" and
    "params"; optional "strategy" colours the points, optional "label" names the front's points
    (when the front has at most 10 and `label_front` is true).
    Trials missing a value are left out of that panel.
    """
    from matplotlib.ticker import FuncFormatter

    acc_names = (accuracy_key, "val_accuracy", "accuracy", "reward")
    strategies = list(dict.fromkeys(str(t.get("strategy", "")) for t in trials))
    colour = {s: COLORS[i % len(COLORS)] for i, s in enumerate(strategies)}
    fig = _new_figure(11, 4.4)
    axes = fig.subplots(1, 2, sharey=True)
    all_acc = []
    for ax, key, name, short in (
        (axes[0], "macs", "MACs (multiply-accumulates)", "MACs"),
        (axes[1], "params", "parameters", "parameters"),
    ):
        pts = []
        for t in trials:
            cost, acc = t.get(key), _first(t, acc_names)
            if _finite(cost) and cost > 0 and _finite(acc):
                pts.append((float(cost), float(acc), t))
        all_acc += [p[1] for p in pts]
        if not pts:
            _empty(ax, f"no trials with {key}")
            ax.set_xlabel(f"{name} (log scale)")
            continue
        for s in strategies:
            mine = [(c, a) for c, a, t in pts if str(t.get("strategy", "")) == s]
            if mine:
                xs, ys = zip(*mine)
                ax.scatter(
                    xs,
                    ys,
                    s=18,
                    color=colour[s],
                    alpha=0.55,
                    linewidths=0,
                    zorder=2,
                    label=(s or "trials") if ax is axes[0] else None,
                )
        front = pareto_front([(c, a) for c, a, _ in pts])
        fx = [pts[i][0] for i in front]
        fy = [pts[i][1] for i in front]
        ax.step(
            fx,
            fy,
            where="post",
            color="black",
            linewidth=1.2,
            zorder=3,
            label="Pareto front" if ax is axes[0] else None,
        )
        ax.scatter(fx, fy, s=60, facecolors="none", edgecolors="black", linewidths=1.2, zorder=4)
        if label_front and len(front) <= 10:
            for i in front:
                lab = pts[i][2].get("label")
                if lab:
                    ax.annotate(
                        str(lab),
                        (pts[i][0], pts[i][1]),
                        textcoords="offset points",
                        xytext=(4, 4),
                        fontsize=7,
                        color="#333333",
                    )
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(_human))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, p: ""))
        ax.set_xlabel(f"{name} (log scale)")
        ax.grid(True, which="major", alpha=0.3)
        ax.set_title(f"accuracy against {short}")
    _accuracy_axis(axes[0], all_acc, "validation accuracy")
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(loc="lower right", fontsize=8, framealpha=0.85)
    fig.suptitle(title or "Cost against quality")
    return _save(fig, path, svg)


# ------------------------------------------------------------------------------------------------
# Scaling curves
# ------------------------------------------------------------------------------------------------
def scaling_curve(
    curves: Mapping[str, Sequence[Mapping[str, Any]]],
    path: str | Path,
    *,
    svg: bool = False,
    title: str | None = None,
    x: str = "macs",
    logx: bool = False,
    accuracy_key: str = "accuracy",
) -> Path:
    """Accuracy against MACs (or `x="params"`) for a scaled family and its alternatives.

    `curves` maps a scaling method to its models in order of growth, each a dict with `x`,
    `accuracy_key` (or "val_accuracy"/"test_accuracy") and optionally "phi" (annotated as
    phi=k). The names "compound", "depth", "width" and "resolution" get the paper's wording;
    "compound" is drawn bold and on top. Any other names are drawn as given.
    """
    from matplotlib.ticker import FuncFormatter

    fig = _new_figure(7.2, 5.0)
    ax = fig.subplots()
    acc_names = (accuracy_key, "val_accuracy", "test_accuracy", "accuracy")
    markers = {"compound": "o", "depth": "s", "width": "^", "resolution": "D"}
    all_acc = []
    names = sorted(curves, key=lambda n: (n != "compound", list(curves).index(n)))
    for k, name in enumerate(names):
        pts = []
        for m in curves[name]:
            xv, acc = m.get(x), _first(m, acc_names)
            if _finite(xv) and _finite(acc):
                pts.append((float(xv), float(acc), m.get("phi")))
        if not pts:
            continue
        all_acc += [p[1] for p in pts]
        pts.sort(key=lambda p: p[0])
        xs, ys, phis = zip(*pts)
        compound = name == "compound"
        color = "#d62728" if compound else COLORS[(k - 1) % len(COLORS)] if "compound" in curves else COLORS[k]
        ax.plot(
            xs,
            ys,
            marker=markers.get(name, "o"),
            color=color,
            linewidth=2.4 if compound else 1.4,
            markersize=6 if compound else 5,
            zorder=4 if compound else 3,
            label=SCALING_LABELS.get(name, name),
        )
        if compound or len(curves) == 1:
            for xv, yv, phi in pts:
                if phi is not None:
                    ax.annotate(
                        f"φ={phi:g}" if isinstance(phi, (int, float)) else f"φ={phi}",
                        (xv, yv),
                        textcoords="offset points",
                        xytext=(5, -11),
                        fontsize=8,
                        color=color,
                    )
    if not all_acc:
        _empty(ax, "no models to plot")
    x_name = {"macs": "MACs (multiply-accumulates)", "params": "parameters"}.get(x, x)
    x_short = {"macs": "MACs", "params": "parameters"}.get(x, x)
    if logx:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, p: ""))
    ax.xaxis.set_major_formatter(FuncFormatter(_human))
    ax.set_xlabel(x_name + (" (log scale)" if logx else ""))
    _accuracy_axis(ax, all_acc, "accuracy")
    ax.grid(True, alpha=0.3)
    if all_acc:
        ax.legend(loc="lower right", fontsize=9, framealpha=0.85)
    ax.set_title(title or f"Scaling: accuracy against {x_short}")
    return _save(fig, path, svg)


__all__ = ["cost_quality", "pareto_front", "scaling_curve", "search_progress"]

"""Stage lists as pictures: a strip of stage blocks above the stage table.

A network made of stages (EfficientNet's MBConv stages, a ResNet's residual stages) has no graph
worth drawing; `stage_diagram` draws the stages left to right (operator, repeats, channels,
stride) above the stage table, after the EfficientNet paper's (Tan & Le, "EfficientNet:
Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019, Table 1), and
`stage_table` returns that table as data for HTML.

The rows come from the architecture's search space when it describes its stages
(`SearchSpace.stage_rows`: operator, repeats, channels, stride, kernel and the space's own
columns), else from the architecture's MBConv stage fields (kernel, expansion, SE ratio, repeats,
channels), with the strides from the stages themselves, from the `strides` argument, or from the
space (an MBConv-space architecture keeps no strides, its space's skeleton has them). The report
holds no knowledge of any space's skeleton or fields. `mbconv_table` and `mbconv_diagram` are the
same functions under their first names.

matplotlib is imported only when `stage_diagram` draws.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from nasforge.errors import ConfigError
from nasforge.report.figure_files import image_format, save_figure

_STAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "kernel": ("kernel", "kernel_size", "k"),
    "expansion": ("expansion", "expand_ratio", "expand", "e"),
    "se": ("se", "se_ratio"),
    "repeats": ("repeats", "num_repeat", "layers", "depth", "n"),
    "channels": ("channels", "out_channels", "filters", "output_filters", "c"),
    "stride": ("stride", "strides", "s"),
}
_STAGE_DEFAULTS = {"se": 0.0}


def _space_strides(space: Any) -> tuple[int, ...] | None:
    """The strides that `space` gives its stages, if it keeps them: a space whose architectures
    carry no strides has a `strides()` method (the MBConv space's skeleton)."""
    strides = getattr(space, "strides", None)
    return tuple(int(s) for s in strides()) if callable(strides) else None


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


#: the columns every stage table has; any other key of a row is a column between kernel and repeats
_BASE_COLUMNS = ("stage", "operator", "resolution", "kernel", "repeats", "channels", "stride")
_HEADERS = {"se": "SE"}


def _space_of(arch: Any, space: Any) -> Any:
    """`space`, else the space an architecture JSON names, else None."""
    if space is None and isinstance(arch, Mapping) and "space" in arch:
        from nasforge.spaces import space_for_json

        space = space_for_json(dict(arch))
    return space


def _rows_from_space(arch: Any, space: Any) -> list[dict[str, Any]] | None:
    """The space's own description of the stages (`SearchSpace.stage_rows`), or None."""
    stage_rows = getattr(space, "stage_rows", None)
    if not callable(stage_rows):
        return None
    value = space.from_json(dict(arch)) if isinstance(arch, Mapping) else arch
    described = stage_rows(value)
    if described is None:
        return None
    rows = []
    for i, row in enumerate(described):
        if not isinstance(row, Mapping):
            raise ConfigError(f"stages[{i}]", f"a stage row must be a mapping, got {type(row).__name__}")
        for key in ("operator", "repeats", "channels"):
            if row.get(key) is None:
                raise ConfigError(
                    f"stages[{i}].{key}", "missing from the space's stage_rows", ["operator", "repeats", "channels"]
                )
        rows.append({"kernel": None, "stride": None, **row})
    if not rows:
        raise ConfigError("architecture.stages", "no stages to draw")
    return rows


def _rows_from_fields(arch: Any, strides: Sequence[int] | None, space: Any) -> list[dict[str, Any]]:
    """Rows read from MBConv stage fields (kernel, expansion, se, repeats, channels, stride)."""
    stages = _stages_of(arch)
    if strides is not None and len(strides) != len(stages):
        raise ConfigError("strides", f"expected {len(stages)} strides, got {len(strides)}")
    fallback_strides = strides
    if fallback_strides is None and any(_get(st, _STAGE_FIELDS["stride"]) is None for st in stages):
        fallback_strides = _space_strides(space)
        if fallback_strides is not None and len(fallback_strides) != len(stages):
            fallback_strides = None
    rows = []
    for i, st in enumerate(stages):
        row: dict[str, Any] = {}
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
        rows.append(row)
    return rows


def stage_table(
    arch: Any,
    resolution: int | None = None,
    strides: Sequence[int] | None = None,
    stem_stride: int = 2,
    *,
    space: Any = None,
) -> list[dict[str, Any]]:
    """One row per stage: stage, operator, kernel, repeats, channels, stride, the columns the
    stages add (an MBConv stage's expansion and se), and the input resolution of the stage when the
    image `resolution` (or `arch.resolution`) is known; the stem (stride `stem_stride`, 2 in
    EfficientNet) comes before stage 1 whether or not it has a row.

    A space that describes its stages (`SearchSpace.stage_rows` of `space`, or of the space the
    architecture JSON names) gives the rows. Otherwise `arch` is an MBConv architecture, an
    `EfficientNetPlan`, a mapping with "stages", or a plain sequence of stages; a stage is an
    object or mapping with kernel, expansion (or expand_ratio), se (or se_ratio), repeats,
    channels and stride. The stem and head appear as their own rows when `arch` has
    `stem`/`stem_channels` and `head`/`head_channels` widths. `strides`, when given, are the
    stages' strides. Stages without a stride (an `MBConvArchitecture` keeps them in its space)
    take them from the space when its `strides()` has one per stage, else show None.
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
    space = _space_of(arch, space)
    stage_rows = _rows_from_space(arch, space)
    if stage_rows is None:
        stage_rows = _rows_from_fields(arch, strides, space)
    elif strides is not None:
        if len(strides) != len(stage_rows):
            raise ConfigError("strides", f"expected {len(stage_rows)} strides, got {len(strides)}")
        for row, stride in zip(stage_rows, strides):
            row["stride"] = stride
    for i, row in enumerate(stage_rows):
        rows.append({"stage": str(i + 1), **row, "resolution": res})
        if res is not None:
            res = math.ceil(res / int(row["stride"] or 1))
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


def stage_columns(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(key, header) of each column of the stage table of `rows`, in order: stage, operator,
    resolution (when a row knows it), kernel (when a row has one), the columns the rows add (in
    the order they first appear; MBConv's expansion and SE), repeats, channels, stride."""
    extras: list[str] = []
    for row in rows:
        extras += [k for k in row if k not in _BASE_COLUMNS and k not in extras]
    keys = ["stage", "operator"]
    keys += [k for k in ("resolution", "kernel") if any(row.get(k) is not None for row in rows)]
    keys += [*extras, "repeats", "channels", "stride"]
    return [(k, _HEADERS.get(k, k.replace("_", " "))) for k in keys]


def stage_cell(key: str, value: Any) -> str:
    """The text of one cell of the stage table."""
    if value is None:
        return "?" if key == "stride" else ""
    if key in ("kernel", "resolution") and isinstance(value, int):
        return f"{value}x{value}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def stage_diagram(
    arch: Any,
    path: str | Path,
    *,
    title: str | None = None,
    svg: bool = False,
    resolution: int | None = None,
    strides: Sequence[int] | None = None,
    space: Any = None,
) -> Path:
    """Draw a stage list: a strip of stage blocks above the stage table.

    In the strip each stage is one block, wide in proportion to its repeats and tall in
    proportion to log(channels), coloured by kernel size (by operator where the stages have no
    kernel); an SE ratio and the stride are written under it. The table below lists every stage
    as `stage_table` returns it, with the columns of `stage_columns` (for MBConv stages
    EfficientNet's Table 1 plus kernel, expansion, SE and stride; `strides` and `space` as there).
    Writes `path` (.png, .svg or .pdf) and, with `svg=True`, an .svg beside it. Returns `path`.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    path = Path(path)
    image_format(path)
    rows = stage_table(arch, resolution, strides, space=space)
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

    def colour_key(r: Mapping[str, Any]) -> Any:
        return r["kernel"] if r.get("kernel") is not None else str(r["operator"])

    keys = sorted({colour_key(r) for r in rows if r["stage"] not in special}, key=lambda k: (isinstance(k, str), k))
    palette = ["#fff2cc", "#d9ead3", "#cfe2f3", "#fce5cd", "#ead1dc", "#d0e0e3"]
    kcolor = {k: palette[i % len(palette)] for i, k in enumerate(keys)}
    channels = [int(r["channels"]) for r in rows]
    lo, hi = min(channels), max(channels)
    cursor = left
    for i, (r, w) in enumerate(zip(rows, widths)):
        frac = math.log(r["channels"] / lo) / math.log(hi / lo) if hi > lo else 1.0
        h = 0.55 + 0.6 * frac
        is_special = r["stage"] in special
        color = "#eeeeee" if is_special else kcolor[colour_key(r)]
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
            lines = [str(r["operator"]).replace(" SE", "")]
        if not is_special:
            lines.append(f"x{r['repeats']}")
        lines.append(f"{r['channels']} ch")
        ax.text(cursor + w / 2, 0, "\n".join(lines), ha="center", va="center", fontsize=8)
        below = []
        if r.get("se"):
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
    for i, k in enumerate(keys):  # colour key
        x0 = left + i * 1.1
        ax.add_patch(
            FancyBboxPatch(
                (x0, 0.6), 0.16, 0.11, boxstyle="square,pad=0", facecolor=kcolor[k], edgecolor="#333333", linewidth=0.6
            )
        )
        ax.text(
            x0 + 0.22, 0.655, f"{k}x{k} kernel" if isinstance(k, int) else k, fontsize=7, va="center", color="#333333"
        )

    tab_ax = fig.add_axes((margin / fig_w, 0.15 / fig_h, 1 - 2 * margin / fig_w, table_h / fig_h))
    tab_ax.set_axis_off()
    columns = stage_columns(rows)
    header = [label for _, label in columns]
    cells = [[stage_cell(key, r.get(key)) for key, _ in columns] for r in rows]
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
    return save_figure(fig, path, svg=svg)


#: the first names of `stage_table` and `stage_diagram`, from when they drew MBConv stages only
mbconv_table = stage_table
mbconv_diagram = stage_diagram

__all__ = ["mbconv_diagram", "mbconv_table", "stage_cell", "stage_columns", "stage_diagram", "stage_table"]

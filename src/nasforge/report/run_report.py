"""The run report: one self-contained folder per run, readable without a server or a network.

`write_report(run_dir, out_dir=None)` reads a run's database (`RUN/nasforge.db`) and writes
(by default into `RUN/report/`):

- ``index.html``: the config, the summary figures (search progress, cost against quality), the
  leaderboard of the best trials, the best architectures with their diagrams (cell diagram for
  NASNet, stage table for MBConv, the JSON for other spaces), the scaling tables and curves when
  the run holds a scaled family (store markers ``family`` and ``coefficients``), the failures;
- ``figures/`` and ``architectures/``: the PNG files the page shows, with SVG, ``.dot`` and JSON
  files beside them that it links;
- ``summary.json``: the same facts for programs (counts, best trials, figures, scaling data, the
  list of files written).

The page uses relative links only, inline CSS, no scripts, no fonts or styles from elsewhere, and
a Content-Security-Policy that forbids loading anything but its own images. Every text that comes
from the run is HTML-escaped. The report carries no time of writing: the same run gives the same
page.

`compare=[other runs]` draws one progress line per run (labelled with the run's strategy) and
adds a table comparing the runs.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeGuard

from nasforge.errors import ConfigError, NasforgeError

GENERATOR = "nasforge report"
SUMMARY_FORMAT = 1
FIGURES_DIR = "figures"
ARCHS_DIR = "architectures"
SCALING_MARKERS = ("family", "coefficients")

#: metric columns shown first in tables, in this order; other numeric metrics follow by name.
PREFERRED_METRICS = ("val_accuracy", "test_accuracy", "params", "macs", "latency_ms")
HIDDEN_METRICS = frozenset({"seed"})
COUNT_METRICS = frozenset({"params", "macs", "flops"})
MAX_METRIC_COLUMNS = 12
SCALING_DIMENSIONS = {
    "depth": "depth",
    "depth-only": "depth",
    "width": "width",
    "width-only": "width",
    "resolution": "resolution",
    "resolution-only": "resolution",
}

CSP = "default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; --accent: #0b5cad; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff; line-height: 1.45;
       font: 15px/1.45 -apple-system, "Segoe UI", "Helvetica Neue", Helvetica, Arial, sans-serif; }
header, main, footer { max-width: 1180px; margin: 0 auto; padding: 0 20px; }
header { padding-top: 24px; }
h1 { font-size: 1.7em; margin: 0 0 4px; }
h2 { font-size: 1.3em; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.08em; margin: 24px 0 8px; }
.sub { color: var(--muted); margin: 0; }
nav { margin: 14px 0 0; display: flex; flex-wrap: wrap; gap: 6px 16px; }
nav a, a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 18px 0 6px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 8px 14px; min-width: 110px;
        background: var(--soft); }
.card .v { font-size: 1.35em; font-weight: 600; }
.card .k { color: var(--muted); font-size: .85em; }
figure { margin: 14px 0 22px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; background: #fff; }
figcaption { color: var(--muted); font-size: .9em; margin-top: 4px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: .92em; }
th, td { border: 1px solid var(--line); padding: 4px 9px; text-align: right; white-space: nowrap; }
th { background: var(--soft); font-weight: 600; }
td.l, th.l { text-align: left; }
tr.best td { background: #fff8c5; font-weight: 600; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .88em; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: 10px; overflow-x: auto; }
details { margin: 6px 0 12px; }
summary { cursor: pointer; color: var(--accent); }
.arch { border: 1px solid var(--line); border-radius: 8px; padding: 4px 16px 8px; margin: 14px 0; }
.links { font-size: .9em; color: var(--muted); }
.note { color: var(--muted); font-style: italic; }
.warn { color: #9a6700; }
footer { color: var(--muted); font-size: .85em; padding: 30px 20px 40px; }
"""


# ------------------------------------------------------------------------------------------------
# Small helpers
# ------------------------------------------------------------------------------------------------
class _Html(str):
    """Text that is already HTML (never escaped again)."""


def _e(value: Any) -> str:
    return value if isinstance(value, _Html) else html.escape(str(value), quote=True)


def _finite(v: Any) -> TypeGuard[float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _human(value: float) -> str:
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= div:
            return f"{value / div:.3g}{suffix}"
    return f"{value:.3g}"


def _fmt(value: Any, key: str = "") -> Any:
    """A table cell: counts humanised (exact value in the tooltip), floats to 4 digits."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if _finite(value) and key in COUNT_METRICS:
        exact = f"{value:,.0f}" if float(value).is_integer() else f"{value:,}"
        return _Html(f'<span title="{_e(exact)}">{_e(_human(float(value)))}</span>')
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _jsonable(value: Any) -> Any:
    """Strict-JSON copy: non-finite floats become null, tuples lists, paths strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return value.as_posix()
    return value


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    left: Iterable[int] = (0,),
    row_classes: Sequence[str] | None = None,
) -> str:
    left = set(left)
    out = ['<div class="scroll"><table><thead><tr>']
    out += [f"<th{' class=l' if i in left else ''}>{_e(h)}</th>" for i, h in enumerate(headers)]
    out.append("</tr></thead><tbody>")
    for r, row in enumerate(rows):
        cls = row_classes[r] if row_classes and row_classes[r] else ""
        out.append(f'<tr class="{cls}">' if cls else "<tr>")
        out += [f"<td{' class=l' if i in left else ''}>{_e(c)}</td>" for i, c in enumerate(row)]
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _strategy_name(config: Mapping[str, Any]) -> str | None:
    s = config.get("strategy")
    if isinstance(s, Mapping):
        s = s.get("name")
    return s if isinstance(s, str) and s else None


def _metric_columns(records: Iterable[Mapping[str, Any] | None]) -> list[str]:
    seen: dict[str, None] = {}
    for m in records:
        for k, v in (m or {}).items():
            if _finite(v) and k not in HIDDEN_METRICS:
                seen[k] = None
    cols = [k for k in PREFERRED_METRICS if k in seen]
    cols += sorted(k for k in seen if k not in PREFERRED_METRICS)
    return cols[:MAX_METRIC_COLUMNS]


def _is_report_folder(out: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("generator") == GENERATOR else None


def _prepare_out(out: Path) -> None:
    """Create `out`, or clear the files of an earlier report in it; refuse any other folder."""
    if out.exists() and not out.is_dir():
        raise ConfigError("out", f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        old = _is_report_folder(out)
        if old is None:
            raise ConfigError(
                "out",
                f"{out} is not empty and holds no nasforge report; choose an "
                "empty or new folder (nothing was overwritten)",
            )
        names = [f for f in old.get("files", []) if isinstance(f, str)]
        for rel in names + ["index.html", "summary.json"]:
            parts = Path(rel).parts
            if not parts or Path(rel).is_absolute() or ".." in parts:
                continue  # only our own relative names: never touch anything outside `out`
            target = out / rel
            if target.is_symlink() or target.is_file():
                target.unlink()
        for sub in (FIGURES_DIR, ARCHS_DIR):
            try:
                (out / sub).rmdir()
            except OSError:
                pass
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("out", f"cannot create report folder {out}: {exc.strerror}") from None


# ------------------------------------------------------------------------------------------------
# Reading runs
# ------------------------------------------------------------------------------------------------
@dataclass
class RunData:
    """Everything the report reads from one run's database."""

    run_dir: Path
    label: str
    config: dict[str, Any]
    counts: dict[str, int]
    trials: list[Any]  # TrialRecord, id order
    best: list[Any]  # TrialRecord, best first (done, not reused)
    markers: dict[str, Any]
    created: float
    nasforge_version: str | None

    @property
    def strategy(self) -> str | None:
        return _strategy_name(self.config)

    @property
    def wall_seconds(self) -> float | None:
        ends = [t.finished for t in self.trials if t.finished is not None]
        return max(ends) - self.created if ends else None

    def progress(self) -> list[dict[str, Any]]:
        """Finished trials as `search_progress` reads them (failed ones with reward None)."""
        return [
            {
                "trial": t.id,
                "reward": t.reward if t.status == "done" else None,
                "elapsed": max(0.0, t.finished - self.created),
                **({"epochs": t.metrics["epochs"]} if t.metrics and "epochs" in t.metrics else {}),
            }
            for t in self.trials
            if t.status in ("done", "failed") and t.finished is not None
        ]

    def cost_points(self, strategy: str | None = None) -> list[dict[str, Any]]:
        out = []
        for t in self.trials:
            if t.status != "done" or t.reused or not t.metrics:
                continue
            m = t.metrics
            point = {
                "val_accuracy": m.get("val_accuracy", t.reward),
                "reward": t.reward,
                "macs": m.get("macs"),
                "params": m.get("params"),
                "label": f"#{t.id}",
            }
            if strategy is not None:
                point["strategy"] = strategy
            out.append(point)
        return out


def load_run(run_dir: str | os.PathLike, top: int = 10) -> RunData:
    """Read a run (a `StoreError` when there is none); the database is closed again at once.

    The database is opened read-only and read in one short read transaction, so a report of a
    running search never writes its store, never blocks its writers, and sees one consistent
    state (counts, trials and leaderboard agree)."""
    from nasforge.experiment.store import Store

    run_dir = Path(run_dir)
    store = Store.open(run_dir, readonly=True)
    try:
        with store.snapshot():
            config = store.config()
            return RunData(
                run_dir=run_dir,
                label=_strategy_name(config) or run_dir.name,
                config=config,
                counts=store.counts(),
                trials=store.trials(),
                best=store.best(top),
                markers=store.markers(),
                created=store.created(),
                nasforge_version=_stored_version(store),
            )
    finally:
        store.close()


def _stored_version(store: Any) -> str | None:
    """The nasforge version that created the run (None when it cannot be read)."""
    try:
        row = store._read(lambda c: c.execute("SELECT nasforge_version FROM run WHERE id = 1").fetchone())
    except Exception:  # noqa: BLE001 - informative only
        return None
    return row[0] if row and isinstance(row[0], str) else None


def _unique_labels(runs: Sequence[RunData]) -> None:
    counts = Counter(r.label for r in runs)
    for r in runs:
        if counts[r.label] > 1:
            r.label = f"{r.label} ({r.run_dir.name or r.run_dir})"
    counts = Counter(r.label for r in runs)
    for i, r in enumerate(runs):  # same strategy and same folder name in different parents
        if counts[r.label] > 1:
            r.label = f"{r.label} #{i + 1}"


# ------------------------------------------------------------------------------------------------
# The report
# ------------------------------------------------------------------------------------------------
class _Writer:
    def __init__(self, out: Path, svg: bool, renderer: str):
        self.out = out
        self.svg = svg
        self.renderer = renderer
        self.files: list[str] = []
        self.notes: list[str] = []
        self.figures: list[dict[str, Any]] = []

    def rel(self, path: Path) -> str:
        return path.relative_to(self.out).as_posix()

    def add(self, *paths: Path) -> None:
        for p in paths:
            if p.is_file():
                rel = self.rel(p)
                if rel not in self.files:
                    self.files.append(rel)

    def figure(self, fig_id: str, title: str, caption: str, draw: Any) -> str:
        """Draw a figure with `draw(path, svg)` into figures/<id>.png; its <figure> HTML."""
        png = self.out / FIGURES_DIR / f"{fig_id}.png"
        try:
            draw(png, self.svg)
        except Exception as exc:  # noqa: BLE001 - one broken figure must not cost the report
            self.notes.append(f"figure {fig_id}: {type(exc).__name__}: {exc}")
            return f'<p class="warn">{_e(title)}: could not be drawn ({_e(type(exc).__name__)}: {_e(exc)}).</p>'
        svg = png.with_suffix(".svg")
        self.add(png, svg)
        files = [self.rel(png)] + ([self.rel(svg)] if svg.is_file() else [])
        self.figures.append({"id": fig_id, "title": title, "files": files})
        return _figure_html(self.rel(png), title, caption, files[1:])


def _figure_html(src: str, title: str, caption: str, extra: Sequence[str] = ()) -> str:
    links = " · ".join(f'<a href="{_e(f)}">{_e(Path(f).suffix.lstrip(".").upper())}</a>' for f in extra)
    return (
        f'<figure><img src="{_e(src)}" alt="{_e(title)}">'
        f"<figcaption><b>{_e(title)}.</b> {_e(caption)}"
        f"{' <span class=links>(' + links + ')</span>' if links else ''}</figcaption></figure>"
    )


def write_report(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    compare: Sequence[str | os.PathLike] = (),
    top: int = 10,
    archs: int = 3,
    renderer: str = "auto",
    svg: bool = True,
    title: str | None = None,
) -> Path:
    """Write the report of the run in `run_dir` into `out_dir` (default `RUN/report`).

    Args:
        compare: other run folders drawn beside this one (one progress line per run, labelled
            with its strategy) and listed in a comparison table.
        top: trials in the leaderboard.
        archs: best distinct architectures drawn.
        renderer: cell diagram renderer ("auto", "dot", "matplotlib"; see `render`).
        svg: also write an SVG beside every PNG (linked from the page).
        title: the page's heading (default: the run folder's name).

    `out_dir` must be new, empty, or hold an earlier report (whose files are replaced); any other
    folder is refused with a `ConfigError`. A missing or unreadable run is a `StoreError`.
    Returns the path of ``index.html``.
    """
    if not isinstance(top, int) or top < 1:
        raise ConfigError("top", f"must be a positive integer, got {top!r}")
    if not isinstance(archs, int) or archs < 0:
        raise ConfigError("archs", f"must be a non-negative integer, got {archs!r}")
    run_dir = Path(run_dir)
    main = load_run(run_dir, top)
    others = []
    seen = {run_dir.resolve()}
    for other in compare or ():
        other = Path(other)
        if other.resolve() in seen:
            continue
        seen.add(other.resolve())
        others.append(load_run(other, top))
    runs = [main, *others]
    _unique_labels(runs)

    out = Path(out_dir) if out_dir is not None else run_dir / "report"
    _prepare_out(out)
    w = _Writer(out, svg, renderer)
    name = title or run_dir.resolve().name or str(run_dir)

    sections: list[tuple[str, str, str]] = []  # (anchor, heading, body html)
    sections.append(("search", "Search", _search_section(w, runs)))
    sections.append(("leaderboard", "Leaderboard", _leaderboard_section(main, top, archs)))
    arch_summary: dict[int, dict[str, Any]] = {}
    if archs:
        arch_html, arch_summary = _architectures_section(w, main, archs)
        sections.append(("architectures", "Best architectures", arch_html))
    scaling = {k: main.markers[k] for k in SCALING_MARKERS if k in main.markers}
    if scaling:
        sections.append(("scaling", "Scaling", _scaling_section(w, scaling)))
    if others:
        sections.append(("compare", "Compared runs", _compare_section(runs)))
    errors = _error_summary(main)
    if errors:
        sections.append(("failures", "Failures", _failures_section(main, errors)))
    sections.append(("config", "Config", _config_section(main)))

    summary = {
        "generator": GENERATOR,
        "format": SUMMARY_FORMAT,
        "nasforge_version": _version(),
        "run": {
            "dir": str(run_dir),
            "name": name,
            "created": main.created,
            "nasforge_version": main.nasforge_version,
            "strategy": main.strategy,
            "wall_seconds": main.wall_seconds,
        },
        "config": main.config,
        "counts": main.counts,
        "best": [_trial_summary(t, rank, arch_summary.get(t.id)) for rank, t in enumerate(main.best, 1)],
        "figures": w.figures,
        "scaling": _scaling_summary(scaling) if scaling else None,
        "compare": [_run_summary(r) for r in runs] if others else [],
        "errors": [{"error": e, "count": n} for e, n in errors],
        "markers": sorted(main.markers),
        "notes": w.notes,
        "files": [],
    }
    page = _page(name, main, runs, sections, w.notes)
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    summary["files"] = sorted(w.files) + ["index.html", "summary.json"]
    (out / "summary.json").write_text(
        json.dumps(_jsonable(summary), indent=2, sort_keys=False, allow_nan=False) + "\n", encoding="utf-8"
    )
    return index


def _version() -> str:
    from nasforge import __version__

    return __version__


# ------------------------------------------------------------------------------------------------
# Sections
# ------------------------------------------------------------------------------------------------
def _search_section(w: _Writer, runs: list[RunData]) -> str:
    from nasforge.report.plots import cost_quality, search_progress

    main = runs[0]
    parts = []
    if not any(r.trials for r in runs):
        return '<p class="note">The run has no trials yet.</p>'
    data = {r.label: r.progress() for r in runs}
    caption = (
        "Reward of every finished trial (points) and the best so far (line), against the "
        "trial number and against wall time since the run was created; failed trials are "
        "crosses on the bottom edge."
    )
    if len(runs) > 1:
        caption += " One colour per run."
    parts.append(
        w.figure(
            "progress",
            "Search progress",
            caption,
            lambda p, s: search_progress(data, p, svg=s, title="Search progress"),
        )
    )
    points = []
    for r in runs:
        points += r.cost_points(r.label if len(runs) > 1 else None)
    if any(_finite(p.get("macs")) or _finite(p.get("params")) for p in points):
        parts.append(
            w.figure(
                "cost_quality",
                "Cost against quality",
                "Validation accuracy of every successful trial against its MACs (left) and parameters "
                "(right); the Pareto front (the trials no other trial beats on both) is ringed and joined.",
                lambda p, s: cost_quality(points, p, svg=s, accuracy_key="val_accuracy"),
            )
        )
    elif main.counts.get("done"):
        parts.append('<p class="note">No cost against quality figure: the trials record no MACs or parameters.</p>')
    return "".join(parts)


def _leaderboard_section(run: RunData, top: int, archs: int) -> str:
    if not run.best:
        return '<p class="note">No successful trial yet.</p>'
    cols = _metric_columns(t.metrics for t in run.best)
    shown = set(_shown_arch_ids(run, archs))
    rows = []
    for rank, t in enumerate(run.best, 1):
        trial = _Html(f'<a href="#trial-{t.id}">{t.id}</a>') if t.id in shown else str(t.id)
        rows.append(
            [
                str(rank),
                trial,
                _fmt(t.reward),
                *[_fmt((t.metrics or {}).get(c), c) for c in cols],
                _fmt(t.duration),
                _Html(f"<code>{_e(_short(t.key, 48))}</code>"),
            ]
        )
    head = ["rank", "trial", "reward", *cols, "seconds", "architecture key"]
    n = len(cols) + 4
    note = (
        f'<p class="sub">The {len(run.best)} best of {run.counts.get("done", 0)} successful trials '
        "by reward (repeats of an architecture already evaluated are left out).</p>"
    )
    return note + _table(head, rows, left=(0, n))


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _shown_arch_ids(run: RunData, archs: int) -> list[int]:
    ids: list[int] = []
    keys: set[str] = set()
    for t in run.best:
        if len(ids) >= archs:
            break
        if t.key not in keys:
            keys.add(t.key)
            ids.append(t.id)
    return ids


def _run_space(config: Mapping[str, Any]) -> Any:
    """The space the run searched, with the options it was searched with (a config file may give a
    space options), or None where the stored config does not say (a run built from objects)."""
    spec = config.get("space")
    if (
        not isinstance(spec, Mapping)
        or not isinstance(spec.get("name"), str)
        or not isinstance(spec.get("options"), Mapping)
    ):
        return None
    from nasforge.experiment.config import Component, build_space

    try:
        return build_space(Component(spec["name"], spec["options"]))
    except NasforgeError:  # e.g. a plug-in space that is not installed here: read the JSON alone
        return None


def _arch_kind(arch: Any, run_space: Any = None) -> tuple[str, str | None, Any, Any]:
    """(its space's name or "json", the space's drawing, the parsed architecture or the JSON, the
    space or None): the space of an architecture says which picture the report draws of it
    (`SearchSpace.drawing`), and knows what the architecture leaves to it (the rows of a stage
    list, `SearchSpace.stage_rows`, or an MBConv stage list's strides). The run's own space
    (`run_space`, with its options) reads the architectures it searched; others are read by the
    space their JSON names, with its default options."""
    if not isinstance(arch, Mapping):
        return "json", None, arch, None
    from nasforge.arch import space_name_of
    from nasforge.spaces import space_for_json

    space = run_space if run_space is not None and run_space.name == space_name_of(arch) else space_for_json(arch)
    if space.drawing is None:
        return "json", None, arch, None
    return space.name, space.drawing, space.from_json(arch), space


def _architectures_section(w: _Writer, run: RunData, archs: int) -> tuple[str, dict[int, dict[str, Any]]]:
    from nasforge.report.graph_render import render
    from nasforge.report.mbconv_pictures import stage_diagram, stage_table

    ids = _shown_arch_ids(run, archs)
    if not ids:
        return '<p class="note">No successful trial yet.</p>', {}
    by_id = {t.id: t for t in run.best}
    parts, info = [], {}
    folder = w.out / ARCHS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    run_space = _run_space(run.config)
    for rank, tid in enumerate(ids, 1):
        t = by_id[tid]
        stem = folder / f"trial-{tid}"
        json_path = stem.with_suffix(".json")
        json_text = json.dumps(t.arch, indent=2, sort_keys=True)
        json_path.write_text(json_text + "\n", encoding="utf-8")
        w.add(json_path)
        entry: dict[str, Any] = {"json": w.rel(json_path)}
        body = []
        drawing: str | None = None
        space: Any = None
        try:
            kind, drawing, parsed, space = _arch_kind(t.arch, run_space)
        except NasforgeError as exc:
            kind, parsed = "json", t.arch
            w.notes.append(f"trial {tid}: architecture not readable: {exc}")
            body.append(f'<p class="warn">The architecture does not parse: {_e(exc)}</p>')
        entry["kind"] = kind
        try:
            if drawing == "cells":
                png = Path(f"{stem}-cells.png")
                used = render(parsed, png, renderer=w.renderer)
                extra = [png.with_suffix(".dot")]
                if w.svg:
                    render(parsed, png.with_suffix(".svg"), renderer=w.renderer)
                    extra.insert(0, png.with_suffix(".svg"))
                w.add(png, *extra)
                entry.update(diagram=w.rel(png), renderer=used)
                body.append(
                    _figure_html(
                        w.rel(png),
                        f"Cells of trial {tid}",
                        "Normal and reduction cell: the inputs h_{i-1} and h_i at the bottom, each "
                        "block's two ops and its combiner, the concatenated output on top.",
                        [w.rel(p) for p in extra if p.is_file()],
                    )
                )
            elif drawing == "stages":
                png = Path(f"{stem}-stages.png")
                stage_diagram(parsed, png, svg=w.svg, space=space)
                w.add(png, png.with_suffix(".svg"))
                entry["diagram"] = w.rel(png)
                rows = stage_table(parsed, space=space)
                entry["stages"] = rows
                body.append(_stage_table(rows))
                body.append(
                    _figure_html(
                        w.rel(png),
                        f"Stages of trial {tid}",
                        "One block per stage, width by repeats, height by channels, colour by kernel size.",
                        [w.rel(png.with_suffix(".svg"))] if png.with_suffix(".svg").is_file() else [],
                    )
                )
        except Exception as exc:  # noqa: BLE001 - the JSON below still describes the architecture
            w.notes.append(f"trial {tid}: diagram failed: {type(exc).__name__}: {exc}")
            body.append(f'<p class="warn">The diagram could not be drawn ({_e(type(exc).__name__)}: {_e(exc)}).</p>')
        metrics = t.metrics or {}
        facts = [f"reward {_fmt(t.reward)}"] + [
            f"{c} {_fmt(metrics.get(c))}" if c not in COUNT_METRICS else f"{c} {_human(float(metrics[c]))}"
            for c in PREFERRED_METRICS
            if _finite(metrics.get(c))
        ]
        pre = f"<pre>{_e(json_text)}</pre>"
        json_block = pre if kind == "json" else f"<details><summary>architecture JSON</summary>{pre}</details>"
        parts.append(
            f'<div class="arch" id="trial-{tid}"><h3>#{rank}: trial {tid}</h3>'
            f'<p class="sub">{_e(" · ".join(facts))} · key <code>{_e(_short(t.key, 80))}</code> · '
            f'<a href="{_e(w.rel(json_path))}">JSON</a></p>' + "".join(body) + json_block + "</div>"
        )
        info[tid] = entry
    note = (
        '<p class="sub">The best distinct architectures; each can be rebuilt from its JSON alone '
        "(<code>space_for_json(data).from_json(data)</code>).</p>"
    )
    return note + "".join(parts), info


def _stage_table(rows: list[dict[str, Any]]) -> str:
    from nasforge.report.mbconv_pictures import stage_cell, stage_columns

    columns = stage_columns(rows)
    body = []
    for r in rows:
        line = []
        for key, _ in columns:
            value = r.get(key)
            if key in ("kernel", "resolution"):
                line.append("–" if value is None else stage_cell(key, value))
            else:
                line.append(_fmt(value))
        body.append(line)
    return _table([label for _, label in columns], body, left=(0, 1))


# -- scaling --------------------------------------------------------------------------------------
def _records(value: Any) -> list[dict[str, Any]]:
    return [dict(v) for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _scaling_curves(family: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    curves: dict[str, list[dict[str, Any]]] = {}
    members = _records(family.get("members"))
    if members:
        curves["compound"] = members
    alts = family.get("alternatives")
    if isinstance(alts, Mapping):
        for name, recs in alts.items():
            recs = _records(recs)
            if recs:
                curves[SCALING_DIMENSIONS.get(str(name), str(name))] = recs
    return curves


SCALE_COLUMNS = (
    "phi",
    "depth_mult",
    "width_mult",
    "resolution",
    "params",
    "macs",
    "epochs",
    "stopped",
    "val_accuracy",
    "test_accuracy",
    "latency_ms",
)
#: What each family schedule means, for the sentence under the family table.
FAMILY_SCHEDULES = {
    "fixed": "every member was trained for the same {base} epochs (larger members are further from "
    "convergence at the end of it)",
    "grow": "member φ was trained for {base} × √(its MACs / the baseline's) epochs, rounded up, so that "
    "larger members get the extra steps they need",
    "early-stop": "each member was trained for up to twice its grown epochs ({base} × √(MACs ratio)), "
    "stopping after {patience} epochs without a better validation accuracy; the best epoch's "
    "weights were kept and tested",
}


def _scale_table(recs: list[dict[str, Any]]) -> str:
    cols = [c for c in SCALE_COLUMNS if any(r.get(c) is not None for r in recs)]
    extra = sorted({k for r in recs for k, v in r.items() if _finite(v)} - set(SCALE_COLUMNS))
    cols += extra[: max(0, MAX_METRIC_COLUMNS - len(cols))]
    return _table(["φ" if c == "phi" else c for c in cols], [[_fmt(r.get(c), c) for c in cols] for r in recs], left=())


def _scaling_section(w: _Writer, scaling: Mapping[str, Any]) -> str:
    from nasforge.report.plots import scaling_curve

    parts = []
    family = scaling.get("family")
    coefficients = scaling.get("coefficients")
    if family is not None and not isinstance(family, Mapping):
        parts.append('<p class="warn">The "family" marker is not an object; it is shown raw under Config.</p>')
        family = None
    if coefficients is not None and not isinstance(coefficients, Mapping):
        parts.append('<p class="warn">The "coefficients" marker is not an object.</p>')
        coefficients = None
    coef = (family or {}).get("coefficients") or (coefficients or {}).get("best")
    if isinstance(coef, Mapping):
        a, b, g = (coef.get(k) for k in ("alpha", "beta", "gamma"))
        cells = [
            f'<div class="card"><div class="v">{_e(_fmt(v))}</div><div class="k">{_e(k)}</div></div>'
            for k, v in (("α (depth)", a), ("β (width)", b), ("γ (resolution)", g))
        ]
        if _finite(a) and _finite(b) and _finite(g):
            cells.append(
                f'<div class="card"><div class="v">{a * b * b * g * g:.3f}</div><div class="k">α·β²·γ²</div></div>'
            )
        parts.append(f'<div class="cards">{"".join(cells)}</div>')
        parts.append(
            '<p class="sub">Member φ has depth α<sup>φ</sup>, width β<sup>φ</sup> and resolution '
            "γ<sup>φ</sup> of the baseline; MACs grow by about (α·β²·γ²)<sup>φ</sup>.</p>"
        )
    if family is not None:
        curves = _scaling_curves(family)
        members = curves.get("compound", [])
        if members:
            parts.append("<h3>The family</h3>")
            parts.append(_scale_table(members))
            parts.append(_family_schedule_note(family, members))
        for x, label in (("macs", "MACs"), ("params", "parameters")):
            if any(
                _finite(r.get(x)) and (_finite(r.get("val_accuracy")) or _finite(r.get("test_accuracy")))
                for recs in curves.values()
                for r in recs
            ):
                parts.append(
                    w.figure(
                        f"scaling_{x}",
                        f"Scaling: accuracy against {label}",
                        "Compound scaling (bold, φ annotated) beside scaling one dimension alone, as in "
                        "the EfficientNet paper.",
                        lambda p, s, x=x: scaling_curve(curves, p, svg=s, x=x, accuracy_key="val_accuracy"),
                    )
                )
        alts = [(name, recs) for name, recs in curves.items() if name != "compound"]
        comparison = family.get("comparison") if isinstance(family.get("comparison"), Mapping) else None
        if comparison is not None and _records(comparison.get("rows")):
            parts.append("<h3>Single-dimension alternatives</h3>")
            parts.append(_comparison_table(comparison))
        elif alts:
            parts.append("<h3>Single-dimension alternatives</h3>")
            alt_rows = []
            for name, recs in alts:
                alt_rows += [dict(r, method=name) for r in recs]
            cols = [c for c in SCALE_COLUMNS if any(r.get(c) is not None for r in alt_rows)]
            parts.append(
                '<p class="warn">This run was made by an older nasforge: its φ = 0 row was trained '
                "with the family's schedule and the φ = 1 rows with the coefficient search's, so the "
                "rows are not comparable.</p>"
            )
            parts.append(
                _table(
                    ["method"] + ["φ" if c == "phi" else c for c in cols],
                    [[r["method"]] + [_fmt(r.get(c), c) for c in cols] for r in alt_rows],
                )
            )
        if not members and not alts:
            parts.append('<p class="note">The family has no members yet.</p>')
    if coefficients is not None:
        cands = _records(coefficients.get("candidates"))
        best = coefficients.get("best") if isinstance(coefficients.get("best"), Mapping) else None
        parts.append("<h3>Coefficient search at φ = 1</h3>")
        # The search's own reward metric (val_accuracy for proxy training, "score" for MACsScore).
        raw_metric = coefficients.get("metric")
        metric: str = raw_metric if isinstance(raw_metric, str) else "val_accuracy"
        metric = metric if any(_finite(c.get(metric)) for c in cands) else "reward"
        if cands:
            cands.sort(key=lambda c: -(c[metric] if _finite(c.get(metric)) else -math.inf))
            raw_verdict = coefficients.get("verdict")
            verdict = raw_verdict if isinstance(raw_verdict, Mapping) else None
            spread = verdict is not None and bool(verdict.get("training_spread"))
            raw_baseline = coefficients.get("baseline")
            baseline = raw_baseline if isinstance(raw_baseline, Mapping) else None
            if baseline is not None and _finite(baseline.get(metric)):
                cands.append(dict(baseline, label="baseline (φ = 0)"))
            with_se = any(_finite(c.get("se")) for c in cands)
            names = {c.get("index"): _candidate_name(c) for c in cands}
            rows, classes = [], []
            for c in cands:
                a, b, g = (c.get(k) for k in ("alpha", "beta", "gamma"))
                prod = a * b * b * g * g if _finite(a) and _finite(b) and _finite(g) else None
                twin = names.get(c.get("same_network_as")) if c.get("same_network_as") is not None else None
                rows.append(
                    [c.get("label", "") + (f" (the same network as {twin})" if twin else ""), _fmt(a), _fmt(b)]
                    + [_fmt(g), _fmt(prod), _fmt(c.get(metric))]
                    + ([_fmt(c.get("se"))] if with_se else [])
                    + [_fmt(c.get("macs"), "macs")]
                )
                is_best = (
                    best is not None
                    and c.get("label") != "baseline (φ = 0)"
                    and all(c.get(k) == best.get(k) for k in ("alpha", "beta", "gamma"))
                )
                classes.append("best" if is_best else "")
            parts.append(
                f'<p class="sub">Every candidate (α, β, γ) with α·β²·γ² ≈ 2, best first, then the '
                f"single-dimension alternatives and the baseline; the chosen one is highlighted. "
                f"{_e(_schedule_text(coefficients.get('schedule')))}"
                + (
                    " ± is one standard error of the validation accuracy: √(p(1−p)/n) for n validation images"
                    + (
                        ", and for a row trained once the spread of one network's trainings (see the verdict)."
                        if spread
                        else "."
                    )
                    if with_se
                    else ""
                )
                + "</p>"
            )
            if verdict is not None and isinstance(verdict.get("text"), str):
                cls = "note" if verdict.get("clear") is not False else "warn"
                parts.append(f'<p class="{cls}"><b>Verdict:</b> {_e(verdict["text"])}</p>')
            parts.append(
                _table(
                    ["candidate", "α", "β", "γ", "α·β²·γ²", metric] + (["±"] if with_se else []) + ["macs"],
                    rows,
                    row_classes=classes,
                )
            )
        else:
            parts.append('<p class="note">No candidates recorded yet.</p>')
    return "".join(parts)


def _network(row: Mapping[str, Any]) -> Any:
    """One id per distinct network of the coefficient search: its first candidate's index."""
    return row.get("index") if row.get("same_network_as") is None else row["same_network_as"]


def _twin(row: Mapping[str, Any], chosen: Any) -> bool:
    """A single-dimension row that is the chosen triple's own network (the family rounds both alike)."""
    return row.get("method") not in ("compound", "baseline") and chosen is not None and _network(row) == chosen


def _candidate_name(c: Mapping[str, Any]) -> str:
    if c.get("label", "compound") != "compound":
        return str(c.get("label"))
    return f"(α={_fmt(c.get('alpha'))}, β={_fmt(c.get('beta'))}, γ={_fmt(c.get('gamma'))})"


def _schedule_text(schedule: Any) -> str:
    """'Every row was trained for 2 epochs and scored on 1000 validation images.' (or '')."""
    if not isinstance(schedule, Mapping):
        return ""
    epochs, n = schedule.get("epochs"), schedule.get("val_images")
    if not _finite(epochs):
        return "Every row was scored by the same evaluator." if schedule.get("evaluator") else ""
    text = f"Every row was trained for the same {epochs:g} epochs"
    text += f" and scored on the same {n:g} validation images" if _finite(n) else ""
    seeds = schedule.get("seeds")
    if _finite(seeds) and seeds > 1:
        text += (
            f", {seeds:g} times from different seeds: each accuracy is their mean, and its ± adds their spread"
            " to the validation set's binomial error"
        )
    return text + "."


def _family_schedule_note(family: Mapping[str, Any], members: list[dict[str, Any]]) -> str:
    raw_schedule = family.get("schedule")
    schedule: Mapping[str, Any] = raw_schedule if isinstance(raw_schedule, Mapping) else {}
    name = schedule.get("name")
    if name not in FAMILY_SCHEDULES:
        return (
            '<p class="sub">Every member was trained with the same schedule (a run of an older nasforge; '
            "larger members may be under-trained).</p>"
        )
    text = FAMILY_SCHEDULES[name].format(base=schedule.get("base_epochs", "?"), patience=schedule.get("patience", "?"))
    items = "".join(
        f"<li>φ = {_e(_fmt(m.get('phi')))}: {_e(m['stop_reason'])}</li>"
        for m in members
        if isinstance(m.get("stop_reason"), str)
    )
    test = family.get("test_dataset")
    test_note = (
        f" Test accuracy is on {_e(test)}, scored once per member at the end and never used to choose."
        if isinstance(test, str)
        else " Test accuracy is reported only, never used to choose."
    )
    return f'<p class="sub">Schedule “{_e(name)}”: {_e(text)}.{test_note} Why each member stopped:</p>' + (
        f'<ul class="sub">{items}</ul>' if items else ""
    )


def _comparison_table(comparison: Mapping[str, Any]) -> str:
    """φ = 0 against compound and single-dimension φ = 1, all trained with one schedule."""
    rows = _records(comparison.get("rows"))
    with_se = any(_finite(r.get("se")) for r in rows)
    cols = [
        c
        for c in ("phi", "depth_mult", "width_mult", "resolution", "params", "macs", "val_accuracy")
        if any(r.get(c) is not None for r in rows)
    ]
    head = ["method"] + ["φ" if c == "phi" else c for c in cols] + (["±"] if with_se else [])
    chosen = next((_network(r) for r in rows if r.get("method") == "compound"), None)
    body = [
        [r.get("method", "") + (" (the same network as compound)" if _twin(r, chosen) else "")]
        + [_fmt(r.get(c), c) for c in cols]
        + ([_fmt(r.get("se"))] if with_se else [])
        for r in rows
    ]
    note = _schedule_text(comparison.get("schedule")) or "Every row was trained with the same schedule."
    return (
        f'<p class="sub">The baseline beside compound scaling and each single dimension at the same MACs '
        f"budget (the coefficient search's rows). {_e(note)} The family table above has its own "
        f"schedule, so compare within a table, not across.</p>" + _table(head, body)
    )


def _scaling_summary(scaling: Mapping[str, Any]) -> dict[str, Any]:
    family = scaling.get("family") if isinstance(scaling.get("family"), Mapping) else None
    return {
        "family": scaling.get("family"),
        "coefficients": scaling.get("coefficients"),
        "curves": _scaling_curves(family) if family else {},
    }


# -- other sections -------------------------------------------------------------------------------
def _compare_section(runs: list[RunData]) -> str:
    rows = []
    for r in runs:
        best = r.best[0] if r.best else None
        rows.append(
            [
                r.label,
                _Html(f"<code>{_e(r.run_dir)}</code>"),
                _fmt(r.counts.get("total")),
                _fmt(r.counts.get("done")),
                _fmt(r.counts.get("failed")),
                _fmt(best.reward if best else None),
                _fmt(best.id if best else None),
                _fmt(r.wall_seconds),
            ]
        )
    return _table(
        ["run", "folder", "trials", "done", "failed", "best reward", "best trial", "wall seconds"], rows, left=(0, 1)
    )


def _error_summary(run: RunData, n: int = 10) -> list[tuple[str, int]]:
    errors = Counter(
        (t.error or "unknown error").strip().splitlines()[0] if (t.error or "").strip() else "unknown error"
        for t in run.trials
        if t.status == "failed"
    )
    return errors.most_common(n)


def _failures_section(run: RunData, errors: list[tuple[str, int]]) -> str:
    return f'<p class="sub">{_e(run.counts.get("failed", 0))} trials failed; the most common errors:</p>' + _table(
        ["error", "trials"], [[_Html(f"<code>{_e(_short(e, 200))}</code>"), str(n)] for e, n in errors]
    )


def _config_section(run: RunData) -> str:
    parts = [f"<pre>{_e(json.dumps(run.config, indent=2, sort_keys=True))}</pre>"]
    other = {k: v for k, v in run.markers.items() if k not in SCALING_MARKERS}
    if other:
        items = "".join(
            f"<li><code>{_e(k)}</code>: <code>{_e(_short(json.dumps(v, sort_keys=True), 400))}</code></li>"
            for k, v in sorted(other.items())
        )
        parts.append(f"<details><summary>run markers ({len(other)})</summary><ul>{items}</ul></details>")
    bad = {k: v for k, v in run.markers.items() if k in SCALING_MARKERS and not isinstance(v, Mapping)}
    if bad:
        parts.append(f"<pre>{_e(json.dumps(bad, indent=2, sort_keys=True))}</pre>")
    return "".join(parts)


def _trial_summary(t: Any, rank: int, arch_info: dict[str, Any] | None) -> dict[str, Any]:
    d = {
        "rank": rank,
        "trial": t.id,
        "key": t.key,
        "reward": t.reward,
        "metrics": t.metrics,
        "duration_s": t.duration,
        "seed": t.seed,
        "arch": t.arch,
    }
    if arch_info:
        d["files"] = arch_info
    return d


def _run_summary(r: RunData) -> dict[str, Any]:
    best = r.best[0] if r.best else None
    return {
        "label": r.label,
        "dir": str(r.run_dir),
        "strategy": r.strategy,
        "counts": r.counts,
        "best_reward": best.reward if best else None,
        "best_trial": best.id if best else None,
        "wall_seconds": r.wall_seconds,
    }


# ------------------------------------------------------------------------------------------------
# The page
# ------------------------------------------------------------------------------------------------
def _page(name: str, main: RunData, runs: list[RunData], sections: list[tuple[str, str, str]], notes: list[str]) -> str:
    created = datetime.fromtimestamp(main.created, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    c = main.counts
    best = main.best[0] if main.best else None
    wall = main.wall_seconds
    cards: list[tuple[str, object]] = [
        ("trials", c.get("total", 0)),
        ("done", c.get("done", 0)),
        ("failed", c.get("failed", 0)),
    ]
    unfinished = c.get("pending", 0) + c.get("running", 0)
    if unfinished:
        cards.append(("unfinished", unfinished))
    if c.get("reused"):
        cards.append(("reused results", c.get("reused")))
    cards.append(("best reward", _fmt(best.reward) if best else "–"))
    if wall is not None:
        cards.append(("wall time", _duration(wall)))
    card_html = "".join(
        f'<div class="card"><div class="v">{_e(v)}</div><div class="k">{_e(k)}</div></div>' for k, v in cards
    )
    nav = "".join(f'<a href="#{_e(a)}">{_e(h)}</a>' for a, h, _ in sections)
    strategy = main.strategy
    sub = f"run folder <code>{_e(main.run_dir)}</code> · created {_e(created)}"
    if strategy:
        sub += f" · strategy <code>{_e(strategy)}</code>"
    if main.nasforge_version:
        sub += f" · nasforge {_e(main.nasforge_version)}"
    body = "".join(f'<section id="{_e(a)}"><h2>{_e(h)}</h2>{b}</section>' for a, h, b in sections)
    unfinished_note = (
        f'<p class="warn">{unfinished} trials are unfinished: the run is still going or '
        "was interrupted (resume it to finish them).</p>"
        if unfinished
        else ""
    )
    notes_html = ""
    if notes:
        notes_html = (
            '<section id="notes"><h2>Notes</h2><ul>' + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul></section>"
        )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<meta name="generator" content="{_e(GENERATOR)} {_e(_version())}">
<title>{_e(name)} · nasforge report</title>
<style>{CSS}</style>
</head>
<body>
<header>
<h1>{_e(name)}</h1>
<p class="sub">{sub}</p>
<nav>{nav}<a href="summary.json">summary.json</a></nav>
<div class="cards">{card_html}</div>
{unfinished_note}
</header>
<main>
{body}
{notes_html}
</main>
<footer>Written by nasforge {_e(_version())}. Machine-readable: <a href="summary.json">summary.json</a>.</footer>
</body>
</html>
"""


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


__all__ = ["RunData", "load_run", "write_report"]

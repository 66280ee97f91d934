"""Writing matplotlib figures to image files the same way everywhere in the report.

The metadata that would change between runs (dates, the matplotlib version in a PNG) is left out
and SVG ids are salted with a fixed string, so the same input gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nasforge.errors import ConfigError

IMAGE_FORMATS: tuple[str, ...] = ("png", "svg", "pdf")

_STABLE_METADATA: dict[str, dict[str, Any]] = {
    "png": {"Software": None},
    "svg": {"Date": None},
    "pdf": {"CreationDate": None, "ModDate": None},
}


def image_format(path: Path) -> str:
    """The image format that `path`'s suffix names; `ConfigError` for anything but .png/.svg/.pdf."""
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in IMAGE_FORMATS:
        raise ConfigError(
            "path", f"unsupported image type {path.suffix or '(none)'!r}", [f".{f}" for f in IMAGE_FORMATS]
        )
    return fmt


def save_figure(fig: Any, path: str | Path, *, svg: bool = False) -> Path:
    """Save `fig` to `path` (its suffix gives the format) and, with `svg=True`, an .svg beside it."""
    import matplotlib

    path = Path(path)
    fmt = image_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    targets = [(path, fmt)]
    if svg and fmt != "svg":
        targets.append((path.with_suffix(".svg"), "svg"))
    with matplotlib.rc_context({"svg.hashsalt": "nasforge", "svg.fonttype": "path"}):
        for target, f in targets:
            fig.savefig(target, format=f, metadata=_STABLE_METADATA[f])
    return path


__all__ = ["IMAGE_FORMATS", "image_format", "save_figure"]

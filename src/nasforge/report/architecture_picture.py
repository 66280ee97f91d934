"""The picture of any architecture the report can draw: the one its search space asks for.

A space says which picture fits its architectures (`SearchSpace.drawing`): "cells" for a NASNet
cell pair (`nasforge.report.graph_render.render`), "stages" for a stage list such as MBConv or
ResNet stages (`nasforge.report.mbconv_pictures.stage_diagram`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nasforge.arch.nasnet import Cell, NASNetArchitecture
from nasforge.errors import ConfigError
from nasforge.report.graph_render import render
from nasforge.report.mbconv_pictures import stage_diagram


def draw_architecture(
    arch: Any, path: str | Path, *, renderer: str = "auto", title: str | None = None, **kwargs: Any
) -> str:
    """Draw `arch` to `path`: NASNet cells via `render`, a stage list via `stage_diagram` (extra
    keyword arguments go to it, e.g. `space=`, the architecture's space, which describes its
    stages). The architecture is drawn as its space asks: the `space=` given, or the space an
    architecture JSON names (or NASNet's, for a JSON with a "normal" cell); other values are drawn
    as cells when they are cells, else as stages. Returns the renderer used ("dot" or
    "matplotlib")."""
    space = kwargs.get("space")
    if space is None and isinstance(arch, Mapping) and ("space" in arch or "normal" in arch):
        from nasforge.spaces import space_for_json

        space = space_for_json(dict(arch))
    if space is not None:
        drawing = space.drawing
    else:
        drawing = "cells" if isinstance(arch, (NASNetArchitecture, Cell)) else "stages"
    if drawing == "cells":
        kwargs.pop("space", None)
        return render(arch, path, renderer=renderer, title=title, **kwargs)
    if drawing != "stages":
        name = space.name if space is not None else type(arch).__name__
        raise ConfigError("architecture", f"no picture of {name!r} architectures", ["cells", "stages"])
    if space is not None:
        kwargs["space"] = space
    stage_diagram(arch, path, title=title, **kwargs)
    return "matplotlib"


__all__ = ["draw_architecture"]

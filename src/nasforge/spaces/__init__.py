"""Search spaces: sets of architectures with the decision sequence strategies search over."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nasforge.errors import ArchitectureError
from nasforge.spaces.base import Decision, SearchSpace
from nasforge.spaces.mbconv import MBConvSpace
from nasforge.spaces.nasnet import Block, Cell, NASNetArchitecture, NASNetSpace

#: space name (the "space" field of an architecture's JSON) -> factory of a default space.
SPACES: dict[str, Callable[[], SearchSpace]] = {"nasnet": NASNetSpace}


def register_space(name: str, factory: Callable[[], SearchSpace]) -> None:
    SPACES[name] = factory


from nasforge.spaces.layerwise import LayerwiseSpace  # noqa: E402  (tabular and layer-wise spaces, issue 4)
from nasforge.spaces.macro import MacroSpace  # noqa: E402
from nasforge.spaces.nb201 import NB201Space  # noqa: E402

register_space("nb201", NB201Space)
register_space("macro", MacroSpace)
register_space("layerwise", LayerwiseSpace)


register_space("mbconv", MBConvSpace)


def space_for_json(data: Any) -> SearchSpace:
    """The space an architecture JSON belongs to, from its "space" field (NASNet if absent).

    NASNet cells of another block count (e.g. DARTS's 4) get a space of that size.
    """
    name = data.get("space", "nasnet") if isinstance(data, dict) else None
    if name not in SPACES:
        raise ArchitectureError("space", f"unknown space {name!r}", sorted(SPACES))
    if name == "nasnet":
        normal = data.get("normal")
        if isinstance(normal, dict) and isinstance(normal.get("blocks"), list) and normal["blocks"]:
            return NASNetSpace(num_blocks=len(normal["blocks"]))
    return SPACES[name]()


__all__ = ["Block", "Cell", "Decision", "NASNetArchitecture", "NASNetSpace", "SearchSpace", "SPACES",
           "register_space", "space_for_json"]

"""Search spaces: sets of architectures with the decision sequence strategies search over."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nasforge.errors import ArchitectureError
from nasforge.spaces.base import Decision, SearchSpace
from nasforge.spaces.layerwise import LayerwiseSpace
from nasforge.spaces.macro import MacroSpace
from nasforge.spaces.mbconv import MBConvSpace
from nasforge.spaces.nasnet import Block, Cell, NASNetArchitecture, NASNetSpace
from nasforge.spaces.nb201 import NB201Space

#: space name (the "space" field of an architecture's JSON) -> factory of a default space.
SPACES: dict[str, Callable[..., SearchSpace]] = {
    "nasnet": NASNetSpace,
    "mbconv": MBConvSpace,
    "nb201": NB201Space,
    "macro": MacroSpace,
    "layerwise": LayerwiseSpace,
}


def register_space(name: str, factory: Callable[..., SearchSpace]) -> None:
    SPACES[name] = factory


def space_for_json(data: Any) -> SearchSpace:
    """The space an architecture JSON belongs to, from its "space" field (NASNet if absent).

    Spaces whose size shows in the JSON (NASNet cells of 4 blocks, a layer-wise net of depth 8)
    provide a `for_json` class method that sizes the space from the data.
    """
    name = data.get("space", "nasnet") if isinstance(data, dict) else None
    if not isinstance(name, str) or name not in SPACES:
        raise ArchitectureError("space", f"unknown space {name!r}", sorted(SPACES))
    factory = SPACES[name]
    for_json = getattr(factory, "for_json", None)
    return for_json(data) if callable(for_json) else factory()


__all__ = ["Block", "Cell", "Decision", "LayerwiseSpace", "MBConvSpace", "MacroSpace", "NASNetArchitecture",
           "NASNetSpace", "NB201Space", "SearchSpace", "SPACES", "register_space", "space_for_json"]

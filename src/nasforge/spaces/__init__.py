"""Search spaces: sets of architectures with the decision sequence strategies search over."""

from __future__ import annotations

from typing import Any

from nasforge.arch import DEFAULT_SPACE, space_name_of
from nasforge.spaces.base import SPACES, Decision, SearchSpace
from nasforge.spaces.layerwise import LayerwiseSpace
from nasforge.spaces.macro import MacroSpace
from nasforge.spaces.mbconv import MBConvSpace
from nasforge.spaces.nasnet import NASNetSpace
from nasforge.spaces.nb201 import NB201Space


def space_for_json(data: Any) -> SearchSpace:
    """The space an architecture JSON belongs to, from its "space" field (NASNet if absent).

    Spaces whose size shows in the JSON (NASNet cells of 4 blocks, a layer-wise net of depth 8)
    provide a `for_json` class method that sizes the space from the data.
    """
    factory = SPACES.entry(space_name_of(data) if isinstance(data, dict) else None).factory
    for_json = getattr(factory, "for_json", None)
    return for_json(data) if callable(for_json) else factory()


SPACES.register("resnet", "nasforge.spaces.resnet:ResNetSpace", description="ResNet-style stages (He et al. 2016)")
__all__ = [
    "Decision",
    "LayerwiseSpace",
    "MBConvSpace",
    "MacroSpace",
    "NASNetSpace",
    "NB201Space",
    "SearchSpace",
    "SPACES",
    "DEFAULT_SPACE",
    "space_for_json",
    "space_name_of",
]

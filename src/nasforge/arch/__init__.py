"""Architectures as values: frozen, hashable dataclasses with no torch and no search logic.

They sit at the bottom of the package (beside `nasforge.nn`) so that networks (`nasforge.models`)
and spaces (`nasforge.spaces`) can both use them without importing each other: a space decides,
validates and keys architectures; a model builds the network of one.
"""

from __future__ import annotations

from typing import Any

from nasforge.arch.layerwise import Layer, LayerwiseArchitecture
from nasforge.arch.macro import MacroArchitecture
from nasforge.arch.mbconv import MBConvArchitecture, MBConvStage
from nasforge.arch.nasnet import Block, Cell, NASNetArchitecture
from nasforge.arch.nb201 import NB201Cell

#: the space of an architecture JSON without a "space" field (NASNet cells came first)
DEFAULT_SPACE = "nasnet"


def space_name_of(data: Any) -> str:
    """The space an architecture JSON names (`DEFAULT_SPACE` when it names none)."""
    return data.get("space", DEFAULT_SPACE) if isinstance(data, dict) else DEFAULT_SPACE


__all__ = [
    "DEFAULT_SPACE",
    "Block",
    "Cell",
    "Layer",
    "LayerwiseArchitecture",
    "MBConvArchitecture",
    "MBConvStage",
    "MacroArchitecture",
    "NASNetArchitecture",
    "NB201Cell",
    "space_name_of",
]

"""Architectures as values: frozen, hashable dataclasses with no torch and no search logic.

They sit at the bottom of the package (beside `nasforge.nn`) so that networks (`nasforge.models`)
and spaces (`nasforge.spaces`) can both use them without importing each other: a space decides,
validates and keys architectures; a model builds the network of one.
"""

from __future__ import annotations

from nasforge.arch.layerwise import Layer, LayerwiseArchitecture
from nasforge.arch.macro import MacroArchitecture
from nasforge.arch.mbconv import MBConvArchitecture, MBConvStage
from nasforge.arch.nasnet import Block, Cell, NASNetArchitecture
from nasforge.arch.nb201 import NB201Cell

__all__ = [
    "Block",
    "Cell",
    "Layer",
    "LayerwiseArchitecture",
    "MBConvArchitecture",
    "MBConvStage",
    "MacroArchitecture",
    "NASNetArchitecture",
    "NB201Cell",
]

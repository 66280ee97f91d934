"""Scalable baselines: anything that maps (width multiplier, depth multiplier, resolution) to a model.

A `Family` knows its baseline (width 1, depth 1, `base_resolution`) and how one multiplier becomes
concrete channel counts and layer counts. Three come with nasforge:

- `EfficientNetFamily`: an EfficientNet stage table (B0's by default); widths through
  `round_filters`, repeats through `round_repeats`.
- `NASNetFamily`: a NASNet cell pair; width scales F (rounded to a multiple of 4, since factorized
  reductions halve F twice over), depth scales N (ceiling).
- `MBConvFamily`: an architecture of the MBConv search space, built as an EfficientNet.

`FAMILIES.register(name, factory)` adds your own; `get_family(name, **kwargs)` builds one by name, and
`family_from(base)` turns a registered model name, a family name or an architecture file into a
family, which is what the `nasforge scale` commands take.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from nasforge.errors import ArchitectureError, ConfigError
from nasforge.models.registry import ModelSpec
from nasforge.nn.mbconv import round_repeats
from nasforge.registry import Registry, factory_parameters
from nasforge.spaces.base import SearchSpace

if TYPE_CHECKING:
    from nasforge.spaces.mbconv import MBConvSpace


@dataclass(frozen=True)
class ScalingInfo:
    """How a family member was made; attached to every member as `model.scaling`."""

    family: str
    width_mult: float
    depth_mult: float
    resolution: int
    base_resolution: int

    @property
    def resolution_mult(self) -> float:
        return self.resolution / self.base_resolution


def _check_positive(name: str, value: Any, integer: bool = False) -> None:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not math.isfinite(value) or value <= 0:
        kind = "a positive integer" if integer else "a positive number"
        raise ConfigError(name, f"must be {kind}, got {value!r}")


class Family(ABC):
    """A scalable baseline.

    Subclasses implement `_build`; `build` checks the multipliers, fills in the defaults and tags
    the model with a `ScalingInfo`.
    """

    name = "family"

    def __init__(self, base_resolution: int, num_classes: int):
        _check_positive("base_resolution", base_resolution, integer=True)
        _check_positive("num_classes", num_classes, integer=True)
        self.base_resolution = base_resolution
        self.num_classes = num_classes

    @abstractmethod
    def _build(
        self, width_mult: float, depth_mult: float, resolution: int, num_classes: int, **network: Any
    ) -> nn.Module:
        """The member network (already checked arguments)."""

    def build(
        self,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        resolution: int | None = None,
        num_classes: int | None = None,
        **network: Any,
    ) -> nn.Module:
        """The member with these multipliers at `resolution` (default: the base resolution)."""
        _check_positive("width_mult", width_mult)
        _check_positive("depth_mult", depth_mult)
        resolution = self.base_resolution if resolution is None else resolution
        _check_positive("resolution", resolution, integer=True)
        num_classes = self.num_classes if num_classes is None else num_classes
        _check_positive("num_classes", num_classes, integer=True)
        model = self._build(float(width_mult), float(depth_mult), resolution, num_classes, **network)
        # torch's stub types Module.__setattr__ values as Tensor | Module; any value is a plain attribute
        model.scaling = ScalingInfo(  # type: ignore[assignment]
            self.name, float(width_mult), float(depth_mult), resolution, self.base_resolution
        )
        return model

    def describe(self, width_mult: float = 1.0, depth_mult: float = 1.0) -> dict[str, Any]:
        """The concrete widths and depths a member gets (JSON-able; families may say more)."""
        return {}

    @classmethod
    def from_model(cls, spec: ModelSpec, num_classes: int) -> Family | None:
        """The family grown from registered model `spec` (one of this family's), or None when
        this family cannot start from a registered model."""
        return None

    def config(self) -> dict[str, Any]:
        """JSON-able description (stored with a run so a resume can check it is unchanged)."""
        return {"family": self.name, "base_resolution": self.base_resolution, "num_classes": self.num_classes}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({json.dumps(self.config(), sort_keys=True, default=str)})"


class EfficientNetFamily(Family):
    """An EfficientNet stage table (B0 by default) scaled by `round_filters` / `round_repeats`.

    `base_width`/`base_depth` let a published member (say B3: 1.2 / 1.4) be the baseline: a member's
    multipliers are the base ones times the requested ones.
    """

    name = "efficientnet"

    @classmethod
    def from_model(cls, spec: ModelSpec, num_classes: int) -> EfficientNetFamily:
        d = dict(spec.defaults)
        return cls(
            d.pop("stages", None),
            base_resolution=spec.resolution,
            num_classes=num_classes,
            base_width=d.pop("width_mult", 1.0),
            base_depth=d.pop("depth_mult", 1.0),
            **d,
        )

    def __init__(
        self,
        stages: Sequence[Any] | None = None,
        base_resolution: int = 224,
        num_classes: int = 1000,
        base_width: float = 1.0,
        base_depth: float = 1.0,
        dropout: float = 0.2,
        drop_connect_rate: float = 0.2,
        **network: Any,
    ):
        from nasforge.models.efficientnet import B0_STAGES, stages_from

        super().__init__(base_resolution, num_classes)
        _check_positive("base_width", base_width)
        _check_positive("base_depth", base_depth)
        self.stages = stages_from(B0_STAGES if stages is None else stages)
        self.base_width, self.base_depth = float(base_width), float(base_depth)
        self.dropout, self.drop_connect_rate = dropout, drop_connect_rate
        self.network = dict(network)

    def _build(self, width_mult, depth_mult, resolution, num_classes, **network):
        from nasforge.models.efficientnet import EfficientNet

        config = {"dropout": self.dropout, "drop_connect_rate": self.drop_connect_rate, **self.network, **network}
        return EfficientNet(
            self.stages,
            width_mult=self.base_width * width_mult,
            depth_mult=self.base_depth * depth_mult,
            resolution=resolution,
            num_classes=num_classes,
            **config,
        )

    def describe(self, width_mult: float = 1.0, depth_mult: float = 1.0) -> dict[str, Any]:
        from nasforge.models.efficientnet import efficientnet_plan

        kw = {k: self.network[k] for k in ("stem_channels", "head_channels", "divisor") if k in self.network}
        plan = efficientnet_plan(self.stages, self.base_width * width_mult, self.base_depth * depth_mult, **kw)
        return {
            "stem": plan.stem,
            "channels": list(plan.channels),
            "repeats": list(plan.repeats),
            "head": plan.head,
            "blocks": plan.num_blocks,
        }

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "stages": [s.to_dict() for s in self.stages],
            "base_width": self.base_width,
            "base_depth": self.base_depth,
            "dropout": self.dropout,
            "drop_connect_rate": self.drop_connect_rate,
            "network": self.network,
        }


def round_nasnet_filters(num_filters: int, width_mult: float, multiple: int = 4) -> int:
    """F x width_mult to the nearest multiple of 4 (at least 4): factorized reductions halve F
    twice (imagenet stem cells use F/4), so F must stay divisible by 4."""
    return max(multiple, int(math.floor(num_filters * width_mult / multiple + 0.5)) * multiple)


class NASNetFamily(Family):
    """A NASNet network of a cell pair: width scales F, depth scales N (cells per stack)."""

    name = "nasnet"

    @classmethod
    def from_model(cls, spec: ModelSpec, num_classes: int) -> NASNetFamily:
        arch = getattr(spec.builder, "args", (None,))[0]  # the registered builder is partial(NASNet, arch)
        return cls(arch, base_resolution=spec.resolution, num_classes=num_classes, **dict(spec.defaults))

    def __init__(
        self,
        arch: Any = None,
        num_cells: int = 6,
        num_filters: int = 32,
        stem: str = "cifar",
        base_resolution: int = 32,
        num_classes: int = 10,
        **network: Any,
    ):
        from nasforge.arch.nasnet import NASNetArchitecture
        from nasforge.spaces.nasnet import NASNetSpace

        super().__init__(base_resolution, num_classes)
        if arch is None:
            from nasforge.arch.nasnet_cells import NASNET_A

            arch = NASNET_A
        if not isinstance(arch, NASNetArchitecture):
            raise ArchitectureError("architecture", f"expected a NASNetArchitecture, got {type(arch).__name__}")
        NASNetSpace(num_blocks=len(arch.normal.blocks)).validate(arch)
        _check_positive("num_cells", num_cells, integer=True)
        _check_positive("num_filters", num_filters, integer=True)
        self.arch = arch
        self.num_cells, self.num_filters, self.stem = num_cells, num_filters, stem
        self.network = dict(network)

    def scaled(self, width_mult: float, depth_mult: float) -> tuple[int, int]:
        """(N, F) of a member."""
        return round_repeats(self.num_cells, depth_mult), round_nasnet_filters(self.num_filters, width_mult)

    def _build(self, width_mult, depth_mult, resolution, num_classes, **network):
        from nasforge.models.nasnet import NASNet

        n, f = self.scaled(width_mult, depth_mult)
        return NASNet(
            self.arch,
            num_classes=num_classes,
            num_cells=n,
            num_filters=f,
            stem=self.stem,
            resolution=resolution,
            **{**self.network, **network},
        )

    def describe(self, width_mult: float = 1.0, depth_mult: float = 1.0) -> dict[str, Any]:
        n, f = self.scaled(width_mult, depth_mult)
        return {"num_cells": n, "num_filters": f}

    def config(self) -> dict[str, Any]:
        from nasforge.spaces.nasnet import NASNetSpace

        space = NASNetSpace(num_blocks=len(self.arch.normal.blocks))
        return {
            **super().config(),
            "arch": space.to_json(self.arch),
            "num_cells": self.num_cells,
            "num_filters": self.num_filters,
            "stem": self.stem,
            "network": self.network,
        }


class MBConvFamily(Family):
    """An MBConv-space architecture (EfficientNet-B0 by default) as a scalable baseline."""

    name = "mbconv"

    def __init__(
        self,
        arch: Any = None,
        space: MBConvSpace | None = None,
        base_resolution: int = 224,
        num_classes: int = 1000,
        dropout: float = 0.2,
        drop_connect_rate: float = 0.2,
        **network: Any,
    ):
        from nasforge.arch.mbconv import B0_ARCH
        from nasforge.spaces.mbconv import MBConvSpace

        super().__init__(base_resolution, num_classes)
        self.space = space if space is not None else MBConvSpace()
        self.arch = self.space.validate(B0_ARCH if arch is None else arch)
        self.dropout, self.drop_connect_rate = dropout, drop_connect_rate
        self.network = dict(network)

    def _build(self, width_mult, depth_mult, resolution, num_classes, **network):
        config = {"dropout": self.dropout, "drop_connect_rate": self.drop_connect_rate, **self.network, **network}
        return self.space.build(
            self.arch,
            num_classes=num_classes,
            width_mult=width_mult,
            depth_mult=depth_mult,
            resolution=resolution,
            **config,
        )

    def describe(self, width_mult: float = 1.0, depth_mult: float = 1.0) -> dict[str, Any]:
        return EfficientNetFamily(self.space.stage_specs(self.arch)).describe(width_mult, depth_mult)

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "arch": self.space.to_json(self.arch),
            "dropout": self.dropout,
            "drop_connect_rate": self.drop_connect_rate,
            "network": self.network,
        }


# -- registry ------------------------------------------------------------------------------------------
#: family name (`nasforge scale --base NAME`) -> factory; families take keyword options only.
FAMILIES: Registry[Family] = Registry("family")
FAMILIES.register("efficientnet", EfficientNetFamily)
FAMILIES.register("nasnet", NASNetFamily)
FAMILIES.register("mbconv", MBConvFamily)


def get_family(name: str, **kwargs: Any) -> Family:
    return FAMILIES.create(name, **kwargs)


def family_from_model(name: str, num_classes: int | None = None) -> Family:
    """The family whose baseline is registered model `name` (an EfficientNet or NASNet entry)."""
    from nasforge.models import get_model_spec

    spec = get_model_spec(name)
    classes = spec.num_classes if num_classes is None else num_classes
    factory = FAMILIES[spec.family] if spec.family in FAMILIES else None
    family = factory.from_model(spec, classes) if isinstance(factory, type) and issubclass(factory, Family) else None
    if family is None:
        raise ConfigError(
            "base", f"model {name!r} is of family {spec.family!r}, which has no scaling rule", scalable_models()
        )
    return family


def scalable_models() -> list[str]:
    """The registered models a family can be grown from."""
    from nasforge.models import get_model_spec, list_models

    return [m for m in list_models() if _grows_from_models(get_model_spec(m).family)]


def _grows_from_models(family: str) -> bool:
    factory = FAMILIES[family] if family in FAMILIES else None
    return isinstance(factory, type) and issubclass(factory, Family) and factory.from_model is not Family.from_model


def scalable_spaces() -> list[str]:
    """The registered spaces whose architectures have a scaling rule (a `scaling_family`)."""
    from nasforge.spaces import SPACES

    return [n for n in SPACES if getattr(SPACES[n], "scaling_family", None)]


def family_for(space: SearchSpace, arch: Any, **options: Any) -> Family:
    """The family that scales `arch`, of the kind its space names (`SearchSpace.scaling_family`);
    `options` are the family's (base resolution, classes) and its network's."""
    name = getattr(space, "scaling_family", None)
    if name is None:
        raise ConfigError("base", f"architectures of space {space.name!r} have no scaling rule", scalable_spaces())
    factory = FAMILIES[name]
    if "space" in (factory_parameters(factory) or {}):
        options["space"] = space
    return factory(arch, **options)


def family_from_architecture(
    space: SearchSpace, arch: Any, num_classes: int | None = None, base_resolution: int | None = None
) -> Family:
    """A family from an architecture of a space that has a scaling rule."""
    kw: dict[str, Any] = {}
    if num_classes is not None:
        kw["num_classes"] = num_classes
    if base_resolution is not None:
        kw["base_resolution"] = base_resolution
    return family_for(space, arch, **kw)


def family_from(
    base: str | Path | Family, num_classes: int | None = None, base_resolution: int | None = None
) -> Family:
    """A registered model name, a family name, or a path to an architecture JSON file -> a family."""
    if isinstance(base, Family):
        return base
    from nasforge.models import list_models

    text = str(base)
    if text in list_models():
        family = family_from_model(text, num_classes)
        if base_resolution is not None:
            family.base_resolution = base_resolution
        return family
    if text in FAMILIES:
        kw: dict[str, Any] = {}
        if num_classes is not None:
            kw["num_classes"] = num_classes
        if base_resolution is not None:
            kw["base_resolution"] = base_resolution
        return get_family(text, **kw)
    path = Path(text)
    if path.is_file():
        from nasforge.spaces import space_for_json

        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArchitectureError(str(path), f"not valid JSON ({exc})") from None
        except RecursionError:
            raise ArchitectureError(str(path), "not valid JSON (nested too deeply)") from None
        space = space_for_json(data)
        return family_from_architecture(space, space.from_json(data), num_classes, base_resolution)
    raise ConfigError(
        "base",
        f"{text!r} is neither a registered model, a family nor an architecture file",
        sorted(FAMILIES) + scalable_models(),
    )


__all__ = [
    "FAMILIES",
    "EfficientNetFamily",
    "Family",
    "MBConvFamily",
    "NASNetFamily",
    "ScalingInfo",
    "family_for",
    "family_from",
    "family_from_architecture",
    "family_from_model",
    "get_family",
    "round_nasnet_filters",
]

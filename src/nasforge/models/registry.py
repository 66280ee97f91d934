"""Create models by name, as `timm.create_model` does.

A registered entry is a builder function plus its published defaults (and native resolution);
`create(name, num_classes=..., **overrides)` builds it with any default replaced. Builders live next
to their networks and register themselves when `nasforge.models` is imported.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from nasforge.registry import Registry


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]
    resolution: int
    num_classes: int
    family: str
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)

    def options(self) -> list[str]:
        """Keyword arguments the builder accepts (what `create` lets a caller override)."""
        return MODELS.options(self.name)


#: model name -> builder, with its `ModelSpec` (published defaults, resolution) as ``info["spec"]``.
MODELS: Registry[nn.Module] = Registry("model")


def register_model(
    name: str,
    builder: Callable[..., nn.Module],
    *,
    resolution: int,
    num_classes: int,
    family: str,
    description: str = "",
    overwrite: bool = False,
    **defaults: Any,
) -> ModelSpec:
    spec = ModelSpec(name, builder, resolution, num_classes, family, description, dict(defaults))
    MODELS.register(name, builder, description=description, overwrite=overwrite, spec=spec)
    return spec


def list_models(pattern: str | None = None) -> list[str]:
    names = sorted(MODELS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def get_model_spec(name: str) -> ModelSpec:
    return MODELS.entry(name).info["spec"]


def create(name: str, num_classes: int | None = None, **overrides: Any) -> nn.Module:
    """Build registered model `name`; `overrides` replace its published defaults."""
    spec = get_model_spec(name)
    MODELS.check_options(name, overrides, complete=False)
    allowed = spec.options()
    kwargs = {**spec.defaults, "resolution": spec.resolution, **overrides}
    kwargs["num_classes"] = spec.num_classes if num_classes is None else num_classes
    return spec.builder(**{k: v for k, v in kwargs.items() if k in allowed})

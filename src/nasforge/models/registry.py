"""Create models by name, as `timm.create_model` does.

A registered entry is a builder function plus its published defaults (and native resolution);
`create(name, num_classes=..., **overrides)` builds it with any default replaced. Builders live next
to their networks and register themselves when `nasforge.models` is imported.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from nasforge.errors import ConfigError, UnknownNameError


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
        return [p for p in inspect.signature(self.builder).parameters if p != "arch"]


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, builder: Callable[..., nn.Module], *, resolution: int, num_classes: int,
                   family: str, description: str = "", **defaults: Any) -> ModelSpec:
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    spec = ModelSpec(name, builder, resolution, num_classes, family, description, dict(defaults))
    _REGISTRY[name] = spec
    return spec


def list_models(pattern: str | None = None) -> list[str]:
    names = sorted(_REGISTRY)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def get_model_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.3)
        raise UnknownNameError("model", name, close or list_models()[:5]) from None


def create(name: str, num_classes: int | None = None, **overrides: Any) -> nn.Module:
    """Build registered model `name`; `overrides` replace its published defaults."""
    spec = get_model_spec(name)
    allowed = spec.options()
    for key in overrides:
        if key not in allowed:
            raise ConfigError(key, f"not an option of model {name!r}", allowed)
    kwargs = {**spec.defaults, "resolution": spec.resolution, **overrides}
    kwargs["num_classes"] = spec.num_classes if num_classes is None else num_classes
    return spec.builder(**{k: v for k, v in kwargs.items() if k in allowed})

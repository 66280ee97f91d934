"""Networks built from architectures, and the by-name registry."""

from nasforge.models import efficientnet as _efficientnet  # noqa: F401  (registers EfficientNet B0-B8, L2)
from nasforge.models import nasnet as _nasnet  # noqa: F401  (registers the NASNet family)
from nasforge.models.registry import ModelSpec, create, get_model_spec, list_models, register_model

__all__ = ["ModelSpec", "create", "get_model_spec", "list_models", "register_model"]

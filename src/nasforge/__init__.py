"""nasforge: find convolutional architectures (NASNet-style search) and scale them (EfficientNet).

The top-level package stays light: importing it does not build any model or import torch. Reach
for the submodules (`nasforge.spaces`, `nasforge.models`, `nasforge.profile`, ...) for the real
work; `nasforge.deploy(model, example_input)` (an inference-only copy of a network, see
`nasforge.deploy`) is imported on first use.
"""

from typing import Any

from nasforge.errors import NasforgeError

__all__ = ["NasforgeError", "__version__", "deploy"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Lazy top-level names (PEP 562), so that `import nasforge` and `nasforge --help` load no torch.

    ``nasforge.deploy`` is the submodule, which is callable: ``nasforge.deploy(model, x)`` calls
    `nasforge.deploy.deploy`, and ``import nasforge.deploy as m`` still gives the module.
    """
    if name == "deploy":
        import importlib

        return importlib.import_module("nasforge.deploy")  # binds itself here as it loads
    raise AttributeError(f"module 'nasforge' has no attribute {name!r}")

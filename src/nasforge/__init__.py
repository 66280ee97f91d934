"""nasforge: find convolutional architectures (NASNet-style search) and scale them (EfficientNet).

The top-level package stays light: importing it does not build any model. Reach for the
submodules (`nasforge.spaces`, `nasforge.models`, `nasforge.profile`, ...) for the real work.
"""

from nasforge.errors import NasforgeError

__all__ = ["NasforgeError", "__version__"]
__version__ = "0.1.0"

"""neurodeploy: from a trained spiking network to a neuromorphic chip.

Data flows one way: ``nn → train → quantize → lower → sim | export → cli``.
"""

__version__ = "0.1.0"

from neurodeploy.errors import NeurodeployError  # noqa: E402

__all__ = ["NeurodeployError", "__version__"]

"""Reference architectures built from a spec stored in every checkpoint."""

from neurodeploy.models.net import SpikingNet, build_model
from neurodeploy.models.spec import ARCHITECTURES, ModelSpec

__all__ = ["ARCHITECTURES", "ModelSpec", "SpikingNet", "build_model"]

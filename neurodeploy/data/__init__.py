"""Datasets: the embedded digits set, an MNIST IDX reader, torchvision and tonic adapters.

Every loader returns a :class:`Dataset` with float32 inputs and int64 labels. Static images are
``[N, C, H, W]`` in [0, 1]; event data binned into frames is ``[N, T, C, H, W]`` (``T`` time steps,
``C`` polarities) with ``Dataset.time_steps == T``.
"""

from neurodeploy.data.dataset import Dataset
from neurodeploy.data.events import bin_events
from neurodeploy.data.idx import read_idx
from neurodeploy.data.loaders import make_loaders
from neurodeploy.data.registry import DATASETS, load_dataset

__all__ = ["DATASETS", "Dataset", "bin_events", "load_dataset", "make_loaders", "read_idx"]

"""User-facing errors.

Every problem a user can cause (bad file, bad option, a network that does not fit a chip) is raised
as a :class:`NeurodeployError` subclass whose message is one line naming the problem. The CLI prints
that line and exits non-zero; library users can catch the class.
"""

from __future__ import annotations


class NeurodeployError(Exception):
    """Base class of every error caused by user input; ``str(err)`` is a one-line explanation."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class ConfigError(NeurodeployError):
    """A configuration, option or name is invalid (unknown key, wrong type, out-of-range value)."""


class DataError(NeurodeployError):
    """A dataset is missing, malformed or of the wrong shape."""


class CheckpointError(NeurodeployError):
    """A checkpoint file is corrupt, truncated or was not written by neurodeploy."""


class ProfileError(NeurodeployError):
    """A hardware profile is malformed or unknown."""


class UnsupportedError(NeurodeployError):
    """A layer or feature cannot be expressed for the requested target."""


class FitError(NeurodeployError):
    """A network does not fit the limits of a hardware profile."""


class FormatError(NeurodeployError):
    """An input file (NIR, HDF5, ONNX) is corrupt, truncated or foreign."""


class OutputError(NeurodeployError):
    """An output cannot be written: it would replace an input or another output, a folder or file is in
    the way, the folder is not writable, or the disk is full."""


class ResourceError(NeurodeployError):
    """The machine lacks what a request needs (memory for a model or a batch)."""


class NumericError(NeurodeployError):
    """A number is not finite or outside the range where it means anything (NaN weights, a diverged
    loss)."""

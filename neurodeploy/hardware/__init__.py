"""Hardware profiles (chip number formats, timing, limits, energy) and resource fitting.

Profiles are data: TOML files validated on load (:mod:`.profile`). :mod:`.structure` describes a
deployment graph's connectivity and :mod:`.fit` checks it against a profile's limits.
"""

from neurodeploy.hardware.fit import FitReport, LayerFit, check_fit, fit_report
from neurodeploy.hardware.profile import (
    Energy,
    HardwareProfile,
    InputFormat,
    LayerSupport,
    Limits,
    NeuronFormat,
    ProfileInfo,
    StateFormat,
    Timing,
    WeightFormat,
    list_profiles,
    load_profile,
    parse_profile,
    parse_profile_text,
    validate_profile_file,
)
from neurodeploy.hardware.structure import LayerStructure, layer_structure

__all__ = [
    "Energy",
    "FitReport",
    "HardwareProfile",
    "InputFormat",
    "LayerFit",
    "LayerStructure",
    "LayerSupport",
    "Limits",
    "NeuronFormat",
    "ProfileInfo",
    "StateFormat",
    "Timing",
    "WeightFormat",
    "check_fit",
    "fit_report",
    "layer_structure",
    "list_profiles",
    "load_profile",
    "parse_profile",
    "parse_profile_text",
    "validate_profile_file",
]

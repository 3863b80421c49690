"""Lava netx HDF5 export and import: the ``loihi`` family's writer, kept at this import path.

The writer and reader live with the family, in :mod:`neurodeploy.families.loihi.netx`.
"""

from neurodeploy.families.loihi.netx import (  # noqa: F401  (public names of the writer)
    NETX_FORMAT,
    NETX_VERSION,
    NEVER_SPIKE_VTH,
    DenseMapping,
    NetxExport,
    export_checkpoint_netx,
    export_netx,
    lower_checkpoint,
    netx_dense_mapping,
    read_netx,
)

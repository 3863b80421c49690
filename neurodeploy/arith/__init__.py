"""Backend-neutral integer primitives shared by every chip family (numpy and torch).

:mod:`.ops` (array primitives), :mod:`.overflow` (wrap/saturate rules), :mod:`.spiking`
(threshold and reset), :mod:`.synapse` (exact integer synapse kernels) and :mod:`.jitter`
(spike-time jitter). A chip family's own arithmetic lives in its package under
:mod:`neurodeploy.families`.
"""

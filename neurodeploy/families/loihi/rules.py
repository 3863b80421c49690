"""Design rules of the ``loihi`` family (beyond the rules every family shares)."""

from __future__ import annotations

from neurodeploy.families.loihi.lowering import decay_format
from neurodeploy.families.rules import Rule

RULES = (
    Rule("decay_format", "profile", decay_format, ("lower",)),
)

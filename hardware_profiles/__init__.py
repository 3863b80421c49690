"""Hardware profiles shipped with neurodeploy (TOML files, one per chip)."""

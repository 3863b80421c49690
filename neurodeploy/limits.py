"""Bounds that every boundary shares: the command line, TOML run files and the Python configs."""

from neurodeploy.errors import ConfigError

#: The largest seed every random generator accepts (numpy's limit); seeds start at 0.
MAX_SEED = 2**32 - 1
#: The most passes over a training set one run may ask for.
MAX_EPOCHS = 100_000
#: The largest batch one optimiser step may take.
MAX_BATCH_SIZE = 1_000_000


def check_run_bounds(prefix: str, *, epochs: int, batch_size: int, seed: int) -> None:
    """Refuse, in one line naming ``prefix + field``, epochs, a batch size or a seed outside the bounds."""
    for name, value, lo, hi in (("epochs", epochs, 1, MAX_EPOCHS), ("batch_size", batch_size, 1, MAX_BATCH_SIZE),
                                ("seed", seed, 0, MAX_SEED)):
        if not lo <= value <= hi:
            raise ConfigError(f"{prefix}{name} must be in {lo}..{hi}, got {value}")

"""Bounds that every boundary shares: the command line, TOML run files and the Python configs."""

#: The largest seed every random generator accepts (numpy's limit); seeds start at 0.
MAX_SEED = 2**32 - 1
#: The most passes over a training set one run may ask for.
MAX_EPOCHS = 100_000
#: The largest batch one optimiser step may take.
MAX_BATCH_SIZE = 1_000_000

"""Binning of address events into frames with a time axis.

Events are a numpy structured array with fields ``x``, ``t``, ``p`` and optionally ``y`` (as tonic
returns them; a missing ``y`` means a one-row sensor). The sensor size follows tonic's convention
``(W, H, P)``: width (x range), height (y range), number of polarities.

Binning rule for ``time_steps = T``: the window is ``[t_start, t_start + duration]`` (by default
the sample's first and last timestamp). An event at time ``t`` goes to bin
``k = floor((t - t_start) * T / duration)``, with ``k = T`` (an event exactly at the window's end)
folded into bin ``T - 1``; events outside the window are dropped. A zero-length window puts every
event in bin 0. Its channel is its polarity: with one polarity every event counts in channel 0;
with two, ``p > 0`` is channel 1 and ``p <= 0`` channel 0 (so ``{0, 1}`` and ``{-1, +1}`` both
work); with more, ``p`` must be an integer in ``0..P-1``. Frame values are event counts per
(bin, channel, y, x), or 0/1 with ``binary=True``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from neurodeploy.errors import DataError


def bin_events(
    events: np.ndarray,
    sensor_size: Sequence[int],
    time_steps: int,
    *,
    t_start: float | None = None,
    duration: float | None = None,
    binary: bool = False,
) -> np.ndarray:
    """Bin ``events`` into float32 frames of shape ``[T, P, H, W]``.

    Args:
        events: structured array with fields ``x``, ``t``, ``p`` (and ``y`` unless ``H == 1``).
        sensor_size: ``(W, H, P)`` as tonic's ``sensor_size``.
        time_steps: number of time bins ``T`` (>= 1).
        t_start: start of the window, in the unit of ``t`` (tonic: microseconds); default: the
            earliest event.
        duration: window length in the unit of ``t``; default: latest minus earliest event.
        binary: clip the counts to 1 (spike / no spike).

    Returns:
        float32 array ``[T, P, H, W]`` of event counts (or 0/1 when ``binary``).
    """
    if isinstance(time_steps, bool) or not isinstance(time_steps, (int, np.integer)):
        raise DataError(f"time_steps must be a positive integer, got {time_steps!r}")
    if time_steps < 1:
        raise DataError(f"time_steps must be a positive integer, got {time_steps}")
    try:
        width, height, n_pol = (int(v) for v in sensor_size)
    except (TypeError, ValueError):
        raise DataError(f"sensor_size must be (W, H, P), got {sensor_size!r}") from None
    if width < 1 or height < 1 or n_pol < 1:
        raise DataError(f"sensor_size must be positive (W, H, P), got {tuple(sensor_size)}")
    names = getattr(getattr(events, "dtype", None), "names", None) or ()
    missing = [f for f in ("x", "t", "p") if f not in names]
    if missing or ("y" not in names and height != 1):
        need = "x, y, t, p" if height != 1 else "x, t, p"
        raise DataError(
            f"events need fields {need}; got {', '.join(names) if names else 'a plain array'}"
        )
    T = int(time_steps)
    frames = np.zeros((T, n_pol, height, width), dtype=np.float32)
    if events.shape[0] == 0:
        return frames

    t = np.asarray(events["t"])
    x = np.asarray(events["x"])
    y = np.asarray(events["y"]) if "y" in names else np.zeros_like(x)
    p = np.asarray(events["p"])
    if not np.all(np.isfinite(t.astype(np.float64))):
        raise DataError("event timestamps must be finite")
    start = t.min() if t_start is None else t_start
    span = (t.max() - start) if duration is None else duration
    if span < 0:
        raise DataError(f"duration must be >= 0, got {span}")
    keep = (t >= start) & (t <= start + span)
    t, x, y, p = t[keep], x[keep], y[keep], p[keep]

    integral = all(np.issubdtype(np.asarray(v).dtype, np.integer) for v in (t, start, span))
    if span == 0:
        bins = np.zeros(t.shape[0], dtype=np.int64)
    elif integral:
        bins = ((t.astype(np.int64) - int(start)) * T) // int(span)
    else:
        bins = np.floor((t.astype(np.float64) - float(start)) * T / float(span)).astype(np.int64)
    bins = np.minimum(bins, T - 1)

    for name, values, size in (("x", x, width), ("y", y, height)):
        if values.size and (
            values.min() < 0 or values.max() >= size or not np.all(values == np.floor(values))
        ):
            raise DataError(
                f"event {name} coordinates span {values.min()}..{values.max()}, expected integers "
                f"in 0..{size - 1} (sensor_size {tuple(sensor_size)})"
            )
    if n_pol == 1:
        channel = np.zeros(p.shape[0], dtype=np.int64)
    elif n_pol == 2:
        channel = (p > 0).astype(np.int64)
    else:
        if p.size and (p.min() < 0 or p.max() >= n_pol or not np.all(p == np.floor(p))):
            raise DataError(
                f"event polarities span {p.min()}..{p.max()}, expected integers in 0..{n_pol - 1}"
            )
        channel = p.astype(np.int64)
    np.add.at(frames, (bins, channel, y.astype(np.int64), x.astype(np.int64)), 1.0)
    if binary:
        np.minimum(frames, 1.0, out=frames)
    return frames

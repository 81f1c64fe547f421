"""Equal-width binning of neuron values, and validation of ranges and bin counts.

Every metric in causal_widgets discretises a neuron's value into ``bins`` equal-width
bins over a range ``[lo, hi]``. Bins are left-closed and the last one is also
right-closed, so a float32 sigmoid that rounds to exactly 1.0 lands in the last bin.
Values outside the range are clipped into the edge bins and *counted*, never dropped
silently (see ``../shared/docs/metrics.md``).

Example
-------
>>> import torch
>>> from causal_widgets.engine.binning import bin_index
>>> idx, outside = bin_index(torch.tensor([0.0, 0.49, 0.5, 1.0, 1.2]), (0.0, 1.0), 2)
>>> idx.tolist(), outside
([0, 0, 1, 1, 1], 1)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

Range = tuple[float, float]


def check_range(value: Sequence[float] | None, name: str = "in_range") -> Range:
    """Validate a ``(lo, hi)`` range and return it as two floats.

    Raises ``ValueError`` naming the argument for a missing, non-finite, empty
    (``lo == hi``) or inverted (``lo > hi``) range.
    """
    if value is None:
        raise ValueError(f"{name} is required here: pass {name}=(lo, hi), e.g. {name}=(0.0, 1.0).")
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{name} must be a pair of numbers (lo, hi); got {value!r}."
        ) from err
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name}={value!r} is not finite: give finite bounds (lo, hi).")
    if lo == hi:
        raise ValueError(f"{name}={value!r} is empty (lo == hi): give a range with lo < hi.")
    if lo > hi:
        raise ValueError(f"{name}={value!r} is inverted (lo > hi): swap it to ({hi}, {lo}).")
    return lo, hi


def check_bins(value: int, name: str = "bins") -> int:
    """Validate a bin count: an integer >= 2."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= 2; got {value!r}.")
    if value < 2:
        raise ValueError(
            f"{name}={value} is too few: information needs at least 2 bins (the paper uses 8)."
        )
    return int(value)


def bin_edges(value_range: Range, bins: int) -> np.ndarray:
    """The ``bins + 1`` equal-width edges over ``value_range`` (float64)."""
    lo, hi = value_range
    return np.linspace(lo, hi, bins + 1)


def bin_index(values: torch.Tensor, value_range: Range, bins: int) -> tuple[torch.Tensor, int]:
    """Bin ``values`` into ``bins`` equal-width bins over ``value_range``.

    Returns ``(index, n_outside)``: an int64 tensor of bin indices in ``[0, bins)`` with
    the shape of ``values``, and the number of values that fell outside the range
    (they are clipped into the edge bins). NaN values raise ``ValueError``.
    """
    lo, hi = value_range
    # float32 outputs are binned in float32 (a 1e-7 relative shift of an edge is far below
    # any estimator's resolution, and it is ~25 % cheaper); half precision is widened.
    dtype = values.dtype if values.dtype in (torch.float32, torch.float64) else torch.float32
    scaled = (values.to(dtype) - lo) * (bins / (hi - lo))
    if torch.isnan(scaled).any():
        raise ValueError(
            "a layer produced NaN outputs: check the model's weights and inputs for NaN/inf."
        )
    outside = int(((scaled < 0) | (scaled > bins)).sum())
    index = scaled.floor_().clamp_(0, bins - 1).to(torch.int64)
    return index, outside

"""Equal-width binning of neuron values (ranges and bin counts are checked in ``checks``).

Every metric in causal_widgets discretises a neuron's value into ``bins`` equal-width
bins over a range ``[lo, hi]``. Bins are left-closed and the last one is also
right-closed, so a float32 sigmoid that rounds to exactly 1.0 lands in the last bin.
Values outside the range are clipped into the edge bins and *counted*, never dropped
silently (see ``docs/metrics.md``).

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

import numpy as np
import torch

# re-exported: the engine's modules and tests import the range/bin checks from here
from causal_widgets.checks import Range, check_bins, check_range

__all__ = ["Range", "bin_edges", "bin_index", "check_bins", "check_range"]


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
    scaled = (values.to(dtype) - lo).mul_(bins / (hi - lo))
    # one pass for the NaN check and the range test (aminmax propagates NaN); the
    # element-wise outside count runs only when something is outside
    low, high = (float(v) for v in torch.aminmax(scaled)) if scaled.numel() else (0.0, 0.0)
    if math.isnan(low) or math.isnan(high):
        raise ValueError(
            "a layer produced NaN outputs: check the model's weights and inputs for NaN/inf."
        )
    outside = 0
    if low < 0 or high > bins:
        outside = int(((scaled < 0) | (scaled > bins)).sum())
        scaled.clamp_(0, bins - 1)
    # now 0 <= scaled <= bins: truncation is floor; the last edge joins the last bin
    index = scaled.to(torch.int64).clamp_(max=bins - 1)
    return index, outside

"""The range of an elementwise function over an interval, from a fine grid, padded so it
covers an extremum that falls between grid points (GELU's and SiLU's minimum)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from causal_widgets.engine.binning import Range

#: grid points over the interval
GRID = 4097


def extremum_pads(y: torch.Tensor) -> tuple[float, float]:
    """How far a continuous function's min / max can lie beyond its grid min / max.

    The true extremum lies between the grid extremum's two neighbours; there the function
    moves by about the steps to those neighbours, so padding by the larger step covers
    it (near a smooth extremum the steps are tiny). An extremum at an end of the interval
    is exact: the grid holds the end point.
    """
    steps = (y[1:] - y[:-1]).abs()

    def pad(i: int) -> float:
        if i == 0 or i == len(y) - 1:
            return 0.0  # at an end of the interval: the grid holds the end point itself
        return float(max(steps[i - 1], steps[i]))

    return pad(int(y.argmin())), pad(int(y.argmax()))


def grid_range(fn: Callable[[torch.Tensor], torch.Tensor], lo: float, hi: float,
               rel_pad: float = 1e-9) -> Range:
    """Min / max of ``fn`` over ``[lo, hi]``: grid extrema, each padded by the grid step
    beside it, plus ``rel_pad`` of the largest value (float rounding)."""
    grid = torch.linspace(lo, hi, GRID, dtype=torch.float64)
    with torch.no_grad():
        y = fn(grid).to(torch.float64)
    lo_pad, hi_pad = extremum_pads(y)
    pad = rel_pad * max(1.0, float(y.abs().max()))
    return float(y.min()) - lo_pad - pad, float(y.max()) + hi_pad + pad

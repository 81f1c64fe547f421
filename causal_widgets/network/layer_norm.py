"""LayerNorm as a layer: measured per position over the normalised features, sampled.

``nn.LayerNorm(d)`` maps one position's ``d`` features ``x`` to
``y_i = gamma_i (x_i - mu) / sqrt(var + eps) + beta_i`` (``mu``, ``var``: the mean and the
population variance of ``x``). Every output depends on every input through ``mu`` and
``var``, so it is not ``act(W x + b)``: there is no dense form and the layer is measured
on the sampled path, one position at a time (for ``(N, T, d)`` inputs the inputs are one
token's ``d`` features). It is not folded into the Linear after it either: folding would
need ``gamma`` and ``beta`` only, but the normalisation itself is the non-linear part, and
merging it with the next layer would hide it inside a sampled layer anyway.

Output range (sound, whatever the input): with ``u = x - mu``, ``sum(u) = 0`` gives
``u_i^2 <= (d - 1)/d * sum_j u_j^2`` (Cauchy-Schwarz on ``u_i = -sum_{j != i} u_j``), so
``|(x_i - mu) / sqrt(var + eps)| <= sqrt(d - 1)``. When every input lies in ``[lo, hi]``,
also ``|x_i - mu| <= hi - lo`` and ``sqrt(var + eps) >= sqrt(eps)``. Hence
``y_i`` lies in ``beta_i -+ |gamma_i| * B`` with ``B = min(sqrt(d - 1), (hi - lo)/sqrt(eps))``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from causal_widgets.engine.binning import Range

__all__ = ["layer_norm_bounds", "normalised_size"]


def normalised_size(ln: nn.LayerNorm) -> int:
    """``d``: how many features one LayerNorm normalisation sees."""
    return math.prod(int(s) for s in ln.normalized_shape)


def layer_norm_bounds(ln: nn.LayerNorm, in_range: Range | None) -> Range:
    """A sound interval of every output of ``ln`` (see the module docstring)."""
    d = normalised_size(ln)
    bound = math.sqrt(max(d - 1, 0))
    if in_range is not None and ln.eps > 0:
        width = float(in_range[1]) - float(in_range[0])
        if math.isfinite(width):
            bound = min(bound, width / math.sqrt(ln.eps))
    gamma = (
        ln.weight.detach().double().abs().reshape(-1)
        if ln.weight is not None else torch.ones(d, dtype=torch.float64)
    )
    beta = (
        ln.bias.detach().double().reshape(-1)
        if getattr(ln, "bias", None) is not None else torch.zeros(d, dtype=torch.float64)
    )
    lo = float((beta - gamma * bound).min())
    hi = float((beta + gamma * bound).max())
    return lo, hi

"""What the streaming estimators return: one estimated quantity and the per-estimator results.

Plain dataclasses, all values in bits; :mod:`causal_widgets.engine.pairwise` and
:mod:`causal_widgets.engine.whole_ei` fill them, :mod:`causal_widgets.engine.layer_measure`
reads them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Estimate", "PairwiseResult", "WholeResult"]


@dataclass
class Estimate:
    """One estimated quantity, in bits.

    ``value`` is bias-corrected; ``ci_low``/``ci_high`` bound a 95 % confidence
    interval; ``plugin`` is the uncorrected plug-in estimate; ``samples`` is how many
    samples went in. No clamping: a corrected value may be slightly below 0.
    """

    value: float
    ci_low: float
    ci_high: float
    samples: int
    plugin: float
    warnings: list[str] = field(default_factory=list)
    #: what the interval means: "estimate" (95 %), "exact" or "bounds" (it brackets the
    #: truth), see causal_widgets.engine.bounds
    status: str = "estimate"


@dataclass
class PairwiseResult:
    """What :meth:`PairwiseMI.compute` returns.

    ``matrix[i, j]`` is the bias-corrected ``I(X_i; Y_j)`` (bits), with its 95 % CI in
    ``matrix_ci_low``/``matrix_ci_high`` and the ordinary plug-in MI of the joint table
    in ``plugin_matrix`` (what the paper's histogram estimator gives). ``total`` is the
    sum over pairs with its own CI (pairs share samples; see
    :mod:`causal_widgets.engine.pairwise`).
    Rows without samples are NaN.
    """

    matrix: np.ndarray
    matrix_ci_low: np.ndarray
    matrix_ci_high: np.ndarray
    plugin_matrix: np.ndarray
    total: Estimate
    warnings: list[str]
    matrix_se: np.ndarray
    row_samples: np.ndarray


@dataclass
class WholeResult:
    """What :meth:`WholeEI.compute` returns: ``ei`` = I(X; Y); ``output_nodes[j]`` =
    I(X; Y_j); ``input_nodes[i]`` = I(X_i; Y) (empty when disabled); all in bits."""

    ei: Estimate
    output_nodes: list[Estimate]
    input_nodes: list[Estimate]
    warnings: list[str]
    cells: int
    distinct_outputs: int
    #: EI from the same cells' first (about) half of their points: a finite-points bias
    #: diagnostic (NaN when cells hold fewer than 4 points); see :func:`measure_layer`
    ei_half_points: float = math.nan
    #: ``(n_out, out_bins)`` counts of each output's bins over every point fed: the output
    #: marginals, from which ``H(Y_j)`` is accurate at any width (for the bounds)
    output_counts: np.ndarray | None = None
    #: H(Y | X), the mean within-cell entropy, with its interval (sampled cells only)
    conditional: Estimate | None = None
    #: H(Y) is undersampled (distinct output tuples comparable to the cells, or plug-in
    #: H(Y) within a bit of log2(cells)): EI is then not an estimate but bounds
    undersampled: bool = False

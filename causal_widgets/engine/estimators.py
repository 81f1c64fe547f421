"""Streaming sampled estimators of mutual information (bits), with bias correction and 95 % CIs.

Two estimators share one pattern: feed them chunks of binned samples with ``update()``,
combine independent streams with ``merge()``, read a result with ``compute()`` (which
may be called as often as wanted; it never changes the state). Every value is in bits.

This module gathers the public names of the pieces, one idea per module:

* :mod:`causal_widgets.engine.information` -- the pure maths: entropies, bias-corrected
  MI of count tables, row codes (and the reasoning behind the estimators chosen);
* :mod:`causal_widgets.engine.estimate` -- the result dataclasses;
* :mod:`causal_widgets.engine.tallies` -- the accumulation machinery both estimators use;
* :mod:`causal_widgets.engine.pairwise` -- :class:`PairwiseMI`, the ``n_in * n_out``
  tables ``(X_i, Y_j)`` for EI_parts and sampled sensitivity;
* :mod:`causal_widgets.engine.whole_ei` -- :class:`WholeEI`, the cell-conditional
  estimator of whole-layer EI = I(X; Y), with its two strategies
  :class:`SampledWholeEI` and :class:`ExhaustiveWholeEI`.
"""

from __future__ import annotations

from causal_widgets.engine.estimate import Estimate, PairwiseResult, WholeResult
from causal_widgets.engine.information import (
    MIBatch,
    encode_rows,
    entropy_bits,
    entropy_corrected_bits,
    entropy_grassberger_bits,
    entropy_miller_madow_bits,
    mi_bias_corrected,
)
from causal_widgets.engine.pairwise import PairwiseMI
from causal_widgets.engine.whole_ei import ExhaustiveWholeEI, SampledWholeEI, WholeEI

__all__ = [
    "Estimate",
    "PairwiseResult",
    "WholeResult",
    "PairwiseMI",
    "WholeEI",
    "SampledWholeEI",
    "ExhaustiveWholeEI",
    "MIBatch",
    "entropy_bits",
    "entropy_miller_madow_bits",
    "entropy_grassberger_bits",
    "entropy_corrected_bits",
    "mi_bias_corrected",
    "encode_rows",
]

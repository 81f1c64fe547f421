"""Honest values at every width: a value's status, the bounds that bracket whole EI, blocks.

Every value a result reports carries a **status** (``docs/metrics.md``, "Honest values at
every width"):

* ``"exact"`` -- computed without sampling (the exact engine); its interval has zero width;
* ``"estimate"`` -- sampled; its 95 % interval covers the truth at the stated rate;
* ``"bounds"`` -- ``[ci_low, ci_high]`` brackets the truth (each side either provable or
  a one-sided confidence bound, 99.5 % or beyond, on a well-sampled quantity); the point
  value is only the best guess inside it.

Whole EI ``I(X; Y)`` of a wide layer cannot be estimated from samples once its output
tuples are as many as the samples (the plug-in ``H(Y)`` saturates at ``log2`` of the
sample count). It is then bracketed by

* below: ``EI >= sum_i max_j I(X_i; Y_j)``. The inputs are independent under the
  intervention, so ``I(X; Y) = sum_i I(X_i; Y | X_<i) >= sum_i I(X_i; Y)`` (conditioning
  on independent inputs cannot lower what ``X_i`` says about ``Y``), and
  ``I(X_i; Y) >= I(X_i; Y_j)`` for every ``j``. Also ``EI >= I(X; Y_j)`` for every ``j``
  and ``EI >= 0``. With the exact engine the pairwise terms are exact, so this bound is
  provable;
* above: ``EI = H(Y) - H(Y | X) <= sum_j H(Y_j) - H(Y | X)``, where the output marginals
  ``H(Y_j)`` are one-dimensional (accurately estimated from any sample) and ``H(Y | X)``
  (the mean within-cell entropy) is what the cell-conditional estimator measures well;
  within-cell entropy estimates are biased low, which only loosens the bound. Also
  ``EI <= n_in log2(in_bins)`` and ``EI <= n_out log2(out_bins)``.

Quantities derived from a bounded value (degeneracy, integration) are bounded too.

**Blocks.** When a layer's weight graph splits into independent blocks (no output shares
an input with another block), its inputs' blocks are independent under the intervention
and so are its outputs' blocks: ``EI`` is exactly the sum of the blocks' EIs, each a much
narrower layer (:func:`weight_blocks`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

#: every status a value can have, from the most to the least certain
STATUSES = ("exact", "estimate", "bounds")
_RANK = {s: k for k, s in enumerate(STATUSES)}


def combined_status(statuses: Iterable[str]) -> str:
    """The status of a value computed from values of these statuses (the least certain)."""
    out = "exact"
    for s in statuses:
        out = s if _RANK[s] > _RANK[out] else out
    return out


def weight_blocks(weight: np.ndarray) -> list[tuple[list[int], list[int]]]:
    """The independent blocks of a layer ``act(W x + b)``: ``(inputs, outputs)`` per block.

    Two neurons are in one block when a chain of non-zero weights joins them. Inputs with
    no non-zero weight and outputs with none (a constant output) are in no block: they
    contribute nothing to EI. Blocks are ordered by their smallest output.
    """
    w = np.asarray(weight)
    m, n = w.shape
    rows, cols = np.nonzero(w)
    # bipartite graph: nodes 0..m-1 are outputs, m..m+n-1 inputs
    graph = coo_matrix((np.ones(rows.size), (rows, cols + m)), shape=(m + n, m + n))
    _, label = connected_components(graph, directed=False)
    used_out = np.zeros(m, dtype=bool)
    used_out[rows] = True
    used_in = np.zeros(n, dtype=bool)
    used_in[cols] = True
    blocks: dict[int, tuple[list[int], list[int]]] = {}
    for j in np.flatnonzero(used_out):
        blocks.setdefault(int(label[j]), ([], []))[1].append(int(j))
    for i in np.flatnonzero(used_in):
        blocks[int(label[m + i])][0].append(int(i))
    return list(blocks.values())


def entropy_upper(counts: np.ndarray, z: float = 2.576) -> np.ndarray:
    """One-sided (99.5 %) upper confidence bounds on the entropies (bits) of the rows of
    ``counts`` (one categorical sample per row): Miller-Madow + ``z`` standard errors.

    The plug-in entropy is biased low by about ``(K - 1) / (2 N ln 2)``; its standard error
    is ``sqrt((sum p log2^2 p - H^2) / N)``. Both are added, and a row can never exceed
    ``log2`` of its number of categories.
    """
    c = np.asarray(counts, dtype=np.float64)
    n = c.sum(axis=1, keepdims=True)
    p = np.divide(c, n, out=np.zeros_like(c), where=n > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        lp = np.where(p > 0, np.log2(p), 0.0)
    h = -(p * lp).sum(axis=1)
    seen = (c > 0).sum(axis=1)
    n1 = n[:, 0].clip(min=1.0)
    mm = (seen - 1).clip(min=0) / (2.0 * n1 * math.log(2.0))
    var = ((p * lp**2).sum(axis=1) - h**2).clip(min=0.0) / n1
    ceiling = math.log2(c.shape[1])
    return np.minimum(h + mm + z * np.sqrt(var) + 1.0 / n1, ceiling)


def whole_ei_bounds(
    n_in: int,
    n_out: int,
    in_bins: int,
    out_bins: int,
    *,
    pair_low: np.ndarray | None = None,
    output_node_low: Sequence[float] | None = None,
    output_entropy_high: np.ndarray | None = None,
    conditional_low: float | None = None,
) -> tuple[float, float]:
    """``(low, high)`` bracketing a layer's whole EI (bits); see the module docstring.

    ``pair_low``: lower bounds of the ``(n_in, n_out)`` pairwise terms ``I(X_i; Y_j)``
    (exact values where they are exact); ``output_node_low``: lower bounds of ``I(X; Y_j)``;
    ``output_entropy_high``: upper bounds of the ``H(Y_j)``; ``conditional_low``: a lower
    bound of ``H(Y | X)``. Each is optional; without any, the trivial bounds remain.
    """
    low = 0.0
    if pair_low is not None and np.size(pair_low):
        pl = np.nan_to_num(np.asarray(pair_low, dtype=np.float64), nan=0.0).clip(min=0.0)
        low = max(low, float(pl.max(axis=1).sum()))
    if output_node_low is not None and len(output_node_low):
        finite = [float(v) for v in output_node_low if math.isfinite(float(v))]
        if finite:
            low = max(low, max(finite))
    high = min(n_in * math.log2(in_bins), n_out * math.log2(out_bins))
    if output_entropy_high is not None:
        cond = max(0.0, float(conditional_low)) if conditional_low is not None else 0.0
        high = min(high, float(np.sum(output_entropy_high)) - cond)
    return low, max(high, low)

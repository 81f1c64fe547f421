"""Reference ("true") values of small layers, computed independently of both libraries.

The benchmark compares the *error* of deep-ei and of causal_widgets against these values,
so they must not reuse either library's code: everything here is plain numpy, and the
pre-activation thresholds are derived here again rather than taken from ``layer.py``.

Layer: ``y = act(W x + b)`` with ``x`` uniform on ``[lo, hi]^n`` (the maximum-entropy
intervention), ``in_bins`` equal-width input bins per neuron, ``out_bins`` equal-width
output bins over ``out_range`` (left-closed, values outside clipped into the edge bins).
Write ``X`` for the tuple of input bins (a *cell*) and ``Y`` for the tuple of output bins.

Whole EI (bits)
    ``EI = I(X; Y) = H(X) + H(Y) - H(X, Y)`` with ``H(X) = n log2(in_bins)`` exactly
    (cells are equiprobable). ``P(X = c, Y = y)`` is the volume of the part of cell ``c``
    that ``W x + b`` maps into output cell ``y``, a union of convex polytopes.

How the volumes are integrated (why it is accurate)
    The last input ``x_n`` is integrated *analytically*: for fixed ``x_1 .. x_{n-1}``,
    each pre-activation ``z_j = s_j + w_jn x_n`` is linear in ``x_n``, so the output bin of
    ``j`` changes only where ``z_j`` crosses a threshold ``t_k = act^{-1}(edge_k)``, at
    ``x_n = (t_k - s_j) / w_jn``. Sorting those breakpoints together with the input-bin edges
    of ``x_n`` cuts ``[lo, hi]`` into segments on which the whole ``(X, Y)`` is constant; the
    segment lengths are exact. The remaining ``n - 1`` coordinates are integrated with the
    midpoint rule on ``g`` points per input bin and dimension (so every grid point lies
    strictly inside one cell and each cell gets exactly ``g^{n-1}`` points). The integrand
    (a segment length as a function of ``x_1 .. x_{n-1}``) is continuous and piecewise
    linear, so the midpoint rule is exact away from its kinks; the error comes only from the
    thin slabs around kinks (and from thin (cell, output-state) slivers that a coarse grid
    misses, which bias the entropy). Measured, the EI error falls as O(g^-2), so
    :func:`layer_truth` integrates on ``g`` and ``g/2`` and Richardson-extrapolates.

EI_parts matrix and sensitivity matrix
    ``E[i, j] = I(X_i; Y_j)`` from the same integrated joint (marginalised, and
    extrapolated like EI);
    ``S[i, j] = I(X_i; Y_j)`` with only ``x_i`` uniform and the other inputs at 0 has the
    closed form used in :func:`sensitivity_matrix`: ``y_j = act(w_ji x_i + b_j)`` is monotone
    in ``x_i``, so ``P(X_i = a, Y_j = b)`` is the exact length of an interval intersection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def thresholds(kind: str, out_range: tuple[float, float], out_bins: int) -> np.ndarray:
    """Interior pre-activation thresholds ``t_1 < ... < t_{B-1}``: ``act(z) >= e_k <=> z >= t_k``.

    Only interior edges matter because values outside ``out_range`` are clipped into the
    edge bins; the output bin of ``z`` is then ``#{k : t_k <= z}``. Edges outside the
    activation's range map to ``-inf`` (always reached) or ``+inf`` (never reached).
    """
    lo, hi = out_range
    e = lo + (hi - lo) * np.arange(1, out_bins) / out_bins
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "identity":
            t = e.copy()
        elif kind == "sigmoid":
            t = np.where(e <= 0, -np.inf, np.where(e >= 1, np.inf, np.log(e / (1.0 - e))))
        elif kind == "tanh":
            t = np.where(e <= -1, -np.inf, np.where(e >= 1, np.inf, np.arctanh(e)))
        else:
            raise ValueError(
                f"truth.thresholds: activation {kind!r} is not supported; use 'identity', "
                "'sigmoid' or 'tanh'."
            )
    return t


def _mi_bits(p: np.ndarray) -> np.ndarray:
    """Mutual information (bits) of joint tables ``p[..., A, B]`` (each summing to 1)."""
    px = p.sum(-1, keepdims=True)
    py = p.sum(-2, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log2(p / (px * py)), 0.0)
    return terms.sum(axis=(-2, -1))


def _entropy_bits(p: np.ndarray) -> float:
    q = p[p > 0]
    return float(-(q * np.log2(q)).sum())


def sensitivity_matrix(
    weight: np.ndarray,
    bias: np.ndarray,
    kind: str,
    in_range: tuple[float, float],
    in_bins: int,
    out_range: tuple[float, float],
    out_bins: int,
) -> np.ndarray:
    """Closed-form sensitivity matrix ``S[i, j]`` (bits), shape ``(n, m)``.

    With only ``x_i ~ U(lo, hi)`` and the other inputs at 0, ``z = w x_i + b_j``. For input
    bin ``a = [a0, a1)`` and output bin ``b`` (``t_b <= z < t_{b+1}``, ``t_0 = -inf``,
    ``t_B = +inf``), ``P(X_i = a, Y_j = b) = |[a0, a1) ∩ {x : t_b <= w x + b_j < t_{b+1}}| /
    (hi - lo)``; for ``w = 0`` all of bin ``a``'s mass goes to the bin of ``b_j``.
    """
    w = np.asarray(weight, dtype=np.float64)
    bvec = np.asarray(bias, dtype=np.float64)
    m, n = w.shape
    lo, hi = in_range
    t = np.concatenate([[-np.inf], thresholds(kind, out_range, out_bins), [np.inf]])
    a_edges = lo + (hi - lo) * np.arange(in_bins + 1) / in_bins
    out = np.zeros((n, m))
    for j in range(m):
        for i in range(n):
            wij = w[j, i]
            p = np.zeros((in_bins, out_bins))
            if wij == 0.0:
                b = int(np.searchsorted(t[1:-1], bvec[j], side="right"))
                p[:, b] = 1.0 / in_bins
            else:
                # x-interval where z lies in [t_b, t_{b+1}): endpoints (t - b_j) / w, ordered.
                xs = (t - bvec[j]) / wij
                x_lo = np.minimum(xs[:-1], xs[1:])
                x_hi = np.maximum(xs[:-1], xs[1:])
                left = np.maximum(a_edges[:-1, None], x_lo[None, :])
                right = np.minimum(a_edges[1:, None], x_hi[None, :])
                p = np.clip(right - left, 0.0, None) / (hi - lo)
            out[i, j] = _mi_bits(p)
    return out


@dataclass
class Truth:
    """Reference values of one layer (bits) and how they were obtained.

    ``ei`` is the Richardson extrapolation ``(4 EI(2g) - EI(g)) / 3`` of the grid integrals
    ``ei_grid`` = EI(2g) and ``ei_coarse`` = EI(g) (the midpoint error is O(h^2), measured:
    successive grid differences shrink by ~4.3x per halving on a 4->5 sigmoid layer).
    ``ei_error_estimate = |ei - ei_grid|`` is the size of the extrapolation correction, a
    conservative bound on the remaining error. With ``grid_coarse=0`` no extrapolation is
    made and ``ei = ei_grid`` with no error estimate.
    """

    ei: float
    ei_parts: float
    sensitivity: float
    ei_parts_matrix: np.ndarray
    sensitivity_matrix: np.ndarray
    grid: int
    ei_grid: float
    ei_coarse: float | None = None
    grid_coarse: int | None = None
    ei_parts_grid: float | None = None
    ei_parts_coarse: float | None = None

    @property
    def ei_error_estimate(self) -> float | None:
        """|extrapolated EI - finest-grid EI| (bits), or ``None`` without extrapolation."""
        return None if self.ei_coarse is None else abs(self.ei - self.ei_grid)

    @property
    def ei_parts_error_estimate(self) -> float | None:
        """|extrapolated EI_parts - finest-grid EI_parts| (bits), or ``None``."""
        if self.ei_parts_coarse is None or self.ei_parts_grid is None:
            return None
        return abs(self.ei_parts - self.ei_parts_grid)

    def to_dict(self) -> dict:
        return {
            "ei": self.ei,
            "ei_parts": self.ei_parts,
            "sensitivity": self.sensitivity,
            "grid": self.grid,
            "ei_grid": self.ei_grid,
            "ei_coarse": self.ei_coarse,
            "grid_coarse": self.grid_coarse,
            "ei_error_estimate": self.ei_error_estimate,
            "ei_parts_grid": self.ei_parts_grid,
            "ei_parts_coarse": self.ei_parts_coarse,
            "ei_parts_error_estimate": self.ei_parts_error_estimate,
        }


def joint_integrals(
    weight: np.ndarray,
    bias: np.ndarray,
    kind: str,
    in_range: tuple[float, float],
    in_bins: int,
    out_range: tuple[float, float],
    out_bins: int,
    grid: int,
    *,
    pairs: bool = True,
    max_states: int = 2**24,
) -> tuple[float, np.ndarray | None]:
    """Whole EI (bits) and the all-inputs pair tables ``(n, m, in_bins, out_bins)``.

    See the module docstring for the method. ``grid`` is ``g``, the midpoint points per
    input bin in each of the first ``n - 1`` dimensions. Raises ``ValueError`` when the
    output space ``out_bins ** m`` exceeds ``max_states`` (``P(Y)`` is held as a dense vector).
    """
    w = np.asarray(weight, dtype=np.float64)
    bvec = np.asarray(bias, dtype=np.float64)
    m, n = w.shape
    if n < 1 or m < 1:
        raise ValueError("joint_integrals: the layer needs at least one input and one output.")
    if grid < 1:
        raise ValueError(f"grid={grid} must be >= 1 (midpoints per input bin and dimension).")
    y_card = out_bins**m
    if y_card > max_states:
        raise ValueError(
            f"out_bins**n_out = {y_card} output states is too many for the reference "
            f"integral (limit {max_states}); use a layer with fewer outputs or fewer bins."
        )
    lo, hi = in_range
    width = hi - lo
    bw = width / in_bins
    t = thresholds(kind, out_range, out_bins)
    t_fin = t[np.isfinite(t)]
    n_rest = n - 1
    pts_per_cell = grid**n_rest
    cells_rest = in_bins**n_rest
    w_last = w[:, n - 1]
    # sub-cell midpoint offsets inside one cell, (pts_per_cell, n_rest), in units of bins
    if n_rest:
        offs = (np.indices((grid,) * n_rest).reshape(n_rest, -1).T + 0.5) / grid
    else:
        offs = np.zeros((1, 0))
    # breakpoints on x_n: interior input edges of x_n, then every (output, threshold) crossing
    in_edges = lo + bw * np.arange(1, in_bins)
    n_seg = len(in_edges) + 1 + sum(len(t_fin) for j in range(m) if w_last[j] != 0.0)
    segs_per_cell = pts_per_cell * n_seg
    chunk_cells = max(1, min(cells_rest, 2**21 // segs_per_cell))
    radix_y = out_bins ** np.arange(m - 1, -1, -1)
    pair = np.zeros((n, m, in_bins, out_bins))
    p_y = np.zeros(y_card)
    h_xy = 0.0
    point_mass = 1.0 / (cells_rest * pts_per_cell)  # each grid point's share of [lo,hi]^(n-1)
    for c0 in range(0, cells_rest, chunk_cells):
        cidx = np.arange(c0, min(c0 + chunk_cells, cells_rest))
        nc = len(cidx)
        # bins of the first n-1 inputs for each cell (mixed radix, first input most significant)
        digits = (cidx[:, None] // (in_bins ** np.arange(n_rest - 1, -1, -1))[None, :]) % in_bins
        x_rest = lo + bw * (digits[:, None, :] + offs[None, :, :])  # (nc, ppc, n_rest)
        x_rest = x_rest.reshape(nc * pts_per_cell, n_rest)
        s = x_rest @ w[:, :n_rest].T + bvec  # partial pre-activation (P, m)
        cuts = [np.broadcast_to(in_edges, (len(s), len(in_edges)))]
        for j in range(m):
            if w_last[j] != 0.0:
                cuts.append((t_fin[None, :] - s[:, j : j + 1]) / w_last[j])
        bp = np.clip(np.concatenate(cuts, axis=1), lo, hi)
        bp.sort(axis=1)
        full = np.concatenate([np.full((len(s), 1), lo), bp, np.full((len(s), 1), hi)], axis=1)
        seg_len = np.diff(full, axis=1)  # (P, n_seg)
        mid = 0.5 * (full[:, 1:] + full[:, :-1])
        mass = (seg_len / width) * point_mass
        a_last = np.clip(np.floor((mid - lo) / bw), 0, in_bins - 1).astype(np.int64)
        z = s[:, None, :] + mid[:, :, None] * w_last[None, None, :]  # (P, n_seg, m)
        ybin = np.searchsorted(t_fin, z, side="right").astype(np.int64)
        # thresholds at -inf are always passed: shift by their count so bins stay aligned
        ybin += int(np.sum(np.isneginf(t)))
        y_id = (ybin * radix_y).sum(-1)  # (P, n_seg)
        local_cell = np.repeat(np.arange(nc), pts_per_cell)[:, None] * in_bins + a_last
        key = (local_cell * y_card + y_id).ravel()
        # aggregate equal (cell, y) keys by sorting: the joint is sparse (a cell reaches few
        # output states), so this is far cheaper than a dense table of cells x y_card
        order = np.argsort(key, kind="stable")
        key = key[order]
        starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
        agg = np.add.reduceat(mass.ravel()[order], starts)
        ukey = key[starts]
        h_xy += _entropy_bits(agg)
        uy = ukey % y_card
        p_y += np.bincount(uy, weights=agg, minlength=y_card)
        if not pairs:
            continue
        ucell = ukey // y_card
        a_cols = [digits[ucell // in_bins, i] for i in range(n_rest)] + [ucell % in_bins]
        for j in range(m):
            yb = (uy // radix_y[j]) % out_bins
            for i in range(n):
                k = a_cols[i] * out_bins + yb
                pair[i, j] += np.bincount(
                    k, weights=agg, minlength=in_bins * out_bins
                ).reshape(in_bins, out_bins)
    ei = n * math.log2(in_bins) + _entropy_bits(p_y) - h_xy
    return ei, (pair if pairs else None)


def layer_truth(
    weight: np.ndarray,
    bias: np.ndarray | None,
    kind: str,
    in_range: tuple[float, float] = (0.0, 1.0),
    bins: int = 8,
    out_range: tuple[float, float] | None = None,
    *,
    grid: int = 4,
    grid_coarse: int | None = None,
) -> Truth:
    """Reference EI, EI_parts and sensitivity (bits) of ``act(W x + b)``.

    ``out_range`` defaults to the natural range of ``kind`` (sigmoid (0, 1), tanh (-1, 1)).
    EI is integrated on ``grid`` and on ``grid_coarse`` (default ``grid // 2``; must be
    exactly half of ``grid`` for the extrapolation; 0 turns it off) and Richardson-
    extrapolated (see :class:`Truth`); so is every EI_parts term ``I(X_i; Y_j)`` (from the
    pair tables of both grids). Sensitivity is closed-form.
    """
    w = np.asarray(weight, dtype=np.float64)
    b = np.zeros(w.shape[0]) if bias is None else np.asarray(bias, dtype=np.float64)
    if out_range is None:
        natural = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}
        if kind not in natural:
            raise ValueError(f"activation {kind!r} has no natural range: pass out_range=(lo, hi).")
        out_range = natural[kind]
    if grid_coarse is None:
        grid_coarse = grid // 2 if grid >= 2 and grid % 2 == 0 else 0
    if grid_coarse and 2 * grid_coarse != grid:
        raise ValueError(
            f"grid_coarse={grid_coarse} must be half of grid={grid} for the Richardson "
            "extrapolation; pass an even grid, or grid_coarse=0 to turn it off."
        )
    ei_fine, pair = joint_integrals(w, b, kind, in_range, bins, out_range, bins, grid)
    e_fine = _mi_bits(pair)
    s_mat = sensitivity_matrix(w, b, kind, in_range, bins, out_range, bins)
    ei_c = parts_c = None
    ei, e_mat = ei_fine, e_fine
    if grid_coarse:
        ei_c, pair_c = joint_integrals(w, b, kind, in_range, bins, out_range, bins, grid_coarse)
        e_c = _mi_bits(pair_c)
        ei = (4.0 * ei_fine - ei_c) / 3.0
        # the pair tables are smooth integrals too: extrapolate each I(X_i; Y_j) the same way
        e_mat = (4.0 * e_fine - e_c) / 3.0
        parts_c = float(e_c.sum())
    return Truth(
        ei=float(ei),
        ei_parts=float(e_mat.sum()),
        sensitivity=float(s_mat.sum()),
        ei_parts_matrix=e_mat,
        sensitivity_matrix=s_mat,
        grid=grid,
        ei_grid=float(ei_fine),
        ei_coarse=None if ei_c is None else float(ei_c),
        grid_coarse=grid_coarse or None,
        ei_parts_grid=float(e_fine.sum()),
        ei_parts_coarse=parts_c,
    )

"""Streaming sampled estimators of mutual information (bits), with bias correction and 95 % CIs.

Two estimators share one pattern: feed them chunks of binned samples with ``update()``,
combine independent streams with ``merge()``, read a result with ``compute()`` (which
may be called as often as wanted; it never changes the state). Every value is in bits.

:class:`PairwiseMI` -- the ``n_in * n_out`` tables ``(X_i, Y_j)``
    For EI_parts (all inputs intervened, :meth:`PairwiseMI.update`) and sampled
    sensitivity (one input intervened at a time, :meth:`PairwiseMI.update_single`).
    All tables are filled at once by one integer GEMM per block, ``onehot(Y)^T onehot(X)``
    (int8 one-hots, exact int32 accumulation); there is no Python loop over pairs.

:class:`WholeEI` -- the cell-conditional estimator of whole-layer EI = I(X; Y)
    The driver draws input *cells* (one bin per input, uniformly; or all of them,
    ``exhaustive=True``) and ``M`` points uniformly inside each cell. Since the cell is
    uniform under the intervention,

        I(X; Y) = H(Y) - E_cell H(Y | cell),

    with ``H(Y)`` the entropy of the average of the cells' output distributions.
    Unlike plug-in MI over joint tuples, this does not saturate at ``log2 N``: when every
    sampled input tuple is unique the tuple plug-in gives ``H(Y | X) = 0`` and collapses
    to ``H(Y)``, whereas the within-cell points measure ``H(Y | cell)`` directly.

Estimators (why these)
----------------------
*Known input marginal.* Under the intervention ``P(X_i = a) = 1/B`` exactly, so the
pairwise MI is estimated as

    I = H(p) - sum_a (1/B) H(q_a),   q_a = P(Y | X = a),   p = sum_a (1/B) q_a,

with ``q_a`` estimated from the ``n_a`` samples in row ``a``. The fluctuation of the
row counts ``n_a`` then does not enter the estimate at all.

*Bias correction* (first order, "delta method"; it reduces to Miller-Madow). For an
entropy estimated from a multinomial table the plug-in bias is
``-(K - 1) / (2 n ln 2)`` (``K`` observed bins; Miller & Madow 1955). For ``H(p)`` with
``p`` an average of independently estimated rows the same expansion gives
``-(1 / (2 ln 2)) sum_b Var(p_b) / p_b`` with ``Var(p_b) = sum_a (1/B^2) q_ab (1 - q_ab) / n_a``.
Both are subtracted. For independent X, Y the plug-in bias is the classic
``(B_x - 1)(B_y - 1) / (2 N ln 2)``, which the correction removes; for a deterministic
copy ``Y = X`` the correction is exactly 0 (Miller-Madow on the three entropies of the
ordinary plug-in would wrongly add ``(B - 1) / (2 N ln 2)``). Miller-Madow was kept over
Grassberger's estimator (also provided, :func:`entropy_grassberger_bits`) because the MI
is a *difference* of entropies whose first-order biases must cancel consistently;
mixing estimators breaks that cancellation. Higher-order bias is not corrected: every
``compute()`` warns, with numbers, when a table has fewer than 5 samples per cell.

*Confidence intervals.* A pairwise estimate is asymptotically linear,
``I_hat - I ~ (1/N) sum_s psi(s)``, except near ``I = 0`` where the linear term vanishes
and ``2 N ln2 * I_plugin`` follows a chi-square law with ``df = (B_x - 1)(B_y - 1)``.
The variance used is the sum of both parts,

    Var = sum_a (1/B^2) Var_{b~q_a}[log2(q_ab / p_b)] / n_a  +  2 df / (2 N ln 2)^2,

(which is the variance of a non-central chi-square, ``2 (df + 2 lambda)``, written in
bits) and the 95 % CI is ``value +- 1.96 sd``. The first (linear) term, evaluated with
plug-in ``q`` and ``p``, is biased up by twice the second (the plug-in non-centrality
exceeds ``lambda`` by ``df``); that excess is subtracted, with a floor at 0. Near
``I = 0`` this interval is slightly conservative (about 99 % coverage for one table).

The *total* over pairs cannot use a sum of per-pair variances: all pairs share samples.
Its linear part is therefore measured directly by *batch means*: the samples are dealt
round-robin into ``groups`` groups with their own tables, the linearised total is
evaluated on each group, and the spread of the group values gives the variance (all
cross-pair covariances included; less twice the null part, as for one table). The null
(chi-square) part of the total is computed analytically: for independent inputs (true
under the intervention) pairs with different inputs have uncorrelated quadratic parts,
and pairs sharing input ``i`` have ``Var(sum_j Q_ij) = 2 (B_x - 1) sum_{j,j'} phi^2(Y_j,
Y_j') / (2 N ln 2)^2`` (``phi^2`` = Pearson's mean-square contingency, taken from an
output-by-output table accumulated alongside; for rows filled by ``update_single`` the
upper bound ``(sum_j sqrt(K_j - 1))^2`` is used). The CI uses a Student t quantile with
Satterthwaite degrees of freedom.

For :class:`WholeEI` with sampled cells, the cells are i.i.d., so the CI comes from a
delete-a-group jackknife over ``groups`` round-robin groups of cells (t quantile,
``groups - 1`` degrees of freedom). With all cells enumerated there is no cell-sampling
noise; the points are dealt into groups instead and the jackknife is over point groups.
The jackknife is slightly conservative (up to a factor 2 in variance) when EI is near 0.

*Within-cell entropies* (WholeEI). ``H(Y | cell)`` comes from only ``M`` points (16-64)
spread over many output tuples, where Miller-Madow leaves a large higher-order bias that
does not shrink with more cells, only with more points per cell (measured on 8-bin
sigmoid layers, 24-16 points per cell: +0.05 to +0.16 bits of EI). The points inside a
cell are i.i.d. uniform, so each cell's counts are exactly multinomial and Grassberger's
estimator (2003; :func:`entropy_grassberger_bits`), built for few counts per state, is
used for every within-cell histogram instead (0 for a one-state cell, as Miller-Madow).
Its first-order bias matches Miller-Madow's, so it stays consistent with the mixture
correction of ``H(Y)``; on the same layers the EI error falls to 0.01-0.02 bits. (Latin
hypercube points inside the cells were tried as well: they lower the plug-in bias a
little, but make the counts non-multinomial, so that Grassberger over-corrects; i.i.d.
points with Grassberger were more accurate.) The bias left is estimated by the mean over
cells of |jackknife - Grassberger| entropy (0 for cells whose points all share one
output), which over-states it severalfold in the cases measured; it is added to the
jackknife half-width in quadrature. :attr:`WholeResult.ei_half_points` gives EI from the
same cells with (about) half of their points, a paired diagnostic of the bias left.

*Cost.* Within-cell histograms are never formed with ``torch.unique``: with up to 32
points per cell, each point's multiplicity comes from an ``M x M`` comparison (a sum over
a cell's distinct values of ``f(c)`` is a sum over its points of ``f(c_i) / c_i``), and
``c ln c``, ``c G(c)`` come from lookup tables over the integer counts. When the output
space is small (``out_bins ** n_out <= 2**16``) output tuples are coded by a dense table
and the ``H(Y)`` sums are dense arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import stats

__all__ = [
    "Estimate",
    "PairwiseResult",
    "WholeResult",
    "PairwiseMI",
    "WholeEI",
    "MIBatch",
    "entropy_bits",
    "entropy_miller_madow_bits",
    "entropy_grassberger_bits",
    "entropy_corrected_bits",
    "mi_bias_corrected",
    "encode_rows",
]

LN2 = math.log(2.0)
Z95 = float(stats.norm.ppf(0.975))
#: under this many samples per cell of a (B_x x B_y) table a warning is issued
MIN_PER_CELL = 5.0
_U_BITS = 40  # compact output-tuple codes live in the low 40 bits of composite keys
_U_MASK = (1 << _U_BITS) - 1
# output spaces up to this many tuples get a dense code table and dense H(Y) sums
_DENSE_SPACE = 1 << 16
# up to this many points per cell, within-cell histograms come from pairwise comparisons
_PAIRWISE_M = 32
_HASH_P = (2147483647, 2147483629)  # primes < 2^31, so h * mult stays below 2^62
_HASH_M = (1103515245, 1664525)


# --------------------------------------------------------------------------- results


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


@dataclass
class PairwiseResult:
    """What :meth:`PairwiseMI.compute` returns.

    ``matrix[i, j]`` is the bias-corrected ``I(X_i; Y_j)`` (bits), with its 95 % CI in
    ``matrix_ci_low``/``matrix_ci_high`` and the ordinary plug-in MI of the joint table
    in ``plugin_matrix`` (what the paper's histogram estimator gives). ``total`` is the
    sum over pairs with its own CI (pairs share samples; see the module docstring).
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


# ------------------------------------------------------------------ entropy helpers


def _as_f64(counts: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(counts, torch.Tensor):
        return counts.detach().to(device="cpu", dtype=torch.float64)
    return torch.as_tensor(np.asarray(counts, dtype=np.float64))


def _xlog2x(p: torch.Tensor) -> torch.Tensor:
    """p * log2(p) with 0 log 0 = 0."""
    return torch.special.xlogy(p, p) / LN2


_TABLES: dict[int, torch.Tensor] = {}


def _count_tables(cmax: int) -> torch.Tensor:
    """Lookup tables over integer counts ``c = 0..cmax`` (float64, shape (>cmax, 4)):
    ``c ln c``, ``c G(c)`` (Grassberger's G), ``c (c ln c - (c-1) ln(c-1))`` and 1 (counts
    the observed states), all 0 at ``c = 0``.

    Within-cell histograms hold small integer counts, so a gather from these tables
    replaces ``xlogy``/``digamma`` on every entry (the hot loop of :class:`WholeEI`).
    """
    size = 64
    while size <= cmax:
        size *= 2
    if size not in _TABLES:
        c = torch.arange(size, dtype=torch.float64)
        m = c.clamp(min=1.0)
        sign = 1.0 - 2.0 * torch.remainder(m, 2.0)
        g = torch.special.digamma(m) + 0.5 * sign * (
            torch.special.digamma((m + 1) / 2) - torch.special.digamma(m / 2)
        )
        tx = torch.special.xlogy(c, c)
        txm1 = torch.cat([tx.new_zeros(1), tx[:-1]])
        tab = torch.stack([tx, c * g, c * (tx - txm1), torch.ones_like(c)], -1)
        tab[0] = 0.0
        _TABLES[size] = tab
    return _TABLES[size]


def _hist_entropies(
    sums: torch.Tensor, n: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Plug-in, Grassberger and jackknife entropies (bits) of histograms from their sums.

    ``sums[..., :]`` = ``(sum_v c_v ln c_v, sum_v c_v G(c_v), sum_v c_v (T(c_v) -
    T(c_v - 1)), K)`` over the histogram's values (``T(c) = c ln c``, ``K`` = observed
    states), ``n`` its total. Plug-in ``H = ln n - S / n``; Grassberger (2003)
    ``ln n - (1/n) sum c G(c)``, set to 0 for a one-state histogram (as plug-in and
    Miller-Madow give; Grassberger's formula leaves O(1/n^2) there); the jackknife (Zahl
    1977) ``n H - (n-1)/n sum_s H_{-s}`` with ``sum_s H_{-s} = n ln(n-1) - (n S - D)/(n-1)``
    in closed form. Histograms with ``n < 2`` give 0 for all three.
    """
    s, sg, d, k = sums.unbind(-1)
    nn_ = n.clamp(min=2.0)
    h = torch.log(nn_) - s / nn_
    many = k > 1.5  # K may come from sums of 1 / c_i: not exactly an integer
    gr = torch.where(many, torch.log(nn_) - sg / nn_, 0.0)
    loo = nn_ * torch.log(nn_ - 1) - (nn_ * s - d) / (nn_ - 1)
    jk = torch.where(many, nn_ * h - (nn_ - 1) / nn_ * loo, 0.0)
    ok = n >= 2
    z = torch.zeros_like(h)
    return (
        torch.where(ok, h, z) / LN2,
        torch.where(ok, gr, z) / LN2,
        torch.where(ok, jk, z) / LN2,
    )


def _sparse_hist_sums(cnt: torch.Tensor, unit: torch.Tensor, n_units: int) -> torch.Tensor:
    """Per-histogram sums for :func:`_hist_entropies` from sparse entries: ``cnt`` (E, ...)
    integer-valued counts, ``unit`` (E,) the histogram of each entry -> (n_units, ..., 4)."""
    ci = cnt.to(torch.int64)
    tab = _count_tables(int(ci.max()) if ci.numel() else 0)
    vals = tab.to(cnt.device)[ci]
    out = torch.zeros((n_units, *vals.shape[1:]), dtype=torch.float64, device=cnt.device)
    return out.index_add_(0, unit, vals)


def _point_hist_sums(u: torch.Tensor, half: int = 0) -> tuple[torch.Tensor, ...]:
    """:func:`_sparse_hist_sums` of the rows of ``u`` (C, M) without sorting: with ``c_i``
    the multiplicity of point ``i``'s value in its row, ``sum_v f(c_v) = sum_i f(c_i) / c_i``.
    Returns the (C, 4) sums, the multiplicities (C, M) as float64 and, when ``half`` > 0,
    the (C, 4) sums of the rows' first ``half`` points (from the same comparisons).
    Costs O(C M^2)."""
    eq = u[:, :, None] == u[:, None, :]
    m = u.shape[1]
    tab = _count_tables(m)
    per = (tab[: m + 1] / torch.arange(m + 1, dtype=torch.float64).clamp(min=1.0)[:, None]).to(
        u.device
    )
    mult = eq.sum(-1, dtype=torch.int32).long()
    out = (per[mult].sum(1), mult.to(torch.float64))
    if half:
        out += (per[eq[:, :half, :half].sum(-1, dtype=torch.int32).long()].sum(1),)
    return out


def _dense_hist_sums(cnt: torch.Tensor) -> torch.Tensor:
    """As :func:`_sparse_hist_sums` for dense histograms along the last axis of ``cnt``."""
    ci = cnt.to(torch.int64)
    tab = _count_tables(int(ci.max()) if ci.numel() else 0)
    return tab.to(cnt.device)[ci].sum(-2)


def entropy_bits(counts: torch.Tensor | np.ndarray, axis: int = -1) -> np.ndarray:
    """Plug-in entropy ``-sum_k (n_k/n) log2(n_k/n)`` (bits) of count tables along ``axis``.

    ``counts`` may be a torch tensor or array of any shape; an all-zero table gives NaN.
    """
    c = _as_f64(counts)
    n = c.sum(axis, keepdim=True)
    return (-_xlog2x(c / n).sum(axis)).numpy()


def entropy_miller_madow_bits(counts: torch.Tensor | np.ndarray, axis: int = -1) -> np.ndarray:
    """Miller-Madow entropy (bits): plug-in ``+ (K - 1) / (2 n ln 2)``, K = observed bins.

    Removes the first-order bias ``-(K - 1)/(2 n ln 2)`` of the plug-in estimate;
    reliable while ``n`` is several times the number of bins with mass.
    """
    c = _as_f64(counts)
    n = c.sum(axis)
    k = (c > 0).sum(axis).to(torch.float64)
    h = torch.as_tensor(entropy_bits(c, axis))
    return (h + (k - 1).clamp(min=0) / (2 * n * LN2)).numpy()


def entropy_grassberger_bits(counts: torch.Tensor | np.ndarray, axis: int = -1) -> np.ndarray:
    """Grassberger's (2003, arXiv:physics/0307138) entropy estimator, in bits.

    ``H = log n - (1/n) sum_k n_k G(n_k)``, ``G(m) = psi(m) + (-1)^m (psi((m+1)/2) -
    psi(m/2)) / 2``. Less biased than Miller-Madow when many bins hold 1-2 counts (an
    undersampled table); offered for single entropies (see the module docstring for
    why the MI estimators stay with the first-order correction).
    """
    c = _as_f64(counts)
    n = c.sum(axis)
    pos = c > 0
    m = torch.where(pos, c, torch.ones_like(c))
    sign = 1.0 - 2.0 * torch.remainder(m, 2.0)  # (-1)^m for integer m
    g = torch.special.digamma(m) + 0.5 * sign * (
        torch.special.digamma((m + 1) / 2) - torch.special.digamma(m / 2)
    )
    h = torch.log(n) - (torch.where(pos, c * g, torch.zeros_like(c))).sum(axis) / n
    return (h / LN2).numpy()


def entropy_corrected_bits(
    counts: torch.Tensor | np.ndarray, axis: int = -1, method: str = "miller_madow"
) -> np.ndarray:
    """Bias-corrected entropy (bits): ``method`` = ``"miller_madow"`` or ``"grassberger"``."""
    if method == "miller_madow":
        return entropy_miller_madow_bits(counts, axis)
    if method == "grassberger":
        return entropy_grassberger_bits(counts, axis)
    raise ValueError(f"method={method!r} is unknown: use 'miller_madow' or 'grassberger'.")


@dataclass
class MIBatch:
    """Per-table results of :func:`mi_bias_corrected` (arrays over the batch shape).

    ``value`` bias-corrected MI (bits); ``plugin`` ordinary plug-in MI of the joint table;
    ``var_linear`` + ``var_null`` = ``variance`` of ``value`` (bits^2); ``df`` the
    chi-square degrees of freedom ``(A_obs - 1)(B_obs - 1)``; ``n`` samples per table;
    ``coef`` (torch, table shape) the linear influence coefficients: per sample in cell
    ``(a, b)`` the estimate moves by ``coef[a, b]`` (used for the batch-means variance).
    """

    value: np.ndarray
    plugin: np.ndarray
    variance: np.ndarray
    var_linear: np.ndarray
    var_null: np.ndarray
    df: np.ndarray
    n: np.ndarray
    coef: torch.Tensor


def _mi_core(t: torch.Tensor, known_input_marginal: bool) -> dict[str, torch.Tensor]:
    """Vectorised MI maths on float64 tables ``(..., A, B)`` (rows = input X)."""
    n_a = t.sum(-1)  # (..., A)
    n = n_a.sum(-1)  # (...)
    nz = t > 0
    safe_n = n.clamp(min=1.0)
    pj = t / safe_n[..., None, None]
    pa, pb = pj.sum(-1), pj.sum(-2)
    plugin = _xlog2x(pj).sum((-2, -1)) - _xlog2x(pa).sum(-1) - _xlog2x(pb).sum(-1)
    a_obs = (n_a > 0).sum(-1).to(torch.float64)
    if known_input_marginal:
        w = (n_a > 0) / a_obs.clamp(min=1.0)[..., None]  # 1/B over the observed rows
        inv_na = torch.where(n_a > 0, 1.0 / n_a.clamp(min=1.0), torch.zeros_like(n_a))
        q = t * inv_na[..., None]
        p = (w[..., None] * q).sum(-2)  # (..., B)
        h_y = -_xlog2x(p).sum(-1)
        h_ya = -_xlog2x(q).sum(-1)
        plug_k = h_y - (w * h_ya).sum(-1)
        k_a = nz.sum(-1).to(torch.float64)
        beta_a = -(k_a - 1).clamp(min=0) * inv_na / (2 * LN2)
        var_p = ((w * w * inv_na)[..., None] * q * (1 - q)).sum(-2)
        beta_y = -torch.where(p > 0, var_p / p.clamp(min=1e-300), torch.zeros_like(p)).sum(-1)
        beta_y = beta_y / (2 * LN2)
        value = plug_k - beta_y + (w * beta_a).sum(-1)
        ratio = torch.where(nz, q / p.clamp(min=1e-300)[..., None, :], torch.ones_like(q))
        g = torch.log2(ratio)
        gbar = (q * g).sum(-1)
        var_lin = (w * w * inv_na * ((q * g * g).sum(-1) - gbar**2)).sum(-1)
        coef = torch.where(nz, (w * inv_na)[..., None] * (g - gbar[..., None]), 0.0)
        n_eff = 1.0 / (w * w * inv_na).sum(-1).clamp(min=1e-300)
        b_obs = (p > 0).sum(-1).to(torch.float64)
    else:
        k_ab = nz.sum((-2, -1)).to(torch.float64)
        b_obs = (pb > 0).sum(-1).to(torch.float64)
        value = plugin - ((k_ab - 1) - (a_obs - 1) - (b_obs - 1)) / (2 * safe_n * LN2)
        denom = (pa[..., :, None] * pb[..., None, :]).clamp(min=1e-300)
        g = torch.log2(torch.where(nz, pj / denom, torch.ones_like(pj)))
        var_lin = ((pj * g * g).sum((-2, -1)) - plugin**2) / safe_n
        coef = torch.where(nz, (g - plugin[..., None, None]) / safe_n[..., None, None], 0.0)
        n_eff = safe_n
    df = (a_obs - 1).clamp(min=0) * (b_obs - 1).clamp(min=0)
    var_null = 2 * df / (2 * n_eff * LN2) ** 2
    # The plug-in linear variance carries the noise of g itself: near independence
    # E[var_lin_hat] = var_lin + 4 df / (2 N ln2)^2 = var_lin + 2 var_null (the
    # non-centrality of 2 N ln2 I_plugin is over-estimated by df). Remove it (floor 0).
    var_lin = (var_lin - 2 * var_null).clamp(min=0.0)
    empty = n <= 0
    nan = torch.full_like(value, math.nan)
    return {
        "value": torch.where(empty, nan, value),
        "plugin": torch.where(empty, nan, plugin),
        "var_linear": torch.where(empty, nan, var_lin),
        "var_null": torch.where(empty, nan, var_null),
        "df": df,
        "n": n,
        "n_eff": n_eff,
        "coef": coef,
        "a_obs": a_obs,
    }


def mi_bias_corrected(
    joint_counts: torch.Tensor | np.ndarray, known_input_marginal: bool = True
) -> MIBatch:
    """Bias-corrected mutual information (bits) for a batch of joint count tables.

    ``joint_counts`` has shape ``(..., A, B)``: rows are the input (intervened) variable
    X, columns the output Y. With ``known_input_marginal=True`` the input is taken to be
    uniform over its (observed) rows, as it is under the intervention, and

        I = H(sum_a q_a / A) - sum_a H(q_a) / A,   q_a = row a normalised,

    is corrected by its first-order bias (see the module docstring); otherwise the
    ordinary plug-in MI with the Miller-Madow correction of its three entropies is used.
    Returns an :class:`MIBatch` with values, plug-in, variances and influence coefficients.
    """
    t = _as_f64(joint_counts)
    if t.dim() < 2:
        raise ValueError(f"joint_counts must have shape (..., A, B); got shape {tuple(t.shape)}.")
    if (t < 0).any():
        raise ValueError("joint_counts must be non-negative counts.")
    r = _mi_core(t, known_input_marginal)
    var = r["var_linear"] + r["var_null"]
    return MIBatch(
        value=r["value"].numpy(),
        plugin=r["plugin"].numpy(),
        variance=var.numpy(),
        var_linear=r["var_linear"].numpy(),
        var_null=r["var_null"].numpy(),
        df=r["df"].numpy(),
        n=r["n"].numpy(),
        coef=r["coef"],
    )


def encode_rows(idx: torch.Tensor, bins: int) -> torch.Tensor:
    """Encode the last axis of an integer tensor (values in ``[0, bins)``) as one int64 id.

    Mixed radix (exact, ``id = sum_j idx_j bins^(m-1-j)``) when ``bins**m < 2**62``;
    otherwise two independent polynomial hashes modulo primes below ``2**31`` packed
    into 62 bits. Hash collisions then have probability about ``U^2 / 2^62`` for ``U``
    distinct rows (below 1e-5 for ten million), which would merge two output states.
    """
    m = idx.shape[-1]
    idx = idx.to(torch.int64)
    if bins**m < 2**62:
        powers = bins ** torch.arange(m - 1, -1, -1, device=idx.device, dtype=torch.int64)
        return (idx * powers).sum(-1)
    h1 = torch.zeros(idx.shape[:-1], dtype=torch.int64, device=idx.device)
    h2 = torch.zeros_like(h1)
    for j in range(m):  # a loop over columns only; every step is vectorised over rows
        col = idx[..., j] + 1
        h1 = (h1 * _HASH_M[0] + col) % _HASH_P[0]
        h2 = (h2 * _HASH_M[1] + col) % _HASH_P[1]
    return h1 * _HASH_P[1] + h2


# ---------------------------------------------------------------- shared machinery


def _check_int(value: int, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")
    return int(value)


def _check_idx(x: torch.Tensor, name: str, shape: tuple, bins: int, device: torch.device):
    """Validate an index tensor: integer dtype, trailing shape, values in [0, bins)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch integer tensor; got {type(x).__name__}.")
    if x.dtype.is_floating_point or x.dtype == torch.bool or x.is_complex():
        raise TypeError(
            f"{name} must hold integer bin indices (e.g. from binning.bin_index); got "
            f"dtype {x.dtype}."
        )
    if x.dim() != len(shape) or any(s is not None and x.shape[k] != s for k, s in enumerate(shape)):
        want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {want}; got {tuple(x.shape)}.")
    if x.numel():
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi >= bins:
            raise ValueError(
                f"{name} holds bin indices in [{lo}, {hi}] but must lie in [0, {bins - 1}]: "
                "bin values with binning.bin_index using the same number of bins."
            )
    return x.to(device=device, dtype=torch.int64)


def _int_mm_ok(device: torch.device) -> bool:
    """Whether exact int8 x int8 -> int32 GEMM (torch._int_mm) works here."""
    if device.type != "cpu" or not hasattr(torch, "_int_mm"):
        return False
    try:
        a = torch.ones(32, 8, dtype=torch.int8)
        return int(torch._int_mm(a, a.T.contiguous())[0, 0]) == 8
    except (RuntimeError, TypeError, NotImplementedError):
        return False


def _t_quantile(df: float) -> float:
    if not math.isfinite(df) or df > 1e6:
        return Z95
    return float(stats.t.ppf(0.975, max(df, 1.0)))


def _interval(value: float, var: float, df: float = math.inf) -> tuple[float, float]:
    if not math.isfinite(value):
        return (math.nan, math.nan)
    if not math.isfinite(var):
        return (-math.inf, math.inf)
    half = _t_quantile(df) * math.sqrt(max(var, 0.0))
    return (value - half, value + half)


class _SparseSum:
    """int64 keys -> float64 sums; additions are buffered and consolidated (sort + add)
    when the buffer outgrows the store, so the total cost stays O(n log n)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.keys = torch.empty(0, dtype=torch.int64, device=device)
        self.vals = torch.empty(0, dtype=torch.float64, device=device)
        self._k: list[torch.Tensor] = []
        self._v: list[torch.Tensor] = []
        self._pending = 0

    def add(self, keys: torch.Tensor, vals: torch.Tensor) -> None:
        self._k.append(keys.reshape(-1))
        self._v.append(vals.reshape(-1).to(torch.float64))
        self._pending += keys.numel()
        if self._pending > max(1 << 20, self.keys.numel()):
            self.consolidate()

    def consolidate(self) -> None:
        if not self._k:
            return
        k = torch.cat([self.keys, *self._k])
        v = torch.cat([self.vals, *self._v])
        self._k, self._v, self._pending = [], [], 0
        uniq, inv = torch.unique(k, sorted=True, return_inverse=True)
        self.keys = uniq
        self.vals = torch.zeros(uniq.numel(), dtype=torch.float64, device=k.device).index_add_(
            0, inv, v
        )

    def items(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.consolidate()
        return self.keys, self.vals


class _DenseSum:
    """As :class:`_SparseSum` for keys ``(hi << 40) | lo`` with ``hi < n_hi`` and
    ``lo < n_lo`` small enough to keep every sum: one ``index_add_`` per ``add``, no sort."""

    def __init__(self, device: torch.device, n_hi: int, n_lo: int):
        self.n_lo = n_lo
        self.store = torch.zeros(n_hi * n_lo, dtype=torch.float64, device=device)

    def add(self, keys: torch.Tensor, vals: torch.Tensor) -> None:
        k = keys.reshape(-1)
        self.store.index_add_(0, (k >> _U_BITS) * self.n_lo + (k & _U_MASK), vals.reshape(-1))

    def items(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys (ascending) with a non-zero sum, and their sums (values added are > 0)."""
        idx = torch.nonzero(self.store).squeeze(1)
        return ((idx // self.n_lo) << _U_BITS) | (idx % self.n_lo), self.store[idx]


class _IdMap:
    """Stable compact codes 0, 1, 2, ... for arbitrary int64 ids (append-only)."""

    def __init__(self, device: torch.device, space: int | None = None):
        self.ids = torch.empty(0, dtype=torch.int64, device=device)  # sorted
        self.codes_sorted = torch.empty(0, dtype=torch.int64, device=device)
        self.n = 0
        # ids known to lie in [0, space) with a small space: a dense lookup table replaces
        # the sort of every chunk (only ids never seen before go through the sorted path)
        self._lut = None if space is None else torch.full((space,), -1, dtype=torch.int64,
                                                            device=device)  # fmt: skip

    def codes(self, ids: torch.Tensor) -> torch.Tensor:
        if self._lut is not None:
            out = self._lut[ids]
            miss = out < 0
            if bool(miss.any()):
                new = torch.unique(ids[miss])
                self._lut[new] = self._sorted_codes(new)
                out = self._lut[ids]
            return out
        return self._sorted_codes(ids)

    def _sorted_codes(self, ids: torch.Tensor) -> torch.Tensor:
        uniq, inv = torch.unique(ids.reshape(-1), sorted=True, return_inverse=True)
        out = torch.empty_like(uniq)
        if self.n:
            pos = torch.searchsorted(self.ids, uniq).clamp(max=self.n - 1)
            found = self.ids[pos] == uniq
            out[found] = self.codes_sorted[pos[found]]
        else:
            found = torch.zeros_like(uniq, dtype=torch.bool)
        new = uniq[~found]
        if new.numel():
            new_codes = torch.arange(self.n, self.n + new.numel(), device=ids.device)
            out[~found] = new_codes
            all_ids = torch.cat([self.ids, new])
            all_codes = torch.cat([self.codes_sorted, new_codes])
            order = torch.argsort(all_ids)
            self.ids, self.codes_sorted = all_ids[order], all_codes[order]
            self.n += new.numel()
        return out[inv].reshape(ids.shape)

    def raw(self) -> torch.Tensor:
        """The original id of every code, in code order."""
        out = torch.empty(self.n, dtype=torch.int64, device=self.ids.device)
        out[self.codes_sorted] = self.ids
        return out


# ------------------------------------------------------------------------ PairwiseMI


class PairwiseMI:
    """Streaming ``I(X_i; Y_j)`` for every input/output pair of a layer (bits).

    Parameters: ``n_in``, ``n_out`` neurons; ``in_bins``, ``out_bins`` bins; ``device``
    where the tables live (counts in float64; on MPS they are kept on the CPU);
    ``groups``: batch-means groups for the CI of the total (reduced automatically when
    the tables would exceed ~256 MiB); ``block``: rows per internal GEMM block.

    Feed :meth:`update` (all inputs intervened: EI_parts) or :meth:`update_single`
    (only input ``i`` intervened: sensitivity), then :meth:`compute`.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        in_bins: int,
        out_bins: int,
        *,
        device: str | torch.device = "cpu",
        groups: int = 20,
        block: int = 1 << 15,
    ):
        self.n_in = _check_int(n_in, "n_in", 1)
        self.n_out = _check_int(n_out, "n_out", 1)
        self.in_bins = _check_int(in_bins, "in_bins", 2)
        self.out_bins = _check_int(out_bins, "out_bins", 2)
        self.block = _check_int(block, "block", 64)
        groups = _check_int(groups, "groups", 2)
        self.device = torch.device(device)
        self._acc = torch.device("cpu") if self.device.type == "mps" else self.device
        self._din, self._dout = self.n_in * self.in_bins, self.n_out * self.out_bins
        size = self._din * self._dout
        self._notes: list[str] = []
        fit = max(2, (1 << 25) // max(size, 1))  # 2^25 float64 = 256 MiB
        if fit < groups:
            self._notes.append(
                f"only {fit} batch-means groups fit in memory for {self.n_in}x{self.n_out} "
                f"tables (asked {groups}); the CI of the total has {fit - 1} degrees of freedom."
            )
            groups = fit
        self.groups = groups
        # group tables, laid out as the GEMM produces them: (K, n_out*Bout, n_in*Bin)
        self._g = torch.zeros(groups, self._dout, self._din, dtype=torch.float64, device=self._acc)
        self._yy = torch.zeros(self._dout, self._dout, dtype=torch.float64, device=self._acc)
        self._count = 0  # samples given to update()
        self._single = np.zeros(self.n_in, dtype=np.int64)  # samples per row via update_single
        self._int8 = _int_mm_ok(self.device)
        self._off_in = torch.arange(self.n_in, device=self.device, dtype=torch.int32) * self.in_bins
        self._off_out = (
            torch.arange(self.n_out, device=self.device, dtype=torch.int32) * self.out_bins
        )

    # ---- properties
    @property
    def samples(self) -> int:
        """Sample rows fed in total (update() rows + update_single() rows of every input)."""
        return int(self._count + self._single.sum())

    @property
    def row_samples(self) -> np.ndarray:
        """Samples behind each input's row of tables, shape ``(n_in,)``."""
        return self._count + self._single

    def tables(self) -> torch.Tensor:
        """Joint counts ``(n_in, n_out, in_bins, out_bins)``, float64 on the accumulator device."""
        t = self._g.sum(0).view(self.n_out, self.out_bins, self.n_in, self.in_bins)
        return t.permute(2, 0, 3, 1)

    # ---- accumulation
    def _onehots(self, x: torch.Tensor, y: torch.Tensor, lead: int):
        """Group-major int8/float one-hots for a block: X as (K, Q, n_x*Bx) and Y^T as
        (K, Dout, Q); sample s of the block goes to group (lead + s) % K, slot (lead+s)//K
        (round-robin, folded into the scatter index so no row gather is needed)."""
        k_, n = self.groups, x.shape[0]
        q_ = -(-(lead + n) // k_)
        dev = self.device
        p = torch.arange(lead, lead + n, device=dev, dtype=torch.int32)
        grp, slot = p % k_, p // k_
        dest = grp * q_ + slot
        dx = x.shape[1] * (self.in_bins)
        dtype = torch.int8 if self._int8 else torch.float32
        xb = torch.zeros(k_ * q_ * dx, dtype=dtype, device=dev)
        off_x = self._off_in[: x.shape[1]]
        fx = (dest * dx).unsqueeze(1) + (x.to(torch.int32) + off_x)
        xb.index_fill_(0, fx.reshape(-1).long(), 1)
        yb = torch.zeros(k_ * self._dout * q_, dtype=dtype, device=dev)
        fy = ((grp * self._dout).unsqueeze(1) + (y.to(torch.int32) + self._off_out)) * q_
        fy = fy + slot.unsqueeze(1)
        yb.index_fill_(0, fy.reshape(-1).long(), 1)
        return xb.view(k_, q_, dx), yb.view(k_, self._dout, q_)

    def _mm(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self._int8 and a.shape[1] >= 8:
            # (below 8 rows per group the int8 kernel mis-reads degenerate strides, and
            # there is nothing to gain)
            return torch._int_mm(a, b)
        if self._int8:
            return a.to(torch.float32) @ b.to(torch.float32)
        return a @ b  # float32 0/1 products summed in fp32: exact below 2^24 per block

    def update(self, x_idx: torch.Tensor, y_idx: torch.Tensor) -> None:
        """Add ``N`` samples with every input intervened.

        ``x_idx`` ``(N, n_in)`` and ``y_idx`` ``(N, n_out)`` are integer bin indices.
        """
        x = _check_idx(x_idx, "x_idx", (None, self.n_in), self.in_bins, self.device)
        y = _check_idx(y_idx, "y_idx", (None, self.n_out), self.out_bins, self.device)
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"x_idx has {x.shape[0]} rows but y_idx has {y.shape[0]}: pass one output "
                "row per input row."
            )
        for s in range(0, x.shape[0], self.block):
            xs, ys = x[s : s + self.block], y[s : s + self.block]
            xo, yt = self._onehots(xs, ys, self._count % self.groups)
            for k in range(self.groups):  # K GEMMs per block: one per batch-means group
                self._g[k] += self._mm(yt[k], xo[k]).to(torch.float64, copy=False).to(self._acc)
                # outputs x outputs (for the null-variance of the total): Y^T Y
                self._yy += self._mm(yt[k], yt[k].transpose(0, 1).contiguous()).to(
                    device=self._acc, dtype=torch.float64
                )
            self._count += xs.shape[0]

    def update_single(self, i: int, x_idx_i: torch.Tensor, y_idx: torch.Tensor) -> None:
        """Add ``N`` samples of the single-input intervention on input ``i``.

        ``x_idx_i`` ``(N,)`` holds input ``i``'s bins, ``y_idx`` ``(N, n_out)`` the outputs;
        only row ``i`` of the tables is filled.
        """
        i = _check_int(i, "i", 0)
        if i >= self.n_in:
            raise ValueError(
                f"input index i={i} is out of range: the layer has {self.n_in} inputs."
            )
        x = _check_idx(x_idx_i, "x_idx_i", (None,), self.in_bins, self.device)
        y = _check_idx(y_idx, "y_idx", (None, self.n_out), self.out_bins, self.device)
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"x_idx_i has {x.shape[0]} rows but y_idx has {y.shape[0]}: pass one output "
                "row per input value."
            )
        g = self._g.view(self.groups, self._dout, self.n_in, self.in_bins)
        for s in range(0, x.shape[0], self.block):
            xs, ys = x[s : s + self.block, None], y[s : s + self.block]
            xo, yt = self._onehots(xs, ys, int(self._single[i] % self.groups))
            for k in range(self.groups):
                g[k, :, i, :] += self._mm(yt[k], xo[k]).to(device=self._acc, dtype=torch.float64)
            self._single[i] += xs.shape[0]

    def merge(self, other: PairwiseMI) -> PairwiseMI:
        """Add another estimator's samples (same shape and bins) into this one; returns self.

        Its groups are rotated so that merging update()-only streams gives exactly the
        state of one estimator fed both streams in turn.
        """
        if not isinstance(other, PairwiseMI):
            raise TypeError(f"can only merge a PairwiseMI; got {type(other).__name__}.")
        mine = (self.n_in, self.n_out, self.in_bins, self.out_bins, self.groups)
        theirs = (other.n_in, other.n_out, other.in_bins, other.out_bins, other.groups)
        if mine != theirs:
            raise ValueError(
                f"cannot merge PairwiseMI(n_in, n_out, in_bins, out_bins, groups)={theirs} "
                f"into {mine}: build both with the same arguments."
            )
        og = other._g.to(self._acc).view(self.groups, self._dout, self.n_in, self.in_bins)
        shifts = np.where(other._single > 0, self._single, self._count) % self.groups
        idx = torch.arange(self.groups).view(-1, 1) - torch.as_tensor(shifts).view(1, -1)
        idx = idx % self.groups  # new group k takes other's group (k - shift)
        idx = idx.to(self._acc).view(self.groups, 1, self.n_in, 1).expand_as(og)
        g = self._g.view(self.groups, self._dout, self.n_in, self.in_bins)
        g += torch.gather(og, 0, idx)
        self._yy += other._yy.to(self._acc)
        self._count += other._count
        self._single += other._single
        return self

    # ---- results
    def compute(self, known_input_marginal: bool = True) -> PairwiseResult:
        """Bias-corrected ``I(X_i; Y_j)`` matrix, its CIs, and the total with its CI.

        ``known_input_marginal=True`` uses ``P(X_i = a) = 1/in_bins`` (true under the
        intervention); ``False`` gives the ordinary plug-in MI with Miller-Madow correction.
        """
        warns = list(self._notes)
        t = self.tables().to("cpu")  # (n_in, n_out, A, B)
        r = _mi_core(t, known_input_marginal)
        value, var_lin, var_null = r["value"], r["var_linear"], r["var_null"]
        var = var_lin + var_null
        sd = var.sqrt()
        lo, hi = value - Z95 * sd, value + Z95 * sd
        rows_n = torch.as_tensor(self.row_samples, dtype=torch.float64)
        have = rows_n > 0
        if not bool(have.all()):
            miss = np.flatnonzero(~have.numpy()).tolist()
            warns.append(
                f"inputs {miss[:10]}{'...' if len(miss) > 10 else ''} have no samples: their "
                "rows are NaN and the total covers the other inputs only."
            )
        if not bool(have.any()):
            nan = math.nan
            total = Estimate(nan, nan, nan, 0, nan, ["no samples yet: call update() first"])
            return PairwiseResult(
                value.numpy(), lo.numpy(), hi.numpy(), r["plugin"].numpy(), total,
                warns + total.warnings, sd.numpy(), self.row_samples.copy(),
            )  # fmt: skip
        # -- warnings: undersampled tables, unobserved input bins
        cells = self.in_bins * self.out_bins
        per_cell = rows_n[have].min().item() / cells
        if per_cell < MIN_PER_CELL:
            warns.append(
                f"undersampled tables: {int(rows_n[have].min())} samples for "
                f"{self.in_bins}x{self.out_bins} = {cells} cells ({per_cell:.2f} per cell, "
                f"want >= {MIN_PER_CELL:g}); the bias correction is first-order only, so "
                "expect residual bias. Use more samples or fewer bins."
            )
        a_obs = r["a_obs"][:, 0]
        short = (a_obs < self.in_bins) & have
        if bool(short.any()):
            warns.append(
                f"{int(short.sum())} inputs have input bins with no samples (fewest bins "
                f"seen: {int(a_obs[have].min())} of {self.in_bins}); their MI is over the "
                "observed bins only."
            )
        # -- total: value, batch-means linear variance, analytic null variance
        total_v = float(value[have].sum())
        total_plug = float(r["plugin"][have].sum())
        coef_n = r["coef"] * rows_n.view(-1, 1, 1, 1)  # per-sample influence, (i, j, a, b)
        gk = self._g.to("cpu").view(self.groups, self.n_out, self.out_bins, self.n_in, self.in_bins)
        s_ki = torch.einsum("kjbia,ijab->ki", gk, coef_n)
        n_ki = gk[:, 0].sum((1, 3))  # (K, n_in): samples of row i in group k (any j)
        l_k = torch.where(n_ki > 0, s_ki / n_ki.clamp(min=1.0), 0.0)[:, have].sum(1)
        k_eff = int((n_ki[:, have] > 0).all(1).sum())
        v_null = self._null_var_total(t, r, have)
        # batch means of the linearised total, less the noise of its coefficients
        # (2 v_null, as for one pair: see _mi_core)
        v_lin = max(float(l_k.var(unbiased=True)) / self.groups - 2 * v_null, 0.0)
        v_tot = v_lin + v_null
        df_lin = max(k_eff - 1, 1)
        dof = math.inf if v_lin <= 0 else (v_tot**2) / (v_lin**2 / df_lin)
        if k_eff < self.groups:
            warns.append(
                f"only {k_eff} of {self.groups} batch-means groups hold samples of every input "
                f"({int(rows_n[have].min())} samples in the smallest row); the CI of the "
                "total is rough. Use more samples."
            )
        tlo, thi = _interval(total_v, v_tot, dof)
        total = Estimate(total_v, tlo, thi, self.samples, total_plug, list(warns))
        return PairwiseResult(
            matrix=value.numpy(),
            matrix_ci_low=lo.numpy(),
            matrix_ci_high=hi.numpy(),
            plugin_matrix=r["plugin"].numpy(),
            total=total,
            warnings=warns,
            matrix_se=sd.numpy(),
            row_samples=self.row_samples.copy(),
        )

    def _null_var_total(self, t: torch.Tensor, r: dict, have: torch.Tensor) -> float:
        """Chi-square (null) part of Var(total): sum_i 2 (A_i - 1) Phi_i / (2 N_i ln2)^2."""
        a1 = (r["a_obs"][:, 0] - 1).clamp(min=0)  # (n_in,)
        n_eff = r["n_eff"][:, 0]  # (n_in,)
        # Phi from the output x output table (rows fed by update()): sum_jj' phi^2(Y_j, Y_j')
        phi_upd = 0.0
        if self._count > 0:
            yy = self._yy.to("cpu") / self._count
            p = torch.diagonal(yy)
            outer = p[:, None] * p[None, :]
            phi_upd = float(torch.where(outer > 0, yy**2 / outer.clamp(min=1e-300), 0.0).sum())
            phi_upd -= self.n_out**2
        # rows with update_single data: perfect-correlation bound (sum_j sqrt(K_j - 1))^2
        k_j = ((t.sum(2) > 0).sum(-1).to(torch.float64) - 1).clamp(min=0)  # (n_in, n_out)
        phi_bound = k_j.sqrt().sum(1) ** 2
        single = torch.as_tensor(self._single > 0)
        phi = torch.where(single, phi_bound, torch.full_like(phi_bound, max(phi_upd, 0.0)))
        v = 2 * a1 * phi / (2 * n_eff * LN2) ** 2
        return float(v[have].sum())


# --------------------------------------------------------------------------- WholeEI


class WholeEI:
    """Streaming cell-conditional estimator of whole-layer EI = I(X; Y) (bits).

    ``update(cells, y_idx)``: ``cells`` ``(C, n_in)`` integer bin tuples, ``y_idx``
    ``(C, M, n_out)`` the binned outputs of ``M`` points drawn uniformly inside each cell.
    Cells are drawn uniformly (i.i.d.), or, with ``exhaustive=True``, every cell is
    passed (each ``update`` may hold any subset; points of a cell pool across updates).

    Besides ``ei`` the result holds ``output_nodes[j]`` = I(X; Y_j) and
    ``input_nodes[i]`` = I(X_i; Y) (``P(X_i = a) = 1/in_bins`` known). Set
    ``input_nodes=False`` to skip the latter: it keeps a sparse table of
    ``(input, bin, output tuple)`` sums whose size grows with the number of distinct
    output tuples (about ``(groups + 1) * 16`` bytes per entry). Set
    ``output_nodes=False`` to skip I(X; Y_j) (about as costly again as EI in exhaustive
    mode); the skipped list is then empty. ``max_input_entries`` caps that table in
    sampled mode: once it holds more entries, the input nodes are dropped (their tables
    freed, ``input_nodes_dropped`` set, the list empty) and EI goes on; at peak an entry
    costs several hundred bytes (sort buffers), so the cap bounds the memory.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        in_bins: int,
        out_bins: int,
        *,
        device: str | torch.device = "cpu",
        exhaustive: bool | None = None,
        groups: int = 16,
        input_nodes: bool = True,
        output_nodes: bool = True,
        max_input_entries: int | None = None,
    ):
        self.n_in = _check_int(n_in, "n_in", 1)
        self.n_out = _check_int(n_out, "n_out", 1)
        self.in_bins = _check_int(in_bins, "in_bins", 2)
        self.out_bins = _check_int(out_bins, "out_bins", 2)
        self.groups = _check_int(groups, "groups", 2)
        self.device = torch.device(device)
        self._acc = torch.device("cpu") if self.device.type == "mps" else self.device
        self.exhaustive = exhaustive
        self.with_inputs = bool(input_nodes)
        self.with_outputs = bool(output_nodes)
        self.max_input_entries = max_input_entries
        self.input_nodes_dropped = False
        k = self.groups
        if self.with_inputs and self.n_in * self.in_bins * k >= 1 << 22:
            raise ValueError(
                f"input_nodes for {self.n_in} inputs x {self.in_bins} bins x {k} groups is too "
                "large: pass input_nodes=False (or fewer groups)."
            )
        acc = self._acc
        space = self.out_bins**self.n_out
        small = space <= _DENSE_SPACE
        self._ids = _IdMap(acc, space if small else None)
        self._samples = 0
        self._cells = 0
        # sampled mode: per group of cells
        self._ncell = torch.zeros(k, dtype=torch.float64, device=acc)
        self._hc = torch.zeros(2, k, dtype=torch.float64, device=acc)  # corrected, plug-in
        self._kc = 0.0  # sum over cells of distinct outputs / M (undersampling check)
        # sum over cells of |jackknife - Grassberger| within-cell entropy: [Y, Y_0, Y_1, ...]
        self._gap = torch.zeros(1 + self.n_out, dtype=torch.float64)
        # half-points diagnostic: [sum over cells of H(Y | cell) from the first M/2 points, cells]
        self._half = torch.zeros(2, dtype=torch.float64)
        # key (g << 40) | u : sum_c q_cu; key u : sum_c q_cu^2 (dense when codes are few)
        self._y1 = _DenseSum(acc, k, space) if small else _SparseSum(acc)
        self._y2 = _DenseSum(acc, 1, space) if small else _SparseSum(acc)
        self._o1 = torch.zeros(k, self.n_out, self.out_bins, dtype=torch.float64, device=acc)
        self._o2 = torch.zeros(self.n_out, self.out_bins, dtype=torch.float64, device=acc)
        self._ho = torch.zeros(2, k, self.n_out, dtype=torch.float64, device=acc)
        self._cia = torch.zeros(k, self.n_in * self.in_bins, dtype=torch.float64, device=acc)
        self._i1 = _SparseSum(acc)  # key ((ia * K + g) << 40) | u : sum q_cu
        self._i2 = _SparseSum(acc)  # key (ia << 40) | u : sum q_cu^2
        # exhaustive mode: per cell and point group
        self._ex = _SparseSum(acc)  # key ((cell * K + g) << 40) | u : count
        self._exo = _SparseSum(acc)  # key ((cell*K + g) * n_out + j) * Bout + b : count
        self._pt: torch.Tensor | None = None  # points per cell so far

    @property
    def samples(self) -> int:
        """Points fed in total (cells x points per cell)."""
        return self._samples

    @property
    def cells_seen(self) -> int:
        """Cells fed (sampled mode: cell draws; exhaustive: distinct cells with points)."""
        if self.exhaustive and self._pt is not None:
            return int((self._pt > 0).sum())
        return self._cells

    def _ncells_all(self) -> int:
        return self.in_bins**self.n_in

    def update(
        self, cells: torch.Tensor, y_idx: torch.Tensor, exhaustive: bool | None = None
    ) -> None:
        """Add ``C`` cells with ``M`` points each (see the class docstring)."""
        if exhaustive is not None:
            if self.exhaustive is not None and bool(exhaustive) != self.exhaustive:
                raise ValueError(
                    f"this WholeEI is in exhaustive={self.exhaustive} mode; got "
                    f"exhaustive={exhaustive}: use one estimator per mode."
                )
            self.exhaustive = bool(exhaustive)
        if self.exhaustive is None:
            self.exhaustive = False
        c = _check_idx(cells, "cells", (None, self.n_in), self.in_bins, self._acc)
        if not isinstance(y_idx, torch.Tensor) or y_idx.dim() != 3:
            raise ValueError(
                "y_idx must be a (C, M, n_out) integer tensor: the binned outputs of M points "
                f"in each of the C cells; got {getattr(y_idx, 'shape', type(y_idx))}."
            )
        y = _check_idx(y_idx, "y_idx", (c.shape[0], None, self.n_out), self.out_bins, self._acc)
        n_c, m = y.shape[0], y.shape[1]
        if n_c == 0 or m == 0:
            return
        u = self._ids.codes(encode_rows(y, self.out_bins))  # (C, M) compact codes
        if self.exhaustive:
            self._update_exhaustive(c, y, u)
        else:
            self._update_sampled(c, y, u)
        self._samples += n_c * m
        self._cells += n_c

    @staticmethod
    def _cell_runs(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-cell histograms of the rows of ``u`` (C, M): runs of equal codes after a
        row sort -> (count, cell, code) per distinct (cell, code)."""
        n_c, m = u.shape
        s, _ = u.sort(dim=1)
        start = torch.ones_like(s, dtype=torch.bool)
        start[:, 1:] = s[:, 1:] != s[:, :-1]
        flat = start.reshape(-1)
        pos = torch.nonzero(flat).squeeze(1)
        ends = torch.cat([pos[1:], pos.new_full((1,), n_c * m)])
        # a run never crosses a row boundary (each row's first entry starts a run)
        return (ends - pos).to(torch.float64), pos // m, s.reshape(-1)[pos]

    def _update_sampled(self, c: torch.Tensor, y: torch.Tensor, u: torch.Tensor) -> None:
        k_, (n_c, m) = self.groups, u.shape
        dev = u.device
        grp = (self._cells + torch.arange(n_c, device=dev)) % k_
        n_m = torch.full((n_c,), float(m), dtype=torch.float64, device=dev)
        pairwise = m <= _PAIRWISE_M and not self.with_inputs
        if pairwise:
            # no sort: each point's multiplicity in its cell from an (M x M) comparison;
            # a sum over distinct values of f(c_v) is the sum over points of f(c_i) / c_i
            sums, mult, *hs_ = _point_hist_sums(u, m // 2 if m >= 4 else 0)
        else:
            cnt, r_c, r_u = self._cell_runs(u)
            r_g = grp[r_c]
            q = cnt / m
            sums = _sparse_hist_sums(cnt, r_c, n_c)
        h_p, h_g, h_j = _hist_entropies(sums, n_m)
        self._hc[0].index_add_(0, grp, h_g)
        self._hc[1].index_add_(0, grp, h_p)
        self._ncell.index_add_(0, grp, torch.ones(n_c, dtype=torch.float64, device=dev))
        self._kc += float(sums[:, 3].sum()) / m
        self._gap[0] += float((h_j - h_g).abs().sum())
        if m >= 4:  # the half-points diagnostic: the same cells, their first M/2 points
            if pairwise:
                hs = hs_[0]
            else:
                hcnt, hr_c, _ = self._cell_runs(u[:, : m // 2])
                hs = _sparse_hist_sums(hcnt, hr_c, n_c)
            hh = _hist_entropies(hs, torch.full_like(n_m, float(m // 2)))[1]
            self._half += torch.stack(
                [hh.sum().to(self._half.device), torch.tensor(float(n_c), dtype=torch.float64)]
            )
        if pairwise:  # per point: sum_c q_cu = sum_i 1/m, sum_c q_cu^2 = sum_i c_i / m^2
            self._y1.add((grp[:, None] << _U_BITS) | u, torch.full(u.shape, 1.0 / m,
                                                                    dtype=torch.float64,
                                                                    device=dev))  # fmt: skip
            self._y2.add(u, mult / (m * m))
        else:
            self._y1.add((r_g << _U_BITS) | r_u, q)
            self._y2.add(r_u, q * q)
        if self.with_outputs:
            self._update_outputs_sampled(y, grp, n_m)
        if self.with_inputs:
            ia = c + torch.arange(self.n_in, device=dev) * self.in_bins  # (C, n_in)
            self._cia.view(-1).index_add_(
                0, (grp[:, None] * (self.n_in * self.in_bins) + ia).reshape(-1),
                torch.ones(ia.numel(), dtype=torch.float64, device=dev),
            )  # fmt: skip
            r_ia = ia[r_c]  # (R, n_in)
            self._i1.add(
                ((r_ia * k_ + r_g[:, None]) << _U_BITS) | r_u[:, None], q[:, None].expand_as(r_ia)
            )
            self._i2.add((r_ia << _U_BITS) | r_u[:, None], (q * q)[:, None].expand_as(r_ia))
            held = self._i1.keys.numel() + self._i1._pending
            if self.max_input_entries is not None and held > self.max_input_entries:
                # the table grows with distinct (input, bin, output tuple) entries: stop
                # before it exhausts memory; EI and the output nodes do not need it
                self.with_inputs, self.input_nodes_dropped = False, True
                self._i1 = self._i2 = None

    def _update_outputs_sampled(self, y: torch.Tensor, grp: torch.Tensor, n_m: torch.Tensor):
        """Output nodes: per cell histogram of each Y_j."""
        n_c, m, dev = y.shape[0], y.shape[1], y.device
        oc = torch.zeros(n_c, self.n_out, self.out_bins, dtype=torch.float64, device=dev)
        oc.scatter_add_(
            2,
            y.transpose(1, 2),
            torch.ones(y.transpose(1, 2).shape, dtype=torch.float64, device=dev),
        )
        qj = oc / m
        self._o1.index_add_(0, grp, qj)
        self._o2 += (qj * qj).sum(0)
        hjp, hjg, hjj = _hist_entropies(_dense_hist_sums(oc), n_m[:, None])
        self._ho[0].index_add_(0, grp, hjg)
        self._ho[1].index_add_(0, grp, hjp)
        self._gap[1:] += (hjj - hjg).abs().sum(0).to(self._gap.device)

    def _update_exhaustive(self, c: torch.Tensor, y: torch.Tensor, u: torch.Tensor) -> None:
        k_, m = self.groups, u.shape[1]
        dev = u.device
        n_all = self._ncells_all()
        if n_all * k_ >= 1 << 22:
            raise ValueError(
                f"exhaustive=True with {self.in_bins}**{self.n_in} = {n_all} cells is too many "
                "to keep per cell: sample cells instead (exhaustive=False)."
            )
        if self._pt is None:
            self._pt = torch.zeros(n_all, dtype=torch.int64, device=dev)
        cid = encode_rows(c, self.in_bins)  # (C,)
        # points are dealt round-robin into groups, offset per cell so groups stay balanced
        g = (cid[:, None] + self._pt[cid][:, None] + torch.arange(m, device=dev)) % k_
        self._pt.index_add_(0, cid, torch.full_like(cid, m))
        base = cid[:, None] * k_ + g  # (C, M)
        self._ex.add((base << _U_BITS) | u, torch.ones(u.shape, dtype=torch.float64, device=dev))
        if self.with_outputs:
            jb = torch.arange(self.n_out, device=dev) * self.out_bins + y  # (C, M, n_out)
            key = base[..., None] * (self.n_out * self.out_bins) + jb
            self._exo.add(key, torch.ones(key.shape, dtype=torch.float64, device=dev))

    def merge(self, other: WholeEI) -> WholeEI:
        """Add another estimator's data (same arguments and mode) into this one; returns self."""
        if not isinstance(other, WholeEI):
            raise TypeError(f"can only merge a WholeEI; got {type(other).__name__}.")
        mine = (self.n_in, self.n_out, self.in_bins, self.out_bins, self.groups, self.with_inputs,
                self.with_outputs)  # fmt: skip
        theirs = (
            other.n_in, other.n_out, other.in_bins, other.out_bins, other.groups, other.with_inputs,
            other.with_outputs,
        )  # fmt: skip
        if mine != theirs:
            raise ValueError(
                f"cannot merge WholeEI{theirs} into WholeEI{mine} "
                "(n_in, n_out, in_bins, out_bins, groups, input_nodes, output_nodes): use the "
                "same arguments."
            )
        if other._samples == 0:
            return self
        if self.exhaustive is not None and other.exhaustive is not None:
            if self.exhaustive != other.exhaustive:
                raise ValueError("cannot merge an exhaustive WholeEI with a sampled one.")
        self.exhaustive = other.exhaustive if self.exhaustive is None else self.exhaustive
        trans = self._ids.codes(other._ids.raw().to(self._acc))  # other's code -> my code

        def remap(sp: _SparseSum, dst: _SparseSum) -> None:
            keys, vals = sp.items()
            keys = keys.to(self._acc)
            hi, lo = keys >> _U_BITS, keys & _U_MASK
            dst.add((hi << _U_BITS) | trans[lo], vals.to(self._acc))

        for a, b in ((other._y1, self._y1), (other._i1, self._i1), (other._ex, self._ex)):
            remap(a, b)
        keys, vals = other._y2.items()
        self._y2.add(trans[keys.to(self._acc)], vals.to(self._acc))
        keys, vals = other._i2.items()
        keys = keys.to(self._acc)
        self._i2.add(((keys >> _U_BITS) << _U_BITS) | trans[keys & _U_MASK], vals.to(self._acc))
        keys, vals = other._exo.items()
        self._exo.add(keys.to(self._acc), vals.to(self._acc))
        for name in ("_ncell", "_hc", "_o1", "_o2", "_ho", "_cia"):
            getattr(self, name).add_(getattr(other, name).to(self._acc))
        self._kc += other._kc
        self._gap += other._gap
        self._half += other._half
        if other._pt is not None:
            self._pt = other._pt.clone() if self._pt is None else self._pt + other._pt.to(self._acc)
        self._samples += other._samples
        self._cells += other._cells
        return self

    # ---- results
    def compute(self) -> WholeResult:
        """EI, node-level terms, their 95 % CIs (jackknife; see the module docstring)."""
        if self._samples == 0:
            nan = math.nan
            e = Estimate(nan, nan, nan, 0, nan, ["no samples yet: call update() first"])
            return WholeResult(e, [], [], list(e.warnings), 0, 0)
        if self.exhaustive:
            return self._compute_exhaustive()
        return self._compute_sampled()

    def _jack(self, full: torch.Tensor, loo: torch.Tensor, valid: torch.Tensor):
        """Delete-a-group jackknife: ``full`` (...,), ``loo`` (..., K) -> (low, high) arrays."""
        kv = int(valid.sum())
        if kv < 2:
            inf = torch.full_like(full, math.inf)
            return (-inf).numpy(), inf.numpy()
        th = loo[..., valid]
        var = (kv - 1) / kv * ((th - th.mean(-1, keepdim=True)) ** 2).sum(-1)
        half = _t_quantile(kv - 1) * var.sqrt()
        return (full - half).numpy(), (full + half).numpy()

    def _estimates(self, full, loo, valid, plug, warns_each=None, allow=None) -> list[Estimate]:
        """Estimates with jackknife CIs whose half-width ``h`` is widened to
        ``sqrt(h^2 + a^2)`` by ``allow`` ``a`` (bits, per estimate): the higher-order
        within-cell bias allowance, mean |jackknife - Grassberger| (the two bias-reduced
        estimators' disagreement bounds the bias left; it is added in quadrature since it
        over-states that bias severalfold in the cases measured)."""
        lo, hi = self._jack(full, loo, valid)
        f, p = full.numpy(), plug.numpy()
        a = np.zeros(f.shape[0]) if allow is None else np.asarray(allow, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            h = np.sqrt(((hi - lo) / 2) ** 2 + a**2)
        return [
            Estimate(float(f[i]), float(f[i] - h[i]), float(f[i] + h[i]), self._samples,
                     float(p[i]), list(warns_each or []))
            for i in range(f.shape[0])
        ]  # fmt: skip

    def _compute_sampled(self) -> WholeResult:
        k_ = self.groups
        warns: list[str] = []
        n_u = self._ids.n
        ck = self._ncell.to("cpu")
        c_tot = float(ck.sum())
        valid = ck > 0
        # replicate columns: 0 = all groups, 1..K = leave group k out
        c_r = torch.cat([ck.sum().view(1), c_tot - ck])  # (R,)

        def rep(x: torch.Tensor) -> torch.Tensor:  # (..., K) -> (..., R)
            tot = x.sum(-1, keepdim=True)
            return torch.cat([tot, tot - x], -1)

        def mix_entropy(
            s1: torch.Tensor,
            s2: torch.Tensor,
            c_r: torch.Tensor,
            seg: torch.Tensor | None,
            n_seg: int,
        ):
            """Corrected entropy of mixtures p = S1/C (per segment); bias from the
            between-cell variance: -(sum S2/S1 - 1) / (2 ln2 (C - 1))."""
            pbar = s1 / c_r.clamp(min=1.0)
            hk = -_xlog2x(pbar)
            full = s1[:, :1]
            ratio = torch.where(full > 0, s2[:, None] / full.clamp(min=1e-300), 0.0)
            if seg is None:
                h, rt = hk.sum(0), ratio.sum(0)
            else:
                h = torch.zeros(n_seg, hk.shape[1], dtype=torch.float64).index_add_(0, seg, hk)
                rt = torch.zeros(n_seg, 1, dtype=torch.float64).index_add_(0, seg, ratio)
            bias = (rt - 1).clamp(min=0) / (2 * LN2 * (c_r - 1).clamp(min=1.0))
            return h + bias, h

        # -- whole EI
        keys, vals = self._y1.items()
        keys, vals = keys.to("cpu"), vals.to("cpu")
        s1 = torch.zeros(n_u, k_, dtype=torch.float64)
        s1.index_put_((keys & _U_MASK, keys >> _U_BITS), vals, accumulate=True)
        s2 = torch.zeros(n_u, dtype=torch.float64)
        k2, v2 = self._y2.items()
        s2.index_put_((k2.to("cpu"),), v2.to("cpu"), accumulate=True)
        hy_c, hy_p = mix_entropy(rep(s1), s2, c_r, None, 1)
        hc = self._hc.to("cpu")
        cond = rep(hc[0]) / c_r.clamp(min=1.0)
        ei_r = hy_c - cond
        ei_plug = hy_p[0] - hc[1].sum() / c_tot
        hy_plug = float(hy_p[0])
        # -- warnings with numbers
        if hy_plug > math.log2(max(c_tot, 1)) - 1.0 or n_u > 0.2 * c_tot:
            warns.append(
                f"H(Y) is undersampled: {n_u} distinct output tuples among {int(c_tot)} cells "
                f"(plug-in H(Y) = {hy_plug:.2f} bits, log2(cells) = {math.log2(c_tot):.2f}); "
                "EI may be underestimated. Sample more cells or use fewer output bins."
            )
        m_frac = self._kc / c_tot
        if m_frac > 0.25:
            warns.append(
                f"within-cell entropies are undersampled: a cell's points show on average "
                f"{100 * m_frac:.0f} % distinct output tuples; use more points per cell."
            )
        if int(valid.sum()) < k_:
            warns.append(
                f"only {int(valid.sum())} cells: the jackknife uses {int(valid.sum())} groups."
            )
        gap = (self._gap / max(c_tot, 1.0)).numpy()
        ei = self._estimates(
            ei_r[:1], ei_r[1:].view(1, -1), valid, ei_plug.view(1), warns, gap[:1]
        )[0]
        outs: list[Estimate] = []
        if self.with_outputs:
            outs = self._output_nodes_sampled(c_r, valid, rep, mix_entropy, gap)
        # -- input nodes I(X_i; Y) = H(Y) - sum_a (1/B) H(Y | X_i = a)
        ins: list[Estimate] = []
        if self.with_inputs:
            ins = self._input_nodes_sampled(hy_c, hy_p, valid, rep, warns)
        ei_half = math.nan
        if float(self._half[1]) > 0:
            ei_half = float(hy_c[0]) - float(self._half[0] / self._half[1])
        return WholeResult(ei, outs, ins, warns, int(c_tot), n_u, ei_half)

    def _output_nodes_sampled(self, c_r, valid, rep, mix_entropy, gap) -> list[Estimate]:
        """I(X; Y_j) per output from the per-cell histograms of each Y_j."""
        k_, c_tot = self.groups, float(c_r[0])
        o1 = self._o1.to("cpu").permute(1, 2, 0).reshape(-1, k_)  # (n_out*Bout, K)
        o2 = self._o2.to("cpu").reshape(-1)
        seg = torch.arange(self.n_out).repeat_interleave(self.out_bins)
        hj_c, hj_p = mix_entropy(rep(o1), o2, c_r, seg, self.n_out)
        ho = self._ho.to("cpu")  # (2, K, n_out)
        condj = rep(ho[0].T) / c_r.clamp(min=1.0)
        oj = hj_c - condj  # (n_out, R)
        oj_plug = hj_p[:, 0] - ho[1].sum(0) / c_tot
        return self._estimates(oj[:, 0], oj[:, 1:], valid, oj_plug, None, gap[1:])

    def _input_nodes_sampled(self, hy_c, hy_p, valid, rep, warns) -> list[Estimate]:
        k_, nia = self.groups, self.n_in * self.in_bins
        keys, vals = self._i1.items()
        keys, vals = keys.to("cpu"), vals.to("cpu")
        hi = keys >> _U_BITS
        ia, g, u = hi // k_, hi % k_, keys & _U_MASK
        pair = (ia << _U_BITS) | u
        upair, inv = torch.unique(pair, sorted=True, return_inverse=True)
        s1 = torch.zeros(upair.numel(), k_, dtype=torch.float64)
        s1.index_put_((inv, g), vals, accumulate=True)
        k2, v2 = self._i2.items()
        k2, v2 = k2.to("cpu"), v2.to("cpu")
        pos = torch.searchsorted(k2, upair).clamp(max=max(k2.numel() - 1, 0))
        s2 = torch.where(k2[pos] == upair, v2[pos], 0.0)
        seg = upair >> _U_BITS
        cia = rep(self._cia.to("cpu").T)  # (n_in*Bin, R)
        # per (i, a) mixture entropies, each with its own cell count per replicate
        s1_r = rep(s1)
        pb = s1_r / cia[seg].clamp(min=1.0)
        hk = -_xlog2x(pb)
        h = torch.zeros(nia, hk.shape[1], dtype=torch.float64).index_add_(0, seg, hk)
        full = s1_r[:, :1]
        ratio = torch.where(full > 0, s2[:, None] / full.clamp(min=1e-300), 0.0)
        rt = torch.zeros(nia, 1, dtype=torch.float64).index_add_(0, seg, ratio)
        bias = (rt - 1).clamp(min=0) / (2 * LN2 * (cia - 1).clamp(min=1.0))
        h_c, h_p = (h + bias).view(self.n_in, self.in_bins, -1), h.view(self.n_in, self.in_bins, -1)
        seen = (cia[:, 0] > 0).view(self.n_in, self.in_bins).to(torch.float64)
        w = seen / seen.sum(1, keepdim=True).clamp(min=1.0)
        cond_c = (w[..., None] * h_c).sum(1)  # (n_in, R)
        cond_p = (w * h_p[..., 0]).sum(1)
        full_i = hy_c - cond_c
        plug_i = hy_p[0] - cond_p
        if bool((seen < 1).any()):
            warns.append(
                "some input bins were never drawn for some inputs: input-node terms use the "
                "observed bins only; sample more cells."
            )
        return self._estimates(full_i[:, 0], full_i[:, 1:], valid, plug_i)

    def _compute_exhaustive(self) -> WholeResult:
        k_ = self.groups
        warns: list[str] = []
        n_all = self._ncells_all()
        n_u = self._ids.n
        pt = self._pt.to("cpu")
        if int((pt == 0).sum()):
            warns.append(
                f"exhaustive mode but {int((pt == 0).sum())} of {n_all} cells have no points: "
                "EI is over the observed cells only."
            )
        if int(pt[pt > 0].min()) < 2 * k_:
            warns.append(
                f"only {int(pt[pt > 0].min())} points in some cells for {k_} jackknife groups: "
                "the CI is rough; use more points per cell."
            )

        def dense(sp: _SparseSum):
            keys, vals = sp.items()
            return keys.to("cpu"), vals.to("cpu")

        def rep(x: torch.Tensor) -> torch.Tensor:
            tot = x.sum(-1, keepdim=True)
            return torch.cat([tot, tot - x], -1)

        # -- per (cell, output tuple): counts per point group -> replicates
        keys, vals = dense(self._ex)
        hi = keys >> _U_BITS
        cell, g, u = hi // k_, hi % k_, keys & _U_MASK
        pair = (cell << _U_BITS) | u
        upair, inv = torch.unique(pair, sorted=True, return_inverse=True)
        cnt_g = torch.zeros(upair.numel(), k_, dtype=torch.float64)
        cnt_g.index_put_((inv, g), vals, accumulate=True)
        cnt = rep(cnt_g)  # (E, R)
        e_cell, e_u = upair >> _U_BITS, upair & _U_MASK
        n_cell = torch.zeros(n_all, cnt.shape[1], dtype=torch.float64).index_add_(0, e_cell, cnt)
        pts_k = torch.zeros(k_, dtype=torch.float64).index_add_(0, g, vals)
        valid = pts_k > 0
        ei_c, ei_p, hy, gap_c = self._exh_parts(cnt, e_cell, e_u, n_cell, n_u, self.with_inputs)
        seen = n_cell[:, 0] > 0
        gap_y = float(gap_c[0][seen].mean())
        ei = self._estimates(ei_c[:1], ei_c[1:].view(1, -1), valid, ei_p.view(1), warns, [gap_y])[0]
        # half-points diagnostic: the point groups 0 .. K/2 - 1 (about half of every
        # cell's points, since points are dealt round-robin with a per-cell offset)
        c_half = cnt_g[:, : k_ // 2].sum(1, keepdim=True)
        n_half = torch.zeros(n_all, 1, dtype=torch.float64).index_add_(0, e_cell, c_half)
        h_half = _hist_entropies(_sparse_hist_sums(c_half, e_cell, n_all), n_half)[1][:, 0]
        # paired: EI(M/2) - EI(M) = mean H(Y | cell) from all points - from half of them
        ei_half = float(ei_c[0]) + float(gap_c[1][seen].mean() - h_half[seen].mean())
        outs: list[Estimate] = []
        if self.with_outputs:
            outs = self._output_nodes_exhaustive(n_all, seen, valid)
        ins: list[Estimate] = []
        if self.with_inputs:
            ins = self._input_nodes_exhaustive(cnt, e_cell, e_u, n_cell, n_all, hy, valid)
        return WholeResult(ei, outs, ins, warns, int((pt > 0).sum()), n_u, ei_half)

    def _output_nodes_exhaustive(self, n_all, seen, valid) -> list[Estimate]:
        """I(X; Y_j): units (cell, j), outcomes (j, b)."""
        k_ = self.groups

        def rep(x: torch.Tensor) -> torch.Tensor:
            tot = x.sum(-1, keepdim=True)
            return torch.cat([tot, tot - x], -1)

        keys, vals = self._exo.items()
        keys, vals = keys.to("cpu"), vals.to("cpu")
        nb = self.n_out * self.out_bins
        jb, rest = keys % nb, keys // nb
        cell_o, g_o = rest // k_, rest % k_
        ukey, inv = torch.unique(cell_o * nb + jb, sorted=True, return_inverse=True)
        cnt_o = torch.zeros(ukey.numel(), k_, dtype=torch.float64)
        cnt_o.index_put_((inv, g_o), vals, accumulate=True)
        cnt_o = rep(cnt_o)
        oc, ojb = ukey // nb, ukey % nb
        oj = ojb // self.out_bins
        unit = oc * self.n_out + oj
        n_unit = torch.zeros(n_all * self.n_out, cnt_o.shape[1], dtype=torch.float64)
        n_unit.index_add_(0, unit, cnt_o)
        outs_c, outs_p, gap_u = self._exh_mixture(
            cnt_o, unit, ojb, n_unit, nb, torch.arange(nb) // self.out_bins, self.n_out,
            unit_stratum=torch.arange(n_all * self.n_out) % self.n_out,
        )  # fmt: skip
        gap_o = gap_u[0].view(n_all, self.n_out)[seen].mean(0).numpy()
        return self._estimates(outs_c[:, 0], outs_c[:, 1:], valid, outs_p, None, gap_o)

    def _input_nodes_exhaustive(self, cnt, e_cell, e_u, n_cell, n_all, hy, valid):
        """H(Y) - sum_a (1/B) H(Y | X_i = a), mixtures over the cells with c_i = a."""
        powers = self.in_bins ** torch.arange(self.n_in - 1, -1, -1)
        tup = (e_cell[:, None] // powers) % self.in_bins  # (E, n_in)
        ia = tup + torch.arange(self.n_in) * self.in_bins  # (E, n_in)
        nia = self.n_in * self.in_bins
        q = cnt / n_cell[e_cell].clamp(min=1.0)
        v = q * (1 - q) / n_cell[e_cell].clamp(min=1.0)
        cell_tup = (torch.arange(n_all)[:, None] // powers) % self.in_bins
        cell_ia = cell_tup + torch.arange(self.n_in) * self.in_bins  # (n_all, n_in)
        obs = (n_cell > 0).to(torch.float64)  # (n_all, R)
        c_ia = torch.zeros(nia, obs.shape[1], dtype=torch.float64)
        c_ia.index_add_(0, cell_ia.reshape(-1), obs.repeat_interleave(self.n_in, 0))
        okey = (ia << _U_BITS) | e_u[:, None]  # (E, n_in)
        uok, oinv = torch.unique(okey.reshape(-1), sorted=True, return_inverse=True)
        wt = 1.0 / c_ia[ia.reshape(-1)].clamp(min=1.0)  # (E*n_in, R)
        qe = q.repeat_interleave(self.n_in, 0)
        ve = v.repeat_interleave(self.n_in, 0)
        pbar = torch.zeros(uok.numel(), q.shape[1], dtype=torch.float64)
        pbar.index_add_(0, oinv, qe * wt)
        var = torch.zeros_like(pbar).index_add_(0, oinv, ve * wt * wt)
        seg = uok >> _U_BITS
        hk = -_xlog2x(pbar)
        bk = torch.where(pbar > 0, var / pbar.clamp(min=1e-300), 0.0) / (2 * LN2)
        h_ia = torch.zeros(nia, q.shape[1], dtype=torch.float64).index_add_(0, seg, hk)
        b_ia = torch.zeros_like(h_ia).index_add_(0, seg, bk)
        cond_c_i = ((h_ia + b_ia).view(self.n_in, self.in_bins, -1)).mean(1)
        cond_p_i = h_ia.view(self.n_in, self.in_bins, -1)[..., 0].mean(1)
        full_i = hy[0] - cond_c_i
        plug_i = hy[1] - cond_p_i
        return self._estimates(full_i[:, 0], full_i[:, 1:], valid, plug_i)

    def _exh_parts(self, cnt, e_cell, e_u, n_cell, n_u, hy_parts: bool = True):
        """Whole EI from per-cell histograms (replicate columns)."""
        n_all = n_cell.shape[0]
        ei_c, ei_p, gap = self._exh_mixture(
            cnt, e_cell, e_u, n_cell, n_u, torch.zeros(n_u, dtype=torch.int64), 1,
            unit_stratum=torch.zeros(n_all, dtype=torch.int64),
        )  # fmt: skip
        if not hy_parts:
            return ei_c[0], ei_p[0], (ei_c[0] + math.nan, math.nan), gap
        # H(Y) parts alone (for input nodes)
        q = cnt / n_cell[e_cell].clamp(min=1.0)
        obs = (n_cell > 0).to(torch.float64)
        w = 1.0 / obs.sum(0).clamp(min=1.0)
        pbar = torch.zeros(n_u, cnt.shape[1], dtype=torch.float64).index_add_(0, e_u, q * w)
        v = q * (1 - q) / n_cell[e_cell].clamp(min=1.0)
        var = torch.zeros_like(pbar).index_add_(0, e_u, v * w * w)
        h = -_xlog2x(pbar).sum(0)
        b = (torch.where(pbar > 0, var / pbar.clamp(min=1e-300), 0.0) / (2 * LN2)).sum(0)
        return ei_c[0], ei_p[0], (h + b, h[0]), gap

    def _exh_mixture(self, cnt, unit, outcome, n_unit, n_outcome, outcome_stratum, n_strata,
                     unit_stratum):  # fmt: skip
        """I(cell; Y_s) per stratum s from per-unit histograms (columns = replicates).

        ``unit`` = histogram owner (a cell, or a (cell, output) pair) of each entry,
        ``outcome`` its outcome key. Mixture ``p = mean over observed units of q_unit``
        per stratum; bias of H(p) from the within-unit multinomial variance; the
        conditional part is the mean Grassberger entropy of the units. Also returns
        ``[|jackknife - Grassberger|, Grassberger]`` per unit (all points; the first is
        the bias allowance).
        """
        nu = n_unit[unit].clamp(min=1.0)
        q = cnt / nu
        obs = (n_unit > 0).to(torch.float64)  # (units, R)
        n_obs = torch.zeros(n_strata, cnt.shape[1], dtype=torch.float64)
        n_obs.index_add_(0, unit_stratum, obs)
        w = 1.0 / n_obs.clamp(min=1.0)  # (strata, R)
        we = w[outcome_stratum[outcome]]
        pbar = torch.zeros(n_outcome, cnt.shape[1], dtype=torch.float64)
        pbar.index_add_(0, outcome, q * we)
        var = torch.zeros_like(pbar).index_add_(0, outcome, q * (1 - q) / nu * we * we)
        hk = -_xlog2x(pbar)
        bk = torch.where(pbar > 0, var / pbar.clamp(min=1e-300), 0.0) / (2 * LN2)
        h = torch.zeros(n_strata, cnt.shape[1], dtype=torch.float64)
        h.index_add_(0, outcome_stratum, hk)
        b = torch.zeros_like(h).index_add_(0, outcome_stratum, bk)
        hu, hg, hj = _hist_entropies(_sparse_hist_sums(cnt, unit, n_unit.shape[0]), n_unit)
        wu = w[unit_stratum] * obs
        cond_c = torch.zeros_like(h).index_add_(0, unit_stratum, hg * wu)
        cond_p = torch.zeros_like(h).index_add_(0, unit_stratum, hu * wu)
        return h + b - cond_c, (h - cond_p)[:, 0], torch.stack([(hj - hg)[:, 0].abs(), hg[:, 0]])

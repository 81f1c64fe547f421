"""Pure information-theory functions (bits): entropies, bias-corrected MI, row codes, CIs.

No state lives here: every function maps count tables (torch tensors or arrays) to values.
The streaming estimators (:mod:`causal_widgets.engine.pairwise`,
:mod:`causal_widgets.engine.whole_ei`) accumulate the tables and call these.

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

*Histogram sums.* Within-cell histograms (:mod:`~causal_widgets.engine.whole_ei`) hold
small integer counts, so their plug-in, Grassberger and jackknife entropies come from
per-histogram sums of lookup tables over the counts (:func:`_count_tables`,
:func:`_hist_entropies` and the ``*_hist_sums`` helpers) instead of ``xlogy``/``digamma``
on every entry.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

__all__ = [
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
_HASH_P = (2147483647, 2147483629)  # primes < 2^31, so h * mult stays below 2^62
_HASH_M = (1103515245, 1664525)


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
    replaces ``xlogy``/``digamma`` on every entry (the hot loop of
    :class:`~causal_widgets.engine.whole_ei.WholeEI`).
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
    tab = _count_tables(int(ci.max()) if ci.numel() else 0).to(cnt.device)
    vals = _gather_rows(tab, ci)
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
    out = (_gather_rows(per, mult).sum(1), mult.to(torch.float64))
    if half:
        out += (_gather_rows(per, eq[:, :half, :half].sum(-1, dtype=torch.int32).long()).sum(1),)
    return out


def _gather_rows(tab: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``tab[idx]`` for a 2-D table and an int64 index of any shape: ``index_select`` on
    the flat index is ~2x cheaper than advanced indexing on CPU."""
    return torch.index_select(tab, 0, idx.reshape(-1)).view(*idx.shape, tab.shape[1])


def _dense_hist_sums(cnt: torch.Tensor) -> torch.Tensor:
    """As :func:`_sparse_hist_sums` for dense histograms along the last axis of ``cnt``."""
    ci = cnt.to(torch.int64)
    tab = _count_tables(int(ci.max()) if ci.numel() else 0).to(cnt.device)
    return _gather_rows(tab, ci).sum(-2)


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
    gemm = idx.device.type in ("cpu", "cuda")  # float64 GEMMs (MPS has no float64)
    if bins**m < 2**62:
        if bins**m <= 2**53 and gemm:
            # exact in float64 (every partial sum is an integer below 2**53), and one GEMM
            # is ~3x cheaper than the int64 multiply-and-sum (no int64 GEMM kernel)
            powers = float(bins) ** torch.arange(
                m - 1, -1, -1, device=idx.device, dtype=torch.float64
            )
            return (idx.to(torch.float64) @ powers).to(torch.int64)
        powers = bins ** torch.arange(m - 1, -1, -1, device=idx.device, dtype=torch.int64)
        return (idx.to(torch.int64) * powers).sum(-1)
    if m * bins <= 2**21 and gemm:
        return _hash_rows_gemm(idx, m)
    return _hash_rows_horner(idx.to(torch.int64))


@functools.lru_cache(maxsize=64)
def _hash_powers(m: int, device: torch.device) -> torch.Tensor:
    """``(m, 2)`` float64: ``M_k^(m-1-j) mod P_k``, the Horner hash's weight of column j
    (cached: a Python loop of ``2 m`` steps; callers only read it)."""
    cols = []
    for p, mult in zip(_HASH_P, _HASH_M):
        v, col = 1, [0.0] * m
        for j in range(m - 1, -1, -1):
            col[j] = float(v)
            v = v * mult % p
        cols.append(col)
    return torch.tensor(cols, dtype=torch.float64).T.contiguous().to(device)


def _hash_rows_gemm(idx: torch.Tensor, m: int) -> torch.Tensor:
    """The polynomial hashes of :func:`_hash_rows_horner` as one float64 GEMM.

    Horner's ``h = (h * M + (idx_j + 1)) mod P`` over the columns equals
    ``sum_j (idx_j + 1) w_j mod P`` with ``w_j = M^(m-1-j) mod P < 2**31``; with
    ``m * bins <= 2**21`` every term and partial sum is an integer below ``2**53``, so the
    float64 product is exact and the ids are identical to the loop's (~3x cheaper: one
    pass instead of ``4 m`` int64 passes).
    """
    w = _hash_powers(m, idx.device)
    h = torch.addmm(w.sum(0), idx.reshape(-1, m).to(torch.float64), w).to(torch.int64)
    h1 = h[:, 0] % _HASH_P[0]
    h2 = h[:, 1] % _HASH_P[1]
    return (h1 * _HASH_P[1] + h2).reshape(idx.shape[:-1])


def _hash_rows_horner(idx: torch.Tensor) -> torch.Tensor:
    """The two polynomial hashes by Horner's rule, column by column (any width)."""
    h1 = torch.zeros(idx.shape[:-1], dtype=torch.int64, device=idx.device)
    h2 = torch.zeros_like(h1)
    for j in range(idx.shape[-1]):  # a loop over columns only; vectorised over rows
        col = idx[..., j] + 1
        h1 = (h1 * _HASH_M[0] + col) % _HASH_P[0]
        h2 = (h2 * _HASH_M[1] + col) % _HASH_P[1]
    return h1 * _HASH_P[1] + h2


# -------------------------------------------------------- confidence intervals


def _t_quantile(df: float) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom (normal past 1e6)."""
    if not math.isfinite(df) or df > 1e6:
        return Z95
    return float(stats.t.ppf(0.975, max(df, 1.0)))


def _interval(value: float, var: float, df: float = math.inf) -> tuple[float, float]:
    """95 % interval ``value +- t(df) sqrt(var)``: NaN for a NaN value, unbounded for an
    unknown (non-finite) variance."""
    if not math.isfinite(value):
        return (math.nan, math.nan)
    if not math.isfinite(var):
        return (-math.inf, math.inf)
    half = _t_quantile(df) * math.sqrt(max(var, 0.0))
    return (value - half, value + half)

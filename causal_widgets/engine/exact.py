"""Exact (sampling-free) pairwise tables and mutual information for ``y = act(W x + b)``.

For a dense layer with an elementwise monotone non-decreasing activation, the joint
distribution of one binned input ``X_i`` and one binned output ``Y_j`` under the
intervention is known in closed form up to one univariate distribution function
(see ``docs/metrics.md``):

* ``z_j = w_ji x_i + S_ij`` with ``S_ij = b_j + sum_{l != i} w_jl x_l`` and every
  ``x_l ~ U(lo, hi)`` independent (``intervention="all"``, the EI_parts matrix), or
  ``S_ij = b_j`` (``intervention="single"``: the other inputs are held at 0, the
  sensitivity matrix);
* ``X_i = a`` means ``x_i`` is uniform on the a-th of ``in_bins`` equal-width bins, so
  ``P(X_i = a) = 1 / in_bins`` exactly;
* ``Y_j = b`` means ``e_b <= act(z) < e_{b+1}`` for the equal-width output edges ``e``
  (values outside ``out_range`` are clipped into the edge bins). Because ``act`` is
  monotone, ``act(z) >= e  <=>  z >= t`` with ``t = Activation.preimage(e)``, hence

      P(Y_j = b | X_i = a) = F_a(t_{b+1}) - F_a(t_b),   F_a(t) = P(Z < t | X_i = a),

  with ``F_a(t_0) = 0`` and ``F_a(t_B) = 1`` (the edge bins absorb everything outside).

Given ``X_i = a``, ``Z`` is its centre ``m_ia`` plus a sum of independent *symmetric*
uniforms ``U(-r, r)``: one of half-width ``r_l = |w_jl| (hi - lo) / 2`` for every other
input and one of half-width ``r_i / in_bins`` for ``x_i`` inside its bin. Everything
reduces to the CDF of such a sum at the thresholds, which this module evaluates with an
explicit error bound of about 1e-10 per CDF value (so ~2e-10 per table cell and, at
worst, ~1e-7 bits per mutual information; measured errors are ~1e-14), choosing per
output neuron between

1. **Closed forms / inclusion-exclusion** (few uniforms, ``K <= 6`` after dropping
   negligible ones). For widths ``c_l = 2 r_l`` and ``y`` the distance from the lower
   end of the support,
   ``F(y) = sum_{A subset} (-1)^|A| (y - sum_{l in A} c_l)_+^K / (K! prod_l c_l)``.
   ``K = 0, 1, 2`` use the stable closed forms (step, ramp, trapezoid). For ``K >= 3``
   the formula cancels, so it is evaluated on the lower half of the (symmetric)
   distribution with normalised widths; its rounding error is bounded per row by
   ``2^K (K + 2) eps max_term``, and each row uses float64 when that bound is below
   1e-10, 80-bit ``longdouble`` (where the platform has it) when that suffices, and
   otherwise exact integer arithmetic (every float is a dyadic rational), whose only
   error is the final correctly rounded division.

2. **Fourier series** (many uniforms). The characteristic function of the centred sum is
   the exact product ``phi(w) = prod_l sinc(w r_l)``. Periodising with period ``L``
   (``L/2`` = the support half-width, or a smaller Hoeffding radius beyond which the
   probability mass is < 5e-11), for ``|x| <= L/2``

       F(m + x) = 1/2 + x / L + sum_{k >= 1} phi(w_k) sin(w_k x) / (pi k),  w_k = 2 pi k / L.

   The leave-one-out products ``prod_{l != i}`` come from prefix/suffix cumulative
   products (no division), and all ``(i, a)`` rows of one output are one real matrix
   product ``(n in_bins, 2T) @ (2T, out_bins - 1)`` after writing
   ``sin(w (u - s)) = sin(w u) cos(w s) - cos(w u) sin(w s)``. The number of harmonics
   ``T`` comes from an explicit bound on the truncated tail: with
   ``|sinc x| <= b(x) = exp(-x^2 / 6)`` for ``|x| < 3.026`` and ``min(0.21724, 1/|x|)``
   beyond (``b`` is non-increasing), the tail is at most
   ``(2 / pi) sum_{s >= 0} E(w_{T 2^s})`` where ``E`` is the largest bound ``prod b`` over
   the rows of the output. ``T`` is the smallest value on a ``2^(1/8)`` grid meeting
   5e-11. Thresholds outside the support are set to 0/1 exactly.

3. Otherwise (more uniforms, but of such different widths that ``T`` would exceed
   ``2^17``) inclusion-exclusion up to ``K = 16`` within a cost budget, and else a
   ``ValueError`` that says to use ``method='sampled'``: the engine never returns a
   value it cannot bound.

**Dropping negligible uniforms** (inclusion-exclusion only). Replacing symmetric
uniforms ``V_D`` by their centre 0 changes ``F`` by at most ``f_max sum_D r`` (first
order; ``f_max <= 1 / (2 r)`` for any other uniform of half-width ``r`` in the sum) and
by at most ``sup|f'| E[V^2] / 2`` (second order: the first-order term vanishes by
symmetry; ``sup|f'| <= 2 / (c_a c_b)`` for any two other uniforms). Whichever input a
row belongs to, uniforms at least as wide as the 2nd and 3rd widest stay in its sum, so
the bounds are ``sum_D r / (2 r_(2))`` and ``sum_D r^2 / (12 r_(2) r_(3))``; uniforms are
dropped while either stays below 2e-11.

The final CDF values are clipped to ``[0, 1]`` and made non-decreasing in the threshold;
both changes are within the error bound and make every table a proper distribution.

Example
-------
>>> import numpy as np
>>> from causal_widgets.engine.layer import Activation, DenseForm
>>> d = DenseForm(np.array([[1.0]]), np.array([0.0]), Activation("identity"))
>>> float(exact_pair_mi(d, (0.0, 1.0), 8, (0.0, 1.0), 8)[0, 0])  # log2(8)
3.0
"""

from __future__ import annotations

import math

import numpy as np

from causal_widgets.engine.binning import Range, bin_edges, check_bins, check_range
from causal_widgets.engine.layer import DenseForm

__all__ = ["exact_max_pool_ei", "exact_max_pool_mi", "exact_pair_mi", "exact_pair_tables",
           "mi_from_joint"]

#: target bounds per CDF value (absolute, in probability)
EPS_TRUNC = 5e-11  # Fourier truncation
EPS_TAIL = 5e-11  # probability mass beyond the period (Hoeffding)
EPS_POLY = 1e-10  # rounding in inclusion-exclusion
EPS_DROP = 2e-11  # replacing negligible uniforms by their centre
K_POLY_FAST = 6
K_POLY_MAX = 16
T_CAP = 1 << 17
EXACT_BUDGET = 2_000_000  # terms of exact-integer inclusion-exclusion per call (~1 s)

# |sinc x| <= exp(-x^2/6) for |x| < pi (log sinc x = sum_n log(1 - x^2/(n pi)^2) <= -x^2/6),
# and |sinc x| <= min(C0, 1/|x|) for |x| >= pi, C0 = max_{x >= pi} |sinc x| = 0.2172336...
# (at x = 4.4934). Switching at X1 (exp(-X1^2/6) = C0 < pi) keeps the bound non-increasing.
_C0 = 0.21724
_LOG_C0 = math.log(_C0)
_X1 = math.sqrt(-6.0 * _LOG_C0)
_XC = 1.0 / _C0
_GRID_PER_OCTAVE = 8
_GRID_OCTAVES = 48
_ROW_CHUNK_ELEMS = 4_000_000  # elements per temporary array in the vectorised kernels


# ----------------------------------------------------------------------------- MI


def mi_from_joint(p: np.ndarray) -> np.ndarray:
    """Plug-in mutual information (bits) of joint tables ``p`` of shape ``(..., A, B)``.

    ``I = sum_{a,b} p_ab log2(p_ab / (p_a p_b))`` with ``0 log 0 = 0``, for every table in
    the leading dimensions. Each table is divided by its own total first, so counts work
    too. Returns an array of shape ``p.shape[:-2]`` (a float for a single table).
    """
    p = np.asarray(p, dtype=np.float64)
    if p.ndim < 2:
        raise ValueError(
            f"mi_from_joint needs tables of shape (..., A, B); got shape {p.shape}."
        )
    if np.isnan(p).any() or (p < 0).any():
        raise ValueError(
            "mi_from_joint got negative or NaN entries: pass probabilities or counts (>= 0)."
        )
    total = p.sum(axis=(-2, -1), keepdims=True)
    if (total <= 0).any():
        raise ValueError("mi_from_joint got an all-zero table: every table needs some mass.")
    p = p / total
    pa = p.sum(axis=-1, keepdims=True)
    pb = p.sum(axis=-2, keepdims=True)
    denom = pa * pb
    pos = p > 0
    # p > 0 implies pa, pb > 0, so the ratio is finite where it is used
    ratio = np.divide(p, denom, out=np.ones_like(p), where=pos)
    terms = np.where(pos, p * np.log2(ratio), 0.0)
    return terms.sum(axis=(-2, -1))


def _mi_uniform_input(cond: np.ndarray) -> np.ndarray:
    """``I(X; Y)`` in bits from conditional tables ``q[..., a, b] = P(Y = b | X = a)``
    with ``X`` uniform: ``(1/A) sum_{a,b} q_ab log2(q_ab / qbar_b)``, ``qbar = mean_a q``.

    Same value as ``mi_from_joint(cond / A)`` with fewer temporaries (the hot loop of
    :func:`exact_pair_mi`); ``0 log 0 = 0`` because ``q = 0`` multiplies a finite log.
    Tables whose rows are all identical get exactly 0.
    """
    tiny = np.finfo(np.float64).tiny
    qbar = cond.mean(axis=-2, keepdims=True)
    ratio = np.maximum(cond, tiny)
    ratio /= np.maximum(qbar, tiny)
    np.log2(ratio, out=ratio)
    ratio *= cond
    mi = ratio.sum(axis=(-2, -1)) / cond.shape[-2]
    # identical rows (a zero weight) mean independence: return exactly 0 rather than the
    # +-1e-17 rounding of qbar (which is a mean of equal numbers, not always exact)
    mi[np.all(cond == cond[..., :1, :], axis=(-2, -1))] = 0.0
    return mi


# ----------------------------------------------------------------------------- helpers


def _log_sinc_bound(x: np.ndarray) -> np.ndarray:
    """``log b(x)`` with ``|sinc x| <= b(x)``, ``b`` non-increasing in ``|x|``."""
    x = np.abs(x)
    with np.errstate(divide="ignore"):
        return np.where(
            x < _X1, -(x * x) / 6.0, np.where(x < _XC, _LOG_C0, -np.log(np.maximum(x, 1e-300)))
        )


def _harmonics_needed(r: np.ndarray, in_bins: int, half_period: float, eps: float) -> float:
    """Smallest ``T`` (``inf`` if none below 2^48) whose Fourier tail bound is ``<= eps``.

    ``r`` are the half-widths of all inputs' uniforms for one output. The bound on
    ``|phi_row(w)|`` for row ``(i, a)`` is ``prod_{l != i} b(w r_l) b(w r_i / in_bins)``;
    its maximum over rows is taken exactly for the three widest inputs and bounded by
    ``prod_{l != (4th widest)} b(w r_l)`` for all others (dropping a wider uniform's factor
    gives a larger product). With ``E`` that envelope (non-increasing), the integers
    ``k in (T 2^s, T 2^(s+1)]`` contribute at most ``2 T 2^s E(w) / (pi T 2^s)``.
    """
    rs = np.sort(r[r > 0])
    p = rs.size
    length = 2.0 * half_period
    v = np.arange(_GRID_PER_OCTAVE * _GRID_OCTAVES + 1)
    k = 2.0 ** (v / _GRID_PER_OCTAVE)
    om = 2.0 * math.pi * k / length
    cs2 = np.concatenate([[0.0], np.cumsum(rs * rs)])
    cslog = np.concatenate([[0.0], np.cumsum(np.log(rs))])
    i1 = np.searchsorted(rs, _X1 / om, side="left")
    i2 = np.searchsorted(rs, _XC / om, side="left")
    log_g = (
        -(om * om) / 6.0 * cs2[i1]
        + (i2 - i1) * _LOG_C0
        - (p - i2) * np.log(om)
        - (cslog[p] - cslog[i2])
    )
    env = log_g.copy()  # rows whose own weight is 0
    q = min(3, p)
    widest = rs[::-1]
    for s in range(q):
        rt = widest[s]
        env = np.maximum(
            env, log_g - _log_sinc_bound(om * rt) + _log_sinc_bound(om * rt / in_bins)
        )
    if p > q:
        env = np.maximum(env, log_g - _log_sinc_bound(om * widest[q]))
    e = np.exp(env)
    # bound[u] = (2/pi) (sum_{s >= 0} e[u + 8 s] + 2 e[last of that chain]): the chain is
    # cut at the grid's end, beyond which E decays at least like 1/w (every factor is in
    # its 1/x regime there), so the rest is at most twice its last term
    bound = np.empty_like(e)
    for res in range(_GRID_PER_OCTAVE):
        chain = e[res::_GRID_PER_OCTAVE]
        bound[res::_GRID_PER_OCTAVE] = np.cumsum(chain[::-1])[::-1] + 2.0 * chain[-1]
    bound *= 2.0 / math.pi
    ok = np.flatnonzero(bound <= eps)
    return float(math.ceil(k[ok[0]])) if ok.size else math.inf


def _sinc(x: np.ndarray) -> np.ndarray:
    """``sin(x) / x`` with ``sinc(0) = 1`` (unnormalised, unlike ``numpy.sinc``)."""
    out = np.ones_like(x)
    np.divide(np.sin(x), x, out=out, where=x != 0)
    return out


def _drop_threshold(r: np.ndarray) -> float:
    """Largest half-width ``r_thr`` whose uniforms may be replaced by their centres.

    A set ``D`` of the narrowest uniforms (plus, in each row, that row's own bin uniform
    when it is no wider than ``r_thr``) may go when either bound of the module docstring
    is ``<= EPS_DROP``: first order ``(sum_D r + r_thr) / (2 r_(2))`` (two widest kept) or
    second order ``(sum_D r^2 + r_thr^2) / (12 r_(2) r_(3))`` (three widest kept).
    Returns 0 when nothing may be dropped.
    """
    rs = np.sort(r[r > 0])
    p = rs.size
    thr = 0.0
    if p >= 3:
        budget = EPS_DROP * 2.0 * rs[-2]
        cum = np.cumsum(rs)
        for d in range(p - 2):  # never drop the two widest
            if cum[d] + rs[d] > budget:
                break
            thr = max(thr, float(rs[d]))
    if p >= 4:
        budget = EPS_DROP * 12.0 * rs[-2] * rs[-3]
        cum = np.cumsum(rs * rs)
        for d in range(p - 3):  # never drop the three widest
            if cum[d] + rs[d] ** 2 > budget:
                break
            thr = max(thr, float(rs[d]))
    return thr


def _poly_cdf_low(y: np.ndarray, c: np.ndarray, dtype: type) -> np.ndarray:
    """Inclusion-exclusion CDF on the lower half, normalised.

    ``y`` (R, P) distances from the lower end divided by the total width (in ``[0, 1/2]``
    or negative), ``c`` (R, K) widths divided by the total width. Returns (R, P).
    """
    n_rows, k_uni = c.shape
    bits = ((np.arange(2**k_uni)[:, None] >> np.arange(k_uni)[None, :]) & 1).astype(dtype)
    sign = np.where(bits.sum(axis=1) % 2 == 0, 1.0, -1.0).astype(dtype)
    c = c.astype(dtype)
    y = y.astype(dtype)
    log_norm = math.lgamma(k_uni + 1)
    norm = np.exp(np.log(c).sum(axis=1) + dtype(log_norm))  # K! prod c', (R,)
    out = np.empty(y.shape, dtype=dtype)
    per_row = y.shape[1] * bits.shape[0]
    step = max(1, _ROW_CHUNK_ELEMS // max(per_row, 1))
    for r0 in range(0, n_rows, step):
        r1 = min(n_rows, r0 + step)
        sub = (c[r0:r1, None, :] * bits[None, :, :]).sum(axis=-1)  # (r, 2^K)
        d = y[r0:r1, :, None] - sub[:, None, :]
        np.maximum(d, 0, out=d)
        acc = (d**k_uni * sign).sum(axis=-1)
        out[r0:r1] = acc / norm[r0:r1, None]
    return out.astype(np.float64)


def _poly_cdf_low_exact(xl: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Inclusion-exclusion in exact integer arithmetic for one row (ill-conditioned widths).

    ``xl`` (P,) offsets ``<= 0`` from the centre, ``half`` (K,) half-widths. Every float
    is a dyadic rational, so after scaling by a common power of two all values are
    integers and the sum is exact; Python's ``int / int`` rounds the ratio correctly. The
    only error is thus the rounding of the inputs themselves (a backward-stable result).
    """
    k_uni = half.size
    values = [float(v) for v in half] + [float(v) for v in xl]
    shift = max(v.as_integer_ratio()[1].bit_length() - 1 for v in values if v != 0.0)
    scale = 1 << (shift + 1)  # +1: the widths are 2 r

    def as_int(v: float) -> int:
        num, den = v.as_integer_ratio()
        return num * (scale // den)

    c = [2 * as_int(float(v)) for v in half]
    tot = sum(c) // 2
    subsets = []
    for mask in range(2**k_uni):
        s = sum(c[l] for l in range(k_uni) if mask >> l & 1)
        subsets.append((s, -1 if bin(mask).count("1") % 2 else 1))
    subsets.sort()
    norm = math.factorial(k_uni)
    for v in c:
        norm *= v
    out = np.empty(xl.size)
    for p_idx, xv in enumerate(xl):
        y = as_int(float(xv)) + tot
        acc = 0
        for s, sg in subsets:
            if y <= s:
                break
            acc += sg * (y - s) ** k_uni
        out[p_idx] = acc / norm
    return out


def _sum_uniform_cdf(x: np.ndarray, half: np.ndarray) -> np.ndarray:
    """``P(V < x)`` for ``V`` a sum of independent ``U(-h, h)``, one row per ``x`` row.

    ``x`` (R, P); ``half`` (R, K) half-widths, all > 0 (K may be 0). Each row of
    inclusion-exclusion runs in float64, longdouble or exact rationals, the cheapest whose
    rounding bound meets ``EPS_POLY``; raises ``_NotAccurate`` when the exact rows would
    cost more than ``EXACT_BUDGET`` terms.
    """
    n_rows, k_uni = half.shape
    if k_uni == 0:
        return (x > 0).astype(np.float64)
    xl = -np.abs(x)  # evaluate on the lower half, reflect: F(x) = 1 - F(-x)
    if k_uni == 1:
        h = half[:, :1]
        low = np.clip((xl + h) / (2.0 * h), 0.0, 1.0)
    elif k_uni == 2:
        r1 = np.max(half, axis=1, keepdims=True)
        r2 = np.min(half, axis=1, keepdims=True)
        y = np.maximum(xl + r1 + r2, 0.0)  # distance from the lower end
        # trapezoid: quadratic rise over the narrower width, then linear (stable forms)
        low = np.where(y <= 2.0 * r2, y * y / (8.0 * r1 * r2), (y - r2) / (2.0 * r1))
    else:
        tot = half.sum(axis=1, keepdims=True)
        c = half / tot  # widths c_l = 2 r_l over total width 2 sum r
        y = (xl + tot) / (2.0 * tot)
        log_max = k_uni * math.log(0.5) - math.lgamma(k_uni + 1) - np.log(c).sum(axis=1)
        coef = (2.0**k_uni) * (k_uni + 2)
        err64 = coef * np.finfo(np.float64).eps * np.exp(log_max)
        errld = coef * np.finfo(np.longdouble).eps * np.exp(log_max)
        use64 = err64 <= EPS_POLY
        useld = ~use64 & (errld <= EPS_POLY)
        rest = ~(use64 | useld)
        if np.count_nonzero(rest) * xl.shape[1] * 2**k_uni > EXACT_BUDGET:
            raise _NotAccurate
        low = np.empty_like(xl)
        if use64.any():
            low[use64] = _poly_cdf_low(y[use64], c[use64], np.float64)
        if useld.any():
            low[useld] = _poly_cdf_low(y[useld], c[useld], np.longdouble)
        for row in np.flatnonzero(rest):
            low[row] = _poly_cdf_low_exact(xl[row], half[row])
        low = np.clip(low, 0.0, 0.5)
    return np.where(x > 0, 1.0 - low, low)


class _NotAccurate(Exception):
    """Internal: a method cannot meet its error bound for this output."""


# ----------------------------------------------------------------------------- per output


def _cdf_all_poly(
    r: np.ndarray, rbin: np.ndarray, x: np.ndarray, thr: float, k_limit: int
) -> np.ndarray:
    """CDF rows for one output by closed forms / inclusion-exclusion; ``x`` (n, B, P).

    Uniforms of half-width ``<= thr`` are replaced by their centres (``_drop_threshold``).
    """
    n = r.size
    keep = r > thr
    kidx = np.flatnonzero(keep)
    halves = np.zeros((n, kidx.size + 1))
    halves[:, : kidx.size] = r[kidx][None, :]
    halves[kidx, np.arange(kidx.size)] = 0.0  # a row's own input enters via its bin only
    halves[:, -1] = np.where(rbin > thr, rbin, 0.0)
    counts = (halves > 0).sum(axis=1)
    if counts.max() > k_limit:
        raise _NotAccurate
    halves = -np.sort(-halves, axis=1)  # non-zero widths first
    out = np.empty_like(x)
    for kk in np.unique(counts):
        rows = np.flatnonzero(counts == kk)
        xr = x[rows].reshape(rows.size, -1)
        f = _sum_uniform_cdf(xr, halves[rows, :kk])
        out[rows] = f.reshape((rows.size,) + x.shape[1:])
    return out


def _cdf_all_fourier(
    r: np.ndarray,
    rbin: np.ndarray,
    w: np.ndarray,
    bin_width: float,
    in_bins: int,
    u: np.ndarray,
    half_period: float,
    n_harm: int,
) -> np.ndarray:
    """Fourier part of the CDF rows of one output (module docstring, method 2).

    Row ``(i, a)`` is centred ``s_ia = w_i e_a bin_width / 2`` from the output's centre,
    ``e_a = 2 a + 1 - in_bins``; ``u`` (P,) are the thresholds minus the output's centre.
    ``exp(i w_k s_ia) = z^(e_a)`` with ``z = exp(i w_k w_i bin_width / 2)``, so the
    ``n in_bins T`` phases come from ``n T`` complex exponentials and a few products, and
    the mirrored bin ``in_bins - 1 - a`` (``e -> -e``) reuses them with the sine flipped.
    Returns the series sum ``sum_k ...`` as (n, in_bins, P), without the ``1/2 + x/L``.
    """
    n = r.size
    length = 2.0 * half_period
    n_half = (in_bins + 1) // 2  # rows a >= in_bins // 2 (e_a >= 0)
    first_e = 1 if in_bins % 2 == 0 else 0
    p1 = np.zeros((n * n_half, u.size))
    p2 = np.zeros((n * n_half, u.size))
    chunk = max(16, min(n_harm, _ROW_CHUNK_ELEMS // max(n * n_half, 1)))
    for k0 in range(0, n_harm, chunk):
        k = np.arange(k0 + 1, min(n_harm, k0 + chunk) + 1, dtype=np.float64)
        om = 2.0 * math.pi * k / length
        s = _sinc(np.outer(r, om))
        # leave-one-out products from exclusive prefix and suffix products (no division)
        pre = np.ones_like(s)
        np.cumprod(s[:-1], axis=0, out=pre[1:])
        suf = np.ones_like(s)
        suf[:-1] = np.cumprod(s[::-1], axis=0)[::-1][1:]
        a = pre * suf * _sinc(np.outer(rbin, om)) / (math.pi * k)
        z = np.exp(1j * np.outer(w * (bin_width / 2.0), om))  # (n, tc)
        z2 = z * z
        pw = np.empty((n, n_half, k.size), dtype=np.complex128)
        pw[:, 0] = z if first_e == 1 else 1.0
        for h in range(1, n_half):
            pw[:, h] = pw[:, h - 1] * z2
        pw *= a[:, None, :]
        ou = np.outer(om, u)
        p1 += pw.real.reshape(n * n_half, -1) @ np.sin(ou)
        p2 += pw.imag.reshape(n * n_half, -1) @ np.cos(ou)
    # sin(w (u - s)) = sin(w u) cos(w s) - cos(w u) sin(w s); the mirror has s -> -s
    p1 = p1.reshape(n, n_half, u.size)
    p2 = p2.reshape(n, n_half, u.size)
    out = np.empty((n, in_bins, u.size))
    out[:, in_bins - n_half :] = p1 - p2
    # mirrored rows a' = in_bins - 1 - a; for odd in_bins the middle row is its own mirror
    out[:, : in_bins // 2] = (p1 + p2)[:, 1 - first_e :][:, ::-1]
    return out


def _cdf_all_output(
    w: np.ndarray, b: float, in_range: Range, in_bins: int, t: np.ndarray
) -> np.ndarray:
    """``P(Z < t | X_i = a)`` for one output under ``intervention="all"``: (n, B, P)."""
    lo, hi = in_range
    half = (hi - lo) / 2.0
    mid = (hi + lo) / 2.0
    width = (hi - lo) / in_bins
    delta = lo + (np.arange(in_bins) + 0.5) * width - mid  # bin centre minus range centre
    r = np.abs(w) * half
    rbin = r / in_bins
    centre = b + mid * math.fsum(w)
    u = t - centre
    shift = w[:, None] * delta[None, :]
    x = u[None, None, :] - shift[:, :, None]
    p = int(np.count_nonzero(r))
    thr = _drop_threshold(r)

    if np.count_nonzero(r > thr) <= K_POLY_FAST:
        try:
            return _cdf_all_poly(r, rbin, x, thr, K_POLY_FAST + 1)
        except _NotAccurate:
            pass
    r_total = math.fsum(r)
    s2 = math.fsum(r * r)
    half_period = min(r_total, math.sqrt(2.0 * s2 * math.log(2.0 / EPS_TAIL)))
    n_harm = _harmonics_needed(r, in_bins, half_period, EPS_TRUNC) if p > 0 else math.inf
    if n_harm <= T_CAP:
        series = _cdf_all_fourier(r, rbin, w, width, in_bins, u, half_period, int(n_harm))
        f = 0.5 + x / (2.0 * half_period) + series
        row_half = (r_total - r + rbin)[:, None, None]
        outside = np.abs(x) >= np.minimum(row_half, half_period)
        return np.where(outside, (x > 0).astype(np.float64), f)
    try:
        return _cdf_all_poly(r, rbin, x, thr, K_POLY_MAX)
    except _NotAccurate:
        raise ValueError(
            f"the exact engine cannot bound its error for an output whose {p} non-zero "
            f"weights span widths from {r[r > 0].min():.3g} to {r.max():.3g} "
            "(too disparate for both the Fourier series and inclusion-exclusion): "
            "use method='sampled' for this layer."
        ) from None


def _cdf_single_block(
    wb: np.ndarray, bb: np.ndarray, in_range: Range, in_bins: int, t: np.ndarray
) -> np.ndarray:
    """``P(Z < t | X_i = a)`` for ``intervention="single"``: (n, mb, B, P).

    ``z = w x_i + b`` with ``x_i`` uniform on bin ``a``: one uniform of half-width
    ``|w| width / 2`` centred at ``w c_a + b`` (a ramp), or a constant when ``w = 0``.
    """
    lo, hi = in_range
    width = (hi - lo) / in_bins
    centres = lo + (np.arange(in_bins) + 0.5) * width
    w = wb.T[:, :, None, None]  # (n, mb, 1, 1)
    m = w * centres[None, None, :, None] + bb[None, :, None, None]
    x = t[None, None, None, :] - m
    h = np.abs(w) * (width / 2.0)
    ramp = np.clip(np.divide(x + h, 2.0 * h, out=np.zeros(np.broadcast_shapes(x.shape,
                                                                               h.shape)),
                             where=h > 0), 0.0, 1.0)
    return np.where(h > 0, ramp, (x > 0).astype(np.float64))


# ----------------------------------------------------------------------------- public API


def _validate(
    dense: DenseForm,
    in_range: Range,
    in_bins: int,
    out_range: Range,
    out_bins: int,
    intervention: str,
) -> tuple[np.ndarray, np.ndarray, Range, int, Range, int]:
    if not isinstance(dense, DenseForm):
        raise TypeError(
            f"expected a causal_widgets.engine.layer.DenseForm (weight, bias, activation); got "
            f"{type(dense).__name__}. Build it with layer.dense_form_of(module)."
        )
    if not dense.activation.monotone:
        raise ValueError(
            f"activation {dense.activation.kind!r} is not monotone, so the exact engine "
            "does not apply: use method='sampled'."
        )
    if intervention not in ("all", "single"):
        raise ValueError(
            f"intervention={intervention!r} is unknown: use 'all' (EI_parts) or 'single' "
            "(sensitivity)."
        )
    w = np.asarray(dense.weight, dtype=np.float64)
    b = np.asarray(dense.bias, dtype=np.float64)
    if w.ndim != 2 or b.shape != (w.shape[0],):
        raise ValueError(
            f"dense weight must be (m, n) and bias (m,); got {w.shape} and {b.shape}."
        )
    if not (np.isfinite(w).all() and np.isfinite(b).all()):
        raise ValueError(
            "the layer's weights or bias contain NaN or inf: the model has diverged; "
            "restore a finite checkpoint (or lower the learning rate) before measuring."
        )
    in_range = check_range(in_range, "in_range")
    out_range = check_range(out_range, "out_range")
    in_bins = check_bins(in_bins, "in_bins")
    out_bins = check_bins(out_bins, "out_bins")
    return w, b, in_range, in_bins, out_range, out_bins


def _conditional_block(
    w: np.ndarray,
    b: np.ndarray,
    act,
    in_range: Range,
    in_bins: int,
    out_range: Range,
    out_bins: int,
    intervention: str,
    j0: int,
    j1: int,
) -> np.ndarray:
    """``P(Y_j = b | X_i = a)`` for outputs ``j0 <= j < j1``: (n, j1 - j0, in_bins, out_bins)."""
    thresholds = act.preimage(bin_edges(out_range, out_bins))[1:-1]
    finite = np.isfinite(thresholds)
    tf = thresholds[finite]
    n = w.shape[1]
    mb = j1 - j0
    if intervention == "single":
        ff = _cdf_single_block(w[j0:j1], b[j0:j1], in_range, in_bins, tf)
    else:
        ff = np.empty((n, mb, in_bins, tf.size))
        for jj in range(mb):
            ff[:, jj] = _cdf_all_output(w[j0 + jj], float(b[j0 + jj]), in_range, in_bins, tf)
    inner = np.where(thresholds > 0, 1.0, 0.0) * np.ones((n, mb, in_bins, 1))
    inner[..., finite] = ff
    return _cdf_to_probs(inner)


def exact_pair_tables(
    dense: DenseForm,
    in_range: Range,
    in_bins: int,
    out_range: Range,
    out_bins: int,
    intervention: str = "all",
) -> np.ndarray:
    """Exact joint tables ``P(X_i = a, Y_j = b)`` of every input-output pair.

    Parameters
    ----------
    dense : the layer ``act(W x + b)``; ``act`` must be monotone non-decreasing.
    in_range, in_bins : intervention range of every input and its number of equal-width
        bins (``P(X_i = a) = 1 / in_bins``).
    out_range, out_bins : binning of every output (outside values go to the edge bins).
    intervention : ``"all"`` (every input uniform: EI_parts) or ``"single"`` (only input
        ``i`` uniform, the others held at 0: sensitivity).

    Returns
    -------
    float64 array ``(n_in, n_out, in_bins, out_bins)``; each ``[i, j]`` table sums to 1.
    Each cell is accurate to about 2e-10 (see the module docstring).
    """
    w, b, in_range, in_bins, out_range, out_bins = _validate(
        dense, in_range, in_bins, out_range, out_bins, intervention
    )
    cond = _conditional_block(
        w, b, dense.activation, in_range, in_bins, out_range, out_bins, intervention,
        0, w.shape[0],
    )
    return cond / in_bins


def exact_pair_mi(
    dense: DenseForm,
    in_range: Range,
    in_bins: int,
    out_range: Range,
    out_bins: int,
    intervention: str = "all",
    block: int | None = None,
) -> np.ndarray:
    """Exact pairwise mutual information ``I(X_i; Y_j)`` in bits, shape ``(n_in, n_out)``.

    Same arguments as :func:`exact_pair_tables`; ``block`` outputs are processed at a
    time (default: as many as fit in about 8 MB of tables), so a 784 x 256 layer never
    holds all its tables. ``sum`` of the result is EI_parts (``"all"``) or the
    sensitivity (``"single"``). Each entry is within ~1e-7 bits (bound; typically 1e-14).
    """
    w, b, in_range, in_bins, out_range, out_bins = _validate(
        dense, in_range, in_bins, out_range, out_bins, intervention
    )
    n, m = w.shape[1], w.shape[0]
    if block is None:
        block = max(1, 1_000_000 // max(1, n * in_bins * (out_bins + 1)))
    elif isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
        raise ValueError(f"block must be a positive integer (outputs per step); got {block!r}.")
    out = np.empty((n, m))
    for j0 in range(0, m, int(block)):
        j1 = min(m, j0 + int(block))
        cond = _conditional_block(
            w, b, dense.activation, in_range, in_bins, out_range, out_bins, intervention,
            j0, j1,
        )
        out[:, j0:j1] = _mi_uniform_input(cond)
    return out


# ----------------------------------------------------------------------------- max pool
# One window of a max pool, Y = max(x_1..x_k), has no dense form but a closed-form law:
# the inputs are independent, so P(Y < t | x_i in bin a) = P(x_i < t | a) prod_{l != i}
# P(x_l < t), each factor a clipped ramp. Nothing is sampled; the only error is rounding.


def _max_pool_args(k: int, in_range: Range, in_bins: int, out_range: Range,
                   out_bins: int) -> tuple[int, Range, int, np.ndarray]:  # fmt: skip
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be the pool window's number of inputs (>= 1); got {k!r}.")
    in_range = check_range(in_range, "in_range")
    in_bins = check_bins(in_bins, "in_bins")
    out_range = check_range(out_range, "out_range")
    out_bins = check_bins(out_bins, "out_bins")
    # thresholds of the inner output edges; the edge bins absorb values outside out_range
    return int(k), in_range, in_bins, bin_edges(out_range, out_bins)[1:-1]


def _ramp(t: np.ndarray, lo: np.ndarray | float, hi: np.ndarray | float) -> np.ndarray:
    """P(U < t) for U uniform on [lo, hi]."""
    return np.clip((t - lo) / (hi - lo), 0.0, 1.0)


def _cdf_to_probs(cdf_inner: np.ndarray) -> np.ndarray:
    """Bin probabilities from the CDF at the inner edges (0 before, 1 after).

    Within the error bound of an approximated CDF: clipped to [0, 1] and made monotone, so
    the probabilities are non-negative and sum to 1.
    """
    shape = cdf_inner.shape[:-1]
    cdf = np.concatenate([np.zeros((*shape, 1)), cdf_inner, np.ones((*shape, 1))], axis=-1)
    np.clip(cdf, 0.0, 1.0, out=cdf)
    np.maximum.accumulate(cdf, axis=-1, out=cdf)
    return np.diff(cdf, axis=-1)


def exact_max_pool_mi(
    k: int,
    in_range: Range,
    in_bins: int,
    out_range: Range,
    out_bins: int,
    intervention: str = "all",
) -> np.ndarray:
    """Exact ``I(X_i; Y)`` (bits) of one max-pool window ``Y = max(x_1..x_k)``, ``(k, 1)``.

    ``intervention="all"``: every input uniform over ``in_range`` (EI_parts);
    ``"single"``: only ``x_i`` uniform, the others held at 0 (sensitivity: ``Y =
    max(x_i, 0)`` for ``k >= 2``). Inputs are exchangeable, so every row is the same.
    """
    if intervention not in ("all", "single"):
        raise ValueError(
            f"intervention={intervention!r} is unknown: use 'all' (EI_parts) or 'single' "
            "(sensitivity)."
        )
    k, (lo, hi), in_bins, t = _max_pool_args(k, in_range, in_bins, out_range, out_bins)
    e = bin_edges((lo, hi), in_bins)
    own = _ramp(t[None, :], e[:-1, None], e[1:, None])  # (in_bins, T): P(x_i < t | a)
    if k == 1:
        others = np.ones_like(t)
    elif intervention == "all":
        others = _ramp(t, lo, hi) ** (k - 1)
    else:
        others = (t > 0.0).astype(np.float64)  # max(0, ..., 0) < t
    cond = _cdf_to_probs(own * others[None, :])  # (in_bins, out_bins): P(Y = b | a)
    mi = float(_mi_uniform_input(cond[None])[0])
    return np.full((k, 1), mi)


def exact_max_pool_ei(
    k: int, in_range: Range, in_bins: int, out_range: Range, out_bins: int,
    cell_limit: int = 2**16,
) -> float:  # fmt: skip
    """Exact whole-window ``I(X; Y)`` (bits) of ``Y = max(x_1..x_k)``, every input uniform.

    Enumerates the ``in_bins ** k`` input cells (at most ``cell_limit``): given a cell,
    ``P(Y < t) = prod_l P(x_l < t | a_l)``, so ``I = H(Y) - mean_cell H(Y | cell)``.
    """
    k, (lo, hi), in_bins, t = _max_pool_args(k, in_range, in_bins, out_range, out_bins)
    if in_bins**k > cell_limit:
        raise ValueError(
            f"exact_max_pool_ei would enumerate {in_bins}**{k} = {in_bins**k} cells, more "
            f"than cell_limit={cell_limit}: sample the window's EI instead, or raise "
            "cell_limit."
        )
    e = bin_edges((lo, hi), in_bins)
    own = _ramp(t[None, :], e[:-1, None], e[1:, None])  # (in_bins, T)
    cells = np.indices((in_bins,) * k).reshape(k, -1).T  # (C, k)
    cond = _cdf_to_probs(np.prod(own[cells], axis=1))  # (C, out_bins)
    return float(_mi_uniform_input(cond[None])[0])

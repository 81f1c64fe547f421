"""Tests of the exact (sampling-free) engine against independently derived values.

References used here, none of which shares code with ``causal_widgets.engine.exact``:

* hand-derived closed forms (1->1 maps, length ratios for one uniform, 2x2 MI);
* ``gl_cdf``: nested one-dimensional integration over the inputs, each split at every
  kink of its piecewise-polynomial integrand and done by Gauss-Legendre with more nodes
  than the polynomial degree needs, so it is exact up to rounding (small layers);
* ``lattice_tables``: for weights on a dyadic lattice each uniform is
  ``h * (discrete uniform + U(0, 1))``, so the sum is ``h * (D + IrwinHall_N)``: ``D`` by
  numerical convolution of discrete uniforms, the Irwin-Hall CDF in exact integer
  arithmetic (layers of 20-100 inputs);
* a large seeded Monte-Carlo sample (loose sanity check).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import fftconvolve

from causal_widgets.engine import exact
from causal_widgets.engine.exact import exact_pair_mi, exact_pair_tables, mi_from_joint
from causal_widgets.engine.layer import Activation, DenseForm

GL_X, GL_W = np.polynomial.legendre.leggauss(5)  # exact for degree <= 9


# ----------------------------------------------------------------------------- references


def ref_thresholds(kind: str, out_range, out_bins: int) -> np.ndarray:
    """Pre-activation thresholds of the interior output edges, derived by hand."""
    lo, hi = out_range
    e = lo + (hi - lo) * np.arange(1, out_bins) / out_bins
    if kind == "identity":
        return e
    if kind == "sigmoid":
        inside = (e > 0) & (e < 1)
        t = np.where(e <= 0, -np.inf, np.inf)
        t[inside] = np.log(e[inside] / (1 - e[inside]))
        return t
    if kind == "tanh":
        inside = (e > -1) & (e < 1)
        t = np.where(e <= -1, -np.inf, np.inf)
        t[inside] = 0.5 * np.log((1 + e[inside]) / (1 - e[inside]))
        return t
    if kind == "relu":
        return np.where(e <= 0, -np.inf, e)
    raise AssertionError(kind)


def ref_mi(p: np.ndarray) -> float:
    """I = H(X) + H(Y) - H(X, Y) in bits for one joint table."""

    def h(v):
        v = v[v > 0]
        return -float(np.sum(v * np.log2(v)))

    return h(p.sum(1)) + h(p.sum(0)) - h(p.ravel())


def _kinks(ws, c, lo, hi):
    """All values ``c + sum_l w_l e_l``, ``e_l in {lo, hi}``: where the CDF bends."""
    k = np.array([c], dtype=np.float64)
    for w in ws:
        k = np.concatenate([k + w * lo, k + w * hi])
    return k


def gl_cdf(ws, c, s, lo, hi, a0=None, a1=None):
    """``P(c + sum_l w_l x_l < s)`` with ``x_l ~ U(lo, hi)``; the first input restricted
    to ``[a0, a1]`` when given. Exact piecewise Gauss-Legendre integration, recursive."""
    s = np.asarray(s, dtype=np.float64)
    ws = list(ws)
    if a0 is None:
        a0, a1 = lo, hi
    if not ws:
        return (c < s).astype(np.float64)
    w1, rest = ws[0], ws[1:]
    if w1 == 0.0:
        return gl_cdf(rest, c, s, lo, hi)
    if not rest:  # one uniform: a length ratio
        xs = (s - c) / w1
        frac = (xs - a0) / (a1 - a0) if w1 > 0 else (a1 - xs) / (a1 - a0)
        return np.clip(frac, 0.0, 1.0)
    flat = s.ravel()
    kinks = _kinks(rest, c, lo, hi)
    bp = np.clip((flat[:, None] - kinks[None, :]) / w1, a0, a1)
    ends = np.broadcast_to(np.array([a0, a1]), (flat.size, 2))
    pts = np.sort(np.concatenate([ends, bp], axis=1), axis=1)
    left, right = pts[:, :-1], pts[:, 1:]
    half = (right - left) / 2
    x = ((left + right) / 2)[..., None] + half[..., None] * GL_X
    vals = gl_cdf(rest, c, (flat[:, None, None] - w1 * x).ravel(), lo, hi).reshape(x.shape)
    integral = (vals * GL_W * half[..., None]).sum(axis=(1, 2))
    return (integral / (a1 - a0)).reshape(s.shape)


def gl_tables(w, b, kind, in_range, in_bins, out_range, out_bins, single=False):
    """Reference joint tables (n, m, in_bins, out_bins) by ``gl_cdf``."""
    m, n = w.shape
    lo, hi = in_range
    t = ref_thresholds(kind, out_range, out_bins)
    fin = np.isfinite(t)
    edges = np.linspace(lo, hi, in_bins + 1)
    out = np.zeros((n, m, in_bins, out_bins))
    for i in range(n):
        for j in range(m):
            others = [] if single else [w[j, l] for l in range(n) if l != i]
            for a in range(in_bins):
                f = np.where(t > 0, 1.0, 0.0)
                ws = [w[j, i]] + others
                f[fin] = gl_cdf(ws, b[j], t[fin], lo, hi, edges[a], edges[a + 1])
                cdf = np.concatenate([[0.0], f, [1.0]])
                out[i, j, a] = np.diff(cdf) / in_bins
    return out


def _ih_cdf(n: int, y: float) -> float:
    """Irwin-Hall CDF P(U_1 + ... + U_n < y) by its classical alternating sum, evaluated
    exactly: ``y = num / 2^e`` is dyadic, so every term is an integer over ``2^(e n)``
    and Python's ``int / int`` rounds the exact ratio correctly."""
    if y <= 0:
        return 0.0
    if y >= n:
        return 1.0
    num, den = float(y).as_integer_ratio()
    total = 0
    for k in range(math.floor(y) + 1):
        total += (-1) ** k * math.comb(n, k) * (num - k * den) ** n
    return total / (math.factorial(n) * den**n)


def lattice_tables(k, h, b, kind, in_range, in_bins, out_range, out_bins):
    """Reference tables for weights ``w = k h in_bins / (hi - lo)`` (``k`` non-zero ints).

    Then ``w x`` over a bin is ``min + h (D + U)`` with ``D`` uniform on ``|k|`` integers
    and ``U ~ U(0, 1)`` (``in_bins |k|`` integers over the whole range), so
    ``Z | (i, a) = lo_Z + h (D_ia + IrwinHall_n)`` exactly.
    """
    m, n = k.shape
    assert np.all(k != 0)
    lo, hi = in_range
    w = k * h * in_bins / (hi - lo)
    t = ref_thresholds(kind, out_range, out_bins)
    out = np.zeros((n, m, in_bins, out_bins))
    a = np.arange(in_bins)
    for j in range(m):
        full = [np.full(in_bins * abs(int(kk)), 1.0 / (in_bins * abs(int(kk)))) for kk in k[j]]
        pre = [np.array([1.0])]
        for f in full[:-1]:
            pre.append(fftconvolve(pre[-1], f))
        suf = [np.array([1.0])]
        for f in full[:0:-1]:
            suf.append(fftconvolve(suf[-1], f))
        suf = suf[::-1]
        pmfs = []
        for i in range(n):
            kb = abs(int(k[j, i]))
            pmf = fftconvolve(fftconvolve(pre[i], suf[i]), np.full(kb, 1.0 / kb))
            pmfs.append((pmf, np.cumsum(pmf)))
        base = b[j] + np.minimum(w[j] * lo, w[j] * hi).sum()
        cdf = np.zeros((n, in_bins, out_bins + 1))
        cdf[..., -1] = 1.0
        for ti, tt in enumerate(t):
            if not np.isfinite(tt):
                cdf[..., ti + 1] = 1.0 if tt > 0 else 0.0
                continue
            y0 = (tt - base) / h
            fl = math.floor(y0)
            frac = y0 - fl
            fi = np.array([_ih_cdf(n, frac + mm) for mm in range(n)])
            for i in range(n):
                kb = abs(int(k[j, i]))
                pmf, cum = pmfs[i]
                shift = kb * a if k[j, i] > 0 else kb * (in_bins - 1 - a)
                fy = fl - shift  # (in_bins,)
                for ai in range(in_bins):
                    idx = fy[ai] - n
                    val = cum[min(idx, cum.size - 1)] if idx >= 0 else 0.0
                    d = fy[ai] - np.arange(n)
                    ok = (d >= 0) & (d < pmf.size)
                    val += float(np.sum(pmf[d[ok]] * fi[ok]))
                    cdf[i, ai, ti + 1] = val
        out[:, j] = np.diff(cdf, axis=-1) / in_bins
    return out


def dense(w, b, kind="sigmoid"):
    w = np.asarray(w, dtype=np.float64)
    return DenseForm(w, np.asarray(b, dtype=np.float64), Activation(kind))


def total_mi(p: np.ndarray) -> float:
    return sum(ref_mi(p[i, j]) for i in range(p.shape[0]) for j in range(p.shape[1]))


# ----------------------------------------------------------------------------- mi_from_joint


def test_mi_from_joint_hand_values():
    # 2x2 symmetric channel with crossover 0.2: 1 - H2(0.2)
    p = np.array([[0.4, 0.1], [0.1, 0.4]])
    h2 = -(0.2 * math.log2(0.2) + 0.8 * math.log2(0.8))
    assert mi_from_joint(p) == pytest.approx(1 - h2, abs=1e-15)
    assert mi_from_joint(np.eye(8) / 8) == pytest.approx(3.0, abs=1e-14)
    assert mi_from_joint(np.outer([0.3, 0.7], [0.1, 0.5, 0.4])) == pytest.approx(0, abs=1e-15)
    stack = np.stack([p, np.eye(2) / 2, np.eye(2) * 10])  # counts are normalised
    np.testing.assert_allclose(mi_from_joint(stack), [1 - h2, 1.0, 1.0], atol=1e-14)


def test_mi_from_joint_rejects_bad_tables():
    with pytest.raises(ValueError, match="negative"):
        mi_from_joint(np.array([[0.5, -0.1], [0.3, 0.3]]))
    with pytest.raises(ValueError, match="shape"):
        mi_from_joint(np.ones(3))
    with pytest.raises(ValueError, match="all-zero"):
        mi_from_joint(np.zeros((2, 2)))


# ----------------------------------------------------------------------------- 1 -> 1


@pytest.mark.parametrize("bins", [2, 8, 64])
@pytest.mark.parametrize("intervention", ["all", "single"])
def test_identity_edge_gives_log2_bins(bins, intervention):
    d = dense([[1.0]], [0.0], "identity")
    mi = exact_pair_mi(d, (0.0, 1.0), bins, (0.0, 1.0), bins, intervention=intervention)
    assert mi[0, 0] == pytest.approx(math.log2(bins), abs=1e-12)
    p = exact_pair_tables(d, (0.0, 1.0), bins, (0.0, 1.0), bins, intervention=intervention)
    np.testing.assert_allclose(p[0, 0], np.eye(bins) / bins, atol=1e-14)


def test_identity_finer_output_gives_input_entropy():
    # 16 output bins inside 8 input bins: Y determines X, so I = H(X) = 3 bits
    d = dense([[1.0]], [0.0], "identity")
    assert exact_pair_mi(d, (0, 1), 8, (0, 1), 16)[0, 0] == pytest.approx(3.0, abs=1e-12)


def test_sigmoid_two_bins_symmetric_is_one_bit():
    # sigmoid(3x) on (-1, 1) with out_range its image: the output edge 1/2 is x = 0
    d = dense([[3.0]], [0.0], "sigmoid")
    s = 1 / (1 + math.exp(-3.0))
    assert exact_pair_mi(d, (-1, 1), 2, (1 - s, s), 2)[0, 0] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("bins", [8, 64])
def test_sigmoid_edge_image_range_matches_length_ratios(bins):
    # sigmoid(w x + b) with out_range = image of in_range; equal-width output bins do not
    # align with the input bins, so the value is below log2(bins): P(Y=b|a) is the
    # length of [a0, a1] inside the preimage interval of output bin b, over the bin width
    w, b, lo, hi = 2.5, -0.7, -1.0, 1.0
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    out = (sig(w * lo + b), sig(w * hi + b))
    e = np.linspace(out[0], out[1], bins + 1)
    xe = (np.log(e / (1 - e)) - b) / w
    xe[0], xe[-1] = -np.inf, np.inf  # edge bins absorb the rest
    ie = np.linspace(lo, hi, bins + 1)
    p = np.zeros((bins, bins))
    for a in range(bins):
        for k in range(bins):
            ov = min(ie[a + 1], xe[k + 1]) - max(ie[a], xe[k])
            p[a, k] = max(ov, 0.0) / (ie[a + 1] - ie[a]) / bins
    d = dense([[w]], [b], "sigmoid")
    got = exact_pair_tables(d, (lo, hi), bins, out, bins)[0, 0]
    np.testing.assert_allclose(got, p, atol=1e-12)
    assert exact_pair_mi(d, (lo, hi), bins, out, bins)[0, 0] == pytest.approx(
        ref_mi(p), abs=1e-10
    )
    assert ref_mi(p) < math.log2(bins) - 0.01


def test_zero_weight_gives_exactly_zero():
    d = dense([[0.0, 1.3, -0.4], [0.7, 0.0, 0.0]], [0.2, -0.1], "tanh")
    for iv in ("all", "single"):
        mi = exact_pair_mi(d, (-1, 1), 8, (-1, 1), 8, intervention=iv)
        assert mi[0, 0] == 0.0 and mi[1, 1] == 0.0 and mi[2, 1] == 0.0
        assert mi[1, 0] > 0.1 and mi[0, 1] > 0.1


def test_all_zero_weights_constant_output():
    # z = b exactly: the output sits in the bin holding act(b) (left-closed bins)
    d = dense(np.zeros((2, 3)), [0.0, 0.3], "identity")
    p = exact_pair_tables(d, (0, 1), 4, (0, 1), 4)
    np.testing.assert_allclose(p[:, 0].sum(axis=1), np.tile([1, 0, 0, 0], (3, 1)), atol=0)
    np.testing.assert_allclose(p[:, 1].sum(axis=1), np.tile([0, 1, 0, 0], (3, 1)), atol=0)
    assert np.all(exact_pair_mi(d, (0, 1), 4, (0, 1), 4) == 0.0)


# ----------------------------------------------------------------------------- sensitivity


@pytest.mark.parametrize("kind,in_range,out_range", [
    ("sigmoid", (0.0, 1.0), (0.0, 1.0)),
    ("tanh", (-1.0, 1.0), (-1.0, 1.0)),
    ("relu", (0.0, 1.0), (0.0, 2.0)),
    ("identity", (0.5, 1.5), (-3.0, 3.0)),
])
def test_single_intervention_is_a_length_ratio(kind, in_range, out_range):
    # z = w x + b, x uniform in bin a: P(Y=k|a) = |[a0,a1] cap {x: t_k <= w x + b < t_k+1}|
    rng = np.random.default_rng(11)
    m, n, bins = 3, 4, 16
    w = rng.uniform(-4, 4, (m, n))
    w[0, 0] = 0.0
    b = rng.uniform(-1, 1, m)
    t = np.concatenate([[-np.inf], ref_thresholds(kind, out_range, bins), [np.inf]])
    ie = np.linspace(*in_range, bins + 1)
    ref = np.zeros((n, m, bins, bins))
    for i in range(n):
        for j in range(m):
            ww, bb = w[j, i], b[j]
            for a in range(bins):
                for k in range(bins):
                    if ww == 0:
                        ref[i, j, a, k] = float(t[k] <= bb < t[k + 1])
                        continue
                    xa, xb = (t[k] - bb) / ww, (t[k + 1] - bb) / ww
                    x0, x1 = min(xa, xb), max(xa, xb)
                    ov = min(ie[a + 1], x1) - max(ie[a], x0)
                    ref[i, j, a, k] = max(ov, 0.0) / (ie[a + 1] - ie[a])
    ref /= bins
    got = exact_pair_tables(dense(w, b, kind), in_range, bins, out_range, bins, "single")
    np.testing.assert_allclose(got, ref, atol=1e-12)
    mi = exact_pair_mi(dense(w, b, kind), in_range, bins, out_range, bins, "single")
    ref_m = np.array([[ref_mi(ref[i, j]) for j in range(m)] for i in range(n)])
    np.testing.assert_allclose(mi, ref_m, atol=1e-10)


# ----------------------------------------------------------------------------- small layers


SMALL_CASES = [
    # (n, m, kind, weight scale, bins)
    (2, 1, "sigmoid", "init", 8),
    (2, 1, "tanh", 4.0, 64),
    (3, 2, "tanh", "init", 8),
    (3, 2, "sigmoid", 5.0, 32),
    (3, 2, "sigmoid", 3.0, 64),
    (4, 1, "tanh", 3.0, 16),
]


def _small_layer(n, m, kind, scale, seed):
    rng = np.random.default_rng(seed)
    a = 1 / math.sqrt(n) if scale == "init" else scale
    w = rng.uniform(-a, a, (m, n))
    b = rng.uniform(-a, a, m) / 2
    rin = (0.0, 1.0) if kind == "sigmoid" else (-1.0, 1.0)
    return w, b, rin, Activation(kind).natural_range


@pytest.mark.parametrize("n,m,kind,scale,bins", SMALL_CASES)
def test_small_layers_match_piecewise_integration(n, m, kind, scale, bins):
    w, b, rin, rout = _small_layer(n, m, kind, scale, seed=n * 100 + bins)
    ref = gl_tables(w, b, kind, rin, bins, rout, bins)
    got = exact_pair_tables(dense(w, b, kind), rin, bins, rout, bins)
    np.testing.assert_allclose(got.sum(axis=(2, 3)), 1.0, atol=1e-12)
    assert np.abs(got - ref).max() < 1e-10
    mi = exact_pair_mi(dense(w, b, kind), rin, bins, rout, bins)
    assert abs(mi.sum() - total_mi(ref)) < 1e-7
    assert mi.sum() > 0.01  # the case is not trivial


def test_fourier_path_on_small_layer(monkeypatch):
    # force the Fourier series (normally used for many inputs) on a 3->2 layer, where
    # the integration reference is exact: it must meet its own error bound (~1e-10)
    monkeypatch.setattr(exact, "K_POLY_FAST", 0)
    for kind, scale, bins in [("tanh", 3.0, 8), ("sigmoid", "init", 16)]:
        w, b, rin, rout = _small_layer(3, 2, kind, scale, seed=7)
        ref = gl_tables(w, b, kind, rin, bins, rout, bins)
        got = exact_pair_tables(dense(w, b, kind), rin, bins, rout, bins)
        assert np.abs(got - ref).max() < 1e-9


def test_negligible_weights_are_handled():
    # weights of 1e-12 and 1e-7 beside O(1) ones: replaced by their centres (error bound
    # ~1e-11), compared with the exact 2-input reference for the large pair
    w = np.array([[1.0, -0.7, 1e-12, 1e-12, 1e-7, -1e-12, 1e-12, 1e-12]])
    b = np.array([0.1])
    got = exact_pair_tables(dense(w, b, "tanh"), (-1, 1), 8, (-1, 1), 8)
    ref = gl_tables(w[:, :2], b, "tanh", (-1, 1), 8, (-1, 1), 8)
    assert np.abs(got[:2] - ref).max() < 1e-9
    mi = exact_pair_mi(dense(w, b, "tanh"), (-1, 1), 8, (-1, 1), 8)
    assert np.all(np.abs(mi[2:]) < 1e-8)


@pytest.mark.parametrize("ws", [[2.0, 1e-4, -1e-4], [2.0, 1e-5, 1e-5], [-1.5, 1.0, 3e-6, 2e-6]])
def test_disparate_widths_inclusion_exclusion(ws):
    # one wide and several very narrow uniforms: inclusion-exclusion cancels badly in
    # float64 here (the engine must switch to longdouble / exact integers), and the
    # narrow ones matter (they are not negligible at the 1e-10 level)
    w = np.array([ws])
    b = np.array([0.1])
    ref = gl_tables(w, b, "tanh", (-1, 1), 8, (-1, 1), 8)
    got = exact_pair_tables(dense(w, b, "tanh"), (-1, 1), 8, (-1, 1), 8)
    assert np.abs(got - ref).max() < 1e-10


def test_negative_weights_and_relu_with_given_range():
    rng = np.random.default_rng(3)
    w = rng.uniform(-2, 2, (2, 3))
    b = np.array([0.3, -0.2])
    ref = gl_tables(w, b, "relu", (0, 1), 8, (0, 2), 8)
    got = exact_pair_tables(dense(w, b, "relu"), (0, 1), 8, (0, 2), 8)
    assert np.abs(got - ref).max() < 1e-10


# ----------------------------------------------------------------------------- wide layers


def _lattice_layer(n, m, style, seed, h, in_range):
    rng = np.random.default_rng(seed)
    if style == "paper":
        w = rng.uniform(-1 / math.sqrt(n), 1 / math.sqrt(n), (m, n))
        b = np.zeros(m)
    else:  # trained-like: scale ~3 with a few dominating weights of 4-5
        w = rng.normal(0.0, 1.5, (m, n))
        for j in range(m):
            idx = rng.choice(n, 2, replace=False)
            w[j, idx] = rng.choice([-1, 1], 2) * rng.uniform(4, 5, 2)
        b = rng.uniform(-1, 1, m)
    step = h * 8 / (in_range[1] - in_range[0])
    k = np.round(w / step).astype(np.int64)
    k[k == 0] = 1
    return k, k * step, b


@pytest.mark.parametrize("n,m,kind,style,h", [
    (25, 6, "sigmoid", "paper", 2.0**-10),
    (25, 6, "sigmoid", "trained", 2.0**-7),
    (20, 10, "tanh", "paper", 2.0**-10),
    (20, 10, "tanh", "trained", 2.0**-7),
])
def test_wide_layers_match_lattice_reference(n, m, kind, style, h):
    rin = (0.0, 1.0) if kind == "sigmoid" else (-1.0, 1.0)
    rout = Activation(kind).natural_range
    k, w, b = _lattice_layer(n, m, style, seed=n + m, h=h, in_range=rin)
    ref = lattice_tables(k, h, b, kind, rin, 8, rout, 8)
    np.testing.assert_allclose(ref.sum(axis=(2, 3)), 1.0, atol=1e-9)
    got = exact_pair_tables(dense(w, b, kind), rin, 8, rout, 8)
    assert np.abs(got - ref).max() < 1e-9
    mi = exact_pair_mi(dense(w, b, kind), rin, 8, rout, 8)
    assert abs(mi.sum() - total_mi(ref)) < 1e-6


def test_many_inputs_hoeffding_period_matches_lattice_reference():
    # 100 small weights: the period is cut at the Hoeffding radius (< support half-width)
    n, m, h = 100, 2, 2.0**-10
    k, w, b = _lattice_layer(n, m, "paper", seed=5, h=h, in_range=(0.0, 1.0))
    r = np.abs(w) * 0.5
    hoeff = np.sqrt(2 * (r * r).sum(axis=1) * math.log(2 / exact.EPS_TAIL))
    assert np.all(hoeff < r.sum(axis=1))  # the branch under test is taken
    b = np.array([0.05, -0.1])
    ref = lattice_tables(k, h, b, "sigmoid", (0.0, 1.0), 8, (0.4, 0.6), 8)
    got = exact_pair_tables(dense(w, b), (0.0, 1.0), 8, (0.4, 0.6), 8)
    assert np.abs(got - ref).max() < 1e-9


def test_trained_like_layer_monte_carlo_sanity():
    rng = np.random.default_rng(2024)
    n, m, bins, big_n = 25, 6, 8, 200_000
    w = rng.normal(0, 3.0, (m, n))
    w[:, 0] = 12.0  # a dominating weight
    b = rng.uniform(-1, 1, m)
    p = exact_pair_tables(dense(w, b), (0, 1), bins, (0, 1), bins)
    x = rng.uniform(0, 1, (big_n, n))
    y = 1 / (1 + np.exp(-(x @ w.T + b)))
    xi = np.minimum((x * bins).astype(int), bins - 1)
    yi = np.minimum((y * bins).astype(int), bins - 1)
    for i in (0, 1, 2):
        for j in range(m):
            hist = np.zeros((bins, bins))
            np.add.at(hist, (xi[:, i], yi[:, j]), 1.0)
            hist /= big_n
            sd = np.sqrt(p[i, j] * (1 - p[i, j]) / big_n)
            assert np.all(np.abs(hist - p[i, j]) <= 5 * sd + 2e-5)


# ----------------------------------------------------------------------------- API, errors


def test_blocks_and_tables_agree():
    rng = np.random.default_rng(8)
    d = dense(rng.uniform(-0.3, 0.3, (7, 30)), rng.uniform(-0.2, 0.2, 7))
    full = exact_pair_mi(d, (0, 1), 8, (0, 1), 8)
    np.testing.assert_array_equal(exact_pair_mi(d, (0, 1), 8, (0, 1), 8, block=1), full)
    tables = exact_pair_tables(d, (0, 1), 8, (0, 1), 8)
    assert tables.shape == (30, 7, 8, 8)
    np.testing.assert_allclose(mi_from_joint(tables), full, atol=1e-13)


def test_validation_errors():
    d = dense([[1.0, 2.0]], [0.0])
    with pytest.raises(ValueError, match="method='sampled'"):
        exact_pair_mi(DenseForm(d.weight, d.bias, Activation("other")), (0, 1), 8, (0, 1), 8)
    with pytest.raises(ValueError, match="NaN"):
        exact_pair_mi(dense([[np.nan, 1.0]], [0.0]), (0, 1), 8, (0, 1), 8)
    with pytest.raises(ValueError, match="NaN"):
        exact_pair_tables(dense([[1.0, 1.0]], [np.inf]), (0, 1), 8, (0, 1), 8)
    with pytest.raises(ValueError, match="in_range"):
        exact_pair_mi(d, (1, 0), 8, (0, 1), 8)
    with pytest.raises(ValueError, match="out_range"):
        exact_pair_mi(d, (0, 1), 8, (0.5, 0.5), 8)
    with pytest.raises(ValueError, match="in_bins"):
        exact_pair_mi(d, (0, 1), 1, (0, 1), 8)
    with pytest.raises(ValueError, match="out_bins"):
        exact_pair_tables(d, (0, 1), 8, (0, 1), 2.5)
    with pytest.raises(ValueError, match="intervention"):
        exact_pair_mi(d, (0, 1), 8, (0, 1), 8, intervention="some")
    with pytest.raises(ValueError, match="block"):
        exact_pair_mi(d, (0, 1), 8, (0, 1), 8, block=0)
    with pytest.raises(TypeError, match="DenseForm"):
        exact_pair_mi(np.ones((1, 2)), (0, 1), 8, (0, 1), 8)


def test_unboundable_case_raises_instead_of_guessing(monkeypatch):
    # with the Fourier series capped and inclusion-exclusion limited, an 8-input output
    # has no method meeting its bound: the engine must refuse, naming the fix
    monkeypatch.setattr(exact, "T_CAP", 1)
    monkeypatch.setattr(exact, "K_POLY_MAX", 6)
    d = dense(np.linspace(0.5, 1.2, 8)[None, :], [0.0])
    with pytest.raises(ValueError, match="method='sampled'"):
        exact_pair_mi(d, (0, 1), 8, (0, 1), 8)


def test_sinc_bound_holds():
    # the truncation bound rests on |sinc x| <= b(x); check it on a dense grid
    x = np.linspace(0, 200, 2_000_001)
    sinc = np.abs(np.sinc(x / np.pi))
    assert np.all(sinc <= np.exp(exact._log_sinc_bound(x)) * (1 + 1e-12))

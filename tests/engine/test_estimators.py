"""Tests of the streaming estimators against independently derived values.

Reference values come from closed forms (symmetric channels, the Irwin-Hall law of a
sum of uniforms, chi-square moments) or from arithmetic written out by hand below;
never from the estimators' own earlier output.
"""

from __future__ import annotations

import math
import pickle
from itertools import product

import numpy as np
import pytest
import torch

import causal_widgets.engine.estimators as est_mod
import causal_widgets.engine.whole_ei as whole_mod
from causal_widgets.engine.information import (
    encode_rows,
    entropy_bits,
    entropy_corrected_bits,
    entropy_grassberger_bits,
    entropy_miller_madow_bits,
    mi_bias_corrected,
)
from causal_widgets.engine.pairwise import PairwiseMI
from causal_widgets.engine.whole_ei import ExhaustiveWholeEI, SampledWholeEI, WholeEI

LN2 = math.log(2)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def h2(p: float) -> float:
    """Binary entropy (bits)."""
    return 0.0 if p in (0.0, 1.0) else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def symmetric_channel_mi(b: int, e: float) -> float:
    """I(X;Y) for X uniform on b symbols, Y = X w.p. 1-e else one of the other b-1 uniformly."""
    out = math.log2(b) + (1 - e) * math.log2(1 - e)
    return out + (e * math.log2(e / (b - 1)) if e > 0 else 0.0)


def noisy(x: torch.Tensor, b: int, e: float, g: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape, generator=g) < e
    other = (x + torch.randint(1, b, x.shape, generator=g)) % b
    return torch.where(flip, other, x)


def table(x: torch.Tensor, y: torch.Tensor, bx: int, by: int) -> torch.Tensor:
    t = torch.zeros(bx, by, dtype=torch.float64)
    t.index_put_((x, y), torch.ones(x.shape[0], dtype=torch.float64), accumulate=True)
    return t


# ------------------------------------------------------------------ entropy helpers


def test_entropy_helpers_by_hand():
    c = np.array([[2.0, 2.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [3.0, 1.0, 0.0, 0.0]])
    np.testing.assert_allclose(entropy_bits(c), [1.0, 2.0, h2(0.25)], atol=1e-12)
    # Miller-Madow adds (K-1)/(2 n ln2): K = 2, 4, 2 observed bins, n = 4
    mm = [1.0 + 1 / (8 * LN2), 2.0 + 3 / (8 * LN2), h2(0.25) + 1 / (8 * LN2)]
    np.testing.assert_allclose(entropy_miller_madow_bits(c), mm, atol=1e-12)
    np.testing.assert_allclose(entropy_corrected_bits(torch.tensor(c)), mm, atol=1e-12)
    # axis 0 works too
    np.testing.assert_allclose(entropy_bits(c.T, axis=0), [1.0, 2.0, h2(0.25)], atol=1e-12)
    with pytest.raises(ValueError, match="miller_madow"):
        entropy_corrected_bits(c, method="nope")


def test_grassberger_less_biased_than_miller_madow_when_undersampled():
    # 16 equiprobable states, 16 samples: true entropy 4 bits
    rng = np.random.default_rng(1)
    counts = rng.multinomial(16, np.full(16, 1 / 16), size=4000)
    bias_g = entropy_grassberger_bits(counts).mean() - 4.0
    bias_mm = entropy_miller_madow_bits(counts).mean() - 4.0
    assert abs(bias_g) < 0.1 < abs(bias_mm)


def test_encode_rows_mixed_radix_and_hash():
    y = torch.tensor([[0, 0, 1], [1, 0, 0], [3, 3, 3]])
    assert encode_rows(y, 4).tolist() == [1, 16, 63]
    # 40 outputs at 8 bins: 8**40 >= 2**62 -> hashed ids, still equal rows <-> equal ids
    rows = torch.randint(0, 8, (500, 40), generator=gen(0))
    rows[250:] = rows[:250]
    ids = encode_rows(rows, 8)
    assert torch.equal(ids[:250], ids[250:])
    assert torch.unique(ids[:250]).numel() == torch.unique(rows[:250], dim=0).shape[0]
    assert int(ids.min()) >= 0


# ------------------------------------------------------------- mi_bias_corrected


def test_mi_bias_corrected_hand_table():
    t = torch.tensor([[3.0, 1.0], [1.0, 3.0]])
    # rows q0 = (3/4, 1/4), q1 = (1/4, 3/4); p = (1/2, 1/2); n_a = 4; w = 1/2
    plug = 1.0 - h2(0.25)
    beta_rows = -(2 - 1) / (2 * 4 * LN2)  # Miller-Madow bias of each row entropy
    var_p = 2 * (0.25 * (0.75 * 0.25) / 4)  # sum_a w^2 q(1-q)/n_a, the same for both b
    beta_y = -(2 * var_p / 0.5) / (2 * LN2)
    expect = plug - beta_y + beta_rows
    r = mi_bias_corrected(t)
    assert r.plugin == pytest.approx(plug, abs=1e-12)
    assert r.value == pytest.approx(expect, abs=1e-12)
    # known_input_marginal=False: Miller-Madow on H(X) + H(Y) - H(X,Y): K = 2, 2, 4
    r2 = mi_bias_corrected(t.numpy(), known_input_marginal=False)
    assert r2.value == pytest.approx(plug - (3 - 1 - 1) / (2 * 8 * LN2), abs=1e-12)
    # delta variance: sum_a w^2/n_a Var_{q_a}[log2(q/p)]; g = log2(3/2), log2(1/2)
    g = np.array([math.log2(1.5), math.log2(0.5)])
    var_row = 0.75 * g[0] ** 2 + 0.25 * g[1] ** 2 - (0.75 * g[0] + 0.25 * g[1]) ** 2
    var_lin_hat = 2 * 0.25 / 4 * var_row
    var_null = 2 * 1 / (2 * 8 * LN2) ** 2  # df = 1, N = 8
    assert r.var_null == pytest.approx(var_null)
    assert r.variance == pytest.approx(max(var_lin_hat - var_null, var_null))


def test_mi_batch_shapes_and_errors():
    t = torch.ones(3, 5, 4, 6)
    r = mi_bias_corrected(t)
    assert r.value.shape == (3, 5) and r.plugin.shape == (3, 5)
    np.testing.assert_allclose(r.plugin, 0.0, atol=1e-12)
    with pytest.raises(ValueError, match="non-negative"):
        mi_bias_corrected(-t)
    with pytest.raises(ValueError, match="shape"):
        mi_bias_corrected(torch.ones(4))


def test_independent_tables_bias_closed_form_and_ci():
    """X, Y independent: plug-in is biased up by (Bx-1)(By-1)/(2 N ln2); corrected ~ 0."""
    bx, by, n, reps = 4, 5, 2000, 600
    g = gen(2)
    x = torch.randint(0, bx, (reps, n), generator=g)
    y = torch.randint(0, by, (reps, n), generator=g)
    t = torch.zeros(reps, bx, by, dtype=torch.float64)
    t.view(reps, -1).scatter_add_(1, x * by + y, torch.ones(reps, n, dtype=torch.float64))
    r = mi_bias_corrected(t)
    df = (bx - 1) * (by - 1)
    u = 1 / (2 * n * LN2)
    # E[plug-in] = df u; sd of one plug-in = sqrt(2 df) u (chi-square law)
    se = math.sqrt(2 * df) * u / math.sqrt(reps)
    assert r.plugin.mean() == pytest.approx(df * u, abs=4 * se)
    assert abs(r.value.mean()) < 4 * se
    assert r.value.std() == pytest.approx(math.sqrt(2 * df) * u, rel=0.15)
    covered = np.abs(r.value) <= 1.96 * np.sqrt(r.variance)
    assert 0.9 <= covered.mean() <= 1.0


# ---------------------------------------------------------------------- PairwiseMI


def _reference_tables(x, y, bx, by):
    ox = torch.nn.functional.one_hot(x, bx).double()
    oy = torch.nn.functional.one_hot(y, by).double()
    return torch.einsum("sia,sjb->ijab", ox, oy)


def test_pairwise_tables_match_reference_and_chunking():
    g = gen(3)
    x = torch.randint(0, 5, (3001, 4), generator=g)
    y = torch.randint(0, 3, (3001, 3), generator=g)
    ref = _reference_tables(x, y, 5, 3)
    one = PairwiseMI(4, 3, 5, 3, batches=7)
    one.update(x, y)
    assert torch.equal(one.tables(), ref)
    chunked = PairwiseMI(4, 3, 5, 3, batches=7, block=128)
    for s in (0, 17, 1000, 1001, 2500):  # uneven chunks, internal blocks of 128 rows
        e = {0: 17, 17: 1000, 1000: 1001, 1001: 2500, 2500: 3001}[s]
        chunked.update(x[s:e], y[s:e])
    assert torch.equal(chunked.tables(), ref)
    assert torch.equal(chunked._g, one._g)  # same batch-means batches, exactly
    a, b = one.compute(), chunked.compute()
    np.testing.assert_array_equal(a.matrix, b.matrix)
    assert a.total.ci_low == b.total.ci_low and a.total.ci_high == b.total.ci_high
    assert one.samples == 3001


def test_pairwise_merge_equals_one_stream():
    g = gen(4)
    x = torch.randint(0, 4, (5000, 3), generator=g)
    y = torch.randint(0, 4, (5000, 2), generator=g)
    whole = PairwiseMI(3, 2, 4, 4)
    whole.update(x, y)
    a, b = PairwiseMI(3, 2, 4, 4), PairwiseMI(3, 2, 4, 4)
    a.update(x[:1234], y[:1234])
    b.update(x[1234:], y[1234:])
    a.merge(b)
    assert torch.equal(a._g, whole._g)
    ra, rw = a.compute(), whole.compute()
    np.testing.assert_allclose(ra.matrix, rw.matrix, atol=1e-13)
    assert ra.total.ci_high == pytest.approx(rw.total.ci_high, abs=1e-12)
    assert a.samples == 5000
    with pytest.raises(ValueError, match="same arguments"):
        a.merge(PairwiseMI(3, 2, 4, 5))


def test_pairwise_copy_gives_log2_bins():
    g = gen(5)
    x = torch.randint(0, 8, (4000, 3), generator=g)
    y = torch.stack([x[:, 0], x[:, 2]], 1)
    est = PairwiseMI(3, 2, 8, 8)
    est.update(x, y)
    r = est.compute()
    # a copy is exact with the known input marginal: no bias, no linear variance
    assert r.matrix[0, 0] == pytest.approx(3.0, abs=1e-12)
    assert r.matrix[2, 1] == pytest.approx(3.0, abs=1e-12)
    assert r.matrix_ci_low[0, 0] <= 3.0 <= r.matrix_ci_high[0, 0]
    assert abs(r.matrix[1, 0]) < 0.01
    assert r.total.ci_low <= 6.0 <= r.total.ci_high


def test_pairwise_noisy_channel_closed_form():
    b, e, n = 4, 0.3, 20000
    g = gen(6)
    x = torch.randint(0, b, (n, 2), generator=g)
    y0 = noisy(x[:, 0], b, e, g)
    y1 = noisy(y0, b, e, g)  # X0 -> Y0 -> Y1: composed symmetric channel
    s = 1 - e
    e2 = 1 - (s * s + e * e / (b - 1))
    truth = np.array([[symmetric_channel_mi(b, e), symmetric_channel_mi(b, e2)], [0.0, 0.0]])
    est = PairwiseMI(2, 2, b, b)
    est.update(x, torch.stack([y0, y1], 1))
    r = est.compute()
    assert np.all(r.matrix_ci_low <= truth) and np.all(truth <= r.matrix_ci_high)
    np.testing.assert_allclose(r.matrix, truth, atol=0.02)
    assert r.total.ci_low <= truth.sum() <= r.total.ci_high
    assert r.total.plugin > r.total.value  # the plug-in is biased up
    # ordinary plug-in + Miller-Madow agrees to within its CI too
    r2 = est.compute(known_input_marginal=False)
    np.testing.assert_allclose(r2.matrix, truth, atol=0.02)


def test_pairwise_update_single_fills_only_its_row():
    g = gen(7)
    est = PairwiseMI(3, 2, 4, 4)
    xi = torch.randint(0, 4, (3000,), generator=g)
    y = torch.stack([xi, torch.randint(0, 4, (3000,), generator=g)], 1)
    est.update_single(1, xi, y)
    t = est.tables()
    assert float(t[0].sum()) == 0 and float(t[2].sum()) == 0
    assert torch.equal(t[1], _reference_tables(xi[:, None], y, 4, 4)[0])
    assert est.row_samples.tolist() == [0, 3000, 0]
    r = est.compute()
    assert np.isnan(r.matrix[0]).all() and np.isnan(r.matrix[2]).all()
    assert r.matrix[1, 0] == pytest.approx(2.0, abs=1e-12)
    assert any("no samples" in w for w in r.warnings)
    assert r.total.value == pytest.approx(2.0, abs=0.01)
    assert r.total.ci_low <= 2.0 <= r.total.ci_high


def test_pairwise_undersampled_warning_and_errors():
    est = PairwiseMI(2, 1, 8, 8)
    est.update(
        torch.randint(0, 8, (100, 2), generator=gen(8)), torch.zeros(100, 1, dtype=torch.long)
    )
    r = est.compute()
    assert any("undersampled" in w and "64 cells" in w for w in r.warnings)
    with pytest.raises(TypeError, match="integer bin indices"):
        est.update(torch.zeros(3, 2), torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"must lie in \[0, 7\]"):
        est.update(torch.full((3, 2), 8), torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        est.update(torch.zeros(3, 3, dtype=torch.long), torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="rows"):
        est.update(torch.zeros(3, 2, dtype=torch.long), torch.zeros(4, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="out of range"):
        est.update_single(5, torch.zeros(3, dtype=torch.long), torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="in_bins"):
        PairwiseMI(2, 1, 1, 8)


def test_pairwise_float_gemm_path_matches_int8():
    g = gen(9)
    x = torch.randint(0, 3, (999, 5), generator=g)
    y = torch.randint(0, 4, (999, 2), generator=g)
    a = PairwiseMI(5, 2, 3, 4)
    b = PairwiseMI(5, 2, 3, 4)
    b._int8 = False  # the path used on GPUs / where torch._int_mm is missing
    a.update(x, y)
    b.update(x, y)
    assert torch.equal(a._g, b._g) and torch.equal(a._yy, b._yy)


# ------------------------------------------------------------------------- WholeEI


def all_cells(n: int, b: int) -> torch.Tensor:
    return torch.tensor(list(product(range(b), repeat=n)))


@pytest.mark.parametrize("exhaustive", [True, False])
def test_whole_copy_layer(exhaustive):
    """Y = X (outputs are the input bins): EI = n log2 B, I(X_i; Y) = log2 B."""
    b, n, m = 4, 2, 8
    cells = all_cells(n, b) if exhaustive else torch.randint(0, b, (3000, n), generator=gen(10))
    est = WholeEI(n, n, b, b, exhaustive=exhaustive)
    est.update(cells, cells[:, None, :].expand(-1, m, -1))
    r = est.compute()
    assert r.ei.value == pytest.approx(4.0, abs=0.01)
    assert r.ei.ci_low <= 4.0 <= r.ei.ci_high
    for node in r.output_nodes + r.input_nodes:
        assert node.value == pytest.approx(2.0, abs=0.01)
        assert node.ci_low <= 2.0 <= node.ci_high
    if exhaustive:
        assert r.ei.value == 4.0 and r.ei.ci_low == 4.0  # no noise at all
    assert est.samples == cells.shape[0] * m


@pytest.mark.parametrize("exhaustive", [True, False])
def test_whole_one_input_matters_and_noise_output(exhaustive):
    b, n, m = 4, 2, 64
    g = gen(11)
    cells = all_cells(n, b) if exhaustive else torch.randint(0, b, (2000, n), generator=g)
    c = cells.shape[0]
    # Y0 = bin of input 1; Y1 = pure noise (independent of everything)
    y = torch.stack([cells[:, None, 1].expand(-1, m), torch.randint(0, b, (c, m), generator=g)], -1)
    est = WholeEI(n, 2, b, b, exhaustive=exhaustive)
    est.update(cells, y)
    r = est.compute()
    assert r.ei.ci_low <= 2.0 <= r.ei.ci_high
    assert r.output_nodes[0].ci_low <= 2.0 <= r.output_nodes[0].ci_high
    if exhaustive:  # every cell seen equally often: the mixture is exactly uniform
        assert r.output_nodes[0].value == pytest.approx(2.0, abs=1e-12)
    assert r.output_nodes[1].ci_low <= 0.0 <= r.output_nodes[1].ci_high
    assert r.input_nodes[0].ci_low <= 0.0 <= r.input_nodes[0].ci_high
    assert r.input_nodes[1].ci_low <= 2.0 <= r.input_nodes[1].ci_high
    assert r.ei.plugin > r.ei.value  # the within-cell plug-in entropies are biased low


def test_whole_xor_synergy():
    """Y = X0 xor X1 (2 bins each): EI = 1 bit, each input alone 0, pairwise parts 0."""
    cells = torch.randint(0, 2, (4000, 2), generator=gen(12))
    y = (cells[:, 0] ^ cells[:, 1])[:, None, None].expand(-1, 4, 1)
    est = WholeEI(2, 1, 2, 2)
    est.update(cells, y)
    r = est.compute()
    assert r.ei.value == pytest.approx(1.0, abs=0.01)
    for node in r.input_nodes:
        assert abs(node.value) < 0.01 and node.ci_low <= 0.0 <= node.ci_high
    pw = PairwiseMI(2, 1, 2, 2)
    pw.update(cells, y[:, 0])
    parts = pw.compute().total
    assert r.ei.value - parts.value > 0.9  # integration = EI - EI_parts > 0 (synergy)


def irwin_hall_cdf(x: float, n: int) -> float:
    if x <= 0:
        return 0.0
    if x >= n:
        return 1.0
    s = sum((-1) ** k * math.comb(n, k) * (x - k) ** n for k in range(int(math.floor(x)) + 1))
    return s / math.factorial(n)


def mean_layer_ei(n: int, b: int) -> float:
    """Exact EI of y = mean(x), x_i ~ U(0, 1), both sides at b bins, n inputs.

    In cell a, x_i = (a_i + U_i) / b, so b * mean(x) = (A + S) / n with A = sum a_i and
    S ~ Irwin-Hall(n): output bin k <=> k n <= A + S < (k + 1) n; P(k | cell) depends on A.
    """
    pa = np.ones(1)
    for _ in range(n):  # distribution of A = sum of n uniform {0..b-1}
        pa = np.convolve(pa, np.ones(b) / b)
    cond = np.array(
        [
            [irwin_hall_cdf((k + 1) * n - a, n) - irwin_hall_cdf(k * n - a, n) for k in range(b)]
            for a in range(len(pa))
        ]
    )
    py = pa @ cond

    def ent(p):
        p = p[p > 0]
        return float(-(p * np.log2(p)).sum())

    return ent(py) - float(sum(pa[a] * ent(cond[a]) for a in range(len(pa))))


def mean_layer(cells: torch.Tensor, m: int, b: int, g: torch.Generator) -> torch.Tensor:
    c, n = cells.shape
    x = (cells[:, None, :] + torch.rand(c, m, n, generator=g, dtype=torch.float64)) / b
    return torch.floor(x.mean(-1) * b).clamp(max=b - 1).long()[..., None]


def test_whole_wide_layer_every_tuple_unique():
    """8 inputs at 8 bins (16.7 M cells): every sampled tuple is unique, so the plug-in
    over joint tuples collapses to H(Y); the cell-conditional estimate does not."""
    n, b, c, m = 8, 8, 3000, 32
    truth = mean_layer_ei(n, b)
    g = gen(13)
    cells = torch.randint(0, b, (c, n), generator=g)
    assert torch.unique(cells, dim=0).shape[0] >= c - 2  # (birthday: ~0.3 repeats expected)
    y = mean_layer(cells, m, b, g)
    est = WholeEI(n, 1, b, b, input_nodes=False)
    for s in range(0, c, 1000):
        est.update(cells[s : s + 1000], y[s : s + 1000])
    r = est.compute()
    assert r.ei.ci_low <= truth <= r.ei.ci_high
    assert r.ei.value == pytest.approx(truth, abs=0.05)
    # plug-in over tuples, one point per cell: H(Y|X) = 0, so it equals H(Y)
    ty = y[:, 0, 0]
    tuple_plugin = float(entropy_bits(torch.bincount(ty, minlength=b).double()))
    assert tuple_plugin > r.ei.ci_high + 0.1  # the collapsed value is far outside the CI
    assert r.input_nodes == []


def test_whole_chunks_and_merge():
    n, b, m = 3, 4, 16
    g = gen(14)
    cells = torch.randint(0, b, (2000, n), generator=g)
    y = torch.cat([mean_layer(cells, m, b, g), torch.randint(0, 3, (2000, m, 1), generator=g)], -1)
    one = WholeEI(n, 2, b, b)
    one.update(cells, y)
    chunked = WholeEI(n, 2, b, b)
    for s in range(0, 2000, 300):
        chunked.update(cells[s : s + 300], y[s : s + 300])
    r1, r2 = one.compute(), chunked.compute()
    assert r1.ei.value == pytest.approx(r2.ei.value, abs=1e-12)
    assert r1.ei.ci_low == pytest.approx(r2.ei.ci_low, abs=1e-12)  # same batches
    for a, c in zip(r1.input_nodes + r1.output_nodes, r2.input_nodes + r2.output_nodes):
        assert a.value == pytest.approx(c.value, abs=1e-12)
    a, c = WholeEI(n, 2, b, b), WholeEI(n, 2, b, b)
    a.update(cells[:700], y[:700])
    c.update(cells[700:], y[700:])
    a.merge(c)
    r3 = a.compute()
    assert r3.ei.value == pytest.approx(r1.ei.value, abs=1e-12)
    assert r3.ei.plugin == pytest.approx(r1.ei.plugin, abs=1e-12)
    for x, z in zip(r1.input_nodes + r1.output_nodes, r3.input_nodes + r3.output_nodes):
        assert x.value == pytest.approx(z.value, abs=1e-12)
    assert a.samples == 2000 * m and a.cells_seen == 2000


def test_whole_within_cell_entropy_is_grassberger_and_less_biased():
    """Y independent of X (truth EI = 0), 16 output tuples, 16 points per cell: the
    within-cell entropies are undersampled. EI must equal H(Y) - mean Grassberger H(Y |
    cell) computed here from the public helpers, and be far less biased than the
    Miller-Madow version (~0.37 bits here)."""
    g = gen(21)
    c, m = 2000, 16
    cells = torch.randint(0, 4, (c, 3), generator=g)
    y = torch.randint(0, 4, (c, m, 2), generator=g)
    est = WholeEI(3, 2, 4, 8, input_nodes=False)
    est.update(cells, y)
    r = est.compute()
    cnt = torch.zeros(c, 64, dtype=torch.float64)
    cnt.scatter_add_(1, y[..., 0] * 8 + y[..., 1], torch.ones(c, m, dtype=torch.float64))
    h_y = float(entropy_miller_madow_bits(cnt.sum(0)))
    via_gr = h_y - float(entropy_grassberger_bits(cnt).mean())
    via_mm = h_y - float(entropy_miller_madow_bits(cnt).mean())
    assert r.ei.value == pytest.approx(via_gr, abs=2e-3)
    assert via_mm > 0.3 and abs(r.ei.value) < 0.05
    assert r.ei.ci_low <= 0.0 <= r.ei.ci_high
    # fewer points per cell: more bias, so the half-points EI is clearly higher
    assert r.ei_half_points > r.ei.value + 0.1


@pytest.mark.parametrize("exhaustive", [True, False])
def test_whole_fast_paths_match_general_path(exhaustive, monkeypatch):
    """The pairwise per-cell histograms (no sort), the dense code table and dense H(Y)
    sums, and skipping output nodes give exactly the results of the general path."""
    n, b, m = 3, 4, 16
    g = gen(22)
    cells = all_cells(n, b) if exhaustive else torch.randint(0, b, (1500, n), generator=g)
    y = torch.cat(
        [mean_layer(cells, m, b, g), torch.randint(0, 3, (cells.shape[0], m, 1), generator=g)],
        -1,
    )

    def run(**kw):
        est = WholeEI(n, 2, b, b, exhaustive=exhaustive, **kw)
        for s in range(0, cells.shape[0], 500):
            est.update(cells[s : s + 500], y[s : s + 500])
        return est.compute()

    fast = run(input_nodes=False, output_nodes=False)
    general = run(input_nodes=True)  # the sort path (input nodes need per-value runs)
    # patched where WholeEI looks them up (its own module, not the estimators facade)
    monkeypatch.setattr(whole_mod, "_DENSE_SPACE", 0)  # sparse codes and sums
    monkeypatch.setattr(whole_mod, "_PAIRWISE_M", 0)
    sparse = run(input_nodes=False)
    assert fast.output_nodes == [] and fast.input_nodes == []
    assert len(general.output_nodes) == 2 and len(general.input_nodes) == n
    for other in (general, sparse):
        assert fast.ei.value == pytest.approx(other.ei.value, abs=1e-12)
        assert fast.ei.ci_low == pytest.approx(other.ei.ci_low, abs=1e-12)
        assert fast.ei.plugin == pytest.approx(other.ei.plugin, abs=1e-12)
        assert fast.ei_half_points == pytest.approx(other.ei_half_points, abs=1e-12)
    for a, c in zip(general.output_nodes, sparse.output_nodes):
        assert a.value == pytest.approx(c.value, abs=1e-12)
    assert math.isfinite(fast.ei_half_points)


def test_whole_exhaustive_pools_points_across_updates():
    n, b = 2, 4
    g = gen(15)
    cells = all_cells(n, b)
    y1, y2 = mean_layer(cells, 8, b, g), mean_layer(cells, 8, b, g)
    a = WholeEI(n, 1, b, b, exhaustive=True)
    a.update(cells, y1)
    a.update(cells, y2)
    both = WholeEI(n, 1, b, b, exhaustive=True)
    both.update(cells, torch.cat([y1, y2], 1))
    assert a.compute().ei.value == pytest.approx(both.compute().ei.value, abs=1e-12)
    with pytest.raises(ValueError, match="exhaustive"):
        a.update(cells, y1, exhaustive=False)


def test_whole_undersampled_output_warns():
    # 6 noisy outputs at 8 bins: 262144 states, few cells -> H(Y) undersampled
    g = gen(16)
    cells = torch.randint(0, 4, (200, 2), generator=g)
    y = torch.randint(0, 8, (200, 4, 6), generator=g)
    r = WholeEI(2, 6, 4, 8, input_nodes=False).compute()
    assert math.isnan(r.ei.value)
    est = WholeEI(2, 6, 4, 8, input_nodes=False)
    est.update(cells, y)
    r = est.compute()
    assert any("H(Y) is undersampled" in w and "distinct output tuples" in w for w in r.warnings)
    assert any("within-cell" in w for w in r.warnings)


# ----------------------------------------------------- facade, names, whole-EI modes


def test_estimators_module_reexports_the_split_modules():
    for name in est_mod.__all__:
        assert hasattr(est_mod, name), name
    assert est_mod.PairwiseMI is PairwiseMI and est_mod.WholeEI is WholeEI
    assert est_mod.mi_bias_corrected is mi_bias_corrected


def test_batches_keyword_and_its_old_name_groups():
    for cls in (PairwiseMI, WholeEI):
        new, old = cls(2, 1, 3, 3, batches=5), cls(2, 1, 3, 3, groups=5)
        assert new.batches == old.batches == old.groups == 5
        with pytest.raises(ValueError, match="groups=1"):
            cls(2, 1, 3, 3, groups=1)
        with pytest.raises(TypeError, match="old name"):
            cls(2, 1, 3, 3, batches=5, groups=5)
    assert PairwiseMI(2, 1, 3, 3).batches == 20 and WholeEI(2, 1, 3, 3).batches == 16


def test_whole_mode_picks_the_strategy_class():
    assert type(WholeEI(2, 1, 3, 3, exhaustive=True)) is ExhaustiveWholeEI
    assert type(WholeEI(2, 1, 3, 3, exhaustive=False)) is SampledWholeEI
    assert SampledWholeEI(2, 1, 3, 3).exhaustive is False
    with pytest.raises(ValueError, match="exhaustive"):
        SampledWholeEI(2, 1, 3, 3, exhaustive=True)
    cells = all_cells(2, 3)
    y = torch.zeros(9, 4, 1, dtype=torch.long)
    # undecided: the first update (or merge) decides, as the argument says or sampled
    for given, cls in ((True, ExhaustiveWholeEI), (False, SampledWholeEI), (None, SampledWholeEI)):
        est = WholeEI(2, 1, 3, 3)
        assert est.exhaustive is None and type(est) is WholeEI
        est.update(cells, y, exhaustive=given)
        assert type(est) is cls and isinstance(est, WholeEI)
    done = WholeEI(2, 1, 3, 3, exhaustive=True)
    done.update(cells, y)
    taker = WholeEI(2, 1, 3, 3)
    taker.merge(done)
    assert type(taker) is ExhaustiveWholeEI and taker.cells_seen == 9
    assert taker.compute().ei.value == pytest.approx(done.compute().ei.value, abs=1e-12)
    # strategies survive pickling (its __new__ is called with the class alone)
    back = pickle.loads(pickle.dumps(done))
    assert type(back) is ExhaustiveWholeEI
    assert back.compute().ei.value == pytest.approx(done.compute().ei.value, abs=1e-12)


# -------------------------------------------------------------- coverage (slow)


@pytest.mark.slow
def test_pairwise_total_ci_coverage():
    """Correlated pairs (X0 -> Y0 -> Y1 share samples): the total's 95 % CI covers."""
    b, e, n, runs = 4, 0.3, 2000, 240
    s = 1 - e
    truth = symmetric_channel_mi(b, e) + symmetric_channel_mi(b, 1 - (s * s + e * e / (b - 1)))
    hits = 0
    for seed in range(runs):
        g = gen(1000 + seed)
        x = torch.randint(0, b, (n, 3), generator=g)
        y0 = noisy(x[:, 0], b, e, g)
        est = PairwiseMI(3, 2, b, b)
        est.update(x, torch.stack([y0, noisy(y0, b, e, g)], 1))
        t = est.compute().total
        hits += t.ci_low <= truth <= t.ci_high
    assert 0.90 <= hits / runs <= 0.99


@pytest.mark.slow
def test_pairwise_total_ci_coverage_null():
    """Everything independent of the inputs (outputs correlated with each other)."""
    b, n, runs = 4, 2000, 240
    hits = 0
    for seed in range(runs):
        g = gen(2000 + seed)
        x = torch.randint(0, b, (n, 3), generator=g)
        z = torch.randint(0, b, (n,), generator=g)
        est = PairwiseMI(3, 2, b, b)
        est.update(x, torch.stack([z, noisy(z, b, 0.2, g)], 1))
        t = est.compute().total
        hits += t.ci_low <= 0.0 <= t.ci_high
    assert 0.90 <= hits / runs <= 0.995


@pytest.mark.slow
def test_whole_ei_ci_coverage():
    n, b, c, m, runs = 3, 4, 400, 32, 200
    truth = mean_layer_ei(n, b)
    hits = 0
    for seed in range(runs):
        g = gen(3000 + seed)
        cells = torch.randint(0, b, (c, n), generator=g)
        est = WholeEI(n, 1, b, b, input_nodes=False)
        est.update(cells, mean_layer(cells, m, b, g))
        r = est.compute().ei
        hits += r.ci_low <= truth <= r.ci_high
    assert 0.90 <= hits / runs <= 0.99

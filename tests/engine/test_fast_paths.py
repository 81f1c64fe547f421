"""The engine's fast paths (row codes by GEMM, one-pass binning, gathered histogram sums,
one-pass index checks) against references written here from their definitions: Python
integers for the codes and hashes, numpy floor/clip for the bins, math for the sums."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import digamma

from causal_widgets.engine.binning import bin_index
from causal_widgets.engine.information import _HASH_M, _HASH_P, _dense_hist_sums, encode_rows
from causal_widgets.engine.tallies import _check_idx


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def python_code(row: list[int], bins: int) -> int:
    """The documented id of one row, with Python's unbounded integers."""
    m = len(row)
    if bins**m < 2**62:
        return sum(v * bins ** (m - 1 - j) for j, v in enumerate(row))
    h1 = h2 = 0
    for v in row:  # Horner's rule on idx + 1, modulo each prime
        h1 = (h1 * _HASH_M[0] + v + 1) % _HASH_P[0]
        h2 = (h2 * _HASH_M[1] + v + 1) % _HASH_P[1]
    return h1 * _HASH_P[1] + h2


@pytest.mark.parametrize(
    ("m", "bins"),
    [
        (5, 8),  # mixed radix, float64 GEMM (8**5 <= 2**53)
        (17, 8),  # 8**17 = 2**51: the largest float64-exact width at 8 bins
        (20, 8),  # 8**20 = 2**60: mixed radix in int64 (beyond float64's 2**53)
        (120, 8),  # hashed, GEMM path (120 * 8 <= 2**21)
        (84, 255),  # hashed, GEMM path with large bin indices
        (300, 7000),  # hashed, 300 * 7000 > 2**21: Horner's loop
    ],
)
def test_encode_rows_equals_the_definition(m: int, bins: int) -> None:
    rows = torch.randint(0, bins, (64, m), generator=gen(m))
    rows[0] = bins - 1  # the largest id of the width: no overflow, no rounding
    rows[1] = 0
    got = encode_rows(rows, bins).tolist()
    assert got == [python_code(r, bins) for r in rows.tolist()]


def test_encode_rows_keeps_leading_axes_and_accepts_small_dtypes() -> None:
    rows = torch.randint(0, 8, (6, 5, 40), generator=gen(1))
    flat = encode_rows(rows.reshape(30, 40), 8)
    assert encode_rows(rows, 8).shape == (6, 5)
    assert torch.equal(encode_rows(rows, 8).reshape(-1), flat)
    assert torch.equal(encode_rows(rows.to(torch.uint8), 8).reshape(-1), flat)
    assert encode_rows(torch.zeros((0, 40), dtype=torch.int64), 8).shape == (0,)


def numpy_bins(v: np.ndarray, lo: float, hi: float, bins: int) -> tuple[np.ndarray, int]:
    scaled = (v - lo) * (bins / (hi - lo))
    outside = int(((scaled < 0) | (scaled > bins)).sum())
    return np.clip(np.floor(scaled), 0, bins - 1).astype(np.int64), outside


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bin_index_equals_floor_and_clip(dtype: torch.dtype) -> None:
    v = torch.rand(5000, generator=gen(2), dtype=torch.float64) * 1.4 - 0.2
    v[:4] = torch.tensor([0.0, 1.0, -0.999, 1.0001], dtype=torch.float64)  # edges
    v = v.to(dtype)
    idx, outside = bin_index(v, (0.0, 1.0), 8)
    ref, ref_out = numpy_bins(v.double().numpy(), 0.0, 1.0, 8)
    if dtype == torch.float32:  # binned in float32: compare with float32 arithmetic
        s = (v - 0.0) * (8 / 1.0)
        ref = np.clip(np.floor(s.numpy()), 0, 7).astype(np.int64)
        ref_out = int(((s < 0) | (s > 8)).sum())
    assert idx.dtype == torch.int64
    assert idx.tolist() == ref.tolist()
    assert outside == ref_out > 0
    assert idx[1] == 7  # the right edge joins the last bin


def test_bin_index_inside_counts_nothing_and_edge_cases() -> None:
    v = torch.rand(3, 100, generator=gen(3))
    idx, outside = bin_index(v, (0.0, 1.0), 4)
    assert outside == 0
    assert torch.equal(idx, (v * 4).floor().long())
    idx, outside = bin_index(torch.tensor([math.inf, -math.inf, 0.5]), (0.0, 1.0), 4)
    assert idx.tolist() == [3, 0, 2] and outside == 2
    idx, outside = bin_index(torch.empty(0, 3), (0.0, 1.0), 4)
    assert idx.shape == (0, 3) and outside == 0
    idx, outside = bin_index(torch.tensor([0.3, 0.9], dtype=torch.float16), (0.0, 1.0), 4)
    assert idx.tolist() == [1, 3] and outside == 0
    with pytest.raises(ValueError, match="NaN outputs"):
        bin_index(torch.tensor([0.1, math.nan, 2.0]), (0.0, 1.0), 4)


def test_dense_hist_sums_equal_their_formulas() -> None:
    cnt = torch.randint(0, 70, (7, 3, 9), generator=gen(4)).to(torch.float64)
    cnt[0, 0] = 0.0  # an empty histogram
    got = _dense_hist_sums(cnt)
    assert got.shape == (7, 3, 4)
    for a in range(7):
        for b in range(3):
            want = hist_sums_reference([int(c) for c in cnt[a, b].tolist()])
            assert got[a, b].tolist() == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_check_idx_one_pass_range_check() -> None:
    dev = torch.device("cpu")
    x = torch.tensor([[0, 3], [2, 1]], dtype=torch.uint8)
    out = _check_idx(x, "y_idx", (None, 2), 4, dev)
    assert out.dtype == torch.int64 and out.tolist() == [[0, 3], [2, 1]]
    with pytest.raises(ValueError, match=r"y_idx holds bin indices in \[0, 4\]"):
        _check_idx(torch.tensor([[0, 4]]), "y_idx", (None, 2), 4, dev)
    with pytest.raises(ValueError, match=r"in \[-1, 2\]"):
        _check_idx(torch.tensor([[-1, 2]]), "y_idx", (None, 2), 4, dev)


def hist_sums_reference(counts: list[int]) -> list[float]:
    """The four per-histogram sums of _hist_entropies, from the counts by their formulas."""

    def grass(c: int) -> float:  # Grassberger's G(c)
        return digamma(c) + 0.5 * (-1) ** c * (digamma((c + 1) / 2) - digamma(c / 2))

    def t(c: int) -> float:
        return c * math.log(c) if c > 0 else 0.0

    cs = [c for c in counts if c > 0]
    return [sum(t(c) for c in cs), sum(c * grass(c) for c in cs),
            sum(c * (t(c) - t(c - 1)) for c in cs), float(len(cs))]  # fmt: skip


def test_point_and_sparse_hist_sums_equal_their_formulas() -> None:
    from collections import Counter

    from causal_widgets.engine.information import _point_hist_sums, _sparse_hist_sums

    u = torch.randint(0, 5, (9, 16), generator=gen(5))
    u[0] = 3  # one value only
    sums, mult, half = _point_hist_sums(u, half=8)
    for r, row in enumerate(u.tolist()):
        counter = Counter(row)
        assert sums[r].tolist() == pytest.approx(hist_sums_reference(list(counter.values())))
        assert mult[r].tolist() == [float(counter[v]) for v in row]
        first = Counter(row[:8]).values()
        assert half[r].tolist() == pytest.approx(hist_sums_reference(list(first)))
    cnt = torch.tensor([3.0, 1.0, 2.0, 5.0, 1.0])
    unit = torch.tensor([0, 0, 2, 2, 2])
    got = _sparse_hist_sums(cnt, unit, 3)
    assert got[0].tolist() == pytest.approx(hist_sums_reference([3, 1]))
    assert got[1].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert got[2].tolist() == pytest.approx(hist_sums_reference([2, 5, 1]))


def test_pairwise_int32_pending_counts_equal_brute_force() -> None:
    from causal_widgets.engine.pairwise import PairwiseMI

    n_in, n_out, bx, by = 3, 2, 4, 5
    x = torch.randint(0, bx, (700, n_in), generator=gen(6))
    y = torch.randint(0, by, (700, n_out), generator=gen(7))
    xs = torch.randint(0, bx, (90,), generator=gen(8))
    ys = torch.randint(0, by, (90, n_out), generator=gen(9))
    est = PairwiseMI(n_in, n_out, bx, by, batches=4, block=256)
    est.update(x[:300], y[:300])
    first = est.tables().clone()  # a read flushes; later updates add to the flushed totals
    est._pending = 2**31 - 200  # the next block (256 rows) must flush before counting
    est.update(x[300:], y[300:])
    assert est._pending == 400  # flushed before the first block, then its 256 + 144 rows
    est.update_single(1, xs, ys)
    ref = np.zeros((n_in, n_out, bx, by))
    for r in range(700):
        for i in range(n_in):
            for j in range(n_out):
                ref[i, j, x[r, i], y[r, j]] += 1
    for r in range(90):
        for j in range(n_out):
            ref[1, j, xs[r], ys[r, j]] += 1
    assert first.sum().item() == 300 * n_in * n_out
    assert est.tables().numpy().tolist() == ref.tolist()
    assert est._g.dtype == torch.float64 and est._g.sum().item() == ref.sum()
    yy = np.zeros((n_out * by, n_out * by))  # Y^T Y of the update() rows
    for r in range(700):
        code = [j * by + int(y[r, j]) for j in range(n_out)]
        for a in code:
            for b in code:
                yy[a, b] += 1
    assert est._yy.numpy().tolist() == yy.tolist()


def test_sampled_ei_parts_interval_covers_its_residual_bias() -> None:
    # ReLU 120 -> 84 at PyTorch's initialisation: many output bins are hit rarely, and at
    # 2**14 interventions the first-order corrected total sits ~0.7 bits above the exact
    # value (the exact engine, an independent computation), beyond its interval;
    # the half-sample allowance must extend the interval down over it.
    from torch import nn

    from causal_widgets.engine.layer_measure import measure_layer

    torch.manual_seed(0)
    layer = nn.Sequential(nn.Linear(120, 84), nn.ReLU())
    exact = measure_layer(layer, in_range=(0.0, 1.0), metrics=["ei_parts"])
    sampled = measure_layer(layer, in_range=(0.0, 1.0), metrics=["ei_parts"], method="sampled",
                            interventions=2**14, out_range=exact.settings["out_range"])  # fmt: skip
    truth, value = exact.ei_parts, sampled.ei_parts
    lo, hi = sampled.ci["ei_parts"]
    assert value - truth > hi - value  # the unextended (symmetric) interval would miss it
    assert lo <= truth <= hi
    assert any("half the samples" in w for w in sampled.warnings)


@pytest.mark.parametrize("space", [None, 64])
def test_idmap_codes_equal_a_dictionary(space: int | None) -> None:
    from causal_widgets.engine.tallies import _IdMap

    ids_map = _IdMap(torch.device("cpu"), space=space)
    ref: dict[int, int] = {}
    for chunk in range(6):
        ids = torch.randint(0, 64 if space else 10**12, (50, 3), generator=gen(10 + chunk))
        ids[0, 0] = 7  # a repeat across chunks
        got = ids_map.codes(ids)
        for v in sorted(set(ids.reshape(-1).tolist()) - set(ref)):  # new ids, ascending
            ref[v] = len(ref)
        assert got.tolist() == [[ref[v] for v in row] for row in ids.tolist()]
    assert ids_map.n == len(ref)
    assert ids_map.raw().tolist() == sorted(ref, key=ref.__getitem__)
    assert torch.equal(ids_map.ids, torch.sort(ids_map.ids).values)  # kept sorted

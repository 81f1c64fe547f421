"""Exact max-pool window MI (engine/exact.py) against enumeration of bins (aligned ranges)
and against a large Monte Carlo sample (any ranges), both written here."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from causal_widgets.engine.exact import exact_max_pool_ei, exact_max_pool_mi


def entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def plugin_mi(a: np.ndarray, b: np.ndarray, na: int, nb: int) -> float:
    joint = np.bincount(a * nb + b, minlength=na * nb).reshape(na, nb) / a.size
    return entropy(joint.sum(1)) + entropy(joint.sum(0)) - entropy(joint.ravel())


def test_aligned_bins_equal_enumeration() -> None:
    # same range and bins in and out: the bin of the max is the max of the bins
    k, bins = 3, 4
    states = list(itertools.product(range(bins), repeat=k))
    ys = np.array([max(s) for s in states])
    h_y = entropy(np.bincount(ys, minlength=bins) / len(ys))
    x1 = np.array([s[0] for s in states])
    joint = np.zeros((bins, bins))
    np.add.at(joint, (x1, ys), 1.0 / len(states))
    mi_1 = entropy(joint.sum(1)) + entropy(joint.sum(0)) - entropy(joint.ravel())
    got = exact_max_pool_mi(k, (0.0, 2.0), bins, (0.0, 2.0), bins)
    assert got.shape == (k, 1)
    assert got[:, 0] == pytest.approx([mi_1] * k, abs=1e-12)
    assert exact_max_pool_ei(k, (0.0, 2.0), bins, (0.0, 2.0), bins) == pytest.approx(h_y, abs=1e-12)
    # others held at 0 = the range's low end: Y = x_i, log2(bins) bits per input
    single = exact_max_pool_mi(k, (0.0, 2.0), bins, (0.0, 2.0), bins, intervention="single")
    assert single.sum() == pytest.approx(k * math.log2(bins), abs=1e-12)


@pytest.mark.parametrize("intervention", ["all", "single"])
def test_any_ranges_match_monte_carlo(intervention: str) -> None:
    rng = np.random.default_rng(0)
    k, in_bins, out_bins = 4, 8, 5
    lo, hi, olo, ohi = -1.0, 1.0, -0.3, 0.9  # 0 inside the range; edges not aligned
    n = 2**21
    x = rng.uniform(lo, hi, size=(n, k))
    if intervention == "single":
        x[:, 1:] = 0.0
    y = x.max(axis=1)
    xa = np.minimum(((x[:, 0] - lo) / (hi - lo) * in_bins).astype(int), in_bins - 1)
    yb = np.clip(np.floor((y - olo) / (ohi - olo) * out_bins), 0, out_bins - 1).astype(int)
    want = plugin_mi(xa, yb, in_bins, out_bins)  # plug-in bias ~ 28 / (2 n ln 2) ~ 1e-5
    got = exact_max_pool_mi(k, (lo, hi), in_bins, (olo, ohi), out_bins, intervention)
    assert got[0, 0] == pytest.approx(want, abs=2e-3)
    assert np.all(got == got[0, 0])


def test_whole_window_ei_matches_monte_carlo() -> None:
    rng = np.random.default_rng(1)
    k, in_bins, out_bins = 2, 6, 5
    lo, hi, olo, ohi = 0.0, 1.0, 0.2, 0.95
    n = 2**21
    x = rng.uniform(lo, hi, size=(n, k))
    cell = (np.minimum((x * in_bins).astype(int), in_bins - 1) * [in_bins, 1]).sum(1)
    yb = np.clip(np.floor((x.max(1) - olo) / (ohi - olo) * out_bins), 0, out_bins - 1)
    want = plugin_mi(cell, yb.astype(int), in_bins**k, out_bins)  # bias ~ 1e-4 bits
    got = exact_max_pool_ei(k, (lo, hi), in_bins, (olo, ohi), out_bins)
    assert got == pytest.approx(want, abs=2e-3)
    # EI of the whole window is at least each input's share and at most H(Y)
    assert got >= exact_max_pool_mi(k, (lo, hi), in_bins, (olo, ohi), out_bins)[0, 0]


def test_bad_arguments_say_what_to_pass() -> None:
    with pytest.raises(ValueError, match="k must be the pool window"):
        exact_max_pool_mi(0, (0.0, 1.0), 8, (0.0, 1.0), 8)
    with pytest.raises(ValueError, match="intervention='some' is unknown"):
        exact_max_pool_mi(4, (0.0, 1.0), 8, (0.0, 1.0), 8, intervention="some")
    with pytest.raises(ValueError, match="cell_limit"):
        exact_max_pool_ei(9, (0.0, 1.0), 8, (0.0, 1.0), 8)
    with pytest.raises(ValueError, match="in_range"):
        exact_max_pool_mi(4, (1.0, 0.0), 8, (0.0, 1.0), 8)

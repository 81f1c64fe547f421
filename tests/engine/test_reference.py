"""``measure_layer`` end to end against the independent references (tests/engine/
reference_harness.py says which, and what "agrees" means for sampled and exact values).

Layers: the benchmark's (``benchmarks.run.make_layer``: bias-free sigmoid, trained-like
weights ``N(0, (4 / sqrt(n))^2)``, 8 bins on ``(0, 1)``): 2->2 and 3->2 (the shapes of its
tiny run; truth integrated here, in about a second), 4->5, 5->3 and 5->5 (its paper
layers; truth from benchmarks/truth_cache.json at the benchmark's full grids), and a tanh
layer with a bias on ``(-1, 1)``. 4->5 and the small ones enumerate all input cells; 5->3
and 5->5 (32 768 cells) sample them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from reference_harness import (
    ROUNDING,
    Reference,
    cached_truth_of,
    check_exact,
    check_whole_ei,
    linear_layer,
    min_covered,
    pair_mi_matrix,
    truth_of,
    weights_of,
)
from test_exact import gl_tables, ref_mi
from torch import nn

from benchmarks import run, truth

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BINS = 8
SIGMOID = ((0.0, 1.0), (0.0, 1.0))  # in_range, out_range
TANH = ((-1.0, 1.0), (-1.0, 1.0))
#: grids of the integrated truth: fine enough that its stated error is small beside our
#: intervals (2->2 at grid 64: 9e-5 bits; 3->2: 3e-5; the tanh layer at 32: see its value)
SMALL = {"2x2": ((2, 2), 64), "3x2": ((3, 2), 64)}
#: the benchmark's paper layers at its full grids (benchmarks/run.py, Config.truth_grid)
CACHED = {"4x5": ((4, 5), 16), "5x3": ((5, 3), 8), "5x5": ((5, 5), 8)}
TANH_W = [[2.5, -1.5, 0.8], [-0.6, 1.9, 2.2]]
TANH_B = [0.3, -0.4]


def _tanh_layer() -> nn.Sequential:
    return linear_layer(TANH_W, TANH_B, nn.Tanh())


@pytest.fixture(scope="module")
def small_truths() -> dict[str, tuple[nn.Sequential, dict[str, Reference], truth.Truth]]:
    """Layer, References and full Truth of each small layer, integrated once per module."""
    out = {}
    for key, ((n, m), grid) in SMALL.items():
        layer = run.make_layer(n, m)
        out[key] = (layer, *truth_of(layer, "sigmoid", SIGMOID[0], BINS, grid))
    layer = _tanh_layer()
    out["tanh 3x2"] = (layer, *truth_of(layer, "tanh", TANH[0], BINS, 32))
    return out


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the copy of benchmarks/truth_cache.json lives for this module."""
    return tmp_path_factory.mktemp("truth")


# ----------------------------------------------------------------------------- harness


def test_min_covered_is_the_binomial_threshold():
    # P(Bin(16, .95) <= 11) = 8.6e-4 <= 1e-3 < P(<= 12) = 7.0e-3: at least 12 of 16
    assert min_covered(16) == 12
    assert min_covered(8) == 5  # P(<= 4) = 3.7e-4, P(<= 5) = 5.8e-3
    # one interval misses with probability 0.05: required only when that is acceptable
    assert min_covered(1, false_alarm=0.06) == 1
    assert min_covered(1, false_alarm=0.01) == 0


# ----------------------------------------------------------------------------- whole EI


@pytest.mark.parametrize("key", [*SMALL, "tanh 3x2"])
def test_whole_ei_intervals_hold_the_integrated_truth(key, small_truths):
    layer, refs, _ = small_truths[key]
    assert refs["ei"].error < 2e-3, refs["ei"]  # the reference is sharp beside our intervals
    results = check_whole_ei(layer, TANH[0] if key.startswith("tanh") else SIGMOID[0],
                             refs["ei"], bins=BINS)  # fmt: skip
    assert results[0].settings["whole_ei"]["cells"] == "all"


@pytest.mark.parametrize("key", list(CACHED))
def test_whole_ei_intervals_hold_the_benchmark_truth(key, scratch):
    (n, m), grid = CACHED[key]
    layer = run.make_layer(n, m)
    refs = cached_truth_of(layer, BINS, grid, scratch)
    results = check_whole_ei(layer, SIGMOID[0], refs["ei"], bins=BINS)
    assert results[0].settings["whole_ei"]["cells"] == ("all" if n == 4 else "sampled")


# ----------------------------------------------------------------------------- exact


@pytest.mark.parametrize("key", [*SMALL, "tanh 3x2"])
def test_exact_metrics_match_truth_and_piecewise_integration(key, small_truths):
    layer, refs, tr = small_truths[key]
    kind, (rin, rout) = ("tanh", TANH) if key.startswith("tanh") else ("sigmoid", SIGMOID)
    r = check_exact(layer, rin, {k: refs[k] for k in ("ei_parts", "sensitivity")}, bins=BINS)
    # pair by pair: the closed-form sensitivity matrix of truth.py, and gl_tables (exact to
    # rounding) for both interventions; truth.py's EI_parts terms within its total's error
    np.testing.assert_allclose(r.sensitivity_matrix, tr.sensitivity_matrix, rtol=0,
                               atol=ROUNDING)  # fmt: skip
    w, b = weights_of(layer)
    gl_all = pair_mi_matrix(gl_tables(w, b, kind, rin, BINS, rout, BINS), ref_mi)
    gl_one = pair_mi_matrix(gl_tables(w, b, kind, rin, BINS, rout, BINS, single=True), ref_mi)
    np.testing.assert_allclose(r.ei_parts_matrix, gl_all, rtol=0, atol=ROUNDING)
    np.testing.assert_allclose(r.sensitivity_matrix, gl_one, rtol=0, atol=ROUNDING)
    assert np.abs(r.ei_parts_matrix - tr.ei_parts_matrix).max() <= refs["ei_parts"].error


def test_exact_metrics_match_the_benchmark_truth(scratch):
    (n, m), grid = CACHED["4x5"]
    layer = run.make_layer(n, m)
    refs = cached_truth_of(layer, BINS, grid, scratch)
    r = check_exact(layer, SIGMOID[0], {k: refs[k] for k in ("ei_parts", "sensitivity")},
                    bins=BINS)  # fmt: skip
    w, b = weights_of(layer)
    gl_all = pair_mi_matrix(gl_tables(w, b, "sigmoid", SIGMOID[0], BINS, SIGMOID[1], BINS),
                            ref_mi)  # fmt: skip
    np.testing.assert_allclose(r.ei_parts_matrix, gl_all, rtol=0, atol=ROUNDING)

"""Tests of the one-layer measure API against independently derived values.

Truths used here never come from the code under test:

* closed forms (a 1->1 identity edge carries log2(bins) bits; a zero weight carries 0;
  a copy fan-out has EI = log2(bins) but EI_parts = 2 log2(bins); a product that is an
  exact XOR of the input bins has EI = 1 bit and EI_parts = 0);
* a semi-analytic integration of whole-layer EI for 2- and 3-input dense layers (exact
  lengths along the last input, midpoint rule over the others; see ``_true_whole``);
* exact pairwise values checked against sampled ones (two different algorithms).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import causal_widgets as cw
from causal_widgets.engine.layer import layer_from_module
from causal_widgets.engine.layer_measure import LayerResult, measure_layer

# one intra-op torch thread for this file (tests/conftest.py says why)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


FRAME_COLUMNS = [
    "layer", "metric", "value", "ci_low", "ci_high", "status", "method", "samples",
    "in_bins", "out_bins", "in_range", "out_range", "seed", "version",
]  # fmt: skip


def _linear(weight, bias=None, act: nn.Module | None = None) -> nn.Module:
    """A ``Linear`` (+ activation) with the given float weights."""
    w = torch.as_tensor(weight, dtype=torch.float32)
    lin = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
    with torch.no_grad():
        lin.weight.copy_(w)
        if bias is not None:
            lin.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return nn.Sequential(lin, act) if act is not None else lin


def _random_linear(n, m, scale, act, seed) -> nn.Module:
    g = np.random.default_rng(seed)
    w = g.uniform(-scale, scale, (m, n))
    b = g.uniform(-scale, scale, m) * 0.5
    return _linear(w, b, act)


def _inside(value: float, ci: tuple[float, float], slack: float = 0.0) -> bool:
    return ci[0] - slack <= value <= ci[1] + slack


# ----------------------------------------------------------------- independent truth


def _preimage(kind: str, e: np.ndarray) -> np.ndarray:
    """Pre-activation thresholds of output edges (written here, not taken from layer.py)."""
    if kind == "sigmoid":
        return np.log(e / (1.0 - e))
    if kind == "tanh":
        return 0.5 * np.log((1.0 + e) / (1.0 - e))
    return e


def _entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=axis)


def _true_whole(w, b, kind, in_range, in_bins, out_range, out_bins, grid):
    """Whole EI, I(X; Y_j) and I(X_i; Y) of ``act(W x + b)`` by semi-analytic integration.

    For fixed values of the first n-1 inputs every output's bin is a step function of
    the last input with jumps where ``z_j`` crosses a threshold, so the length of the
    last-input interval giving each output tuple is exact; it is continuous and
    piecewise linear in the other inputs, integrated by the midpoint rule with ``grid``
    points per bin (error O(grid^-2)).
    """
    w, b = np.asarray(w, float), np.asarray(b, float)
    m, n = w.shape
    lo, hi = in_range
    width = (hi - lo) / in_bins
    t = _preimage(kind, np.linspace(*out_range, out_bins + 1)[1:-1])
    mids_1d = lo + (np.arange(in_bins * grid) + 0.5) * (width / grid)
    if n == 1:
        outer = np.zeros((1, 0))
    else:
        outer = np.stack(np.meshgrid(*[mids_1d] * (n - 1), indexing="ij"), -1).reshape(-1, n - 1)
    outer_cell = np.minimum(((outer - lo) // width).astype(int), in_bins - 1)
    z0 = outer @ w[:, : n - 1].T + b  # (P, m) pre-activation without the last input
    wl = w[:, n - 1]
    # breakpoints of the last input: thresholds of every output, and its bin edges
    bp = [np.broadcast_to(lo + width * np.arange(in_bins + 1), (len(outer), in_bins + 1))]
    for j in range(m):
        if wl[j] != 0:
            bp.append((t[None, :] - z0[:, j : j + 1]) / wl[j])
    bp = np.sort(np.clip(np.concatenate(bp, axis=1), lo, hi), axis=1)
    lens = np.diff(bp, axis=1)
    mid = 0.5 * (bp[:, 1:] + bp[:, :-1])
    z = z0[:, None, :] + mid[..., None] * wl  # (P, K, m)
    ybin = (z[..., None] >= t).sum(-1)  # (P, K, m), bins in 0..out_bins-1
    last_cell = np.minimum(((mid - lo) // width).astype(int), in_bins - 1)
    cell = last_cell.copy()
    for d in range(n - 1):  # mixed radix, first input most significant
        cell = cell + outer_cell[:, d : d + 1] * in_bins ** (n - 1 - d)
    ycode = np.zeros_like(ybin[..., 0])
    for j in range(m):
        ycode = ycode * out_bins + ybin[..., j]
    n_cells, n_y = in_bins**n, out_bins**m
    joint = np.zeros(n_cells * n_y)
    np.add.at(joint, (cell * n_y + ycode).ravel(), lens.ravel())
    p_y_cell = joint.reshape(n_cells, n_y)
    p_y_cell /= p_y_cell.sum(axis=1, keepdims=True)  # P(Y = y | cell)
    h_y = _entropy(p_y_cell.mean(axis=0))
    ei = h_y - _entropy(p_y_cell).mean()
    # I(X; Y_j): marginalise the tuple onto output j
    ydig = np.stack(np.unravel_index(np.arange(n_y), (out_bins,) * m), axis=1)
    out_nodes = []
    for j in range(m):
        pj = np.zeros((n_cells, out_bins))
        for v in range(out_bins):
            pj[:, v] = p_y_cell[:, ydig[:, j] == v].sum(axis=1)
        out_nodes.append(_entropy(pj.mean(axis=0)) - _entropy(pj).mean())
    # I(X_i; Y): P(Y | X_i = a) averages the cells with input i in bin a
    cdig = np.stack(np.unravel_index(np.arange(n_cells), (in_bins,) * n), axis=1)
    in_nodes = []
    for i in range(n):
        h = [_entropy(p_y_cell[cdig[:, i] == a].mean(axis=0)) for a in range(in_bins)]
        in_nodes.append(h_y - float(np.mean(h)))
    return float(ei), np.array(out_nodes), np.array(in_nodes)


def test_true_whole_reproduces_closed_forms():
    # the reference itself, on cases with known answers: identity copy and zero weights
    ei, outs, ins = _true_whole([[1.0], [1.0]], [0.0, 0.0], "identity", (0, 1), 4, (0, 1), 4, 3)
    assert ei == pytest.approx(2.0, abs=1e-12)
    assert outs == pytest.approx([2.0, 2.0], abs=1e-12)
    ei, outs, ins = _true_whole(
        [[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0], "identity", (0, 1), 4, (0, 1), 4, 3
    )
    assert ei == pytest.approx(4.0, abs=1e-12)
    assert ins == pytest.approx([2.0, 2.0], abs=1e-12)


# ----------------------------------------------------------------- closed-form cases


@pytest.mark.parametrize("bins", [4, 8])
def test_identity_edge_is_log2_bins(bins):
    edge = _linear([[1.0]], [0.0])
    target = math.log2(bins)
    exact = measure_layer(edge, in_range=(0, 1), out_range=(0, 1), bins=bins)
    assert exact.method["ei_parts"] == "exact" and exact.method["ei"] == "sampled"
    assert exact.ei_parts == pytest.approx(target, abs=1e-6)
    assert exact.sensitivity == pytest.approx(target, abs=1e-6)
    assert _inside(target, exact.ci["ei"]), (exact.ei, exact.ci["ei"])
    assert abs(exact.ei - target) < 0.01
    sampled = measure_layer(edge, in_range=(0, 1), out_range=(0, 1), bins=bins, method="sampled")
    for metric in ("ei", "ei_parts", "sensitivity"):
        assert sampled.method[metric] == "sampled"
        assert _inside(target, sampled.ci[metric]), (metric, getattr(sampled, metric))
    assert abs(sampled.integration) < 0.02 and abs(sampled.degeneracy) < 0.02


def test_zero_weights_give_zero():
    layer = _linear(np.zeros((2, 3)), [0.3, -0.2], nn.Sigmoid())
    for method in ("auto", "sampled"):
        r = measure_layer(layer, in_range=(0, 1), bins=8, method=method)
        for metric in ("ei", "ei_parts", "sensitivity", "degeneracy", "integration"):
            assert abs(getattr(r, metric)) < 0.01, (method, metric, getattr(r, metric))
            # a constant output is known exactly: a zero-width interval at 0 (to rounding)
            assert _inside(0.0, r.ci[metric], slack=1e-9), (method, metric, r.ci[metric])


def test_dead_edges_are_not_clamped():
    # input 0 drives the output; inputs 1..12 have zero weight, so E[i, 0] = 0 for i >= 1.
    # Bias-corrected sampled estimates of a zero scatter on both sides of 0: nothing is
    # rounded up to 0, and their intervals cover 0.
    w = np.zeros((1, 13))
    w[0, 0] = 1.0
    r = measure_layer(
        _linear(w, [0.0]), in_range=(0, 1), out_range=(0, 1), bins=4,
        metrics=["ei_parts"], method="sampled", samples=20_000,
    )  # fmt: skip
    dead = r.ei_parts_matrix[1:, 0]
    low, high = r.matrix_ci["ei_parts"]
    assert (dead < 0).any() and (dead > 0).any(), dead
    covered = np.mean((low[1:, 0] <= 0) & (high[1:, 0] >= 0))
    assert covered >= 0.75, (dead, low[1:, 0], high[1:, 0])
    assert r.ei_parts_matrix[0, 0] == pytest.approx(2.0, abs=0.02)


def test_copy_fan_out_is_redundant():
    # one input copied to two outputs: EI = log2 B but EI_parts counts it twice
    r = measure_layer(_linear([[1.0], [1.0]], [0.0, 0.0]), in_range=(0, 1), out_range=(0, 1))
    assert r.ei_parts == pytest.approx(6.0, abs=1e-6)
    assert r.ei == pytest.approx(3.0, abs=0.01)
    assert r.integration == pytest.approx(-3.0, abs=0.01)
    assert r.ci["integration"][1] < -2.9


class _Product(nn.Module):
    """``y = 1/2 + 2 (x1 - 1/2)(x2 - 1/2)``: with 2 bins, y's bin is the XNOR of the inputs'."""

    def forward(self, x):
        return 0.5 + 2.0 * (x[:, :1] - 0.5) * (x[:, 1:2] - 0.5)


def test_xor_like_product_is_synergistic():
    r = measure_layer(_Product(), in_range=(0, 1), out_range=(0, 1), bins=2, in_shape=(2,))
    assert r.method["ei_parts"] == "sampled"  # not dense: auto falls back to sampling
    assert r.ei == pytest.approx(1.0, abs=0.01)
    assert abs(r.ei_parts) < 0.01 and _inside(0.0, r.ci["ei_parts"])
    assert r.integration > 0.95 and r.ci["integration"][0] > 0.9


# ----------------------------------------------------------------- exact vs sampled


@pytest.mark.parametrize(
    ("n", "m", "act", "in_range", "scale"),
    [
        (3, 3, nn.Sigmoid(), (0.0, 1.0), 3.0),
        (3, 3, nn.Tanh(), (-1.0, 1.0), 2.0),
        (25, 6, nn.Sigmoid(), (0.0, 1.0), 0.2),
        (25, 6, nn.Tanh(), (-1.0, 1.0), 1.0),
    ],
)
def test_exact_and_sampled_agree(n, m, act, in_range, scale):
    layer = _random_linear(n, m, scale, act, seed=n + m)
    kw = dict(in_range=in_range, bins=8, metrics=["ei_parts", "sensitivity"], seed=3)
    ex = measure_layer(layer, method="exact", **kw)
    # fixed budgets: 2**18 draws put EI_parts' 95 % CI within ~0.02 bits; sensitivity
    # totals reach hundreds of bits (1 % is the bar there)
    sa = measure_layer(layer, method="sampled", samples=2**18, sensitivity_samples=2**14, **kw)
    assert ex.method == {"ei_parts": "exact", "sensitivity": "exact", "degeneracy_parts": "derived"}
    for metric in ("ei_parts", "sensitivity"):
        a, b = getattr(ex, metric), getattr(sa, metric)
        assert abs(a - b) <= max(0.01, 0.01 * abs(a)), (metric, a, b, sa.ci[metric])
        # the exact value lies in the sampled 95 % CI (widened by half: ~3 sd, so a fixed
        # seed does not fail 1 time in 20 while a wrong CI still does)
        lo, hi = sa.ci[metric]
        assert _inside(a, (lo, hi), slack=0.5 * (hi - lo)), (metric, a, sa.ci[metric])
    # degeneracy_parts is reported (EI was not asked for), and never called degeneracy
    assert ex.degeneracy is None and ex.degeneracy_parts == pytest.approx(
        ex.sensitivity - ex.ei_parts
    )


def test_conv_receptive_field_exact_equals_sampled():
    torch.manual_seed(0)  # only to initialise the conv's weights
    conv = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Sigmoid())
    kw = dict(in_range=(0, 1), bins=8, in_shape=(2, 3, 3), seed=1)
    ex = measure_layer(conv, metrics=["ei_parts", "sensitivity"], **kw)
    assert ex.n_in == 18 and ex.n_out == 3
    assert ex.method["ei_parts"] == "exact"  # the conv's dense form was recognised
    # the same module through a plain (non-dense) Layer: the conv itself is run
    plain = layer_from_module(conv, in_shape=(2, 3, 3), in_range=(0, 1))
    assert plain.dense is None
    sa = measure_layer(
        plain, metrics=["ei", "ei_parts", "sensitivity"], samples=2**18,
        sensitivity_samples=2**14, cells=2**10, points_per_cell=16, seed=1,
    )  # fmt: skip
    assert sa.method["ei_parts"] == "sampled"
    for metric in ("ei_parts", "sensitivity"):
        a, b = getattr(ex, metric), getattr(sa, metric)
        assert abs(a - b) <= max(0.01, 0.01 * abs(a)), (metric, a, b)
    assert sa.ei is not None and sa.settings["whole_ei"]["cells"] == "sampled"


def test_unbounded_conv_gets_its_interval_bound():
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 2, 2)
    r = measure_layer(conv, in_range=(0, 1), in_shape=(1, 2, 2), metrics=["ei_parts"])
    w = conv.weight.detach().double().reshape(2, -1).numpy()
    bias = conv.bias.detach().double().numpy()
    hi = (np.maximum(w, 0).sum(axis=1) + bias).max()
    lo = (np.minimum(w, 0).sum(axis=1) + bias).min()
    assert r.settings["out_range"] == pytest.approx((lo, hi))


# ----------------------------------------------------------------- whole EI truth


_WHOLE_CASES = {
    "2x2 sigmoid": ([[4.0, -3.0], [2.5, 3.5]], [-0.5, -3.0], "sigmoid", (0.0, 1.0), (0.0, 1.0)),
    "3x3 tanh": (
        [[1.5, -1.0, 0.8], [0.5, 1.2, -1.4], [-0.9, 0.7, 1.1]],
        [0.1, -0.2, 0.3],
        "tanh",
        (-1.0, 1.0),
        (-1.0, 1.0),
    ),
}


@pytest.mark.parametrize("case", list(_WHOLE_CASES))
def test_whole_ei_matches_numerical_integration(case):
    w, b, kind, in_range, out_range = _WHOLE_CASES[case]
    grid = 256 if len(b) == 2 else 16
    coarse = _true_whole(w, b, kind, in_range, 8, out_range, 8, grid)
    fine = _true_whole(w, b, kind, in_range, 8, out_range, 8, 2 * grid)
    assert abs(fine[0] - coarse[0]) < 3e-3  # the reference is in its O(grid^-2) regime
    # Richardson extrapolation of the O(grid^-2) midpoint error
    truth, out_nodes, in_nodes = (f + (f - c) / 3 for f, c in zip(fine, coarse))
    act = nn.Sigmoid() if kind == "sigmoid" else nn.Tanh()
    r = measure_layer(
        _linear(w, b, act), in_range=in_range, bins=8, metrics=["ei", "nodes"],
        groups=([0], list(range(len(b)))), seed=5,
    )  # fmt: skip
    assert r.settings["whole_ei"]["cells"] == "all"
    assert abs(r.ei - truth) < 0.01, (r.ei, truth)
    assert _inside(truth, r.ci["ei"]), (truth, r.ci["ei"])
    nodes = r.nodes.set_index(["side", "node"])
    for j, v in enumerate(out_nodes):
        assert abs(nodes.loc[("output", j), "ei"] - v) < 0.02, (j, v)
    for i, v in enumerate(in_nodes):
        assert abs(nodes.loc[("input", i), "ei"] - v) < 0.02, (i, v)
    # groups: I(X_0; Y) under the full intervention is input node 0's value
    assert abs(r.group_ei - in_nodes[0]) < 0.02
    assert _inside(in_nodes[0], r.ci["group_ei"], slack=0.005)


# ----------------------------------------------------------------- result contents


def test_default_measure_of_paper_layer_has_everything():
    layer = _random_linear(25, 6, 0.2, nn.Sigmoid(), seed=0)
    r = cw.measure_layer(layer, in_range=(0.0, 1.0), bins=8)
    assert isinstance(r, LayerResult)
    for metric in ("ei", "ei_parts", "sensitivity", "degeneracy", "integration"):
        v = getattr(r, metric)
        assert isinstance(v, float) and math.isfinite(v)
        lo, hi = r.ci[metric]
        assert lo <= v <= hi
    assert r.degeneracy_parts is None  # EI was computed: no stand-in metric
    assert r.degeneracy == pytest.approx(r.sensitivity - r.ei)
    assert r.integration == pytest.approx(r.ei - r.ei_parts)
    # conservative propagation: interval arithmetic of the terms' intervals
    assert r.ci["degeneracy"][0] == pytest.approx(r.ci["sensitivity"][0] - r.ci["ei"][1])
    assert r.ci["integration"][1] == pytest.approx(r.ci["ei"][1] - r.ci["ei_parts"][0])
    assert r.ei_parts_matrix.shape == (25, 6) and r.sensitivity_matrix.shape == (25, 6)
    assert r.ei_parts == pytest.approx(r.ei_parts_matrix.sum())
    assert r.ci["ei"][1] - r.ci["ei"][0] < 0.01 or any("max_samples" in w for w in r.warnings)
    # whole EI cannot exceed the entropy of 6 outputs at 8 bins
    assert r.ei < 18.0
    nodes = r.nodes
    assert list(nodes.columns) == [
        "side", "node", "ei", "ei_parts", "sensitivity", "ei_ci_low", "ei_ci_high",
        "ei_status",
    ]  # fmt: skip
    assert (nodes["side"] == "input").sum() == 25 and (nodes["side"] == "output").sum() == 6
    ins = nodes[nodes["side"] == "input"]
    outs = nodes[nodes["side"] == "output"]
    np.testing.assert_allclose(ins["ei_parts"], r.ei_parts_matrix.sum(axis=1))
    np.testing.assert_allclose(outs["sensitivity"], r.sensitivity_matrix.sum(axis=0))
    assert (nodes["ei_ci_low"] <= nodes["ei"]).all() and (nodes["ei"] <= nodes["ei_ci_high"]).all()


def test_to_dict_and_to_frame():
    layer = _random_linear(3, 2, 2.0, nn.Tanh(), seed=1)
    r = measure_layer(layer, in_range=(-1, 1), in_bins=6, out_bins=5, seed=11, name="fc1", tol=0.05)
    d = r.to_dict()
    json.dumps(d, allow_nan=False)  # plain builtins only
    assert d["version"] == cw.__version__
    assert d["seed"] == 11 and d["in_bins"] == 6 and d["out_bins"] == 5
    assert d["in_range"] == [-1.0, 1.0] and d["out_range"] == [-1.0, 1.0]
    assert d["method"]["ei_parts"] == "exact" and d["method"]["ei"] == "sampled"
    assert d["method"]["degeneracy"] == "derived"
    assert d["samples"]["ei_parts"] == 0 and d["samples"]["ei"] > 0
    assert d["ei"] == pytest.approx(r.ei) and np.shape(d["ei_parts_matrix"]) == (3, 2)
    assert len(d["nodes"]) == 5 and isinstance(d["warnings"], list)
    # a value not computed is None (no NaN in JSON), in the metrics as in the settings
    partial = measure_layer(layer, in_range=(-1, 1), metrics=["ei_parts"]).to_dict()
    json.dumps(partial, allow_nan=False)
    assert partial["ei"] is None and partial["ei_parts"] is not None
    f = r.to_frame()
    assert list(f.columns) == FRAME_COLUMNS
    assert list(f["metric"]) == ["ei", "ei_parts", "sensitivity", "degeneracy", "integration"]
    assert (f["layer"] == "fc1").all() and (f["seed"] == 11).all()
    assert (f["version"] == cw.__version__).all()
    assert (f["in_bins"] == 6).all() and (f["out_bins"] == 5).all()
    assert f["in_range"].iloc[0] == (-1.0, 1.0) and f["out_range"].iloc[0] == (-1.0, 1.0)
    row = f.set_index("metric").loc["ei"]
    assert row["method"] == "sampled" and row["value"] == pytest.approx(r.ei)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(r.ci["ei"])
    assert f.set_index("metric").loc["ei_parts", "method"] == "exact"


def test_metric_subsets_and_shortcuts():
    layer = _random_linear(3, 2, 2.0, nn.Sigmoid(), seed=2)
    kw = dict(in_range=(0, 1), method="sampled", samples=20_000, sensitivity_samples=4_000)
    alone = measure_layer(layer, metrics=["ei_parts"], **kw)
    assert alone.ei is None and alone.sensitivity is None and alone.nodes is None
    assert list(alone.to_frame()["metric"]) == ["ei_parts"]
    assert alone.samples["ei_parts"] == 20_000
    both = measure_layer(layer, metrics=["ei_parts", "sensitivity"], **kw)
    # each metric has its own random stream: asking for more does not change a value
    assert both.ei_parts == alone.ei_parts
    assert both.samples["sensitivity"] == 4_000
    assert list(both.to_frame()["metric"]) == ["ei_parts", "sensitivity", "degeneracy_parts"]
    # integration needs ei and ei_parts, so both are computed and reported
    integ = measure_layer(layer, metrics="integration", in_range=(0, 1), tol=0.05, seed=4)
    assert integ.ei is not None and integ.ei_parts is not None and integ.sensitivity is None
    assert cw.ei_parts(layer, **kw) == alone.ei_parts
    assert cw.sensitivity(layer, in_range=(0, 1)) == pytest.approx(
        measure_layer(layer, in_range=(0, 1), metrics=["sensitivity"]).sensitivity
    )
    assert cw.ei(layer, in_range=(0, 1), seed=4, tol=0.05) == integ.ei
    with pytest.raises(TypeError, match="metrics"):
        cw.ei(layer, in_range=(0, 1), metrics=["ei"])


def test_seed_reproducible_and_matters():
    layer = _random_linear(3, 2, 2.0, nn.Sigmoid(), seed=3)
    kw = dict(
        in_range=(0, 1), method="sampled", samples=10_000, sensitivity_samples=2_000, tol=0.05
    )
    a = measure_layer(layer, seed=7, **kw)
    b = measure_layer(layer, seed=7, **kw)
    c = measure_layer(layer, seed=8, **kw)
    assert a.to_dict()["ei_parts_matrix"] == b.to_dict()["ei_parts_matrix"]
    assert (a.ei, a.sensitivity) == (b.ei, b.sensitivity)
    assert a.ei_parts != c.ei_parts


def test_layer_object_and_overrides():
    layer = layer_from_module(_random_linear(3, 2, 1.0, nn.Sigmoid(), 4), in_range=(0, 1))
    r = measure_layer(layer, metrics=["ei_parts"], in_range=(0, 0.5), name="x")
    assert r.name == "x" and r.settings["in_range"] == (0.0, 0.5)
    assert layer.in_range == (0.0, 1.0)  # the caller's Layer is not modified


def test_group_ei_of_all_equals_ei_and_bounds():
    layer = _linear([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0])
    r = measure_layer(
        layer, in_range=(0, 1), out_range=(0, 1), bins=4, metrics=["ei"], groups=([1], [1])
    )
    # y_1 = x_1 exactly: I(X_1; Y_1) = log2 4, and the whole layer carries 2 log2 4
    assert r.group_ei == pytest.approx(2.0, abs=0.01)
    assert r.ei == pytest.approx(4.0, abs=0.01)
    assert "group_ei" in list(r.to_frame()["metric"])


# ----------------------------------------------------------------- warnings and errors


def test_wide_layer_skips_input_nodes_with_a_warning():
    # 40 inputs x 2**20 samples could need 40 M sparse entries: input-node EI is skipped
    # (non-zero weights: a layer of zero weights is no block at all, and its EI exactly 0)
    layer = _linear(np.full((1, 40), 0.05), [0.0], nn.Sigmoid())
    r = measure_layer(layer, in_range=(0, 1), metrics=["nodes"], max_samples=2**20)
    assert any("I(X_i; Y)" in w and "skipped" in w for w in r.warnings), r.warnings
    ins = r.nodes[r.nodes["side"] == "input"]
    assert ins["ei"].isna().all()
    assert r.nodes[r.nodes["side"] == "output"]["ei"].notna().all()
    small = measure_layer(layer, in_range=(0, 1), metrics=["nodes"], cells=64, points_per_cell=4)
    assert small.nodes[small.nodes["side"] == "input"]["ei"].notna().all()


def test_out_of_range_outputs_are_counted():
    edge = _linear([[1.0]], [0.0])
    r = measure_layer(edge, in_range=(0, 1), out_range=(0, 0.5), metrics=["ei_parts"],
                      method="sampled", samples=10_000)  # fmt: skip
    msg = [w for w in r.warnings if "outside out_range" in w]
    assert msg, r.warnings
    frac = float(msg[0].split("%")[0])
    assert 45.0 < frac < 55.0  # half of U(0, 1) lies above 0.5
    ex = measure_layer(edge, in_range=(0, 1), out_range=(0, 0.5), metrics=["ei_parts"])
    assert any("beyond out_range" in w for w in ex.warnings), ex.warnings


def test_finite_points_bias_is_flagged_and_widens_the_interval():
    # large weights: a cell's 6 outputs take many values, so 16 points per cell leave
    # H(Y | cell) biased low (even after Grassberger's correction); with half the points
    # EI comes out clearly higher (the paired gap is ~0.05 bits, 64 points give ~0.02)
    layer = _random_linear(25, 6, 1.5, nn.Sigmoid(), seed=0)
    r = measure_layer(layer, in_range=(0, 1), metrics=["ei"], seed=1, points_per_cell=16)
    info = r.settings["whole_ei"]
    assert info["points_per_cell"] == 16 and info["half_points_gap"] > 0.03
    assert info["bias_allowance"] == info["half_points_gap"]
    assert any("half the points per cell" in w for w in r.warnings), r.warnings
    assert r.ei - r.ci["ei"][0] > r.ci["ei"][1] - r.ei + 0.02  # extended downwards only
    # a layer whose cells barely spread their outputs shows no such bias
    calm = measure_layer(_linear([[1.0, 0.5]], [0.0]), in_range=(0, 1), out_range=(0, 1.5),
                         metrics=["ei"], bins=4)  # fmt: skip
    assert calm.settings["whole_ei"]["bias_allowance"] == 0.0


def test_cap_gives_warning_with_numbers():
    layer = _random_linear(25, 6, 0.2, nn.Sigmoid(), seed=0)
    r = measure_layer(layer, in_range=(0, 1), metrics=["ei"], tol=1e-4, max_samples=2**14)
    assert r.ei is not None
    msg = [w for w in r.warnings if "max_samples" in w]
    assert msg and "bits wide" in msg[0], r.warnings
    assert r.samples["ei"] <= 2**14


class _Pair(nn.Module):
    def forward(self, x):
        return x, x


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: measure_layer(_Pair(), in_range=(0, 1), in_shape=(2,), out_range=(0, 1)),
         TypeError, "tensor"),
        (lambda: measure_layer(_linear([[float("nan"), 1.0]], [0.0]), in_range=(0, 1)),
         ValueError, "NaN"),
        (lambda: measure_layer(_linear([[1.0]], [0.0]), in_range=(1, 1)), ValueError, "empty"),
        (lambda: measure_layer(_linear([[1.0]], [0.0]), in_range=(1, 0)), ValueError, "swap"),
        (lambda: measure_layer(_linear([[1.0]], [0.0])), ValueError, "in_range"),
        (lambda: measure_layer(_linear([[1.0]], [0.0]), in_range=(0, 1), bins=1),
         ValueError, "at least 2"),
        (lambda: measure_layer(_linear([[1.0, 2.0]], [0.0], nn.GELU()), in_range=(0, 1),
                               out_range=(0, 3), method="exact"), ValueError, "sampled"),
        (lambda: measure_layer(_Product(), in_range=(0, 1), in_shape=(2,), out_range=(0, 1),
                               method="exact"), ValueError, "method='sampled'"),
        (lambda: measure_layer(_linear([[1.0, 2.0]], [0.0], nn.GELU()), in_range=(0, 1)),
         ValueError, "out_range"),
        (lambda: measure_layer(_linear([[1.0]], [0.0]), in_range=(0, 1), metrics=["eii"]),
         ValueError, "unknown metric"),
        (lambda: measure_layer(_linear([[1.0]], [0.0]), in_range=(0, 1), method="fast"),
         ValueError, "method"),
        (lambda: measure_layer(_linear([[1.0, 1.0]], [0.0]), in_range=(0, 1),
                               groups=([0, 2], [0])), ValueError, "out of bounds"),
        (lambda: measure_layer(_linear([[1.0, 1.0]], [0.0]), in_range=(0, 1),
                               groups=([0], [])), ValueError, "empty"),
        (lambda: measure_layer(_linear([[1.0]], [0.0]), in_range=(0, 1), samples=0),
         ValueError, "samples"),
        (lambda: measure_layer(_linear([[1.0]], [0.0]), in_range=(0, 1), tol=0), ValueError,
         "tol"),
        (lambda: measure_layer("not a layer", in_range=(0, 1)), TypeError, "Module"),
    ],
)  # fmt: skip
def test_errors_name_the_fix(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_non_monotone_layer_is_sampled_under_auto():
    layer = _linear([[1.0, -1.0]], [0.0], nn.GELU())
    r = measure_layer(layer, in_range=(0, 1), out_range=(-0.2, 1.0), metrics=["ei_parts"],
                      samples=5_000)  # fmt: skip
    assert r.method["ei_parts"] == "sampled"


# ----------------------------------------------------------------- caller state untouched


def test_rng_grad_and_module_mode_untouched():
    torch.manual_seed(123)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Dropout(0.5), nn.Sigmoid())
    model.train()
    model[2].train(False)  # a mixed state must come back exactly as it was
    flags = [m.training for m in model.modules()]
    stats = model[1].running_mean.clone(), model[1].running_var.clone()
    rng = torch.get_rng_state()
    kw = dict(in_range=(0, 1), metrics=["ei_parts", "ei"], samples=8_000, tol=0.05, seed=2)
    with torch.enable_grad():
        r_train = measure_layer(model, **kw)
        assert torch.is_grad_enabled()
    with torch.no_grad():
        measure_layer(model, **kw)
        assert not torch.is_grad_enabled()
    assert [m.training for m in model.modules()] == flags
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(model[1].running_mean, stats[0])
    assert torch.equal(model[1].running_var, stats[1])
    model.eval()
    r_eval = measure_layer(model, **kw)
    # measured in eval mode either way: dropout and batch statistics play no part
    assert r_train.ei_parts == r_eval.ei_parts and r_train.ei == r_eval.ei
    assert all(w.requires_grad for w in model.parameters())


class _DrawsGlobalRng(nn.Module):
    """A module that consumes the global RNG in forward (its output does not depend on it)."""

    def forward(self, x):
        return torch.sigmoid(x.sum(dim=1, keepdim=True)) + 0.0 * torch.rand(1)


def test_module_drawing_global_rng_leaves_it_restored():
    rng = torch.get_rng_state()
    measure_layer(_DrawsGlobalRng(), in_range=(0, 1), in_shape=(2,), out_range=(0, 1),
                  metrics=["ei_parts"], samples=5_000)  # fmt: skip
    assert torch.equal(torch.get_rng_state(), rng)


def test_device_choice():
    layer = _random_linear(3, 2, 1.0, nn.Sigmoid(), seed=5)
    r = measure_layer(layer, in_range=(0, 1), metrics=["ei"], device="cpu")
    assert r.settings["device"] == "cpu"
    module = nn.Sequential(nn.Linear(3, 2), nn.GELU())
    assert measure_layer(module, in_range=(0, 1), out_range=(-1, 3), metrics=["ei_parts"],
                         samples=4_096).settings["device"] == "cpu"  # fmt: skip


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_within_ci():
    layer = _random_linear(25, 6, 0.5, nn.Sigmoid(), seed=6)
    kw = dict(in_range=(0, 1), method="sampled", tol=0.02, seed=1)
    g = measure_layer(layer, device="cuda", **kw)
    c = measure_layer(layer, device="cpu", **kw)
    assert g.settings["device"].startswith("cuda")
    for metric in ("ei", "ei_parts", "sensitivity"):
        lo = max(g.ci[metric][0], c.ci[metric][0])
        hi = min(g.ci[metric][1], c.ci[metric][1])
        assert lo <= hi + 0.01, (metric, g.ci[metric], c.ci[metric])


def test_frame_concatenates_across_layers():
    rows = [
        measure_layer(_random_linear(2, 2, 1.0, nn.Sigmoid(), s), in_range=(0, 1),
                      metrics=["ei_parts", "sensitivity"], name=f"l{s}").to_frame()
        for s in range(2)
    ]  # fmt: skip
    f = pd.concat(rows, ignore_index=True)
    assert f.groupby("layer").size().to_dict() == {"l0": 3, "l1": 3}


@pytest.mark.slow
def test_whole_ei_ci_coverage_over_seeds():
    # end to end (sampling + estimator + measure's plumbing): the reported 95 % CI of whole
    # EI covers the integrated truth in roughly 95 % of seeds
    w, b, kind, in_range, out_range = _WHOLE_CASES["2x2 sigmoid"]
    coarse = _true_whole(w, b, kind, in_range, 8, out_range, 8, 256)
    fine = _true_whole(w, b, kind, in_range, 8, out_range, 8, 512)
    truth = fine[0] + (fine[0] - coarse[0]) / 3
    layer = _linear(w, b, nn.Sigmoid())
    hits = []
    for seed in range(100):
        r = measure_layer(layer, in_range=in_range, metrics=["ei"], points_per_cell=256, seed=seed)
        hits.append(_inside(truth, r.ci["ei"]))
    assert 0.88 <= np.mean(hits) <= 1.0, np.mean(hits)


def _node_layer(n_in: int, n_out: int) -> nn.Module:
    lin = nn.Linear(n_in, n_out, bias=False)
    nn.init.normal_(lin.weight, 0.0, 3.0, generator=torch.Generator().manual_seed(0))
    return nn.Sequential(lin, nn.Sigmoid())


@pytest.mark.parametrize("guard", ["planned", "live"])
def test_input_node_ei_of_wide_layers_is_given_up_with_a_warning_not_run_out_of_memory(
        monkeypatch, guard):
    """I(X_i; Y) keeps up to n_in x samples sparse entries (hundreds of bytes each at peak):
    skipped up front when the planned worst case is beyond the bound, dropped while
    measuring when the table really outgrows its bound; named in the warnings, NaN in the
    input rows; EI, output nodes and the rest unaffected. (Bounds lowered here so the test
    is small; the real ones are 2**25 planned and 2**22 held entries.)"""
    import importlib

    # the module, not the package attribute `measure` (which is graph.measure, a function)
    measure_mod = importlib.import_module("causal_widgets.engine.layer_measure")
    n_in, n_out, cells, ppc = 16, 8, 4096, 8
    if guard == "planned":  # 16 x 32768 planned entries > 2**18
        monkeypatch.setattr(measure_mod, "_INPUT_NODE_ENTRIES", 2**18)
        words = "I(X_i; Y) of the 16 inputs was skipped"
    else:  # distinct 8-output tuples: ~16 x 32768 held entries > 2**16
        monkeypatch.setattr(measure_mod, "_INPUT_NODE_LIVE_ENTRIES", 2**16)
        words = "I(X_i; Y) of the 16 inputs was dropped while measuring"
    kw = dict(in_range=(0.0, 1.0), bins=8, metrics=["ei", "nodes"], cells=cells,
              points_per_cell=ppc, seed=0)
    r = measure_layer(_node_layer(n_in, n_out), **kw)
    assert any(words in w for w in r.warnings), r.warnings
    inputs = r.nodes[r.nodes.side == "input"]
    outputs = r.nodes[r.nodes.side == "output"]
    assert len(inputs) == n_in and inputs["ei"].isna().all()
    assert outputs["ei"].notna().all() and np.isfinite(r.ei)
    # EI itself is the same number as without the nodes (the same random stream)
    plain = measure_layer(_node_layer(n_in, n_out), **{**kw, "metrics": ["ei"]})
    assert r.ei == pytest.approx(plain.ei, abs=1e-12)
    # and with room, the input nodes are there
    monkeypatch.setattr(measure_mod, "_INPUT_NODE_ENTRIES", 2**25)
    monkeypatch.setattr(measure_mod, "_INPUT_NODE_LIVE_ENTRIES", 2**22)
    full = measure_layer(_node_layer(n_in, n_out), **kw)
    assert full.nodes[full.nodes.side == "input"]["ei"].notna().all()

"""Honest whole EI at every width: each reported EI is exact, an estimate whose interval
covers the truth, or bounds that bracket it -- against truths known by construction.

Truths, computed outside the engine:

* a one-to-one layer (each output reads one input) has EI = sum of its single-edge terms;
  each term is the mutual information of a 1 -> 1 sigmoid map, in closed form here (the
  output bins' edges pulled back through the logit);
* a block-diagonal layer of identical 2 -> 2 blocks has EI = blocks x the block's EI, the
  block's EI by ``benchmarks/truth.py``'s extrapolated integral (with its stated error);
* a "near-independent" dense layer (one-to-one plus off-diagonal weights of 1e-7, so
  its weight graph is connected) is within 1e-4 bits of its one-to-one truth: an
  off-diagonal weight moves a pre-activation by at most n * 1e-7, which moves a sample
  across a bin edge with probability below n * 1e-7 * (max density of the logit pull-back)
  per output; even summed over 64 outputs that is far below the intervals compared.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks import truth
from causal_widgets import measure_layer

BINS = 8


def _edge_ei(w: float, b: float, bins: int = BINS) -> float:
    """I(X; Y) of y = sigmoid(w x + b), x uniform on (0, 1), both sides in ``bins`` equal
    bins over (0, 1): the joint table is the length of {x in input bin a : y in output bin
    c}, from the output edges' logits (w > 0: increasing)."""
    edges_y = np.linspace(0.0, 1.0, bins + 1)
    with np.errstate(divide="ignore"):
        x_at = (np.log(edges_y) - np.log1p(-edges_y) - b) / w  # x where y crosses an edge
    edges_x = np.linspace(0.0, 1.0, bins + 1)
    joint = np.zeros((bins, bins))
    for a in range(bins):
        for c in range(bins):
            lo = max(edges_x[a], x_at[c])
            hi = min(edges_x[a + 1], x_at[c + 1])
            joint[a, c] = max(0.0, hi - lo)
    px, py = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log2(joint[nz] / (px @ py)[nz])).sum())


def _sigmoid_layer(weight: np.ndarray, bias: np.ndarray) -> nn.Module:
    lin = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(weight))
        lin.bias.copy_(torch.as_tensor(bias))
    return nn.Sequential(lin, nn.Sigmoid())


def _one_to_one(n: int) -> tuple[np.ndarray, np.ndarray, float]:
    w = np.linspace(3.0, 12.0, n)
    b = -w * np.linspace(0.3, 0.7, n)
    return np.diag(w), b, sum(_edge_ei(wi, bi) for wi, bi in zip(w, b))


def _holds(r, truth_value: float, slack: float = 0.0) -> bool:
    lo, hi = r.ci["ei"]
    return lo - slack <= truth_value <= hi + slack


@pytest.mark.parametrize(("w", "b"), [(3.0, -1.0), (12.0, -6.0), (7.5, -2.0)])
def test_edge_truth_agrees_with_the_independent_integral(w, b):
    # two references that share nothing: the closed form above and benchmarks/truth.py
    ref = truth.layer_truth(np.array([[w]]), np.array([b]), "sigmoid", grid=64)
    assert _edge_ei(w, b) == pytest.approx(ref.ei, abs=max(1e-6, 3 * ref.ei_error_estimate))
    assert _edge_ei(1e-9, 0.0) == pytest.approx(0.0, abs=1e-6)  # a flat map says nothing


@pytest.mark.parametrize("n", [2, 8, 32, 128, 256])
def test_one_to_one_layer_is_the_exact_sum_of_its_edges(n):
    w, b, ei_true = _one_to_one(n)
    r = measure_layer(_sigmoid_layer(w, b), in_range=(0.0, 1.0), bins=BINS,
                      metrics=["ei", "ei_parts", "integration"])
    assert r.status["ei"] == "exact"
    assert r.ei == pytest.approx(ei_true, abs=1e-5 * n)
    assert r.integration == pytest.approx(0.0, abs=1e-5 * n)  # no synergy, no redundancy


@pytest.mark.parametrize("n", [2, 4, 16, 64])
def test_block_diagonal_layer_is_the_sum_of_its_blocks(n):
    wb = np.array([[6.0, -3.0], [2.5, 5.0]])
    bb = np.array([-1.0, -3.5])
    ref = truth.layer_truth(wb, bb, "sigmoid", grid=128)
    k = n // 2
    r = measure_layer(_sigmoid_layer(np.kron(np.eye(k), wb), np.tile(bb, k)),
                      in_range=(0.0, 1.0), bins=BINS, metrics=["ei"], seed=3)
    assert r.status["ei"] in ("estimate", "bounds")
    assert r.settings["whole_ei"].get("n_blocks", 1) == k  # one block: measured whole
    assert _holds(r, k * ref.ei, slack=k * ref.ei_error_estimate)


def test_block_sum_intervals_cover_over_seeds():
    wb = np.array([[6.0, -3.0], [2.5, 5.0]])
    bb = np.array([-1.0, -3.5])
    ref = truth.layer_truth(wb, bb, "sigmoid", grid=128)
    layer = _sigmoid_layer(np.kron(np.eye(8), wb), np.tile(bb, 8))
    covered = sum(
        _holds(measure_layer(layer, in_range=(0.0, 1.0), bins=BINS, metrics=["ei"],
                             seed=s), 8 * ref.ei, slack=8 * ref.ei_error_estimate)
        for s in range(8)
    )
    assert covered >= 6  # a 95 % interval misses 2 of 8 with probability ~5 %


@pytest.mark.parametrize("n", [8, 25, 64])
def test_near_independent_dense_layer_is_bracketed_not_confidently_wrong(n):
    w, b, ei_true = _one_to_one(n)
    rng = np.random.default_rng(n)
    w = w + 1e-7 * rng.uniform(0.5, 1.0, size=w.shape) * (1 - np.eye(n))
    # weights 1e-7 next to 12 are beyond the exact engine's error control: every term is
    # sampled, so this also checks the sampled pairwise terms' part in the bounds
    r = measure_layer(_sigmoid_layer(w, b), in_range=(0.0, 1.0), bins=BINS, method="sampled",
                      metrics=["ei", "ei_parts", "sensitivity", "degeneracy", "integration"])
    assert r.settings["whole_ei"].get("n_blocks") is None  # one connected block
    assert _holds(r, ei_true, slack=1e-4)
    if n >= 25:  # 8**25 cells: H(Y) cannot be sampled, so the value must be a bracket
        assert r.status["ei"] == "bounds"
        # the derived values inherit the bracket, and it holds their truth too
        assert r.status["degeneracy"] == r.status["integration"] == "bounds"
        lo, hi = r.ci["integration"]
        assert lo - 1e-4 <= ei_true - r.ei_parts <= hi + 1e-4
    frame = r.to_frame().set_index("metric")
    assert frame.loc["ei", "status"] == r.status["ei"]
    assert frame.loc["ei_parts", "status"] == "estimate"


def test_input_nodes_of_a_bracketed_layer_are_bracketed_and_hold_their_truth():
    # one-to-one plus 1e-7 couplings: I(X_i; Y) = I(X_i; Y_i), the edge term, to ~1e-4
    n = 25
    w, b, _ = _one_to_one(n)
    rng = np.random.default_rng(1)
    w_near = w + 1e-7 * rng.uniform(0.5, 1.0, size=w.shape) * (1 - np.eye(n))
    r = measure_layer(_sigmoid_layer(w_near, b), in_range=(0.0, 1.0), bins=BINS,
                      method="sampled", metrics=["ei", "ei_parts", "nodes"],
                      cells=512, points_per_cell=16)
    assert r.status["ei"] == "bounds"
    ins = r.nodes[r.nodes["side"] == "input"]
    assert (ins["ei_status"] == "bounds").all()
    edge = np.array([_edge_ei(w[i, i], b[i]) for i in range(n)])
    assert ((ins["ei_ci_low"].to_numpy() <= edge + 1e-4)
            & (edge - 1e-4 <= ins["ei_ci_high"].to_numpy())).all()


def test_a_budget_too_small_for_an_interval_is_refused_with_what_is_needed():
    layer = _sigmoid_layer(np.eye(4) * 5.0, -2.5 * np.ones(4))
    with pytest.raises(ValueError, match=r"interventions>=2048"):
        measure_layer(layer, in_range=(0.0, 1.0), method="sampled", interventions=16)
    with pytest.raises(ValueError, match=r"sensitivity_interventions>=1024"):
        measure_layer(layer, in_range=(0.0, 1.0), method="sampled",
                      sensitivity_interventions=100)
    # fewer bins need fewer: 2 x 2 tables at 32 per cell
    r = measure_layer(layer, in_range=(0.0, 1.0), bins=2, method="sampled",
                      interventions=128, metrics=["ei_parts"])
    assert r.status["ei_parts"] == "estimate"


def test_auto_samples_what_the_exact_engine_cannot_bound():
    # weights from 1e-7 to 12 in one output: the exact engine refuses; "auto" samples
    n = 25
    w, b, _ = _one_to_one(n)
    w = w + 1e-7 * (1 - np.eye(n))
    r = measure_layer(_sigmoid_layer(w, b), in_range=(0.0, 1.0), bins=BINS,
                      metrics=["ei_parts"], tol=0.05)
    assert r.method["ei_parts"] == "sampled" and r.status["ei_parts"] == "estimate"
    assert any("Sampled instead" in x for x in r.warnings)
    edges = sum(_edge_ei(w[i, i], b[i]) for i in range(n))  # the off-diagonal terms are ~0
    lo, hi = r.ci["ei_parts"]
    assert lo - 1e-3 <= edges <= hi + 1e-3
    with pytest.raises(ValueError, match="exact engine cannot"):
        measure_layer(_sigmoid_layer(w, b), in_range=(0.0, 1.0), metrics=["ei_parts"],
                      method="exact")

"""Memory planned before allocating: refusals that name the layer and the fix, and wide
layers measured on a seeded subset of outputs whose interval still covers the truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_honest_width import _edge_ei  # the closed-form single-edge truth
from torch import nn

from causal_widgets import measure_layer
from causal_widgets.engine import memory


def test_a_conv_over_a_whole_image_is_refused_before_allocating():
    conv = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    with pytest.raises(ValueError) as info:
        measure_layer(conv, in_range=(0, 1), in_shape=(3, 224, 224), out_range=(0, 5),
                      metrics=["ei_parts"])
    msg = str(info.value)
    assert "150528 -> 394272" in msg and "in_shape=None" in msg and "memory_budget" in msg


def test_a_million_bins_is_refused_naming_the_bins():
    layer = nn.Sequential(nn.Linear(3, 2), nn.Sigmoid())
    with pytest.raises(ValueError, match=r"1000000 x 1000000 bins.*fewer bins"):
        measure_layer(layer, in_range=(0, 1), bins=10**6, metrics=["ei_parts"])


def test_the_plan_is_the_tables_sizes():
    # the sampled tables of a 25 -> 6 layer at 8 bins: 20 batches x 12 bytes x 200 x 48
    p = memory.plan("x", 25, 6, 8, 8, sampled_pairs=True, exact_pairs=False, budget=2**32)
    assert p.outputs == 6 and not p.subset
    assert p.needed == 20 * 12 * (25 * 8) * (6 * 8) + 8 * 25 * 6
    q = memory.plan("x", 25, 600, 8, 8, sampled_pairs=True, exact_pairs=False, budget=2**22)
    assert q.subset and q.outputs * memory.pairwise_bytes(25, 1, 8, 8) <= 2**22


def test_a_wide_layer_is_measured_on_a_subset_whose_interval_covers_the_truth():
    # 1 input -> 400 sigmoid outputs: EI_parts = sum_j I(X; Y_j), each a closed-form edge
    m = 400
    g = np.random.default_rng(7)
    w = g.uniform(2.0, 12.0, m)
    b = -w * g.uniform(0.2, 0.8, m)
    lin = nn.Linear(1, m)
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(w[:, None]))
        lin.bias.copy_(torch.as_tensor(b))
    truth = sum(_edge_ei(wj, bj) for wj, bj in zip(w, b))
    covered = 0
    for seed in range(4):
        r = measure_layer(nn.Sequential(lin, nn.Sigmoid()), in_range=(0, 1), method="sampled",
                          metrics=["ei", "ei_parts"], memory_budget=2**20, seed=seed,
                          tol=0.5)
        sub = r.settings["output_subset"]
        assert sub["of"] == m and 8 <= len(sub["outputs"]) < m
        assert len(set(sub["outputs"])) == len(sub["outputs"])
        assert r.n_out == m and r.status["ei"] == "bounds"
        assert any("random subset" in x for x in r.warnings)
        lo, hi = r.ci["ei_parts"]
        covered += lo <= truth <= hi
    assert covered >= 3

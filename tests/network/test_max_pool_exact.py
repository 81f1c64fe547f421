"""A max-pool layer found in a network is measured exactly (one window, enumerated), and
its exact values lie inside the sampled path's intervals."""

from __future__ import annotations

import torch
from torch import nn

import causal_widgets as cw

METRICS = ["ei", "ei_parts", "sensitivity"]


def test_max_pool_is_exact_and_inside_the_sampled_intervals():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(18, 3), nn.Sigmoid())
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    exact = cw.measure(net, x, in_range=(0, 1), layers=["2"], metrics=METRICS)
    sampled = cw.measure(net, x, in_range=(0, 1), layers=["2"], metrics=METRICS,
                         method="sampled", tol=0.02)
    ex = exact.set_index("metric")
    sa = sampled.set_index("metric")
    for m in METRICS:
        assert ex.loc[m, "status"] == "exact" and ex.loc[m, "method"] == "exact"
        assert ex.loc[m, "ci_low"] == ex.loc[m, "value"] == ex.loc[m, "ci_high"]
        assert sa.loc[m, "ci_low"] - 1e-9 <= ex.loc[m, "value"] <= sa.loc[m, "ci_high"] + 1e-9
    # the window's inputs come from a ReLU in (0, hi): with the others held at 0, y = x_i,
    # so each of the 4 inputs carries log2(8) = 3 bits of sensitivity
    assert abs(ex.loc["sensitivity", "value"] - 4 * 3.0) < 1e-9

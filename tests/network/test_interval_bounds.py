"""Per-neuron interval bounds of blocks and spans: sound, and tighter than one shared hull.

These are the sound bounds (``span_ranges="bound"``); the default, observed ranges are
tested in tests/network/test_observed_ranges.py. Truth: the layer function itself on
random inputs and on random corners of its input box (where a piecewise-linear map takes
its extremes) never leaves the bound; the hand-written per-neuron bound of a tiny block
is in tests/network/test_graph.py.
"""

from __future__ import annotations

import pytest
import torch
from real_models import SmallResNet, seeded, uniform

from causal_widgets.network.discovery import find_layers

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def corners_and_uniform(layer, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lo, hi = layer.in_range
    corners = lo + (hi - lo) * (torch.rand(n, layer.n_in, generator=g) < 0.5).float()
    inside = lo + (hi - lo) * torch.rand(n, layer.n_in, generator=g)
    return torch.cat([corners, inside])


def test_resnet_block_ranges_are_sound_and_chain():
    model = seeded(SmallResNet)
    layers = {layer.name: layer for layer in find_layers(model, uniform(2, 3, 16, 16),
                                                         in_range=(0, 1), span_ranges="bound")}
    # layer k's out_range is layer k+1's in_range: the intervention ranges chain
    assert layers["layer1"].out_range == layers["layer2"].in_range
    assert layers["layer2"].out_range == layers["avgpool"].in_range
    for name in ("layer1", "layer2"):
        layer = layers[name]
        with torch.no_grad():
            y = layer.forward_flat(corners_and_uniform(layer, 2000, seed=3))
        assert layer.out_range[0] <= float(y.min()) and float(y.max()) <= layer.out_range[1]


def test_span_bound_is_sound_and_no_looser_than_the_shared_hull():
    model = seeded(SmallResNet)
    x = uniform(2, 3, 16, 16)
    # the same computation as a span (per-neuron bound) and its parts' shared-hull bound
    (span,) = find_layers(model, x, [("layer1.conv1", "layer1.bn2")], in_range=(0, 1),
                          span_ranges="bound")
    conv1, conv2 = find_layers(model, x, ["layer1.conv1", "layer1.conv2"], in_range=(0, 1))
    assert span.in_range == conv1.in_range
    assert conv2.out_range[0] <= span.out_range[0] and span.out_range[1] <= conv2.out_range[1]
    assert span.out_range[1] - span.out_range[0] < conv2.out_range[1] - conv2.out_range[0]
    with torch.no_grad():
        y = span.forward_flat(corners_and_uniform(span, 2000, seed=4))
    assert span.out_range[0] <= float(y.min()) and float(y.max()) <= span.out_range[1]


def test_a_bound_far_wider_than_the_outputs_is_said():
    model = seeded(SmallResNet)
    layers = {layer.name: layer for layer in find_layers(model, uniform(2, 3, 16, 16),
                                                         in_range=(0, 1), span_ranges="bound")}
    block = layers["layer1"]
    # recompute the used fraction independently: outputs of uniform interventions
    g = torch.Generator().manual_seed(5)
    lo, hi = block.in_range
    with torch.no_grad():
        y = block.forward_flat(lo + (hi - lo) * torch.rand(2000, block.n_in, generator=g))
    used = float(y.max() - y.min()) / (block.out_range[1] - block.out_range[0])
    assert block.extra["out_range_used"] == pytest.approx(used, rel=0.5)
    # on this block the sound bound is over 8x the outputs' spread: the note says so
    assert used < 1 / 8 and "most outputs share one bin" in block.note

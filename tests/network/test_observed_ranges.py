"""Output ranges observed under the intervention, for blocks, spans, sublayers and norms.

Truth: closed forms of the outputs' range under uniform inputs (a residual block whose
output is ``x / 2`` although interval arithmetic cannot see it; a 2-feature LayerNorm,
whose outputs are ``beta -+ gamma``), independent draws of the intervention from a
generator of the test's own (how many outputs leave the range), the engine's CI (the
value is significantly above 0 bits), and the sound bound (never exceeded).
"""

from __future__ import annotations

import re

import pytest
import torch
from real_models import SequenceClassifier, SmallResNet, seeded, uniform
from torch import nn

import causal_widgets as cw
from causal_widgets.network.discovery import find_layers
from causal_widgets.network.observed_ranges import MARGIN

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CHEAP = dict(metrics=["ei_parts"], bins=4, interventions=4096, seed=0)


class HalvingBlock(nn.Module):
    """``x + s * relu(conv(x))`` with an identity 3x3 kernel and ``s = -1/2``: ``x / 2``.

    Interval arithmetic treats the two uses of ``x`` as independent, so its bound for
    inputs in ``[0, 1]`` is ``[0, 1] - [0, 1] / 2 = [-0.5, 1]``; the true output range
    (the image of the box, which uniform draws reach at both ends) is ``[0, 0.5]``.
    """

    def __init__(self, channels: int = 2):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            for c in range(channels):
                self.conv.weight[c, c, 1, 1] = 1.0

    def forward(self, x):
        return x + (-0.5) * torch.relu(self.conv(x))


def fresh_outputs(layer, n: int, seed: int) -> torch.Tensor:
    """The layer's outputs under its intervention, drawn by this test's own generator."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = layer.in_range
    with torch.no_grad():
        return layer.forward_flat(lo + (hi - lo) * torch.rand(n, layer.n_in, generator=g))


def clipped_fraction(result) -> float:
    """The out-of-range fraction the engine reported (0 when it reported none)."""
    for w in result.warnings:
        m = re.search(r"\((\d+) of (\d+)\) fell outside out_range", w)
        if m:
            return int(m.group(1)) / int(m.group(2))
    return 0.0


def within_margin(observed, true) -> bool:
    """``observed`` covers ``true`` and exceeds it by at most the margin (+ float32 slack)."""
    slack = MARGIN * (true[1] - true[0]) + 1e-5
    return (true[0] - slack <= observed[0] <= true[0] + 1e-5
            and true[1] - 1e-5 <= observed[1] <= true[1] + slack)


def test_block_range_is_the_true_one_inside_the_bound():
    model = nn.Sequential(HalvingBlock())
    x = uniform(2, 2, 8, 8)
    (block,) = find_layers(model, x, in_range=(0, 1))
    assert block.extra["kind"] == "block" and block.extra["out_range_kind"] == "observed"
    assert "out_range observed" in block.note
    bound = block.extra["out_range_bound"]
    assert bound == pytest.approx((-0.5, 1.0))
    assert bound[0] <= block.out_range[0] and block.out_range[1] <= bound[1]
    assert within_margin(block.out_range, (0.0, 0.5)), block.out_range
    # the sound bound is still there on request
    (sound,) = find_layers(model, x, in_range=(0, 1), span_ranges="bound")
    assert sound.extra["out_range_kind"] == "bound"
    assert sound.out_range == pytest.approx((-0.5, 1.0))


def test_layer_norm_of_two_features_observes_beta_plus_minus_gamma():
    model = nn.Sequential(nn.Linear(3, 2), nn.LayerNorm(2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -0.5, 0.25], [-1.0, 0.75, 0.5]]))
        model[0].bias.copy_(torch.tensor([0.1, -0.2]))
        model[1].weight.copy_(torch.tensor([2.0, 0.5]))
        model[1].bias.copy_(torch.tensor([0.3, -1.0]))
    fc, norm = find_layers(model, uniform(4, 3), in_range=(0, 1))
    assert fc.extra["out_range_kind"] == "bound" and norm.extra["out_range_kind"] == "observed"
    # d = 2: (x_i - mu) / sqrt(var + eps) = -+1 (up to eps), so y_i = beta_i -+ gamma_i
    true = (min(0.3 - 2.0, -1.0 - 0.5), max(0.3 + 2.0, -1.0 + 0.5))
    bound = norm.extra["out_range_bound"]
    assert bound[0] <= norm.out_range[0] and norm.out_range[1] <= bound[1]
    assert within_margin(norm.out_range, true), norm.out_range


def test_resnet_blocks_measure_clearly_above_zero_with_few_clipped():
    model = seeded(SmallResNet)
    x = uniform(2, 3, 16, 16)
    layers = {layer.name: layer for layer in find_layers(model, x, in_range=(0, 1))}
    # dense layers keep their exact bound, pooling its input range
    conv1 = layers["conv1"]
    assert conv1.extra["out_range_kind"] == "bound"
    assert conv1.out_range == pytest.approx(conv1.dense.interval_bounds(conv1.in_range))
    assert layers["avgpool"].extra["out_range_kind"] == "natural"
    # observed ranges chain: a block's out_range is the next layer's in_range
    assert layers["layer1"].out_range == layers["layer2"].in_range
    assert layers["layer2"].out_range == layers["avgpool"].in_range
    for name in ("layer1", "layer2"):
        block = layers[name]
        assert block.extra["out_range_kind"] == "observed"
        bound = block.extra["out_range_bound"]
        assert bound[0] <= block.out_range[0] and block.out_range[1] <= bound[1]
        # independent draws of the intervention: almost none leave the observed range
        y = fresh_outputs(block, 4096, seed=11)
        outside = ((y < block.out_range[0]) | (y > block.out_range[1])).float().mean()
        assert float(outside) < 0.01
        result = cw.measure_layer(block, **CHEAP)
        assert result.ci["ei_parts"][0] > 0, (name, result.ei_parts, result.ci)
        assert clipped_fraction(result) < 0.01
        # with the sound bound nearly every output shares one bin: far less is seen
        (sound,) = find_layers(model, x, [name], in_range=(0, 1), span_ranges="bound")
        assert cw.measure_layer(sound, **CHEAP).ei_parts < result.ei_parts


def test_transformer_sublayers_measure_clearly_above_zero_and_chain():
    model = seeded(SequenceClassifier, seed=2)
    x = uniform(2, 6, 4)
    layers = {layer.name: layer for layer in find_layers(model, x, in_range=(0, 1))}
    p = "encoder.layers.0"
    attn, norm1 = layers[f"{p}.self_attn"], layers[f"{p}.norm1"]
    mlp, norm2 = layers[f"{p}.linear1..{p}.linear2"], layers[f"{p}.norm2"]
    # post-norm: the MLP's input is norm1's output, the head's the last norm's
    assert mlp.in_range == norm1.out_range
    assert layers["head"].in_range == layers["encoder.layers.1.norm2"].out_range
    assert layers["head"].extra["out_range_kind"] == "bound"
    for layer in (attn, norm1, mlp, norm2):
        assert layer.extra["out_range_kind"] == "observed", layer.name
        bound = layer.extra["out_range_bound"]
        assert bound[0] <= layer.out_range[0] and layer.out_range[1] <= bound[1]
    for layer in (attn, mlp):
        result = cw.measure_layer(layer, **CHEAP)
        assert result.ci["ei_parts"][0] > 0, (layer.name, result.ei_parts, result.ci)
        assert clipped_fraction(result) < 0.01


def test_pre_norm_sublayers_chain_their_observed_ranges():
    model = seeded(lambda: SequenceClassifier(norm_first=True), seed=3)
    layers = {layer.name: layer for layer in find_layers(model, uniform(2, 6, 4),
                                                         in_range=(0, 1))}
    for k in range(2):
        p = f"encoder.layers.{k}"
        norm1, norm2 = layers[f"{p}.norm1"], layers[f"{p}.norm2"]
        assert norm1.extra["out_range_kind"] == norm2.extra["out_range_kind"] == "observed"
        # pre-norm: attention reads norm1's output, the MLP norm2's
        assert layers[f"{p}.self_attn"].in_range == norm1.out_range
        assert layers[f"{p}.linear1..{p}.linear2"].in_range == norm2.out_range


def test_observed_ranges_are_deterministic_and_do_not_depend_on_the_request():
    x = uniform(2, 3, 16, 16)
    first = find_layers(seeded(SmallResNet), x, in_range=(0, 1))
    second = find_layers(seeded(SmallResNet), x, in_range=(0, 1))
    assert [(a.in_range, a.out_range) for a in first] == [
        (b.in_range, b.out_range) for b in second
    ]
    # asked for alone, a layer gets the same ranges as in the whole network
    (alone,) = find_layers(seeded(SmallResNet), x, ["layer2"], in_range=(0, 1))
    whole = {layer.name: layer for layer in first}["layer2"]
    assert (alone.in_range, alone.out_range) == (whole.in_range, whole.out_range)
    # and the ranges do follow the weights: another model, other ranges
    other = find_layers(seeded(SmallResNet, seed=3), x, in_range=(0, 1))
    assert [a.out_range for a in first] != [b.out_range for b in other]


def test_a_requested_span_stays_inside_its_sound_bound():
    model = seeded(SmallResNet)
    x = uniform(2, 3, 16, 16)
    (span,) = find_layers(model, x, [("layer1.conv1", "layer1.bn2")], in_range=(0, 1))
    (sound,) = find_layers(model, x, [("layer1.conv1", "layer1.bn2")], in_range=(0, 1),
                           span_ranges="bound")
    assert span.extra["out_range_kind"] == "observed"
    assert span.in_range == sound.in_range
    assert span.extra["out_range_bound"] == pytest.approx(sound.out_range)
    assert sound.out_range[0] <= span.out_range[0] and span.out_range[1] <= sound.out_range[1]
    y = fresh_outputs(span, 4096, seed=12)
    assert float(((y < span.out_range[0]) | (y > span.out_range[1])).float().mean()) < 0.01


def test_a_bad_span_ranges_is_a_clear_error():
    model = nn.Sequential(HalvingBlock())
    with pytest.raises(ValueError, match=r"span_ranges='observd' is unknown.*'observed'"):
        find_layers(model, uniform(2, 2, 8, 8), in_range=(0, 1), span_ranges="observd")
    with pytest.raises(ValueError, match=r"span_ranges='sound' is unknown.*'bound'"):
        cw.measure(model, uniform(2, 2, 8, 8), in_range=(0, 1), span_ranges="sound", **CHEAP)
    # measure() passes the choice on: the table's out_range is the block's bound (see
    # HalvingBlock) or inside the true range's margin
    for choice, want in (("bound", (-0.5, 1.0)), ("observed", (0.0, 0.5))):
        df = cw.measure(model, uniform(2, 2, 8, 8), in_range=(0, 1), span_ranges=choice,
                        **CHEAP)
        (out_range,) = set(df.out_range)
        if choice == "bound":
            assert out_range == pytest.approx(want)
        else:
            assert within_margin(out_range, want), out_range


class CumsumBlock(nn.Module):
    """``x + cumsum(relu(fc(x)))``: ``cumsum`` has no interval rule, so the range after it
    is only the one seen on ``example_input``, no bound on what the intervention does."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return x + torch.cumsum(torch.relu(self.fc(x)), dim=1)


def test_a_range_seen_only_on_example_input_does_not_cap_the_observed_one():
    model = seeded(lambda: nn.Sequential(CumsumBlock()), seed=4)
    # example inputs in a narrow band: what they produce is far narrower than the outputs
    # of the intervention over in_range=(0, 1)
    x = uniform(8, 4, seed=5, lo=0.45, hi=0.55)
    (block,) = find_layers(model, x, in_range=(0, 1))
    assert block.extra["kind"] == "block" and block.extra["out_range_kind"] == "observed"
    assert block.extra["out_range_bound"] is None and "no sound bound" in block.note
    y = fresh_outputs(block, 4096, seed=13)
    with torch.no_grad():
        example_out = model(x)
    assert float(y.max() - y.min()) > 2 * float(example_out.max() - example_out.min())
    outside = ((y < block.out_range[0]) | (y > block.out_range[1])).float().mean()
    assert float(outside) < 0.01

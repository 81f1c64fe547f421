"""Whole networks: layer discovery, names, spans, range inference, errors, model state.

Truth comes from the model itself (a layer's function must reproduce what the network
computes on the same values) and from interval bounds worked out by hand.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from causal_widgets.network.discovery import check_same_structure, find_layers
from causal_widgets.network.measure import FRAME_COLUMNS


def build(factory, seed: int = 0) -> nn.Module:
    """Make a model without touching the global RNG: meta init, then seeded weights.

    Weights are U(-1/sqrt(fan_in), 1/sqrt(fan_in)) like PyTorch's default; biases and
    other 1-D parameters U(-0.5, 0.5).
    """
    with torch.device("meta"):
        model = factory()
    model = model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            bound = 1 / math.sqrt(p[0].numel()) if p.dim() > 1 else 0.5
            p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
    return model


def rand(*shape, seed: int = 1, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(shape, generator=g)


def paper_mlp(sizes=(4, 5, 5, 3), act=nn.Sigmoid) -> nn.Sequential:
    mods = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=False):
        mods += [nn.Linear(a, b, bias=False), act()]
    return nn.Sequential(*mods)


class FunctionalMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.fc2 = nn.Linear(4, 4)
        self.fc3 = nn.Linear(4, 4)
        self.fc4 = nn.Linear(4, 2)

    def forward(self, x):
        x = torch.sigmoid(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = F.leaky_relu(self.fc3(x), 0.2)
        return self.fc4(x).tanh()


def small_cnn() -> nn.Sequential:
    # (2, 8, 8) -> conv 3x3 -> (3, 6, 6) -> pool 2 -> (3, 3, 3) -> 27 -> 4
    return nn.Sequential(
        nn.Conv2d(2, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(27, 4)
    )


class Block(nn.Module):
    def __init__(self, d: int = 4):
        super().__init__()
        self.fc1 = nn.Linear(d, d)
        self.fc2 = nn.Linear(d, d)

    def forward(self, x):
        return x + self.fc2(torch.relu(self.fc1(x)))


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(3, 4)
        self.block = Block(4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        return torch.sigmoid(self.out(self.block(torch.tanh(self.inp(x)))))


class Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it, forward hooks can."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.fc2 = nn.Linear(4, 2)

    def forward(self, x):
        if x.sum() > -1e9:  # always true, but a Python branch on a tensor value
            x = torch.sigmoid(self.fc1(x))
        return self.fc2(x.view(x.shape[0], -1))


def chain(layers, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        for layer in layers:
            x = layer.forward_flat(x.reshape(x.shape[0], -1))
    return x


def assert_chain_computes_model(layers, model, x):
    """The layers, applied in order, compute the model: by the dense form and by their own fn."""
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(chain(layers, x), expected)
    for layer in layers:
        layer.extra["use_dense_forward"] = False
    torch.testing.assert_close(chain(layers, x), expected)


# --------------------------------------------------------------------------- discovery


@pytest.mark.parametrize("sizes", [(4, 5, 5, 3), (25, 6, 6, 6, 5)])
def test_paper_mlp_discovery(sizes):
    model = build(lambda: paper_mlp(sizes))
    x = rand(10, sizes[0])
    layers = find_layers(model, x, in_range=(0, 1))
    assert [layer.name for layer in layers] == [str(2 * k) for k in range(len(sizes) - 1)]
    for k, layer in enumerate(layers):
        assert layer.in_shape == (sizes[k],) and layer.out_shape == (sizes[k + 1],)
        # sigmoid everywhere: every intervention range is the sigmoid's (0, 1)
        assert layer.in_range == (0.0, 1.0) and layer.out_range == (0.0, 1.0)
        assert layer.extra["kind"] == "linear"
        assert layer.activation.kind == "sigmoid"
        assert layer.dense is not None and layer.dense.activation.kind == "sigmoid"
        np.testing.assert_array_equal(
            layer.dense.weight, model[2 * k].weight.detach().double().numpy()
        )
        np.testing.assert_array_equal(layer.dense.bias, np.zeros(sizes[k + 1]))
    assert_chain_computes_model(layers, model, x)


def test_functional_activations_are_absorbed():
    model = build(FunctionalMLP)
    x = rand(16, 3)
    layers = find_layers(model, x, in_range=(0, 1))
    assert [layer.name for layer in layers] == ["fc1", "fc2", "fc3", "fc4"]
    kinds = [layer.activation.kind for layer in layers]
    assert kinds == ["sigmoid", "relu", "leaky_relu", "tanh"]
    assert layers[2].activation.slope == pytest.approx(0.2)
    assert all(layer.dense is not None for layer in layers)
    assert layers[0].out_range == (0.0, 1.0) and layers[3].out_range == (-1.0, 1.0)
    assert_chain_computes_model(layers, model, x)


def test_non_monotone_activation_is_sampled_only():
    model = build(lambda: nn.Sequential(nn.Linear(3, 2), nn.GELU()))
    (layer,) = find_layers(model, rand(4, 3), in_range=(-2, 2))
    assert layer.dense is None and layer.activation.kind == "other"
    x = rand(7, 3, lo=-2, hi=2)
    with torch.no_grad():
        torch.testing.assert_close(layer.forward_flat(x), model(x))
    # GELU's minimum (about -0.17 at z = -0.75) lies inside the pre-activation interval
    z_lo, z_hi = _hand_bounds(model[0].weight, model[0].bias, -2, 2)
    zs = np.linspace(z_lo, z_hi, 200001)
    gelu = F.gelu(torch.tensor(zs)).numpy()
    assert layer.out_range[0] == pytest.approx(gelu.min(), abs=1e-6)
    assert layer.out_range[1] == pytest.approx(gelu.max(), abs=1e-6)


def test_cnn_discovery_receptive_field_and_window():
    model = build(small_cnn)
    x = rand(5, 2, 8, 8)
    conv, pool, fc = find_layers(model, x, in_range=(0, 1))
    assert [conv.name, pool.name, fc.name] == ["0", "2", "4"]
    assert [la.extra["kind"] for la in (conv, pool, fc)] == ["conv", "pool", "linear"]
    assert conv.in_shape == (2, 3, 3) and conv.out_shape == (3,)
    assert conv.activation.kind == "relu"
    assert pool.in_shape == (1, 2, 2) and pool.out_shape == (1,)
    assert fc.in_shape == (27,) and fc.out_shape == (4,)
    # one output position of the real conv+relu, from its receptive field
    with torch.no_grad():
        fmap = model[1](model[0](x))  # (5, 3, 6, 6)
        for i, j in [(0, 0), (2, 3), (5, 5)]:
            patch = x[:, :, i:i + 3, j:j + 3].reshape(5, -1)
            torch.testing.assert_close(conv.forward_flat(patch), fmap[:, :, i, j])
            conv.extra["use_dense_forward"] = False
            torch.testing.assert_close(conv.forward_flat(patch), fmap[:, :, i, j])
            conv.extra["use_dense_forward"] = True
        pooled = model[2](fmap)  # (5, 3, 3, 3)
        window = fmap[:, 1, 2:4, 4:6].reshape(5, -1)
        torch.testing.assert_close(pool.forward_flat(window), pooled[:, 1, 1, 2:3])
    np.testing.assert_array_equal(
        conv.dense.weight, model[0].weight.detach().double().reshape(3, -1).numpy()
    )
    # ranges: conv+relu bound by hand, pooling keeps it, the Linear receives it
    z_lo, z_hi = _hand_bounds(model[0].weight.reshape(3, -1), model[0].bias, 0.0, 1.0)
    assert conv.in_range == (0.0, 1.0)
    assert conv.out_range == pytest.approx((max(z_lo, 0.0), max(z_hi, 0.0)), abs=1e-12)
    assert pool.in_range == conv.out_range and pool.out_range == conv.out_range
    assert fc.in_range == conv.out_range


def test_grouped_conv_is_block_diagonal():
    model = build(lambda: nn.Sequential(nn.Conv2d(4, 6, 2, groups=2), nn.Tanh()))
    (layer,) = find_layers(model, rand(3, 4, 5, 5), in_range=(0, 1))
    assert layer.in_shape == (4, 2, 2) and layer.out_shape == (6,)
    w = layer.dense.weight.reshape(6, 4, 4)
    # outputs 0-2 see input channels 0-1 only, outputs 3-5 channels 2-3 only
    assert np.all(w[:3, 2:] == 0) and np.all(w[3:, :2] == 0)
    patch = rand(9, 4, 2, 2, seed=7)
    with torch.no_grad():
        expected = model(patch).reshape(9, 6)
    torch.testing.assert_close(layer.forward_flat(patch.reshape(9, -1)), expected)


def test_conv1d_avgpool_and_adaptive_pool():
    model = build(lambda: nn.Sequential(
        nn.Conv1d(2, 3, 3), nn.Sigmoid(), nn.AvgPool1d(2), nn.AdaptiveAvgPool1d(1),
    ))
    x = rand(4, 2, 10)  # conv -> (3, 8), avgpool -> (3, 4), adaptive -> (3, 1)
    conv, avg, adaptive = find_layers(model, x, in_range=(0, 1))
    assert conv.in_shape == (2, 3) and conv.out_shape == (3,)
    assert avg.in_shape == (1, 2) and adaptive.in_shape == (1, 4)
    # average pooling is linear: it gets a dense form with weights 1/k
    np.testing.assert_array_equal(avg.dense.weight, [[0.5, 0.5]])
    np.testing.assert_array_equal(adaptive.dense.weight, [[0.25] * 4])
    assert avg.in_range == (0.0, 1.0) == adaptive.out_range
    v = rand(6, 4, seed=3)
    torch.testing.assert_close(adaptive.forward_flat(v), v.mean(dim=1, keepdim=True))


def test_residual_block_is_one_layer_and_spans_reach_inside():
    model = build(ResNet)
    x = rand(8, 3)
    # the sound bounds (span_ranges="bound"); the observed ones: tests/network/
    # test_observed_ranges.py
    layers = find_layers(model, x, in_range=(0, 1), span_ranges="bound")
    assert [layer.name for layer in layers] == ["inp", "block", "out"]
    inp, block, out = layers
    assert block.extra["kind"] == "block" and block.dense is None
    assert block.in_shape == (4,) and block.out_shape == (4,)
    assert inp.out_range == (-1.0, 1.0) and block.in_range == (-1.0, 1.0)
    # block output = x + fc2(relu(fc1(x))): per-neuron interval bounds (each hidden unit
    # its own interval), then the sum of the two branches -- tighter than one shared hull
    h_lo, h_hi = _per_neuron_bounds(model.block.fc1.weight, model.block.fc1.bias,
                                    [-1.0] * 4, [1.0] * 4)
    h_lo, h_hi = [max(v, 0.0) for v in h_lo], [max(v, 0.0) for v in h_hi]
    f2_lo, f2_hi = _per_neuron_bounds(model.block.fc2.weight, model.block.fc2.bias, h_lo, h_hi)
    assert block.out_range == pytest.approx(
        (min(-1 + v for v in f2_lo), max(1 + v for v in f2_hi)), abs=1e-12
    )
    # and no looser than the shared-hull bound
    f1_lo, f1_hi = _hand_bounds(model.block.fc1.weight, model.block.fc1.bias, -1, 1)
    g_lo, g_hi = _hand_bounds(
        model.block.fc2.weight, model.block.fc2.bias, max(f1_lo, 0), max(f1_hi, 0)
    )
    assert -1 + g_lo <= block.out_range[0] and block.out_range[1] <= 1 + g_hi
    assert out.in_range == block.out_range and out.out_range == (0.0, 1.0)
    v = rand(6, 4, seed=5, lo=-1, hi=1)
    with torch.no_grad():
        torch.testing.assert_close(block.forward_flat(v), model.block(v))
    # the block's inner parts, requested explicitly
    inner, fc1 = find_layers(model, x, [("block.fc1", "block.fc2"), "block.fc1"],
                             in_range=(0, 1), span_ranges="bound")
    assert inner.name == "block.fc1..block.fc2" and inner.extra["kind"] == "span"
    with torch.no_grad():
        torch.testing.assert_close(
            inner.forward_flat(v), model.block.fc2(torch.relu(model.block.fc1(v)))
        )
    assert inner.out_range == pytest.approx((min(f2_lo), max(f2_hi)), abs=1e-12)
    assert fc1.activation.kind == "relu" and fc1.out_range[0] == 0.0
    # a span that starts inside the block but ends after its skip connection is not closed
    with pytest.raises(ValueError, match="not a closed piece.*skip connection"):
        find_layers(model, x, [("block.fc2", "block")], in_range=(0, 1))


class ProjBlock(nn.Module):
    """A projection shortcut: the skip path is itself a layer (ResNet downsampling)."""

    def __init__(self, d: int, e: int):
        super().__init__()
        self.proj = nn.Linear(d, e)
        self.fc = nn.Linear(d, e)

    def forward(self, x):
        return self.proj(x) + self.fc(torch.relu(x))


def test_containers_of_blocks_and_projection_shortcuts():
    def factory():
        return nn.Sequential(nn.Linear(3, 4), nn.Sequential(Block(4), ProjBlock(4, 2)))

    model = build(factory)
    x = rand(5, 3)
    layers = find_layers(model, x, in_range=(0, 1))
    # the container "1" adds nothing itself: its two children are the blocks
    assert [la.name for la in layers] == ["0", "1.0", "1.1"]
    assert [la.extra["kind"] for la in layers] == ["linear", "block", "block"]
    with torch.no_grad():
        torch.testing.assert_close(chain(layers, x), model(x))
    # a container requested by name is measured whole
    (whole,) = find_layers(model, x, ["1"], in_range=(0, 1))
    assert whole.extra["kind"] == "module" and whole.out_shape == (2,)
    h = rand(5, 4, seed=9)
    with torch.no_grad():
        torch.testing.assert_close(whole.forward_flat(h), model[1](h))


def test_spans_in_a_sequential():
    model = build(lambda: paper_mlp((4, 5, 5, 3)))
    x = rand(10, 4)
    span, span_act, pre = find_layers(model, x, [("0", "2"), ("0", "3"), ("2", "4")],
                                      in_range=(0, 1))
    assert span.name == "0..2" and span.in_shape == (4,) and span.out_shape == (5,)
    with torch.no_grad():
        # ending at a Linear means after its activation; ending at "3" is the same point
        torch.testing.assert_close(span.forward_flat(x), model[:4](x))
        torch.testing.assert_close(span_act.forward_flat(x), model[:4](x))
        h = torch.sigmoid(model[0](x))
        torch.testing.assert_close(pre.forward_flat(h), model[2:6](h))
    assert span.in_range == (0.0, 1.0) and span.out_range == (0.0, 1.0)


def test_linear_on_sequences_is_measured_per_position():
    model = build(lambda: nn.Sequential(nn.Linear(3, 2), nn.Tanh()))
    (layer,) = find_layers(model, rand(4, 7, 3), in_range=(0, 1))
    assert layer.in_shape == (3,) and layer.out_shape == (2,)


def test_shared_module_calls_get_distinct_names():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(torch.sigmoid(self.fc(x)))

    names = [la.name for la in find_layers(build(Twice), rand(2, 3), in_range=(0, 1))]
    assert names == ["fc", "fc#2"]


# --------------------------------------------------------------------------- ranges by hand


def _hand_bounds(w, b, lo, hi):
    """Interval bound of W x + b over x in [lo, hi]^n, written out with loops."""
    w = w.detach().double().tolist()
    b = b.detach().double().tolist() if b is not None else [0.0] * len(w)
    lows, highs = [], []
    for row, bj in zip(w, b, strict=True):
        lows.append(sum(min(wk * lo, wk * hi) for wk in row) + bj)
        highs.append(sum(max(wk * lo, wk * hi) for wk in row) + bj)
    return min(lows), max(highs)


def _per_neuron_bounds(w, b, lo: list[float], hi: list[float]):
    """Per output j, the interval of (W x + b)_j over x_k in [lo_k, hi_k], with loops."""
    w = w.detach().double().tolist()
    b = b.detach().double().tolist()
    lows = [sum(min(wk * a, wk * c) for wk, a, c in zip(row, lo, hi, strict=True)) + bj
            for row, bj in zip(w, b, strict=True)]
    highs = [sum(max(wk * a, wk * c) for wk, a, c in zip(row, lo, hi, strict=True)) + bj
             for row, bj in zip(w, b, strict=True)]
    return lows, highs


def _set_linear(lin: nn.Linear, w, b) -> None:
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(w))
        lin.bias.copy_(torch.tensor(b))


def test_interval_arithmetic_2x2_by_hand():
    model = build(lambda: nn.Sequential(
        nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2), nn.LeakyReLU(0.1), nn.Linear(2, 2)
    ))
    _set_linear(model[0], [[1.0, -2.0], [0.5, 3.0]], [0.1, -1.0])
    _set_linear(model[2], [[1.0, -1.0], [2.0, 0.5]], [0.0, 0.0])
    _set_linear(model[4], [[1.0, 0.0], [0.0, -2.0]], [0.5, 0.0])
    first, second, third = find_layers(model, rand(3, 2), in_range=(0, 1))
    # layer 0 on [0, 1]^2: z_0 in [0 - 2 + 0.1, 1 + 0 + 0.1] = [-1.9, 1.1],
    # z_1 in [0 + 0 - 1, 0.5 + 3 - 1] = [-1, 2.5]; hull [-1.9, 2.5]; relu -> [0, 2.5]
    assert first.in_range == (0.0, 1.0)
    assert first.out_range == pytest.approx((0.0, 2.5), abs=1e-12)
    # layer 2 on [0, 2.5]^2: z_0 in [0 - 2.5, 2.5 - 0] = [-2.5, 2.5],
    # z_1 in [0, 5 + 1.25] = [0, 6.25]; hull [-2.5, 6.25]; leaky 0.1 -> [-0.25, 6.25]
    assert second.in_range == pytest.approx((0.0, 2.5), abs=1e-12)
    assert second.out_range == pytest.approx((-0.25, 6.25), abs=1e-12)
    # layer 4 (identity) on [-0.25, 6.25]^2: z_0 in [0.25, 6.75], z_1 in [-12.5, 0.5]
    assert third.in_range == pytest.approx((-0.25, 6.25), abs=1e-12)
    assert third.out_range == pytest.approx((-12.5, 6.75), abs=1e-12)
    # the bound is attained: corners of the input box reach both ends for layer 0
    corners = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    with torch.no_grad():
        z = model[0](corners)
    assert float(z.min()) == pytest.approx(-1.9) and float(z.max()) == pytest.approx(2.5)


def test_in_range_inferred_from_data_with_warning():
    model = build(lambda: nn.Sequential(nn.Linear(2, 2), nn.Sigmoid()))
    x = torch.tensor([[-0.5, 0.25], [2.0, 1.0], [0.0, 0.0]])
    with pytest.warns(UserWarning, match=r"data range of example_input.*-0\.5.*2"):
        (layer,) = find_layers(model, x)
    assert layer.in_range == (-0.5, 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a given range: no warning
        (layer,) = find_layers(model, x, in_range=(-1, 3))
    assert layer.in_range == (-1.0, 3.0)


def test_batchnorm_is_folded_and_its_range_is_affine():
    model = build(lambda: nn.Sequential(
        nn.Linear(2, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2)
    ))
    bn = model[1]
    with torch.no_grad():
        bn.running_mean.fill_(1.0)
        bn.running_var.fill_(4.0 - bn.eps)  # so that sqrt(var + eps) = 2 exactly
        bn.weight.fill_(2.0)
        bn.bias.fill_(0.5)
    _set_linear(model[0], [[1.0, 1.0], [2.0, 0.0], [0.5, 0.5]], [0.0, 0.0, 0.5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # folded, not skipped: no warning
        first, second = find_layers(model, rand(4, 2), in_range=(0, 1))
    assert [first.name, second.name] == ["0", "3"]
    assert first.dense is not None and "folded BatchNorm1d '1'" in first.note
    # z on [0, 1]^2: rows [0, 2], [0, 2], [0.5, 1.5] -> hull [0, 2];
    # bn(z) = (z - 1) / 2 * 2 + 0.5 = z - 0.5 -> [-0.5, 1.5]; relu -> [0, 1.5]
    assert second.in_range == pytest.approx((0.0, 1.5), abs=1e-12)
    (span,) = find_layers(model, rand(4, 2), [("0", "2")], in_range=(0, 1))
    assert span.out_shape == (3,)


# --------------------------------------------------------------------------- fallback


def test_hook_fallback_for_untraceable_models():
    model = build(Untraceable)
    x = rand(6, 3)
    first, second = find_layers(model, x, in_range=(0, 1))
    assert [first.name, second.name] == ["fc1", "fc2"]
    # the functional sigmoid between the modules was recognised from the values
    assert first.activation.kind == "sigmoid" and first.out_range == (0.0, 1.0)
    assert second.in_range == (0.0, 1.0)
    assert "forward hooks" in first.note
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(chain([first, second], x), expected)
    (span,) = find_layers(model, x, [("fc1", "fc2")], in_range=(0, 1))
    with torch.no_grad():
        torch.testing.assert_close(span.forward_flat(x), expected)
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks


# --------------------------------------------------------------------------- errors


def test_errors_name_the_problem_and_the_fix():
    model = build(lambda: nn.Sequential(
        nn.Linear(4, 5), nn.Sigmoid(), nn.Dropout(0.5), nn.Linear(5, 3), nn.BatchNorm1d(3)
    ))
    x = rand(4, 4)
    with pytest.raises(ValueError, match=r"no module '31'.*close matches.*'3'"):
        find_layers(model, x, ["31"], in_range=(0, 1))
    with pytest.raises(ValueError, match=r"'0' comes before '3'.*swap"):
        find_layers(model, x, [("3", "0")], in_range=(0, 1))
    with pytest.raises(ValueError, match=r"'1' \(Sigmoid\) is an activation.*request '0'"):
        find_layers(model, x, ["1"], in_range=(0, 1))
    with pytest.raises(ValueError, match=r"'2' \(Dropout\) is transparent"):
        find_layers(model, x, ["2"], in_range=(0, 1))
    with pytest.raises(ValueError, match=r"'4' \(BatchNorm1d\) is folded into layer '3'"):
        find_layers(model, x, ["4"], in_range=(0, 1))
    with pytest.raises(TypeError, match="ambiguous"):
        find_layers(model, x, ("0", "3"), in_range=(0, 1))
    with pytest.raises(TypeError, match="list"):
        find_layers(model, x, "0", in_range=(0, 1))
    with pytest.raises(ValueError, match="batch dimension"):
        find_layers(model, x[0], in_range=(0, 1))
    with pytest.raises(ValueError, match="inverted"):
        find_layers(model, x, in_range=(1, 0))
    with pytest.raises(TypeError, match="could not run the model"):
        find_layers(model, rand(4, 7), in_range=(0, 1))
    with torch.no_grad():
        model[3].weight[1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"'3\.weight' contains NaN"):
        find_layers(model, x, in_range=(0, 1))


def test_nan_weights_only_block_the_layers_that_depend_on_them():
    model = build(lambda: paper_mlp((3, 4, 4, 2)))
    x = rand(4, 3)
    with torch.no_grad():
        model[0].weight[0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"'0\.weight' contains NaN or inf"):
        find_layers(model, x, in_range=(0, 1))
    with pytest.raises(ValueError, match=r"'0\.weight' contains NaN or inf"):
        find_layers(model, x, ["0"], in_range=(0, 1))
    # layer "2" sees sigmoid outputs, whose range (0, 1) does not depend on layer 0
    (healthy,) = find_layers(model, x, ["2"], in_range=(0, 1))
    assert healthy.in_range == (0.0, 1.0)
    relu = build(lambda: paper_mlp((3, 4, 4, 2), act=nn.ReLU))
    with torch.no_grad():
        relu[0].weight[1, 1] = float("nan")
    # with relu, layer 2's input range is the bound of layer 0: undefined, so it is named
    with pytest.raises(ValueError, match=r"'0\.weight' contains NaN or inf"):
        find_layers(relu, x, ["2"], in_range=(0, 1))


def test_check_same_structure():
    x = rand(4, 4)
    a = find_layers(build(lambda: paper_mlp((4, 5, 5, 3))), x, in_range=(0, 1))
    b = find_layers(build(lambda: paper_mlp((4, 5, 5, 3)), seed=3), x, in_range=(0, 1))
    check_same_structure(a, b)  # new weights, same shapes: fine
    c = find_layers(build(lambda: paper_mlp((4, 6, 5, 3))), x, in_range=(0, 1))
    with pytest.raises(ValueError, match=r"layer '0' changed shape.*\(5,\) -> \(6,\)"):
        check_same_structure(a, c)
    d = find_layers(build(lambda: paper_mlp((4, 5, 3))), x, in_range=(0, 1))
    with pytest.raises(ValueError, match=r"removed \['4'\]"):
        check_same_structure(a, d)


# --------------------------------------------------------------------------- state


class Noisy(nn.Module):
    """Dropout and BatchNorm: modules whose train mode would draw RNG / update buffers."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(4)
        self.drop = nn.Dropout(0.5)
        self.block = Block(4)
        self.fc2 = nn.Linear(4, 2)

    def forward(self, x):
        return torch.sigmoid(self.fc2(self.block(self.drop(torch.relu(self.bn(self.fc1(x)))))))


@pytest.mark.filterwarnings("ignore:find_layers skipped")
@pytest.mark.parametrize("factory", [Noisy, Untraceable])
def test_model_state_untouched(factory):
    model = build(factory)
    model.train()
    model.fc1.eval()  # a mixed state must come back as it was
    for k, p in enumerate(model.parameters()):
        p.grad = torch.full_like(p, float(k))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.grad.clone() for p in model.parameters()]
    modes = [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    x = rand(8, 3)
    requests = [None, [("fc1", "fc2")]]
    for req in requests:
        layers = find_layers(model, x, req, in_range=(0, 1))
        chain(layers[:1], x)  # running a layer does not touch the model either
    assert torch.equal(torch.get_rng_state(), rng)
    assert [m.training for m in model.modules()] == modes
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    for p, g in zip(model.parameters(), grads, strict=True):
        assert torch.equal(p.grad, g)
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    assert torch.is_grad_enabled()


def test_layers_are_weight_snapshots():
    model = build(lambda: paper_mlp((4, 5, 3)))
    x = rand(5, 4)
    layers = find_layers(model, x, in_range=(0, 1))
    with torch.no_grad():
        before = chain(layers, x)
        for p in model.parameters():
            p.mul_(2.0)  # "training" after find_layers
    for layer in layers:
        layer.extra["use_dense_forward"] = False
    torch.testing.assert_close(chain(layers, x), before)


# --------------------------------------------------------------------------- measure


def _measure_module():
    return pytest.importorskip("causal_widgets.engine.layer_measure")


def test_measure_tidy_frame_and_matches_measure_layer():
    mod = _measure_module()
    from causal_widgets.network.measure import measure, measure_layers

    model = build(lambda: paper_mlp((4, 5, 5, 3)))
    x = rand(10, 4)
    # fixed whole-EI work (512 cells x 8 points) keeps this fast; the rest is exact
    fast = dict(cells=512, points_per_cell=8)
    kw = dict(in_range=(0, 1), bins=8, seed=3, device="cpu", **fast)
    df = measure(model, x, **kw)
    for col in FRAME_COLUMNS:
        assert col in df.columns, col
    assert list(dict.fromkeys(df["layer"])) == ["0", "2", "4"]
    assert not df.duplicated(["layer", "metric"]).any()
    metrics = set(df["metric"])
    assert {"ei", "ei_parts", "sensitivity", "degeneracy", "integration"} <= metrics
    assert len(df) == 3 * len(metrics)
    assert (df["seed"] == 3).all() and (df["in_bins"] == 8).all()
    # a layer measured alone with the same settings gives the same numbers
    layers = find_layers(model, x, in_range=(0, 1))
    alone = mod.measure_layer(layers[1], bins=8, seed=3, device="cpu", **fast).to_frame()
    mine = df[df["layer"] == "2"].set_index("metric")["value"]
    ref = alone.set_index("metric")["value"]
    for metric in ref.index:
        assert mine[metric] == pytest.approx(ref[metric], rel=1e-12, abs=1e-12), metric
    assert set(ref.index) == set(mine.index)
    results = measure_layers(model, x, ["4"], metrics=["ei_parts"], **kw)
    assert list(results) == ["4"]
    assert results["4"].ei_parts_matrix.shape == (5, 3)
    assert results["4"].ei_parts == pytest.approx(float(df.set_index(["layer", "metric"])
                                                        .loc[("4", "ei_parts"), "value"]))

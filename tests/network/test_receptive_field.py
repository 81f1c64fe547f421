"""Residual blocks and spans by receptive field.

Truth: brute force on the full-map module (vary one input cell at a time: the output at
the measured position changes only for cells inside the receptive field), the closed-form
receptive field of stacked 3x3 convs, and the full-map module's own output at that
position.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from real_models import BasicBlock, conv1x1, seeded, uniform
from torch import nn

import causal_widgets as cw
from causal_widgets.network.discovery import find_layers

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Wrapped(nn.Module):
    """A block inside a model, so that discovery finds it as a residual block."""

    def __init__(self, stride: int):
        super().__init__()
        down = None
        if stride != 1:
            down = nn.Sequential(conv1x1(2, 3, stride), nn.BatchNorm2d(3))
        self.block = BasicBlock(2, 3 if stride != 1 else 2, stride=stride, downsample=down)

    def forward(self, x):
        return self.block(x)


def live_block(stride: int) -> Wrapped:
    """Seeded weights, with the BatchNorm shifts raised so that the ReLUs are on for part
    of the input range (with 2-3 channels a random draw can leave one off everywhere, and
    then the block is its identity path alone, or constant)."""
    model = seeded(lambda: Wrapped(stride), seed=2)
    with torch.no_grad():
        model.block.bn1.bias.fill_(1.5)
        model.block.bn2.bias.fill_(1.0)  # and the block's output ReLU
    return model


def support_cells(layer) -> set[tuple[int, ...]]:
    """The layer's input neurons as full-map (c, h, w) cells."""
    crop_shape = layer.extra["crop_shape"]
    start = layer.extra["crop_start"]
    support = layer.fn.support
    flat = np.arange(math.prod(crop_shape)) if support is None else support.numpy()
    cells = np.stack(np.unravel_index(flat, crop_shape), axis=1)
    cells[:, 1:] += np.asarray(start)
    return {tuple(int(v) for v in c) for c in cells}


def brute_force_support(block: nn.Module, shape, o, bases: int = 3) -> set[tuple[int, ...]]:
    """Cells whose change moves the output at position ``o`` (on any of a few inputs)."""
    g = torch.Generator().manual_seed(11)
    block = copy.deepcopy(block).double().eval()
    hits = set()
    with torch.no_grad():
        for _ in range(bases):
            x = torch.rand((1, *shape), generator=g, dtype=torch.float64)
            y0 = block(x)[0, :, o[0], o[1]]
            cells = list(np.ndindex(*shape))
            batch = x.repeat(len(cells), 1, 1, 1)
            for k, c in enumerate(cells):
                batch[(k, *c)] += 0.5 + torch.rand((), generator=g, dtype=torch.float64)
            y = block(batch)[:, :, o[0], o[1]]
            changed = (y - y0).abs().amax(dim=1) > 1e-12
            hits.update(cells[k] for k in torch.nonzero(changed).reshape(-1).tolist())
    return hits


@pytest.mark.parametrize(
    ("stride", "size", "window"),
    [(1, 10, 5), (2, 10, 7),
     (2, 8, None)],  # 8x8 -> 4x4: the field of the centre output is clipped by the border
)
def test_block_receptive_field_matches_brute_force_and_closed_form(stride, size, window):
    model = live_block(stride)
    shape = (2, size, size)
    (layer,) = find_layers(model, uniform(3, *shape), in_range=(0, 1))
    assert layer.name == "block" and layer.extra["kind"] == "block"
    o = layer.extra["out_position"]
    cells = support_cells(layer)
    # closed form: two 3x3 convs (the first with the stride) see a window of
    # 3 + 2 * stride cells per side, every input channel
    if window is not None:
        assert len(cells) == shape[0] * window * window == layer.n_in
        assert layer.extra["stride"] == (stride, stride)
    assert cells == brute_force_support(model.block, shape, o)
    assert layer.out_shape == (model.block.conv2.out_channels,)
    # the cropped computation is the full map's at o
    g = torch.Generator().manual_seed(12)
    x = torch.rand((4, *shape), generator=g)
    order = sorted(cells, key=lambda c: (c[0], c[1], c[2]))
    inputs = torch.stack([x[:, c[0], c[1], c[2]] for c in order], dim=1)
    with torch.no_grad():
        want = model.block.eval()(x)[:, :, o[0], o[1]]
        got = layer.forward_flat(inputs)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_span_by_receptive_field_and_its_values_are_finite():
    model = live_block(1)
    x = uniform(3, 2, 12, 12)
    (span,) = find_layers(model, x, [("block.conv1", "block.bn2")], in_range=(0, 1))
    assert span.name == "block.conv1..block.bn2" and span.n_in == 2 * 5 * 5
    assert "receptive field" in span.note
    df = cw.measure(model, x, in_range=(0, 1), metrics=["ei_parts", "sensitivity"],
                    bins=2, interventions=128, sensitivity_interventions=64)
    assert list(df.layer.unique()) == ["block"]
    assert np.isfinite(df.value).all()


class PositionDependent(nn.Module):
    """Multiplies by the column index: not a per-position map."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y * torch.arange(y.shape[-1], dtype=y.dtype)


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = PositionDependent()
        self.fc = nn.Linear(2 * 8 * 8, 2)

    def forward(self, x):
        return self.fc(torch.flatten(self.body(x), 1))


def test_position_dependent_span_is_a_clear_error():
    model = seeded(Model)
    with pytest.raises(ValueError, match=r"'body'.*cropped receptive field.*one by one"):
        find_layers(model, uniform(2, 2, 8, 8), ["body"], in_range=(0, 1))


class DeadBranch(nn.Module):
    """relu(conv(x)) with every pre-activation negative on [0, 1]: a constant output."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(2 * 6 * 6, 2)

    def forward(self, x):
        return self.fc(torch.flatten(self.relu(self.conv(x)), 1))


def test_constant_span_output_is_said_and_measures_zero():
    model = seeded(DeadBranch)
    with torch.no_grad():
        model.conv.weight.copy_(-model.conv.weight.abs())
        model.conv.bias.fill_(-0.1)
    x = uniform(2, 2, 6, 6)
    (span,) = find_layers(model, x, [("conv", "relu")], in_range=(0, 1))
    assert "constant on every probe" in span.note and span.n_in == 2
    df = cw.measure(model, x, [("conv", "relu")], in_range=(0, 1),
                    metrics=["ei_parts", "sensitivity"], bins=2, interventions=128,
                    sensitivity_interventions=64)
    # a constant output carries no information about any input
    assert np.allclose(df.value.to_numpy(dtype=float), 0.0, atol=1e-9)

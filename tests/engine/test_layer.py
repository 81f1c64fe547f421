import math

import numpy as np
import pytest
import torch
from torch import nn

from causal_widgets.engine.layer import Activation, DenseForm, activation_of, layer_from_module


@pytest.mark.parametrize("kind", ["identity", "sigmoid", "tanh", "relu", "leaky_relu"])
def test_preimage_inverts_activation(kind):
    act = Activation(kind, 0.1)
    lo, hi = act.natural_range or (-3.0, 3.0)
    edges = np.linspace(lo, hi, 9)[1:-1]
    if kind == "relu":
        edges = edges[edges > 0]
    t = act.preimage(edges)
    z = np.linspace(-8, 8, 20001)
    y = act.apply_numpy(z)
    for e, ti in zip(edges, t):
        # act(z) >= e  <=>  z >= t, checked on a dense grid away from the threshold itself
        away = np.abs(z - ti) > 1e-6
        assert np.array_equal((y >= e)[away], (z >= ti)[away])


def test_preimage_outside_range():
    t = Activation("sigmoid").preimage(np.array([0.0, 1.0]))
    assert t[0] == -np.inf and t[1] == np.inf
    assert Activation("relu").preimage(np.array([-0.5]))[0] == -np.inf


def test_non_monotone_preimage_is_refused():
    with pytest.raises(ValueError, match="sampled"):
        Activation("other").preimage(np.array([0.5]))


def test_activation_of_modules():
    assert activation_of(nn.Sigmoid()).kind == "sigmoid"
    assert activation_of(nn.LeakyReLU(0.2)).slope == 0.2
    assert activation_of(nn.GELU()).kind == "other"
    assert activation_of(nn.Linear(2, 2)) is None


def test_interval_bounds_by_hand():
    # z = [1, -2] . x + 0.5 over x in [0, 1]^2: min 0.5 - 2 = -1.5, max 1.5 (identity)
    d = DenseForm(np.array([[1.0, -2.0]]), np.array([0.5]), Activation("identity"))
    assert d.interval_bounds((0.0, 1.0)) == (-1.5, 1.5)
    r = DenseForm(np.array([[1.0, -2.0]]), np.array([0.5]), Activation("relu"))
    assert r.interval_bounds((0.0, 1.0)) == (0.0, 1.5)


def test_layer_from_sequential_dense():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 2), nn.Tanh())
    layer = layer_from_module(m, in_range=(-1, 1))
    assert layer.in_shape == (3,) and layer.out_shape == (2,)
    assert layer.out_range == (-1.0, 1.0)
    assert layer.dense is not None and layer.dense.activation.kind == "tanh"
    x = torch.rand(5, 3) * 2 - 1
    assert torch.allclose(layer.forward_flat(x), m(x), atol=1e-6)


def test_layer_from_conv_needs_shape():
    conv = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Sigmoid())
    with pytest.raises(ValueError, match="in_shape"):
        layer_from_module(conv, in_range=(0, 1))
    layer = layer_from_module(conv, in_range=(0, 1), in_shape=(2, 3, 3))
    assert layer.n_in == 18 and layer.n_out == 3 and layer.dense is None


def test_unbounded_non_dense_output_needs_range():
    m = nn.Sequential(nn.Conv1d(1, 1, 2), nn.ReLU())
    with pytest.raises(ValueError, match="out_range"):
        layer_from_module(m, in_range=(0, 1), in_shape=(1, 2))


def test_nan_weights_are_named():
    m = nn.Linear(2, 2)
    with torch.no_grad():
        m.weight[0, 0] = math.nan
    with pytest.raises(ValueError, match="weight.*NaN"):
        layer_from_module(m, in_range=(0, 1))


def test_module_returning_tuple_is_refused():
    class Pair(nn.Module):
        def forward(self, x):
            return x, x

    with pytest.raises(TypeError, match="tensor"):
        layer_from_module(Pair(), in_range=(0, 1), in_shape=(2,))

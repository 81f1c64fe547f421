"""BatchNorm folding: eval-mode BatchNorm after a Linear/Conv becomes part of its weights.

Truth: the module chain itself (``bn(core(x))`` in eval mode, float64), and the unfolded
chain measured as a black box on the sampled path, whose 95 % interval must contain the
folded layer's exact values.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from real_models import seeded, uniform
from torch import nn

from causal_widgets.engine.layer_measure import measure_layer
from causal_widgets.network.discovery import find_layers
from causal_widgets.network.norm_folding import fold_batchnorm, foldable_batchnorm

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize(
    ("core", "bn", "shape"),
    [
        (lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1), lambda: nn.BatchNorm2d(4), (5, 3, 7, 7)),
        (lambda: nn.Conv2d(2, 6, 3, groups=2, bias=False), lambda: nn.BatchNorm2d(6),
         (5, 2, 6, 6)),
        (lambda: nn.Conv1d(2, 5, 3, dilation=2), lambda: nn.BatchNorm1d(5), (5, 2, 9)),
        (lambda: nn.Linear(6, 5), lambda: nn.BatchNorm1d(5), (5, 6)),
    ],
)
def test_folded_module_equals_the_chain(core, bn, shape):
    chain = seeded(lambda: nn.Sequential(core(), bn()), seed=3).double().eval()
    before = copy.deepcopy(chain.state_dict())
    folded = fold_batchnorm(chain[0], chain[1])
    x = uniform(*shape, seed=4, lo=-2, hi=2).double()
    with torch.no_grad():
        torch.testing.assert_close(folded(x), chain(x), rtol=1e-12, atol=1e-12)
    for k, v in chain.state_dict().items():  # the originals are untouched
        assert torch.equal(v, before[k]), k


def test_what_does_not_fold_says_why():
    # a Linear on (N, T, d): BatchNorm1d would normalise dim 1, the sequence
    assert "does not normalise the output channels" in foldable_batchnorm(
        nn.Linear(4, 3), nn.BatchNorm1d(3), (5, 3)
    )
    assert foldable_batchnorm(nn.Linear(4, 3), nn.BatchNorm1d(3), (3,)) is None
    assert "running statistics" in foldable_batchnorm(
        nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3, track_running_stats=False), (3, 4, 4)
    )
    assert "features" in foldable_batchnorm(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(4), (3, 4, 4))
    assert foldable_batchnorm(nn.Conv1d(1, 3, 1), nn.BatchNorm2d(3), (3, 4)) is not None
    with pytest.raises(ValueError, match="cannot fold"):
        fold_batchnorm(nn.Conv1d(1, 3, 1), nn.BatchNorm2d(3))


def conv_bn_relu() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(2, 3, 2), nn.BatchNorm2d(3), nn.ReLU())


def test_folded_layer_computes_the_chain_and_keeps_its_dense_form():
    model = seeded(conv_bn_relu, seed=5)
    model.train()  # folding must use the running statistics whatever the mode
    before = copy.deepcopy(model.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # BatchNorm folded: nothing skipped
        (layer,) = find_layers(model, uniform(4, 2, 5, 5), in_range=(0, 1))
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():  # running stats not updated by the probe
        assert torch.equal(v, before[k]), k
    assert layer.name == "0" and layer.dense is not None
    assert layer.in_shape == (2, 2, 2) and layer.out_shape == (3,)
    assert "folded BatchNorm2d '1'" in layer.note and layer.extra["folded_norm"] == "1"
    patch = uniform(9, 2, 2, 2, seed=6)
    ref = copy.deepcopy(model).eval()
    with torch.no_grad():
        want = ref(patch).reshape(9, 3)  # one receptive field -> one output position
        torch.testing.assert_close(layer.forward_flat(patch.reshape(9, -1)), want,
                                   rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(layer.fn(patch), want, rtol=1e-5, atol=1e-6)
    # the dense form's interval bound is the layer's output range: exact, not observed
    assert layer.out_range == pytest.approx(layer.dense.interval_bounds(layer.in_range))


def test_exact_folded_values_lie_in_the_black_box_chains_sampled_interval():
    model = seeded(conv_bn_relu, seed=5).eval()
    x = uniform(4, 2, 5, 5)
    (folded,) = find_layers(model, x, in_range=(0, 1))
    # the same computation, conv -> bn -> relu run as an opaque span by receptive field
    # with the sound bound as its range (span_ranges="bound"), binned like the folded layer
    (span,) = find_layers(model, x, [("0", "2")], in_range=(0, 1), span_ranges="bound")
    assert span.dense is None and span.in_shape == (2, 2, 2) and span.out_shape == (3,)
    assert span.in_range == folded.in_range
    assert span.out_range == pytest.approx(folded.out_range)
    common = dict(metrics=["ei_parts", "sensitivity"], bins=4, seed=0)
    exact = measure_layer(folded, method="exact", **common)
    sampled = measure_layer(span, method="sampled", interventions=40000,
                            sensitivity_interventions=4000, **common)
    assert exact.method["ei_parts"] == "exact" and sampled.method["ei_parts"] == "sampled"
    for metric in ("ei_parts", "sensitivity"):
        lo, hi = sampled.ci[metric]
        assert lo <= getattr(exact, metric) <= hi, (metric, getattr(exact, metric), lo, hi)


def test_batchnorm_without_running_statistics_is_not_folded():
    model = seeded(lambda: nn.Sequential(
        nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False), nn.ReLU(),
        nn.Linear(4, 2),
    ))
    with pytest.warns(UserWarning, match=r"skipped.*1 \(BatchNorm1d\)"):
        layers = find_layers(model, uniform(6, 3), in_range=(0, 1))
    assert [layer.name for layer in layers] == ["0", "3"]
    assert "folded" not in layers[0].note


def test_standalone_eval_batchnorm_is_a_diagonal_dense_layer():
    model = seeded(lambda: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.BatchNorm1d(4)))
    layers = find_layers(model, uniform(6, 3), in_range=(0, 1))
    assert [layer.name for layer in layers] == ["0", "2"]
    bn = layers[1]
    assert bn.dense is not None and bn.in_shape == (4,)
    z = uniform(7, 4, seed=8)
    with torch.no_grad():
        torch.testing.assert_close(bn.forward_flat(z), copy.deepcopy(model[2]).eval()(z))

"""The paper's networks: architecture, seeded init distribution, loss, SGD step, training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from causal_widgets.training.data import load_iris_data
from causal_widgets.training.models import (
    evaluate,
    make_mlp,
    make_optimizer,
    one_hot,
    parse_layers,
    train_epoch,
)


def test_architecture_is_bias_free_linear_plus_activation() -> None:
    for act, cls in (("sigmoid", nn.Sigmoid), ("tanh", nn.Tanh), ("relu", nn.ReLU)):
        model = make_mlp([25, 6, 6, 6, 5], act, seed=0)
        names = [n for n, _ in model.named_children()]
        assert names == ["fc1", "act1", "fc2", "act2", "fc3", "act3", "fc4", "act4"]
        linears = [m for m in model if isinstance(m, nn.Linear)]
        assert [(m.in_features, m.out_features) for m in linears] == [
            (25, 6), (6, 6), (6, 6), (6, 5)
        ]
        assert all(m.bias is None for m in linears)
        assert all(isinstance(m, cls) for m in model[1::2])
        assert all(p.dtype == torch.float32 for p in model.parameters())
        assert model(torch.rand(3, 25)).shape == (3, 5)


def test_init_is_uniform_with_fan_in_bound_and_seeded() -> None:
    before = torch.random.get_rng_state()
    model = make_mlp([400, 300, 2], "sigmoid", seed=11)
    assert torch.equal(before, torch.random.get_rng_state())  # global RNG untouched
    w = model.fc1.weight.detach().double().numpy().ravel()
    bound = 1.0 / math.sqrt(400)
    assert w.min() >= -bound and w.max() <= bound
    # U(-a, a): mean 0, variance a^2 / 3; KS test against that distribution
    assert abs(w.mean()) < 4 * bound / math.sqrt(3 * w.size)
    assert abs(w.var() / (bound**2 / 3) - 1) < 0.02
    assert stats.kstest(w, stats.uniform(loc=-bound, scale=2 * bound).cdf).pvalue > 1e-3
    w2 = model.fc2.weight.detach().numpy()
    assert np.abs(w2).max() <= 1.0 / math.sqrt(300)
    again = make_mlp([400, 300, 2], "sigmoid", seed=11)
    assert torch.equal(again.fc1.weight, model.fc1.weight)
    assert not torch.equal(make_mlp([400, 300, 2], seed=12).fc1.weight, model.fc1.weight)


def test_parse_layers_and_errors() -> None:
    assert parse_layers("4,5,5,3") == [4, 5, 5, 3]
    assert parse_layers("25-6-5") == [25, 6, 5]
    for bad in ("4", "4,x", "4,0,3"):
        with pytest.raises(ValueError, match="layer sizes"):
            parse_layers(bad)
    with pytest.raises(ValueError, match="activation"):
        make_mlp([2, 2], "softplus")


def test_evaluate_by_hand() -> None:
    model = make_mlp([3, 4], "sigmoid", seed=0)
    with torch.no_grad():
        model.fc1.weight.zero_()  # every output sigmoid(0) = 1/2
    labels = torch.tensor([0, 1, 2, 0])
    loss, acc = evaluate(model, torch.rand(4, 3), labels)
    # per example: three outputs (1/2 - 0)^2 and one (1/2 - 1)^2 -> 4 * 1/4 = 1
    assert loss == pytest.approx(1.0)
    # all outputs tie; argmax picks output 0, right for the two label-0 examples
    assert acc == pytest.approx(0.5)


def test_one_sgd_step_matches_the_hand_gradient() -> None:
    torch.manual_seed(0)
    model = make_mlp([3, 2], "sigmoid", seed=5)
    x = torch.rand(6, 3, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 1, 0, 1, 0])
    t = one_hot(labels, 2)
    w0 = model.fc1.weight.detach().double().clone()
    # L = sum (sigmoid(x W^T) - t)^2 -> dL/dW = sum_n 2 (y - t) y (1 - y) outer x
    y = torch.sigmoid(x.double() @ w0.T)
    grad = (2 * (y - t.double()) * y * (1 - y)).T @ x.double()
    loss0 = float(((y - t.double()) ** 2).sum()) / 6
    gen = torch.Generator().manual_seed(3)
    mean_loss = train_epoch(model, make_optimizer(model, 0.01), x, t, batch_size=6,
                            generator=gen)
    assert mean_loss == pytest.approx(loss0, rel=1e-5)
    assert torch.allclose(model.fc1.weight.double(), w0 - 0.01 * grad, atol=1e-6)


def test_training_decreases_iris_loss_quickly() -> None:
    ds = load_iris_data(seed=0)
    model = make_mlp([4, 5, 5, 3], "sigmoid", seed=0)
    opt = make_optimizer(model)
    gen = torch.Generator().manual_seed(0)
    start, _ = evaluate(model, ds.x_train, ds.y_train)
    targets = one_hot(ds.y_train, 3)
    for _ in range(150):
        train_epoch(model, opt, ds.x_train, targets, 10, gen)
    end, _ = evaluate(model, ds.x_train, ds.y_train)
    # from ~0.79 (random init) towards the plateau at 2/3 (all outputs ~1/3)
    assert end < start - 0.05
    assert end < 0.72


def test_train_epoch_is_reproducible_from_generator_state() -> None:
    ds = load_iris_data(seed=0)
    targets = one_hot(ds.y_train, 3)
    a, b = make_mlp([4, 5, 5, 3], seed=2), make_mlp([4, 5, 5, 3], seed=2)
    ga, gb = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    oa, ob = make_optimizer(a), make_optimizer(b)
    for _ in range(3):
        train_epoch(a, oa, ds.x_train, targets, 10, ga)
    state = ga.get_state()
    train_epoch(a, oa, ds.x_train, targets, 10, ga)
    for _ in range(3):
        train_epoch(b, ob, ds.x_train, targets, 10, gb)
    gb.set_state(state)
    train_epoch(b, ob, ds.x_train, targets, 10, gb)
    assert torch.equal(a.fc1.weight, b.fc1.weight)


def test_dropout_sits_after_hidden_activations_and_bad_rates_are_refused() -> None:
    model = make_mlp([4, 5, 5, 3], "sigmoid", seed=0, dropout=0.2)
    assert [n for n, _ in model.named_children()] == [
        "fc1", "act1", "drop1", "fc2", "act2", "drop2", "fc3", "act3"]
    assert model.drop1.p == 0.2
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"must lie in \[0, 1\)"):
            make_mlp([4, 5, 3], "sigmoid", dropout=bad)


def test_evaluate_runs_without_dropout_and_restores_the_mode() -> None:
    model = make_mlp([4, 5, 5, 3], "sigmoid", seed=0, dropout=0.9)
    ds = load_iris_data(seed=0)
    model.train()
    first = evaluate(model, ds.x_train, ds.y_train)
    assert model.training
    # with dropout on, two forward passes would differ; evaluation is deterministic
    assert evaluate(model, ds.x_train, ds.y_train) == first
    model.eval()
    assert evaluate(model, ds.x_train, ds.y_train) == first and not model.training

"""measure() on inputs that are legal but empty, or models that hold no values.

Reproduced first (issue 13): a model with nothing to measure returned an empty table
without a word; an empty batch ``(0, 4)`` was told it had "no batch dimension"; a model
built under ``torch.device("meta")`` ended in "Tensor.item() cannot be called on meta
tensors".
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import causal_widgets as cw
from causal_widgets.engine.tidy import TIDY_COLUMNS
from causal_widgets.network.measure import measure_layers

X = torch.rand(8, 4, generator=torch.Generator().manual_seed(0))


def test_nothing_to_measure_warns_with_the_modules_found_and_how_to_pick() -> None:
    model = nn.Sequential(nn.GELU(), nn.Dropout(0.1))  # elementwise only: no layer
    with pytest.warns(UserWarning) as record:
        df = cw.measure(model, X, in_range=(0.0, 1.0))
    assert list(df.columns) == TIDY_COLUMNS and df.empty  # still the table, just empty
    (w,) = [w for w in record if "nothing to measure" in str(w.message)]
    msg = str(w.message)
    assert "Dropout, GELU, Sequential" in msg
    assert "layers=['0']" in msg and "module paths: 0, 1)" in msg
    assert w.filename == __file__  # pointed at the caller, not at the package


def test_measure_layers_warns_too_pointing_at_its_caller() -> None:
    with pytest.warns(UserWarning, match="nothing to measure") as record:
        assert measure_layers(nn.Sequential(nn.ReLU()), X, in_range=(0.0, 1.0)) == {}
    assert all(w.filename == __file__ for w in record if "nothing" in str(w.message))


def test_a_model_with_layers_does_not_warn() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.Sigmoid())
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        df = cw.measure(model, X, in_range=(0.0, 1.0), metrics=["ei_parts"])
    assert not df.empty
    assert not [w for w in record if "nothing to measure" in str(w.message)]


def test_an_empty_batch_is_called_empty() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.Sigmoid())
    with pytest.raises(ValueError) as exc:
        cw.measure(model, torch.rand(0, 4), in_range=(0.0, 1.0))
    msg = str(exc.value)
    assert "example_input of shape (0, 4) is an empty batch (0 samples)" in msg
    assert "no batch dimension" not in msg and "x_train[:64]" in msg
    # a tensor without a batch dimension is still told so
    with pytest.raises(ValueError, match="has no batch dimension"):
        cw.measure(model, torch.rand(4), in_range=(0.0, 1.0))


def test_a_meta_model_is_refused_before_tracing() -> None:
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(4, 3), nn.Sigmoid(), nn.Linear(3, 2))
    with pytest.raises(ValueError) as exc:
        cw.measure(model, X, in_range=(0.0, 1.0))
    msg = str(exc.value)
    assert "model has parameters on the meta device ('0.weight' and 3 more)" in msg
    assert "to_empty(device='cpu')" in msg


def test_a_network_with_an_empty_linear_names_it() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.Sigmoid(), nn.Linear(3, 0), nn.Sigmoid())
    with pytest.raises(ValueError, match=r"model\.2: Linear with out_features=0 has no outputs"):
        cw.measure(model, X, in_range=(0.0, 1.0))

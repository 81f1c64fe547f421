"""The public names of the package are the contract; check they resolve to what they say."""

import importlib

import pandas as pd
import torch

import causal_widgets as cw


def test_measure_is_the_network_function_even_after_submodule_import():
    importlib.import_module("causal_widgets.engine.layer_measure")
    assert callable(cw.measure) and cw.measure.__module__ == "causal_widgets.network.measure"
    assert cw.measure_layer.__module__ == "causal_widgets.engine.layer_measure"


def test_every_public_name_resolves():
    for name in cw.__all__:
        assert getattr(cw, name) is not None, name


def test_readme_whole_network_example():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 5, bias=False), torch.nn.Sigmoid(),
        torch.nn.Linear(5, 3, bias=False), torch.nn.Sigmoid(),
    )
    df = cw.measure(model, torch.rand(10, 4), in_range=(0.0, 1.0), cells=256, points_per_cell=8)
    assert isinstance(df, pd.DataFrame)
    assert set(df["layer"]) == {"0", "2"}
    assert {"ei", "ei_parts", "sensitivity", "degeneracy", "integration"} <= set(df["metric"])

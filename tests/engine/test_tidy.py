"""The tidy schema has one owner (engine/tidy.py): every table that has the tidy columns
takes them, in order, from it."""

from __future__ import annotations

import pandas as pd
import torch

from causal_widgets.engine.layer_measure import measure_layer
from causal_widgets.engine.tidy import (
    TIDY_COLUMNS,
    TIDY_KEYS,
    TIDY_PROVENANCE,
    TIDY_VALUES,
    order_columns,
)
from causal_widgets.live.store import TIDY_COLUMNS as STORE_COLUMNS
from causal_widgets.network.measure import FRAME_COLUMNS


def test_the_columns_and_their_order() -> None:
    assert TIDY_COLUMNS == [
        "layer", "metric", "value", "ci_low", "ci_high", "status", "method", "samples",
        "in_bins", "out_bins", "in_range", "out_range", "seed", "version",
    ]  # fmt: skip
    assert TIDY_COLUMNS == [*TIDY_KEYS, *TIDY_VALUES, *TIDY_PROVENANCE]


def test_every_table_imports_the_one_definition() -> None:
    # the same object, not an equal copy: a copy could drift
    assert FRAME_COLUMNS is TIDY_COLUMNS
    assert STORE_COLUMNS is TIDY_COLUMNS


def test_a_layer_result_has_the_tidy_columns() -> None:
    layer = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Sigmoid())
    r = measure_layer(layer, in_range=(0.0, 1.0), bins=4, metrics=["ei_parts"], seed=0)
    assert list(r.to_frame().columns) == TIDY_COLUMNS


def test_order_columns_leads_with_those_given_and_keeps_the_rest() -> None:
    df = pd.DataFrame({"x": [1], "value": [2.0], "layer": ["a"], "run": [0]})
    out = order_columns(df, ["run", "epoch", "layer", "value"])
    assert list(out.columns) == ["run", "layer", "value", "x"]  # no "epoch": skipped
    assert list(df.columns) == ["x", "value", "layer", "run"]  # the input is left as it was

"""The one JSON-safe conversion (causal_widgets/jsonable.py) and its one NaN policy."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from causal_widgets.jsonable import to_jsonable


def test_plain_json_with_non_finite_as_null():
    value = {
        1: (np.int64(3), np.float32(0.5), np.bool_(True)),
        "nan": [float("nan"), np.float64("inf"), -math.inf],
        "array": np.array([[1.0, np.nan], [2.0, 3.0]]),
        "tensor": torch.tensor([0.25, float("nan")]),
        "scalar": torch.tensor(7),
        "nested": {"none": None, "text": "nan", "path": Path("a/b")},
    }
    out = to_jsonable(value)
    assert out == {
        "1": [3, 0.5, True],
        "nan": [None, None, None],
        "array": [[1.0, None], [2.0, 3.0]],
        "tensor": [0.25, None],
        "scalar": 7,
        "nested": {"none": None, "text": "nan", "path": str(Path("a/b"))},
    }
    assert type(out["1"][0]) is int and type(out["1"][2]) is bool
    json.dumps(out, allow_nan=False)  # strict JSON: no NaN anywhere


def test_every_writer_uses_it():
    from causal_widgets.engine import layer_measure
    from causal_widgets.live import monitor, store
    from causal_widgets.widgets import dashboard, study_dashboard

    assert not hasattr(store, "_jsonable")  # no second owner left behind
    for module in (layer_measure, monitor, store, dashboard, study_dashboard):
        assert module.to_jsonable is to_jsonable

"""A value's status reaches the dashboard (issue 10): exact, estimate or bounds per point.

The bounded layer is a 32 -> 32 sigmoid layer with weights N(0, 4/sqrt(32)): its outputs
take far more joint states than any sample can hold, so whole EI is reported as bounds
(``causal_widgets.engine.bounds``), and degeneracy = S - EI with it. The payload must
carry that status next to the interval, and rows of older histories (no ``status``
column) must still build a payload, their status read from how they were measured.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import causal_widgets as cw
from causal_widgets.live.store import History
from causal_widgets.widgets.dashboard import CausalDashboard
from causal_widgets.widgets.payloads import (
    STATUS_CODES,
    STATUS_MISSING,
    plane_payload,
    row_statuses,
)

TOL = 2e-6  # the payload rounds to 1e-6 bits
METRICS = ["ei", "ei_parts", "sensitivity", "degeneracy"]


def wide_sigmoid_layer() -> nn.Sequential:
    gen = torch.Generator().manual_seed(0)
    layer = nn.Sequential(nn.Linear(32, 32), nn.Sigmoid())
    with torch.no_grad():
        layer[0].weight.copy_(torch.randn(32, 32, generator=gen) * (4 / math.sqrt(32)))
        layer[0].bias.zero_()
    return layer


@pytest.fixture(scope="module")
def bounded() -> cw.LayerResult:
    result = cw.measure_layer(wide_sigmoid_layer(), metrics=METRICS, in_range=(0.0, 1.0))
    # the premise: this layer's whole EI is bracketed, not estimated
    assert result.status["ei"] == "bounds"
    assert result.status["degeneracy"] == "bounds"
    return result


def test_the_payload_carries_each_values_status(bounded: cw.LayerResult) -> None:
    hist = History()
    hist.add_result(0, "wide", bounded)
    hist.add_result(3, "wide", bounded)
    p = plane_payload(hist.frame())["wide"]
    assert p["epoch"] == [0, 3]
    for m in METRICS:
        assert p["status"][m] == STATUS_CODES[bounded.status[m]] * 2, m
    assert p["status"]["ei"] == "bb"
    # the interval that brackets EI travels beside it, and the plane box is built from it:
    # x = M/sqrt2 spans [lo, hi]/sqrt2 (closed form of the 45-degree rotation)
    lo, hi = bounded.ci["ei"]
    assert lo < bounded.ei < hi and hi - lo > 1.0  # a real bracket, not a point
    assert p["ei_lo"] == [pytest.approx(lo, abs=TOL)] * 2
    assert p["ei_hi"] == [pytest.approx(hi, abs=TOL)] * 2
    xy = p["xy"]["ei"]
    r2 = math.sqrt(2.0)
    assert xy["x0"][0] == pytest.approx(lo / r2, abs=TOL)
    assert xy["x1"][0] == pytest.approx(hi / r2, abs=TOL)
    # the point is bounded because its EI is (S is exact here)
    assert bounded.status["sensitivity"] in ("exact", "estimate")
    assert xy["status"] == "bb"
    # with EI_parts (not bounded) in EI's place the point is no longer bounded
    parts_code = STATUS_CODES[bounded.status["ei_parts"]]
    assert parts_code != "b"
    assert p["xy"]["ei_parts"]["status"] == parts_code * 2


def test_a_loaded_dashboard_shows_the_status(bounded: cw.LayerResult, tmp_path) -> None:
    hist = History()
    hist.add_result(0, "wide", bounded)
    hist.save(tmp_path / "run")
    dash = CausalDashboard.load(tmp_path / "run")
    try:
        assert (dash.results.set_index("metric")["status"]["ei"]) == "bounds"
        assert dash.plane["wide"]["status"]["ei"] == "b"
        assert dash.plane["wide"]["xy"]["ei"]["status"] == "b"
    finally:
        dash.close()


def old_frame() -> pd.DataFrame:
    """Rows as a version 0.1 history wrote them: no status column."""
    rows = [
        # layer, epoch, metric, value, ci_low, ci_high, method
        ("L", 0, "ei", 1.0, 0.8, 1.2, "sampled"),
        ("L", 0, "sensitivity", 3.0, 3.0, 3.0, "exact"),
        ("L", 0, "ei_parts", 0.5, 0.5, 0.5, "exact"),
        ("L", 1, "ei", 1.5, 1.3, 1.7, "sampled"),
        ("L", 1, "sensitivity", 3.0, 2.9, 3.1, "sampled"),
    ]
    return pd.DataFrame(
        rows, columns=["layer", "epoch", "metric", "value", "ci_low", "ci_high", "method"])


def test_an_old_history_without_status_still_builds_a_payload() -> None:
    p = plane_payload(old_frame())["L"]
    assert p["epoch"] == [0, 1]
    # exact rows were exact, everything else an estimate; "-" where nothing was measured
    assert p["status"]["ei"] == "ee"
    assert p["status"]["sensitivity"] == "xe"
    assert p["status"]["ei_parts"] == "x" + STATUS_MISSING
    assert p["status"]["degeneracy"] == STATUS_MISSING * 2
    # a point takes the less certain of its M's and S's status; no S or M, no point
    assert p["xy"]["ei"]["status"] == "ee"
    assert p["xy"]["ei_parts"]["status"] == "x" + STATUS_MISSING
    # nor the method: every row is an estimate
    assert plane_payload(old_frame().drop(columns="method"))["L"]["status"]["sensitivity"] == "ee"


def test_old_rows_joined_to_new_ones_take_their_status_from_the_method() -> None:
    frame = old_frame()
    frame["status"] = [None, None, None, "bounds", "estimate"]
    assert list(row_statuses(frame)) == ["estimate", "exact", "exact", "bounds", "estimate"]
    p = plane_payload(frame)["L"]
    assert p["status"]["ei"] == "eb"
    assert p["xy"]["ei"]["status"] == "eb"


def test_a_status_that_is_not_one_names_the_choices() -> None:
    frame = old_frame().assign(status="guess")
    with pytest.raises(ValueError, match=r"\['guess'\].*one of \['exact', 'estimate', 'bounds'\]"):
        plane_payload(frame)


def test_a_non_finite_value_has_no_status() -> None:
    frame = old_frame()
    frame.loc[3, "value"] = np.nan
    p = plane_payload(frame)["L"]
    assert p["status"]["ei"] == "e" + STATUS_MISSING
    assert p["xy"]["ei"]["status"] == "e" + STATUS_MISSING


def test_record_leaves_the_scalars_to_the_monitor() -> None:
    """A batch of values names its key and the fix (the monitor's message), not torch's
    'a Tensor with 2 elements cannot be converted to Scalar'."""
    model = nn.Sequential(nn.Linear(3, 2), nn.Sigmoid())
    x = torch.rand(8, 3, generator=torch.Generator().manual_seed(1))

    def never(layer, **kwargs):
        raise AssertionError("nothing is measured in this test")

    dash = CausalDashboard(model, x, every=1000, in_range=(0.0, 1.0), measure_fn=never)
    try:
        with pytest.raises(TypeError) as exc:
            dash.record(1, acc=torch.tensor([0.5, 0.6]))
        msg = str(exc.value)
        assert "scalar 'acc' must be one number" in msg and "shape (2,)" in msg
        assert "acc=acc.mean().item()" in msg
        assert dash.monitor.history.scalars().empty  # nothing of the refused call kept
    finally:
        dash.close()


def test_the_study_dashboard_counts_bounded_runs() -> None:
    """One configuration of three seeds: at epoch 10 the EI of runs a and b is bounds, c's
    an estimate; a second configuration's run d was written before statuses (empty)."""
    from types import SimpleNamespace

    from causal_widgets.widgets.study_dashboard import StudyDashboard

    rows = []
    for run, group in (("a", "g"), ("b", "g"), ("c", "g"), ("d", "h")):
        for epoch in (0, 10):
            bounded = run in ("a", "b") and epoch == 10
            ei_status = None if run == "d" else ("bounds" if bounded else "estimate")
            s_status = None if run == "d" else "exact"
            rows += [(run, group, "fc1", epoch, "ei", 1.0 + epoch / 10, ei_status, "sampled"),
                     (run, group, "fc1", epoch, "sensitivity", 4.0, s_status, "exact")]
    results = pd.DataFrame(rows, columns=["run_id", "group", "layer", "epoch", "metric",
                                          "value", "status", "method"])
    points = pd.DataFrame({"run_id": list("abcd"), "group": list("gggh"), "seed": [0, 1, 2, 0],
                           "status": "complete"})
    data = SimpleNamespace(points=points, results=results,
                           scalars=pd.DataFrame(columns=["group", "run_id", "epoch"]),
                           study=SimpleNamespace(name="s", axes=[]), path="")
    dash = StudyDashboard(data)
    try:
        dash.selected_runs = ["a", "c"]
        plane = dash.plane
        assert plane["groups"]["g"]["fc1"]["n_bounded"] == [0, 2]
        assert plane["groups"]["h"]["fc1"]["n_bounded"] == [0, 0]  # old rows: estimates
        assert plane["runs"]["a"]["layers"]["fc1"]["n_bounded"] == [0, 1]
        assert plane["runs"]["c"]["layers"]["fc1"]["n_bounded"] == [0, 0]
        dash.epoch = 10
        at = {(m["group"], m["run_id"]): m["n_bounded"] for m in dash.markers}
        assert at == {("g", None): 2, ("h", None): 0, ("g", "a"): 1, ("g", "c"): 0}
        # with EI_parts in EI's place (not measured here) nothing is drawn, nothing fails
        dash.plane_metric = "ei_parts"
        assert dash.plane["groups"]["g"] == {}
    finally:
        dash.close()

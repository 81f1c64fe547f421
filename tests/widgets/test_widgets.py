"""Widget state of the causal dashboard (Python side; the browser side is tests/test_browser.py).

Most tests drive a real :class:`~causal_widgets.live.monitor.Monitor` with a stand-in
measurement (``measure_fn``) whose matrices are simple closed forms of the layer's
weights: ``E[i, j] = |W[j, i]|`` and ``S[i, j] = W[j, i]**2``. What the widget shows can
then be checked against the weights the model had at each recorded epoch, independently
of the engine. One test runs the real engine end to end on a 1->1 identity layer whose
EI is known exactly: log2(bins).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import threading
import time

import numpy as np
import pandas as pd
import pytest
import torch
import traitlets

import causal_widgets as cw
from causal_widgets.live.store import History
from causal_widgets.widgets.dashboard import CausalDashboard
from causal_widgets.widgets.frontend import _JS_DIR, esm_bundle
from causal_widgets.widgets.payloads import heatmap_payload, nearest, plane_payload
from causal_widgets.widgets.study_dashboard import StudyDashboard

TOL = 2e-6  # the widget rounds what it sends to 1e-6 bits


# --------------------------------------------------------------------------- stand-ins
class ClosedFormResult:
    """A LayerResult stand-in: E = |W|^T, S = (W^2)^T, nodes = row/column sums."""

    def __init__(self, weight: np.ndarray) -> None:
        w = np.asarray(weight, dtype=np.float64)
        self.ei_parts_matrix = np.abs(w).T
        self.sensitivity_matrix = (w**2).T
        n, m = self.ei_parts_matrix.shape
        e, s = self.ei_parts_matrix, self.sensitivity_matrix
        self.nodes = pd.DataFrame(
            {
                "side": ["input"] * n + ["output"] * m,
                "node": list(range(n)) + list(range(m)),
                "ei": list(2 * e.sum(1)) + list(2 * e.sum(0)),
                "ei_parts": list(e.sum(1)) + list(e.sum(0)),
                "sensitivity": list(s.sum(1)) + list(s.sum(0)),
            }
        )
        ei = 2 * e.sum()
        self.values = {
            "ei": ei,
            "ei_parts": e.sum(),
            "sensitivity": s.sum(),
            "degeneracy": s.sum() - ei,
            "integration": ei - e.sum(),
        }

    def to_frame(self) -> pd.DataFrame:
        rows = []
        for metric, v in self.values.items():
            rows.append(
                dict(layer="?", metric=metric, value=float(v), ci_low=float(v) - 0.1,
                     ci_high=float(v) + 0.1, method="closed-form", samples=0, in_bins=8,
                     out_bins=8, in_range=(0.0, 1.0), out_range=(0.0, 1.0), seed=0,
                     version="test")
            )
        return pd.DataFrame(rows)


def closed_form_measure(layer, **kwargs):
    w = layer.dense.weight
    if np.abs(w).max() > 50:
        raise ValueError("weights out of the stand-in's range")
    return ClosedFormResult(w)


def tiny_model(seed: int = 0) -> torch.nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.Sigmoid(), torch.nn.Linear(4, 2), torch.nn.Sigmoid()
    )
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.rand(p.shape, generator=g) * 2 - 1)
    return model


def example_input(seed: int = 1) -> torch.Tensor:
    return torch.rand(16, 3, generator=torch.Generator().manual_seed(seed))


def train(dash: CausalDashboard, model: torch.nn.Module, epochs: int) -> dict[int, dict]:
    """Record `epochs` epochs with fake SGD steps; return the weights at each record."""
    g = torch.Generator().manual_seed(2)
    weights = {}
    for epoch in range(epochs):
        weights[epoch] = {k: v.detach().clone().numpy() for k, v in model.state_dict().items()}
        dash.record(epoch, loss=1.0 / (epoch + 1), accuracy=epoch / 10)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * (torch.rand(p.shape, generator=g) - 0.5))
    return weights


@pytest.fixture
def live():
    """A live dashboard over a 3-4-2 model, recorded for 6 epochs, measured every 2nd."""
    model = tiny_model()
    dash = CausalDashboard(
        model, example_input(), every=2, in_range=(0.0, 1.0), drop_stale=False,
        measure_fn=closed_form_measure,
    )
    weights = train(dash, model, 6)
    dash.wait(timeout=60)
    yield dash, weights
    dash.close()


# --------------------------------------------------------------------------- live traits
def test_traits_update_as_results_arrive(live):
    dash, weights = live
    assert dash.epochs == [0, 2, 4]
    assert dash.epoch == 4, "the scrubber follows the newest measurement"
    assert [d["name"] for d in dash.layers] == ["0", "2"]
    assert [(d["n_in"], d["n_out"]) for d in dash.layers] == [(3, 4), (4, 2)]
    assert dash.selected_layer == "0"
    for epoch in (0, 2, 4):
        for name, key in (("0", "0.weight"), ("2", "2.weight")):
            k = dash.plane[name]["epoch"].index(epoch)
            w = weights[epoch][key]
            assert dash.plane[name]["ei_parts"][k] == pytest.approx(np.abs(w).sum(), abs=TOL)
            assert dash.plane[name]["sensitivity"][k] == pytest.approx((w**2).sum(), abs=TOL)
            assert dash.plane[name]["ei_lo"][k] == pytest.approx(
                2 * np.abs(w).sum() - 0.1, abs=TOL
            )
            assert dash.plane[name]["degeneracy"][k] == pytest.approx(
                (w**2).sum() - 2 * np.abs(w).sum(), abs=TOL
            )
            # the front-end derives these itself: they are not sent
            assert "integration" not in dash.plane[name]
    assert dash.scalars["epoch"] == list(range(6)), "scalars of unmeasured epochs too"
    assert dash.scalars["loss"] == pytest.approx([1.0 / (e + 1) for e in range(6)])
    assert dash.status["queued"] == 0 and dash.status["measured_epochs"] == 3
    assert dash.status["state"] == "idle"
    assert dash.errors == []
    assert set(dash.results["epoch"]) == {0, 2, 4}
    # everything synced is strict JSON (no NaN reaches the browser)
    state = dash.get_state()
    json.dumps({k: v for k, v in state.items() if k != "layout"}, allow_nan=False)


def test_heatmap_follows_epoch_and_layer(live):
    dash, weights = live
    dash.epoch = 0
    hm = dash.heatmap
    w0 = weights[0]["0.weight"]  # (4, 3): rows are output neurons
    assert (hm["layer"], hm["epoch"], hm["n_in"], hm["n_out"]) == ("0", 0, 3, 4)
    np.testing.assert_allclose(hm["ei_parts"], np.abs(w0).T, atol=TOL)
    np.testing.assert_allclose(hm["sensitivity"], (w0**2).T, atol=TOL)
    np.testing.assert_allclose(hm["difference"], (w0**2).T - np.abs(w0).T, atol=TOL)
    np.testing.assert_allclose(hm["nodes"]["input"]["ei_parts"], np.abs(w0).sum(0), atol=TOL)
    np.testing.assert_allclose(hm["nodes"]["output"]["sensitivity"], (w0**2).sum(1), atol=TOL)
    np.testing.assert_allclose(hm["nodes"]["output"]["ei"], 2 * np.abs(w0).sum(1), atol=TOL)

    dash.epoch = 4
    np.testing.assert_allclose(dash.heatmap["ei_parts"], np.abs(weights[4]["0.weight"]).T,
                               atol=TOL)
    assert not np.allclose(weights[4]["0.weight"], w0)

    dash.selected_layer = "2"
    hm = dash.heatmap
    assert (hm["layer"], hm["n_in"], hm["n_out"]) == ("2", 4, 2)
    np.testing.assert_allclose(hm["ei_parts"], np.abs(weights[4]["2.weight"]).T, atol=TOL)


def test_unmeasured_epoch_shows_the_nearest_measured_one(live):
    dash, weights = live
    dash.epoch = 3  # between 2 and 4: ties go to the earlier epoch
    assert dash.heatmap["epoch"] == 2 and dash.heatmap["requested_epoch"] == 3
    assert "showing epoch 2" in dash.heatmap["message"]
    np.testing.assert_allclose(dash.heatmap["ei_parts"], np.abs(weights[2]["0.weight"]).T,
                               atol=TOL)
    dash.epoch = 100
    assert dash.heatmap["epoch"] == 4


def test_pinned_edge_gives_its_history(live):
    dash, weights = live
    dash.pinned_edge = [2, 1]  # input 2 -> output 1 of layer "0": W[1, 2]
    eh = dash.edge_history
    assert (eh["layer"], eh["i"], eh["j"], eh["epoch"]) == ("0", 2, 1, [0, 2, 4])
    np.testing.assert_allclose(
        eh["ei_parts"], [abs(weights[e]["0.weight"][1, 2]) for e in (0, 2, 4)], atol=TOL
    )
    np.testing.assert_allclose(
        eh["sensitivity"], [weights[e]["0.weight"][1, 2] ** 2 for e in (0, 2, 4)], atol=TOL
    )
    dash.pinned_edge = [7, 0]
    assert "outside" in dash.edge_history["message"]
    dash.pinned_edge = [0, 0]
    dash.selected_layer = "2"  # edges belong to a layer: a new layer unpins
    assert dash.pinned_edge == [] and dash.edge_history == {}


def test_scrubbing_back_stops_following_new_epochs():
    model = tiny_model()
    dash = CausalDashboard(model, example_input(), every=1, in_range=(0.0, 1.0),
                           drop_stale=False, measure_fn=closed_form_measure)
    try:
        train(dash, model, 2)
        dash.wait(timeout=60)
        assert dash.epoch == 1
        dash.epoch = 0  # the user looks back
        dash.record(2, loss=0.1)
        dash.wait(timeout=60)
        assert dash.epochs == [0, 1, 2] and dash.epoch == 0
        dash.epoch = 2  # back at the end: follow again
        dash.record(3, loss=0.1)
        dash.wait(timeout=60)
        assert dash.epoch == 3
    finally:
        dash.close()


def test_errors_reach_the_errors_trait():
    model = tiny_model()
    dash = CausalDashboard(model, example_input(), every=1, in_range=(0.0, 1.0),
                           drop_stale=False, measure_fn=closed_form_measure)
    try:
        dash.record(0, loss=1.0)
        with torch.no_grad():
            model[2].weight[0, 0] = 1000.0  # the stand-in refuses these weights
        dash.record(1, loss=0.5)
        dash.wait(timeout=60)
        assert len(dash.errors) == 1
        err = dash.errors[0]
        assert (err["epoch"], err["layer"]) == (1, "2")
        assert "out of the stand-in's range" in err["message"]
        assert dash.status["errors"] == 1
        assert dash.epochs == [0, 1], "the other layer is still measured at epoch 1"
        dash.selected_layer = "2"
        dash.epoch = 1
        assert dash.heatmap["epoch"] == 0, "layer 2 has no epoch 1: nearest measured shown"
    finally:
        dash.close()


def test_stale_snapshots_are_reported_in_status():
    release = threading.Event()

    def slow_measure(layer, **kwargs):
        release.wait(30)
        return closed_form_measure(layer)

    model = tiny_model()
    dash = CausalDashboard(model, example_input(), every=1, in_range=(0.0, 1.0),
                           max_pending=1, measure_fn=slow_measure)
    try:
        for epoch in range(6):
            dash.record(epoch, loss=1.0)
            time.sleep(0.05)
        release.set()
        dash.wait(timeout=60)
        assert dash.status["dropped"] >= 1
        assert "stale" in dash.status["notice"]
        assert set(dash.status["dropped_epochs"]) <= set(range(6))
        assert 5 in dash.epochs, "the newest snapshot is never dropped"
    finally:
        release.set()
        dash.close()


# --------------------------------------------------------------------------- save / load
def test_save_load_round_trip(live, tmp_path):
    dash, _ = live
    dash.save(tmp_path / "run")
    loaded = CausalDashboard.load(tmp_path / "run")
    assert loaded.monitor is None
    assert loaded.epochs == dash.epochs
    assert loaded.epoch == dash.epochs[-1]
    key = ["epoch", "layer", "metric"]
    cols = ["epoch", "layer", "metric", "value", "ci_low", "ci_high", "loss", "accuracy"]
    a = dash.results[cols].sort_values(key).reset_index(drop=True)
    b = loaded.results[cols].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    assert loaded.plane == dash.plane
    assert loaded.scalars == dash.scalars
    for epoch in (0, 2, 4):
        for layer in ("0", "2"):
            dash.epoch, loaded.epoch = epoch, epoch
            dash.selected_layer, loaded.selected_layer = layer, layer
            for k in ("ei_parts", "sensitivity", "difference", "nodes", "epoch", "layer"):
                assert loaded.heatmap[k] == dash.heatmap[k]
    loaded.pinned_edge = [1, 0]
    assert loaded.edge_history["epoch"] == [0, 2, 4]
    assert loaded.status["state"] == "loaded"
    with pytest.raises(RuntimeError, match="no model"):
        loaded.record(6, loss=0.0)
    loaded.close()


def test_load_without_a_model_and_missing_path(tmp_path):
    h = History()
    h.set_layers([dict(name="a", n_in=2, n_out=1, kind="linear")])
    h.add_result(3, "a", ClosedFormResult(np.array([[0.5, -2.0]])), {"loss": 0.25})
    h.save(tmp_path / "h")
    dash = CausalDashboard.load(tmp_path / "h")
    assert dash.epochs == [3] and dash.selected_layer == "a"
    np.testing.assert_allclose(dash.heatmap["ei_parts"], [[0.5], [2.0]])
    np.testing.assert_allclose(dash.heatmap["sensitivity"], [[0.25], [4.0]])
    with pytest.raises(FileNotFoundError):
        CausalDashboard.load(tmp_path / "nowhere")


# --------------------------------------------------------------------------- payloads
def test_plane_payload_by_hand():
    rows = [
        # layer, epoch, metric, value, ci_low, ci_high
        ("L", 5, "ei_parts", 1.0, 0.9, 1.2),
        ("L", 5, "sensitivity", 3.0, 2.5, 3.1),
        ("L", 0, "ei_parts", 0.5, 0.4, 0.6),
        ("L", 0, "sensitivity", float("nan"), np.nan, np.nan),
        ("M", 0, "ei", 2.0, 1.9, 2.1),
        ("M", 0, "whatever", 9.0, 9.0, 9.0),
    ]
    frame = pd.DataFrame(rows, columns=["layer", "epoch", "metric", "value", "ci_low", "ci_high"])
    p = plane_payload(frame)
    assert list(p) == ["L", "M"]
    assert p["L"]["epoch"] == [0, 5], "sorted by epoch"
    assert p["L"]["ei_parts"] == [0.5, 1.0]
    assert p["L"]["sensitivity"] == [None, 3.0], "NaN becomes null, never a number"
    assert p["L"]["ei"] == [None, None]
    assert p["L"]["sensitivity_lo"] == [None, 2.5] and p["L"]["ei_parts_hi"] == [0.6, 1.2]
    assert p["L"]["degeneracy"] == [None, None]
    assert p["M"]["epoch"] == [0] and p["M"]["ei"] == [2.0] and p["M"]["ei_hi"] == [2.1]
    assert "whatever" not in p["M"]
    # the plane coordinates travel computed (engine/plane.py): x = M/sqrt2,
    # y = (2S - M)/sqrt2, the box from the CI ends; null where M or S is missing
    r2 = math.sqrt(2)
    xy = p["L"]["xy"]["ei_parts"]
    assert xy["x"][0] is None and xy["y"][0] is None and xy["y1"][0] is None
    assert xy["x"][1] == pytest.approx(1.0 / r2, abs=TOL)
    assert xy["y"][1] == pytest.approx((2 * 3.0 - 1.0) / r2, abs=TOL)
    assert xy["x0"][1] == pytest.approx(0.9 / r2, abs=TOL)
    assert xy["x1"][1] == pytest.approx(1.2 / r2, abs=TOL)
    assert xy["y0"][1] == pytest.approx((2 * 2.5 - 1.2) / r2, abs=TOL)
    assert xy["y1"][1] == pytest.approx((2 * 3.1 - 0.9) / r2, abs=TOL)
    assert p["L"]["xy"]["ei"]["x"] == [None, None]  # EI was not measured
    assert p["M"]["xy"]["ei"]["y"] == [None], "no sensitivity, no point"
    assert plane_payload(frame.iloc[0:0]) == {}


def test_heatmap_payload_reduces_wide_layers_to_block_means():
    n_in, n_out = 200, 10
    e = np.arange(n_in * n_out, dtype=float).reshape(n_in, n_out) / 1000
    s = 2 * e
    hm = heatmap_payload(
        {"ei_parts": e, "sensitivity": s, "nodes": None},
        layer="big", epoch=7, requested_epoch=7, max_side=80,
    )
    assert hm["row_step"] == 3 and hm["col_step"] == 1  # ceil(200 / 80)
    assert hm["row_start"] == list(range(0, 200, 3))
    assert len(hm["ei_parts"]) == 67 and len(hm["ei_parts"][0]) == 10
    # block 0 holds rows 0-2; the last block rows 198-199 only
    assert hm["ei_parts"][0][4] == pytest.approx(np.mean([e[0, 4], e[1, 4], e[2, 4]]))
    assert hm["ei_parts"][-1][9] == pytest.approx(np.mean([e[198, 9], e[199, 9]]))
    assert hm["difference"][-1][9] == pytest.approx(np.mean([e[198, 9], e[199, 9]]))
    # no nodes frame: margins fall back to the matrices' row / column sums (block means)
    assert hm["nodes"]["output"]["ei_parts"] == pytest.approx(list(e.sum(0)), abs=TOL)
    assert hm["nodes"]["input"]["sensitivity"][0] == pytest.approx(s[0:3].sum(1).mean())
    assert hm["nodes"]["input"]["ei"] is None
    assert heatmap_payload(None, layer="x", epoch=None, requested_epoch=0)["available"] is False


def test_nearest():
    assert nearest([], 3) is None
    assert nearest([0, 10, 20], -5) == 0
    assert nearest([0, 10, 20], 25) == 20
    assert nearest([0, 10, 20], 5) == 0  # tie: the earlier one
    assert nearest([0, 10, 20], 6) == 10


def test_updates_from_the_worker_are_coalesced():
    h = History()
    dash = CausalDashboard.from_history(h)
    pushes = []
    original = dash._push

    def counting_push():
        pushes.append(1)
        original()

    dash._push = counting_push
    try:
        h.set_layers([dict(name="a", n_in=2, n_out=1, kind="linear")])
        for epoch in range(200):  # a burst of 200 results, as from a big network
            h.add_result(epoch, "a", ClosedFormResult(np.array([[0.5, -2.0]])), {})
            dash._on_update()
        deadline = time.monotonic() + 20
        while dash.epochs != list(range(200)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert dash.epochs == list(range(200)), "the last update always lands"
        assert len(pushes) <= 3, f"{len(pushes)} pushes for one burst"
    finally:
        dash.close()


def test_scrubbing_is_not_blocked_by_a_slow_refresh():
    h = History()
    h.set_layers([dict(name="a", n_in=2, n_out=1, kind="linear")])
    for epoch in (0, 1):
        h.add_result(epoch, "a", ClosedFormResult(np.array([[0.5, -2.0 * (epoch + 1)]])), {})
    dash = CausalDashboard.from_history(h)
    entered, release = threading.Event(), threading.Event()
    real_frame = h.frame

    def slow_frame():  # a long history: reading it takes a while
        entered.set()
        release.wait(30)
        return real_frame()

    h.frame = slow_frame
    h.add_result(2, "a", ClosedFormResult(np.array([[0.5, -6.0]])), {})
    pusher = threading.Thread(target=dash._push)
    pusher.start()
    try:
        assert entered.wait(10)
        scrub = threading.Thread(target=lambda: setattr(dash, "epoch", 0))
        scrub.start()
        scrub.join(10)  # generous: it must not wait for the refresh at all
        assert not scrub.is_alive(), "scrubbing waited for the history refresh"
        np.testing.assert_allclose(dash.heatmap["ei_parts"], [[0.5], [2.0]])
    finally:
        release.set()
        pusher.join(30)
    assert dash.epochs == [0, 1, 2]
    assert dash.epoch == 0, "the user scrubbed back: no longer following"
    dash.close()


# --------------------------------------------------------------------------- API edges
def test_bad_arguments_name_the_fix():
    with pytest.raises(TypeError, match="load"):
        CausalDashboard()
    with pytest.raises(TypeError, match="example input"):
        CausalDashboard(tiny_model())
    with pytest.raises(ValueError, match="every"):
        CausalDashboard(tiny_model(), example_input(), every=0)
    with pytest.raises(TypeError, match="torch.nn.Module"):  # from the Monitor
        CausalDashboard(lambda x: x, example_input())
    dash = CausalDashboard.from_history(History())
    with pytest.raises(traitlets.TraitError, match="ei_parts"):
        dash.plane_metric = "phi"
    with pytest.raises(traitlets.TraitError, match="difference"):
        dash.heatmap_kind = "phi"
    dash.close()


def test_record_checks_its_arguments():
    model = tiny_model()
    dash = CausalDashboard(model, example_input(), in_range=(0.0, 1.0),
                           measure_fn=closed_form_measure)
    try:
        with pytest.raises(TypeError, match="epoch must be an int"):
            dash.record(1.5, loss=0.1)
        with pytest.raises(TypeError, match="loss"):
            dash.record(0, loss="high")
        dash.record(0, loss=torch.tensor(0.75))  # one-element tensors are fine
        dash.wait(timeout=60)
        assert dash.scalars["loss"] == [0.75]
    finally:
        dash.close()
    with pytest.raises(RuntimeError, match="closed"):
        dash.record(1, loss=0.1)


def test_attach_returns_a_dashboard_and_an_epoch_counting_hook():
    model = tiny_model()
    dash, hook = cw.attach(model, example_input(), every=1, display=False, drop_stale=False,
                           in_range=(0.0, 1.0), measure_fn=closed_form_measure)
    try:
        assert isinstance(dash, CausalDashboard)
        hook(loss=0.9)
        hook(loss=0.8)
        hook(10, loss=0.1)
        hook(loss=0.05)
        dash.wait(timeout=60)
        assert dash.scalars["epoch"] == [0, 1, 10, 11]
        assert dash.epochs == [0, 1, 10, 11]
    finally:
        dash.close()


def test_lightning_callback_without_lightning():
    class FakeTrainer:
        def __init__(self, epoch, metrics):
            self.current_epoch = epoch
            self.callback_metrics = metrics

    model = tiny_model()
    dash = CausalDashboard(model, example_input(), every=1, in_range=(0.0, 1.0),
                           measure_fn=closed_form_measure)
    try:
        cb = cw.CausalDashboardCallback(dash)
        cb.on_train_epoch_end(FakeTrainer(0, {"train_loss": torch.tensor(0.5),
                                              "train_acc": torch.tensor(0.25)}), None)
        cb.on_train_epoch_end(FakeTrainer(1, {"loss": 0.4}), None)
        cb.on_train_end(FakeTrainer(1, {}), None)
        dash.wait(timeout=60)
        sc = dash.history.scalars().set_index("epoch")
        assert sc.loc[0, "loss"] == 0.5 and sc.loc[0, "accuracy"] == 0.25
        assert sc.loc[1, "loss"] == pytest.approx(0.4) and math.isnan(sc.loc[1, "accuracy"])
        assert dash.epochs == [0, 1]
        with pytest.raises(TypeError, match="record"):
            cw.CausalDashboardCallback(object())
    finally:
        dash.close()


def test_close_stops_measuring_but_keeps_the_view():
    model = tiny_model()
    dash = CausalDashboard(model, example_input(), in_range=(0.0, 1.0),
                           measure_fn=closed_form_measure)
    dash.record(0, loss=1.0)
    dash.wait(timeout=60)
    dash.close()
    assert dash.comm is not None, "the widget stays displayed and scrubbable"
    assert dash.status["state"] == "closed"
    dash.epoch = 0
    assert dash.heatmap["available"]
    dash.close(widget=True)
    assert dash.comm is None


def test_esm_and_css_are_packaged():
    dash = CausalDashboard.from_history(History())
    assert "export default" in dash._esm and "cw-dashboard" in dash._esm
    assert ".cw-dashboard" in dash._css
    dash.close(widget=True)


SHARED_JS = _JS_DIR / "plot_common.js"


def _shared_names() -> list[str]:
    """The helpers js/plot_common.js exports (what dashboard.js and study.js share)."""
    text = SHARED_JS.read_text(encoding="utf-8")
    return re.findall(r"^export (?:function|const) ([A-Za-z_$][\w$]*)", text, re.M)


@pytest.mark.parametrize("widget", [CausalDashboard, StudyDashboard])
def test_esm_is_one_self_contained_module(widget, tmp_path):
    """anywidget loads one module per widget: the shared helpers are inlined, once each."""
    esm = widget._esm
    assert isinstance(esm, str) and "export default" in esm
    assert not re.search(r"^\s*import\b", esm, re.M), "an import line is left in the bundle"
    assert "plot_common.js" in esm  # the marker of the inlined module
    names = _shared_names()
    assert {"linearScale", "niceTicks", "nearestEpoch", "h", "s", "viewCore"} <= set(names)
    for name in names:
        found = re.findall(rf"^(?:export )?(?:function|const) {re.escape(name)}\b", esm, re.M)
        assert len(found) == 1, (name, found)
    inlined = esm[esm.index("// ---- plot_common.js"): esm.index("// ---- end of plot_common.js")]
    assert not re.search(r"^export\b", inlined, re.M)
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    # node parses and links it as a module: a file of its own, no import to resolve
    path = tmp_path / "bundle.mjs"
    path.write_text(esm, encoding="utf-8")
    subprocess.run([node, "--check", str(path)], check=True, capture_output=True, timeout=60)
    out = subprocess.run(
        [node, "--input-type=module", "-e",
         f"const m = await import({json.dumps(path.as_uri())});"
         "console.log(typeof m.default.render, m.nearestEpoch([0, 10, 20], 16));"],
        check=True, capture_output=True, text=True, timeout=60,
    )
    assert out.stdout.split() == ["function", "20"]  # an inlined helper runs


def test_widget_css_is_the_shared_look_then_its_own():
    common = (_JS_DIR / "common.css").read_text(encoding="utf-8")
    for widget, own in ((CausalDashboard, "dashboard.css"), (StudyDashboard, "study.css")):
        css = widget._css
        assert css.startswith(common)
        assert css.endswith((_JS_DIR / own).read_text(encoding="utf-8"))
    assert ".cw-study" in StudyDashboard._css and ".cw-dashboard" in CausalDashboard._css


def _module(tmp_path, main: str, shared: str):
    """main.js and the shared.js it imports, in tmp_path; the path of main.js."""
    (tmp_path / "shared.js").write_text(shared, encoding="utf-8")
    path = tmp_path / "main.js"
    path.write_text(main, encoding="utf-8")
    return path


def test_esm_bundle_inlines_one_import_line(tmp_path):
    path = _module(
        tmp_path,
        'import { a, b } from "./shared.js";\nexport const c = a() + b;\nexport default { c };\n',
        "const hidden = 1;\nexport function a() {\n  return hidden;\n}\nexport const b = 2;\n",
    )
    out = esm_bundle(path)
    assert not re.search(r"^\s*import\b", out, re.M)
    assert "\nfunction a() {" in out and "\nconst b = 2;" in out and "const hidden = 1;" in out
    assert "export const c" in out and "export default" in out  # the module's own exports stay


@pytest.mark.parametrize(
    ("main", "shared", "message"),
    [
        ('import { a as z } from "./shared.js";\n', "export const a = 1;\n", "no renaming"),
        ('import { q } from "./shared.js";\n', "export const a = 1;\n", "exports no 'q'"),
        ('import { a } from "./missing.js";\n', "", "no file"),
        ('import { a } from "./shared.js";\n', 'import x from "./y.js";\nexport const a = 1;\n',
         "one level"),
        ('import { a } from "./shared.js";\n', "export const a = 1;\nexport default a;\n",
         "cannot inline shared.js's 'export default a;'"),
        ('import { a } from "./shared.js";\n', "const a = 1;\nexport { a };\n", "export { a }"),
        ('import { a } from "./shared.js";\nconst a = 2;\n', "export const a = 1;\n",
         "declares \\['a'\\] again"),
        ('import { a } from "./shared.js";\nimport { a } from "./shared.js";\n',
         "export const a = 1;\n", "imported twice"),
        ('import a from "./shared.js";\n', "export const a = 1;\n", "only single-line"),
        ('import {\n  a,\n} from "./shared.js";\n', "export const a = 1;\n", "only single-line"),
    ],
)
def test_esm_bundle_refuses_what_it_cannot_inline(tmp_path, main, shared, message):
    path = _module(tmp_path, main, shared)
    with pytest.raises(ValueError, match=message):
        esm_bundle(path)


# --------------------------------------------------------------------------- real engine
def test_real_engine_identity_edge_has_log2_bins_bits():
    """1->1 identity layer, w = 1, b = 0, in_range = out_range = (0, 1): every input bin maps
    onto exactly one output bin, so E = S = EI = log2(bins) bits (metrics.md)."""
    model = torch.nn.Sequential(torch.nn.Linear(1, 1))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.zero_()
    bins = 8
    dash = CausalDashboard(model, torch.rand(8, 1, generator=torch.Generator().manual_seed(0)),
                           bins=bins, in_range=(0.0, 1.0), out_range=(0.0, 1.0),
                           metrics=["ei_parts", "sensitivity"])
    try:
        dash.record(0, loss=0.0)
        dash.wait(timeout=120)
        assert dash.errors == [], dash.errors
        assert dash.heatmap["ei_parts"] == [[pytest.approx(math.log2(bins), abs=1e-4)]]
        assert dash.heatmap["sensitivity"] == [[pytest.approx(math.log2(bins), abs=1e-4)]]
        assert dash.plane["0"]["ei_parts"] == [pytest.approx(math.log2(bins), abs=1e-4)]
    finally:
        dash.close()

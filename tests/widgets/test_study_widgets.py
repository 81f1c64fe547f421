"""Widget state of the study dashboard (Python side; the browser side is
tests/test_browser_study.py and js/tests/study.test.mjs).

One small study (Iris 4-5-5-3, label noise 0 and 1, two seeds, 30 epochs measured every
10th) is trained once for the module with the serial executor. Every number the widget
sends is checked against numbers worked out here from ``data.results`` / ``data.scalars``
with plain numpy (the causal-plane coordinates x = M/sqrt2, y = (2S - M)/sqrt2 of each run,
then mean and sample sd over the two seeds), not with the widget's own code.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import traitlets

import causal_widgets as cw
from causal_widgets.studies.spec import Study
from causal_widgets.studies.sweeps import load_study, sweep
from causal_widgets.widgets.study_dashboard import StudyDashboard

TOL = 2e-6  # the widget rounds plane coordinates to 1e-6 bits
SQ2 = math.sqrt(2.0)


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("study") / "tiny"
    s = Study("tiny", grid={"label_noise": [0.0, 1.0], "seed": [0, 1]},
              settings={"dataset": "iris", "epochs": 30, "every": 10, "samples": 1024})
    sweep(s, out, executor="serial", figures=False, log=lambda msg: None)
    return out


@pytest.fixture(scope="module")
def data(study_dir: Path):
    return load_study(study_dir)


@pytest.fixture()
def dash(data) -> StudyDashboard:
    d = StudyDashboard(data)
    yield d
    d.close()


# --------------------------------------------------------------------------- by hand
def run_point(data, run_id: str, layer: str, epoch: int, metric: str = "ei") -> tuple:
    """(x, y) of one run's layer at one epoch, straight from the tidy results."""
    r = data.results
    rows = r[(r.run_id == run_id) & (r.layer == layer) & (r.epoch == epoch)]
    m = float(rows.loc[rows.metric == metric, "value"].iloc[0])
    s = float(rows.loc[rows.metric == "sensitivity", "value"].iloc[0])
    return m / SQ2, (2 * s - m) / SQ2


def group_stats(data, group: str, layer: str, epoch: int, metric: str = "ei") -> dict:
    """Mean and sample sd over the group's runs of (x, y), by hand with numpy."""
    rids = sorted(data.points.loc[(data.points.group == group)
                                  & (data.points.status == "complete"), "run_id"])
    xy = np.array([run_point(data, rid, layer, epoch, metric) for rid in rids])
    sd = xy.std(axis=0, ddof=1) if len(xy) > 1 else np.zeros(2)
    return {"x": xy[:, 0].mean(), "y": xy[:, 1].mean(), "x_sd": sd[0], "y_sd": sd[1],
            "n": len(xy)}


def close(a: float, b: float, tol: float = TOL) -> bool:
    return abs(a - b) <= tol


# --------------------------------------------------------------------------- tests
def test_public_name_and_load(study_dir: Path, data) -> None:
    assert cw.StudyDashboard is StudyDashboard
    d = StudyDashboard.load(study_dir)
    try:
        assert d.title == "Study · tiny"
        assert d.error == ""
        assert [g["name"] for g in d.groups] == ["label_noise=0", "label_noise=1"]
        assert [g["settings"] for g in d.groups] == [{"label_noise": 0.0}, {"label_noise": 1.0}]
        assert [(g["n_runs"], g["n_complete"], g["colour"]) for g in d.groups] == [
            (2, 2, 0), (2, 2, 1)]
        assert sorted(r["run_id"] for r in d.runs) == sorted(data.points.run_id)
        assert {(r["group"], r["seed"]) for r in d.runs} == {
            (f"label_noise={n}", s) for n in (0, 1) for s in (0, 1)}
        assert d.layers == ["fc1", "fc2", "fc3"]
        # epochs 0..29 measured every 10th
        assert d.epochs == sorted(int(e) for e in data.results.epoch.unique()) == [0, 10, 20]
        # defaults: everything shown, no single runs, the newest epoch, whole-layer EI
        assert d.selected_groups == ["label_noise=0", "label_noise=1"]
        assert d.selected_runs == []
        assert d.layer_filter == ["fc1", "fc2", "fc3"]
        assert d.epoch == 20
        assert d.plane_metric == "ei"
        assert StudyDashboard.load(study_dir, title="mine").title == "mine"
    finally:
        d.close()


def test_group_means_are_the_seed_means(dash: StudyDashboard, data) -> None:
    plane = dash.plane
    assert plane["metric"] == "ei"
    assert list(plane["groups"]) == ["label_noise=0", "label_noise=1"]
    assert plane["runs"] == {}
    checked = 0
    for group, layers in plane["groups"].items():
        assert list(layers) == ["fc1", "fc2", "fc3"]
        for layer, d in layers.items():
            assert d["epoch"] == [0, 10, 20]
            for k, epoch in enumerate(d["epoch"]):
                want = group_stats(data, group, layer, epoch)
                assert d["n"][k] == want["n"] == 2
                for key in ("x", "y", "x_sd", "y_sd"):
                    assert close(d[key][k], want[key]), (group, layer, epoch, key)
                checked += 1
    assert checked == 2 * 3 * 3
    # the seeds really differ somewhere, so the spread is not trivially 0
    assert max(max(d["x_sd"]) for L in plane["groups"].values() for d in L.values()) > 1e-3


def test_payload_agrees_with_plane_summary(dash: StudyDashboard, data) -> None:
    summary = data.plane("ei")
    for row in summary.itertuples():
        d = dash.plane["groups"][row.group][row.layer]
        k = d["epoch"].index(int(row.epoch))
        assert close(d["x"][k], row.x) and close(d["y"][k], row.y)
        assert close(d["x_sd"][k], row.x_sd) and close(d["y_sd"][k], row.y_sd)


def test_markers_follow_the_epoch(dash: StudyDashboard, data) -> None:
    def means(epoch_shown: int) -> None:
        ms = [m for m in dash.markers if m["run_id"] is None]
        assert len(ms) == 2 * 3
        for m in ms:
            assert m["epoch"] == epoch_shown
            want = group_stats(data, m["group"], m["layer"], epoch_shown)
            for key in ("x", "y", "x_sd", "y_sd"):
                assert close(m[key], want[key]), (m, key)

    means(20)
    before = {(m["group"], m["layer"]): (m["x"], m["y"]) for m in dash.markers}
    dash.epoch = 10
    means(10)
    after = {(m["group"], m["layer"]): (m["x"], m["y"]) for m in dash.markers}
    assert after != before
    # the nearest measured epoch (ties to the earlier), clamped at the ends
    for asked, shown in ((14, 10), (15, 10), (16, 20), (-5, 0), (99, 20)):
        dash.epoch = asked
        means(shown)


def test_selecting_groups_changes_plane_curves_and_markers(dash: StudyDashboard) -> None:
    dash.selected_groups = ["label_noise=1"]
    assert list(dash.plane["groups"]) == ["label_noise=1"]
    assert list(dash.curves) == ["label_noise=1"]
    assert {m["group"] for m in dash.markers} == {"label_noise=1"}
    dash.selected_groups = []
    assert dash.plane["groups"] == {} and dash.curves == {} and dash.markers == []
    # the canonical (study) order whatever order they were ticked in; duplicates dropped
    dash.selected_groups = ["label_noise=1", "label_noise=0", "label_noise=1"]
    assert dash.selected_groups == ["label_noise=1", "label_noise=0"]
    assert list(dash.plane["groups"]) == ["label_noise=0", "label_noise=1"]


def test_selected_runs_are_overlaid_with_their_own_points(dash: StudyDashboard, data) -> None:
    rid = data.points.run_id.iloc[3]
    group = data.points.group.iloc[3]
    dash.selected_runs = [rid]
    runs = dash.plane["runs"]
    assert list(runs) == [rid]
    assert runs[rid]["group"] == group
    assert runs[rid]["seed"] == int(data.points.seed.iloc[3])
    for layer, d in runs[rid]["layers"].items():
        assert d["epoch"] == [0, 10, 20]
        for k, epoch in enumerate(d["epoch"]):
            x, y = run_point(data, rid, layer, epoch)
            assert close(d["x"][k], x) and close(d["y"][k], y)
    dash.epoch = 10
    run_markers = [m for m in dash.markers if m["run_id"] == rid]
    assert len(run_markers) == 3
    for m in run_markers:
        x, y = run_point(data, rid, m["layer"], 10)
        assert m["epoch"] == 10 and close(m["x"], x) and close(m["y"], y)
    # a picked run stays drawn when its configuration is hidden
    dash.selected_groups = []
    assert list(dash.plane["runs"]) == [rid]
    dash.selected_runs = []
    assert dash.plane["runs"] == {}
    assert not [m for m in dash.markers if m["run_id"]]


def test_layer_filter_and_metric(dash: StudyDashboard, data) -> None:
    dash.layer_filter = ["fc3"]
    assert all(list(L) == ["fc3"] for L in dash.plane["groups"].values())
    assert {m["layer"] for m in dash.markers} == {"fc3"}
    dash.layer_filter = ["fc3", "fc1"]
    assert dash.layer_filter == ["fc3", "fc1"]
    assert all(list(L) == ["fc1", "fc3"] for L in dash.plane["groups"].values())  # network order
    dash.plane_metric = "ei_parts"
    assert dash.plane["metric"] == "ei_parts"
    for group, layers in dash.plane["groups"].items():
        for layer, d in layers.items():
            for k, epoch in enumerate(d["epoch"]):
                want = group_stats(data, group, layer, epoch, metric="ei_parts")
                for key in ("x", "y", "x_sd", "y_sd"):
                    assert close(d[key][k], want[key])
    # EI_parts differs from EI: the horizontal coordinate moved
    assert not close(dash.plane["groups"]["label_noise=0"]["fc1"]["x"][0],
                     group_stats(data, "label_noise=0", "fc1", 0)["x"])


def test_curves_are_mean_and_sd_over_seeds(dash: StudyDashboard, data) -> None:
    sc = data.scalars
    for group, c in dash.curves.items():
        part = sc[sc.group == group]
        epochs = sorted(int(e) for e in part.epoch.unique())
        assert c["epoch"] == epochs
        for key in ("loss", "test_accuracy"):
            for k, epoch in enumerate(epochs):
                vals = part.loc[part.epoch == epoch, key].to_numpy(dtype=float)
                assert len(vals) == 2 and c["n"][k] == 2
                assert math.isclose(c[key][k], vals.mean(), rel_tol=1e-12, abs_tol=1e-12)
                assert math.isclose(c[f"{key}_sd"][k], vals.std(ddof=1),
                                    rel_tol=1e-9, abs_tol=1e-12)


def test_state_is_plain_json(dash: StudyDashboard, data) -> None:
    dash.selected_runs = list(data.points.run_id[:2])
    state = {k: v for k, v in dash.get_state().items() if not k.startswith("_")}
    text = json.dumps(state, allow_nan=False)  # NaN would break the browser's JSON
    assert "label_noise=1" in text


def test_bad_input_names_the_fix(tmp_path: Path, dash: StudyDashboard) -> None:
    with pytest.raises(FileNotFoundError, match="study.json"):
        StudyDashboard.load(tmp_path / "nowhere")
    with pytest.raises(TypeError, match=r"StudyDashboard\.load"):
        StudyDashboard(str(tmp_path))
    with pytest.raises(TypeError, match="load_study"):
        StudyDashboard({"results": 1})
    with pytest.raises(traitlets.TraitError, match="'ei' or 'ei_parts'"):
        dash.plane_metric = "sensitivity"
    with pytest.raises(traitlets.TraitError, match="unknown configuration.*'label_noise=0'"):
        dash.selected_groups = ["label_noise=0.5"]
    with pytest.raises(traitlets.TraitError, match="unknown run id"):
        dash.selected_runs = ["deadbeef"]
    with pytest.raises(traitlets.TraitError, match="unknown layer.*'fc1'"):
        dash.layer_filter = ["fc9"]
    # a refused value leaves the state as it was
    assert dash.selected_groups == ["label_noise=0", "label_noise=1"]
    assert dash.plane_metric == "ei"


def test_missing_runs_are_reported_and_the_rest_shown(tmp_path: Path, study_dir: Path,
                                                      data) -> None:
    copy = tmp_path / "partial"
    shutil.copytree(study_dir, copy)
    gone = data.points.run_id.iloc[0]  # label_noise=0, seed 0
    shutil.rmtree(copy / "results" / f"run_id={gone}")
    d = StudyDashboard.load(copy)
    try:
        assert "1 of 4 runs have no results yet" in d.error and gone in d.error
        assert "rerun" in d.error
        g0 = d.groups[0]
        assert (g0["n_runs"], g0["n_complete"]) == (2, 1)
        assert [r["status"] for r in d.runs if r["run_id"] == gone] == ["missing"]
        # the group is now its one remaining run: mean = that run, sd = 0
        other = data.points.run_id.iloc[1]
        e = d.plane["groups"]["label_noise=0"]["fc2"]
        assert e["n"] == [1, 1, 1] and e["x_sd"] == [0.0, 0.0, 0.0]
        x, y = run_point(data, other, "fc2", 10)
        assert close(e["x"][1], x) and close(e["y"][1], y)
        with pytest.raises(traitlets.TraitError):
            d.selected_runs = ["nope"]
        d.selected_runs = [gone]  # known but missing: nothing to draw, no crash
        assert d.plane["runs"][gone]["layers"] == {}
    finally:
        d.close()


def test_a_study_without_finished_runs_shows_an_error(tmp_path: Path, study_dir: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(study_dir / "study.json", empty / "study.json")
    d = StudyDashboard.load(empty)
    try:
        assert "no finished runs" in d.error and "sweep" in d.error
        assert d.plane["groups"] == {"label_noise=0": {}, "label_noise=1": {}}
        assert d.epochs == [] and d.layers == [] and d.markers == [] and d.curves == {}
        assert len(d.runs) == 4 and all(r["status"] == "missing" for r in d.runs)
    finally:
        d.close()


def test_reload_picks_up_new_runs_and_keeps_the_selection(tmp_path: Path, study_dir: Path,
                                                          data) -> None:
    copy = tmp_path / "growing"
    shutil.copytree(study_dir, copy)
    late = data.points.run_id.iloc[3]  # label_noise=1, seed 1
    parked = tmp_path / "parked"
    shutil.move(copy / "results" / f"run_id={late}", parked)
    d = StudyDashboard.load(copy)
    try:
        assert d.plane["groups"]["label_noise=1"]["fc1"]["n"] == [1, 1, 1]
        d.selected_groups = ["label_noise=1"]
        d.epoch = 10
        shutil.move(parked, copy / "results" / f"run_id={late}")  # the run finishes
        d.reload()
        assert d.error == ""
        assert d.selected_groups == ["label_noise=1"] and d.epoch == 10
        want = group_stats(data, "label_noise=1", "fc1", 10)
        e = d.plane["groups"]["label_noise=1"]["fc1"]
        assert e["n"][1] == 2 and close(e["x"][1], want["x"]) and close(e["x_sd"][1], want["x_sd"])
    finally:
        d.close()

"""Real-browser end-to-end test of the study dashboard: JupyterLab + chromium (Playwright).

A tiny study (Iris 4-5-5-3, label noise 0 and 1, two seeds, 60 epochs measured every 10th)
is trained here with the serial executor into the JupyterLab server's root; a notebook
(written by the test) shows ``cw.StudyDashboard.load("tinystudy")``. Chromium runs it like
a user: the test screenshots the widget into ``tests/artifacts/study-*.png``, drags the
epoch scrubber and steps it with the keyboard (the root's ``data-epoch`` and every marker
move), unticks a configuration (its trajectories, markers and chart go: ``data-groups``
and the number of drawn paths change, and the kernel's ``selected_groups`` follows) and
ticks a single run (drawn as thin lines). The drawn markers' numbers are checked against
means over seeds computed here by hand from the study's results, and their pixel
positions against the plane's scale (one px-per-bit on both axes).

Reuses the server / browser harness of ``tests/test_browser.py``. Run with
``pytest -m browser tests/test_browser_study.py``; skipped when ``/usr/bin/chromium`` is
missing.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
import test_browser as tb
from test_browser import ARTIFACTS, Server

# the JupyterLab server (module scope) and the chromium page of tests/test_browser.py
lab = tb.lab
browser_page = tb.browser_page

pytestmark = pytest.mark.browser

SQ2 = math.sqrt(2.0)
GROUPS = ["label_noise=0", "label_noise=1"]
LAYERS = ["fc1", "fc2", "fc3"]
EPOCHS = [0, 10, 20, 30, 40, 50]
TOL = 2e-6  # the widget rounds plane coordinates to 1e-6 bits

NOTEBOOK_CELLS = [
    ("markdown", "# Study dashboard end-to-end fixture (tests/test_browser_study.py)"),
    ("code", "import json\n\nimport causal_widgets as cw\n\n"
             "dash = cw.StudyDashboard.load('tinystudy')\ndash"),
    ("code", "print('CW-STUDY', json.dumps({'groups': dash.selected_groups, "
             "'runs': dash.selected_runs, 'epoch': dash.epoch, "
             "'plane': sorted(dash.plane['groups'])}))"),
]


@pytest.fixture(scope="module")
def study(lab: Server):
    """The tiny study, trained into the server's root; its StudyData."""
    from causal_widgets.studies.spec import Study
    from causal_widgets.studies.sweeps import sweep

    s = Study("tiny", grid={"label_noise": [0.0, 1.0], "seed": [0, 1]},
              settings={"dataset": "iris", "epochs": 60, "every": 10, "samples": 1024})
    return sweep(s, lab.root / "tinystudy", executor="serial", figures=False,
                 log=lambda msg: None)


def _write_notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    for kind, src in NOTEBOOK_CELLS:
        nb.cells.append(nbformat.v4.new_markdown_cell(src) if kind == "markdown"
                        else nbformat.v4.new_code_cell(src))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    nbformat.write(nb, str(path))


# --------------------------------------------------------------------------- by hand
def _xy(data, run_id: str, layer: str, epoch: int) -> tuple[float, float]:
    r = data.results
    rows = r[(r.run_id == run_id) & (r.layer == layer) & (r.epoch == epoch)]
    m = float(rows.loc[rows.metric == "ei", "value"].iloc[0])
    s = float(rows.loc[rows.metric == "sensitivity", "value"].iloc[0])
    return m / SQ2, (2 * s - m) / SQ2


def _expected_mean(data, group: str, layer: str, epoch: int) -> tuple[float, float]:
    rids = sorted(data.points.loc[data.points.group == group, "run_id"])
    xy = np.array([_xy(data, rid, layer, epoch) for rid in rids])
    return float(xy[:, 0].mean()), float(xy[:, 1].mean())


# --------------------------------------------------------------------------- drawn
MARKERS_JS = """(root, sel) => [...root.querySelectorAll(sel)].map(m => ({
    group: m.dataset.group, layer: m.dataset.layer, run: m.dataset.run || null,
    epoch: Number(m.dataset.epoch), x: Number(m.dataset.x), y: Number(m.dataset.y),
    cx: Number(m.dataset.cx ?? m.getAttribute('cx')),
    cy: Number(m.dataset.cy ?? m.getAttribute('cy'))}))"""


def _drawn(root) -> dict:
    plane = root.locator("[data-testid=cw-study-plane]")
    return {
        "epoch": root.get_attribute("data-epoch"),
        "groups": json.loads(root.get_attribute("data-groups") or "[]"),
        "markers": root.evaluate(MARKERS_JS, "[data-testid=cw-study-marker]"),
        "run_markers": root.evaluate(MARKERS_JS, "[data-testid=cw-study-run-marker]"),
        "paths": root.locator("[data-testid=cw-study-trajectory]").count(),
        "run_paths": root.locator("[data-testid=cw-study-run-trajectory]").count(),
        "sds": root.locator("[data-testid=cw-study-sd]").count(),
        "curves": root.locator("[data-testid=cw-study-curve]").count(),
        "scale": json.loads(plane.get_attribute("data-scale") or "{}"),
    }


def _wait_for(page, root, what: str, ok, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        d = _drawn(root)
        if ok(d):
            return d
        if time.monotonic() > deadline:
            root.screenshot(path=str(ARTIFACTS / "study-timeout.png"))
            pytest.fail(f"the study widget never showed {what}; it shows "
                        f"{ {k: v for k, v in d.items() if k != 'markers'} } "
                        f"markers={d['markers']}\nconsole:\n" + "\n".join(page.cw_console[-20:]))
        page.wait_for_timeout(200)


def _check_positions(d: dict) -> None:
    """Every marker sits at its numbers through the plane's scale, one px/bit on both axes."""
    sc = d["scale"]
    (x0, x1), (y0, y1), w, h = sc["x"], sc["y"], sc["width"], sc["height"]
    kx, ky = w / (x1 - x0), h / (y1 - y0)
    assert math.isclose(kx, ky, rel_tol=1e-9), (kx, ky)  # equal aspect
    for m in d["markers"] + d["run_markers"]:
        assert abs(m["cx"] - (m["x"] - x0) * kx) <= 0.051, m  # drawn with 0.1 px resolution
        assert abs(m["cy"] - (h - (m["y"] - y0) * ky)) <= 0.051, m
    # and independently of the reported scale: between any two markers far enough apart,
    # pixel distances are bit distances times one common factor (x right, y up)
    ms = d["markers"]
    ratios = []
    for a in ms:
        for b in ms:
            if a["x"] - b["x"] > 0.05:
                ratios.append((a["cx"] - b["cx"]) / (a["x"] - b["x"]))
            if a["y"] - b["y"] > 0.05:
                ratios.append((b["cy"] - a["cy"]) / (a["y"] - b["y"]))
    assert ratios, "markers too close together to check the scale"
    assert max(ratios) - min(ratios) <= 0.02 * max(ratios), ratios


def _check_numbers(d: dict, data, epoch: int) -> None:
    """The drawn mean markers carry the means over seeds at ``epoch``, computed by hand."""
    keys = sorted((m["group"], m["layer"]) for m in d["markers"])
    assert keys == sorted((g, x) for g in d["groups"] for x in LAYERS), keys
    for m in d["markers"]:
        assert m["epoch"] == epoch, m
        ex, ey = _expected_mean(data, m["group"], m["layer"], epoch)
        assert abs(m["x"] - ex) <= TOL and abs(m["y"] - ey) <= TOL, (m, ex, ey)


def _rerun_last_cell(page) -> None:
    cell = page.locator(".jp-Notebook .jp-CodeCell").last
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")


def test_study_dashboard_end_to_end(lab: Server, browser_page, study) -> None:
    page = browser_page
    data = study
    assert sorted(data.points.group.unique()) == GROUPS
    assert sorted(int(e) for e in data.results.epoch.unique()) == EPOCHS
    _write_notebook(lab.root / "study_e2e.ipynb")
    tb._open_and_run_all(page, lab, "study_e2e.ipynb")
    tb._wait_for_output(page, lab, "CW-STUDY", 240)

    root = page.locator(".cw-study").first
    root.wait_for(state="visible")
    root.scroll_into_view_if_needed()
    n_all = len(GROUPS) * len(LAYERS)
    before = _wait_for(page, root, "every trajectory at the last epoch",
                       lambda d: d["epoch"] == "50" and len(d["markers"]) == n_all
                       and d["paths"] == n_all)
    assert before["groups"] == GROUPS
    assert before["sds"] == n_all and before["curves"] == len(GROUPS)
    assert before["run_paths"] == 0
    _check_numbers(before, data, 50)
    _check_positions(before)
    page.wait_for_timeout(300)  # let the last frame paint
    root.screenshot(path=str(ARTIFACTS / "study-before.png"))

    # drag the scrubber's thumb from the right end (newest epoch) to the left end
    scrubber = root.locator("[data-testid=cw-study-scrubber]")
    tb._drag_scrubber_to_start(page, scrubber)
    scrubbed = _wait_for(page, root, "the markers at epoch 0",
                         lambda d: d["epoch"] == "0" and len(d["markers"]) == n_all
                         and all(m["epoch"] == 0 for m in d["markers"]))
    _check_numbers(scrubbed, data, 0)
    _check_positions(scrubbed)
    def by_key(m: dict) -> tuple:
        return m["group"], m["layer"]

    pairs = zip(sorted(before["markers"], key=by_key), sorted(scrubbed["markers"], key=by_key))
    assert all((a["cx"], a["cy"]) != (b["cx"], b["cy"]) for a, b in pairs), (
        "a marker did not move with the epoch")
    # one step with the keyboard: epoch 10
    scrubber.focus()
    page.keyboard.press("ArrowRight")
    stepped = _wait_for(page, root, "the markers at epoch 10",
                        lambda d: d["epoch"] == "10"
                        and all(m["epoch"] == 10 for m in d["markers"]))
    _check_numbers(stepped, data, 10)

    # untick a configuration: its trajectories, markers, spreads and chart disappear
    root.locator("[data-testid=cw-study-group-toggle][data-group='label_noise=1']").click()
    one = _wait_for(page, root, "only label_noise=0",
                    lambda d: d["groups"] == ["label_noise=0"] and d["paths"] == len(LAYERS))
    assert len(one["markers"]) == len(LAYERS) and one["sds"] == len(LAYERS)
    assert one["curves"] == 1
    assert {m["group"] for m in one["markers"]} == {"label_noise=0"}
    _check_numbers(one, data, 10)
    _check_positions(one)
    # the kernel's widget followed (the comm carried the change): run the print cell again
    _rerun_last_cell(page)
    tb._wait_for_output(page, lab, 'CW-STUDY {"groups": ["label_noise=0"], "runs": [], '
                     '"epoch": 10, "plane": ["label_noise=0"]}', 60)

    # tick one run of the hidden configuration: drawn as thin lines with small markers
    rid = data.points.loc[data.points.group == "label_noise=1", "run_id"].iloc[0]
    root.locator(f"[data-testid=cw-study-run-toggle][data-run='{rid}']").click()
    picked = _wait_for(page, root, "the picked run",
                       lambda d: d["run_paths"] == len(LAYERS)
                       and len(d["run_markers"]) == len(LAYERS))
    for m in picked["run_markers"]:
        assert m["run"] == rid and m["epoch"] == 10
        ex, ey = _xy(data, rid, m["layer"], 10)
        assert abs(m["x"] - ex) <= TOL and abs(m["y"] - ey) <= TOL, (m, ex, ey)
    _check_positions(picked)
    root.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    root.screenshot(path=str(ARTIFACTS / "study-after.png"))
    page.screenshot(path=str(ARTIFACTS / "study-page.png"), full_page=True)

    errors = [m for m in page.cw_console if m.startswith("pageerror") and not tb._known_noise(m)]
    assert not errors, "\n".join(errors)
    assert root.locator("[data-testid=cw-study-error]").is_hidden()

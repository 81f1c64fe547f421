"""The causal plane's one coordinate function (engine/plane.py), worked out by hand.

These are the checks the front-end's own copy of the formula had (js/tests/logic.test.mjs)
before the coordinates moved to Python: the front-end now draws what this computes.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from causal_widgets.engine.plane import SQRT2, plane_box, plane_coords, plane_xy


def test_plane_transform_is_the_45_degree_rotation_of_s_d():
    # S = 3, EI = 1  ->  D = S - EI = 2;  x = (S - D)/sqrt2 = 1/sqrt2,  y = (S + D)/sqrt2 = 5/sqrt2
    x, y = plane_xy(1.0, 3.0)
    assert x == pytest.approx(1 / math.sqrt(2), abs=1e-12)
    assert y == pytest.approx(5 / math.sqrt(2), abs=1e-12)
    # a rotation preserves length: |(x, y)| = |(S, D)|
    assert math.hypot(x, y) == pytest.approx(math.hypot(3, 2), abs=1e-12)
    # D = 0 (EI = S) lies on the diagonal y = x; S = 0 on y = -x
    qx, qy = plane_xy(2.0, 2.0)
    assert qx == pytest.approx(qy, abs=1e-12)
    rx, ry = plane_xy(-1.5, 0.0)
    assert rx == pytest.approx(-ry, abs=1e-12)
    # missing values give no coordinates, elementwise
    x, y = plane_xy([1.0, np.nan, 2.0], [np.nan, 1.0, 3.0])
    assert np.isnan(x[:2]).all() and np.isnan(y[:2]).all()
    assert y[2] == pytest.approx(4 / math.sqrt(2), abs=1e-12)


def test_plane_box_contains_every_combination_of_the_intervals():
    s, s_lo, s_hi, m, m_lo, m_hi = 2.0, 1.8, 2.3, 1.0, 0.7, 1.1
    box = plane_box(m, m_lo, m_hi, s, s_lo, s_hi)
    assert box["x0"] == pytest.approx(0.7 / SQRT2, abs=1e-12)
    assert box["x1"] == pytest.approx(1.1 / SQRT2, abs=1e-12)
    assert box["y0"] == pytest.approx((2 * 1.8 - 1.1) / SQRT2, abs=1e-12)  # 2.5 / sqrt2
    assert box["y1"] == pytest.approx((2 * 2.3 - 0.7) / SQRT2, abs=1e-12)  # 3.9 / sqrt2
    for sv in (s_lo, s, s_hi):
        for mv in (m_lo, m, m_hi):
            x, y = plane_xy(mv, sv)
            assert box["x0"] - 1e-12 <= x <= box["x1"] + 1e-12
            assert box["y0"] - 1e-12 <= y <= box["y1"] + 1e-12
    # missing CI ends collapse onto the value
    c2 = plane_box(1.0, np.nan, np.inf, 2.0, np.nan, np.nan)
    assert c2["x0"] == pytest.approx(c2["x1"], abs=1e-12)
    assert c2["y0"] == pytest.approx(3 / SQRT2, abs=1e-12)
    # no value, no box
    c3 = plane_box([np.nan, 1.0], [0.5, 0.9], [1.5, 1.1], [1.0, np.nan], 0.9, 1.1)
    assert all(np.isnan(v).all() for v in c3.values())


def test_plane_coords_of_a_tidy_frame():
    rows = [
        # run, epoch, layer, metric, value
        (0, 0, "a", "ei", 1.0), (0, 0, "a", "sensitivity", 3.0),
        (0, 5, "a", "ei", 2.0), (0, 5, "a", "sensitivity", 2.0),
        (0, 5, "b", "ei", 1.0),  # no sensitivity: left out
    ]
    frame = pd.DataFrame(rows, columns=["run", "epoch", "layer", "metric", "value"])
    c = plane_coords(frame, "ei")
    assert list(c.columns) == ["run", "epoch", "layer", "x", "y"]
    assert list(c["layer"]) == ["a", "a"] and list(c["epoch"]) == [0, 5]
    np.testing.assert_allclose(c["x"], [1 / SQRT2, 2 / SQRT2])
    np.testing.assert_allclose(c["y"], [5 / SQRT2, 2 / SQRT2])
    with pytest.raises(ValueError, match="'ei' or 'ei_parts'"):
        plane_coords(frame, "sensitivity")
    with pytest.raises(ValueError, match="lack"):
        plane_coords(frame, "ei_parts")

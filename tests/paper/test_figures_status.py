"""The static figures draw a bounded value (status ``"bounds"``) as an open marker with its
interval, and say so in the legend (issue 10); estimates and exact values are drawn as
before. The results frames are written by hand, so where each marker and bar must land
follows from the plane's closed form x = M/sqrt2, y = (2 S - M)/sqrt2.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("matplotlib")
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from causal_widgets.paper.figures import (  # noqa: E402
    OPEN_FACE,
    plane_points,
    plot_causal_plane,
    plot_time_series,
)

R2 = math.sqrt(2.0)
WHITE = to_rgba(OPEN_FACE)


def results(with_bounds: bool = True, with_status: bool = True) -> pd.DataFrame:
    """Two layers over epochs 0, 1, 2 of one run. ``wide``'s EI (and degeneracy) is
    bounded at epochs 1 and 2 (brackets [1, 9] and [2, 10]), estimated at 0; ``narrow``
    is estimated throughout; sensitivity is exact."""
    rows = []
    for epoch in range(3):
        for layer, ei, s in (("wide", 3.0 + epoch, 20.0), ("narrow", 1.0 + 0.1 * epoch, 4.0)):
            bounded = with_bounds and layer == "wide" and epoch > 0
            lo, hi = (epoch, 8.0 + epoch) if bounded else (ei - 0.1, ei + 0.1)
            status = "bounds" if bounded else "estimate"
            rows += [
                (0, epoch, layer, "ei", ei, lo, hi, status, "sampled"),
                (0, epoch, layer, "sensitivity", s, s, s, "exact", "exact"),
                (0, epoch, layer, "degeneracy", s - ei, s - hi, s - lo, status, "derived"),
            ]
    df = pd.DataFrame(rows, columns=["run", "epoch", "layer", "metric", "value", "ci_low",
                                     "ci_high", "status", "method"])
    return df if with_status else df.drop(columns="status")


def open_markers(ax) -> list[Line2D]:
    """Lines drawn as markers only whose face is the open face."""
    return [ln for ln in ax.get_lines() if ln.get_marker() not in ("None", None, "")
            and ln.get_linestyle() == "None" and to_rgba(ln.get_markerfacecolor()) == WHITE]


def legend_text(ax) -> str:
    leg = ax.get_legend()
    return " | ".join(t.get_text() for t in leg.get_texts()) if leg else ""


def test_plane_points_carry_the_box_and_the_status() -> None:
    pts = plane_points(results()).set_index(["layer", "epoch"])
    assert list(pts.loc["wide"].bounded) == [False, True, True]
    assert not pts.loc["narrow"].bounded.any()
    # epoch 2 of wide: EI 5 in [2, 10], S = 20 exact
    p = pts.loc[("wide", 2)]
    assert p.x == pytest.approx(5 / R2) and p.y == pytest.approx((40 - 5) / R2)
    assert (p.x0, p.x1) == (pytest.approx(2 / R2), pytest.approx(10 / R2))
    assert (p.y0, p.y1) == (pytest.approx((40 - 10) / R2), pytest.approx((40 - 2) / R2))


def test_the_plane_draws_bounds_open_with_their_interval() -> None:
    fig = plot_causal_plane(results())
    ax = fig.axes[0]
    # every bounded point (wide, epochs 1 and 2) is open; nothing else is
    hollow = open_markers(ax)
    xs = sorted(float(x) for ln in hollow for x in np.atleast_1d(ln.get_xdata()))
    # the bounded dots, and the last marker (epoch 2, bounded) drawn open too
    assert xs == pytest.approx(sorted([4 / R2, 5 / R2, 5 / R2]))
    # the error bars span each bracket along x: [1, 9]/sqrt2 and [2, 10]/sqrt2
    bars = [c for c in ax.containers if getattr(c, "has_xerr", False)]
    assert len(bars) == 1
    xbars = bars[0].lines[2][0].get_segments()
    spans = sorted((round(min(s[:, 0]), 9), round(max(s[:, 0]), 9)) for s in xbars)
    assert spans == [(round(1 / R2, 9), round(9 / R2, 9)), (round(2 / R2, 9), round(10 / R2, 9))]
    ybars = bars[0].lines[2][1].get_segments()
    yspans = sorted((round(min(s[:, 1]), 9), round(max(s[:, 1]), 9)) for s in ybars)
    assert yspans == [(round(30 / R2, 9), round(38 / R2, 9)),
                      (round(31 / R2, 9), round(39 / R2, 9))]
    assert "EI bounded" in legend_text(ax)
    # the first marker (epoch 0, an estimate) is filled in the layer's colour
    tri = [ln for ln in ax.get_lines() if ln.get_marker() == "^"]
    assert len(tri) == 2 and all(to_rgba(ln.get_markerfacecolor()) != WHITE for ln in tri)


def test_no_bounds_no_open_markers_and_no_legend_entry() -> None:
    for frame in (results(with_bounds=False), results(with_status=False)):
        ax = plot_causal_plane(frame).axes[0]
        assert open_markers(ax) == []
        assert not [c for c in ax.containers if getattr(c, "has_xerr", False)]
        assert "bounded" not in legend_text(ax)
        assert set(legend_text(ax).split(" | ")) == {"wide", "narrow"}


def test_the_series_draw_bounds_open_over_their_band() -> None:
    fig = plot_time_series(results())
    by_title = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    for title in ("EI", "degeneracy (S − EI)"):
        ax = by_title[title]
        hollow = open_markers(ax)
        assert len(hollow) == 1
        assert list(hollow[0].get_xdata()) == [1, 2]
        bands = [c for c in ax.collections if c.get_gid() == "bounds"]
        assert len(bands) == 1
        ys = bands[0].get_paths()[0].vertices[:, 1]
        lo, hi = (1.0, 2.0), (9.0, 10.0)
        if title != "EI":  # D = S - EI: its bracket is [S - 9, S - 1] and [S - 10, S - 2]
            lo, hi = (20 - 9.0, 20 - 10.0), (20 - 1.0, 20 - 2.0)
        assert ys.min() == pytest.approx(min(lo)) and ys.max() == pytest.approx(max(hi))
        assert "bounded" in legend_text(ax)
    sens = by_title["sensitivity"]
    assert open_markers(sens) == [] and "bounded" not in legend_text(sens)
    # and nothing open without bounds rows
    plain = plot_time_series(results(with_status=False))
    assert all(open_markers(ax) == [] for ax in plain.axes)


def test_a_status_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\['maybe'\].*one of \['exact', 'estimate', 'bounds'\]"):
        plot_causal_plane(results().assign(status="maybe"))


def study_data(with_status: bool = True):
    """A study of one configuration, two seeds (runs a, b), one layer, epochs 0 and 10;
    run a's EI is bounded at epoch 10, nothing else is."""
    from types import SimpleNamespace

    from causal_widgets.studies.sweeps import plane_summary

    rows, scal = [], []
    for run, seed in (("a", 0), ("b", 1)):
        for epoch in (0, 10):
            bounded = run == "a" and epoch == 10
            ei = 2.0 + epoch / 10 + seed
            rows += [("g", run, "fc1", epoch, "ei", ei, "bounds" if bounded else "estimate"),
                     ("g", run, "fc1", epoch, "sensitivity", 6.0, "exact"),
                     ("g", run, "fc1", epoch, "ei_parts", 1.0, "exact")]
            scal.append(("g", run, epoch, 1.0 / (epoch + 1), 0.5, 0.5))
    results = pd.DataFrame(rows, columns=["group", "run_id", "layer", "epoch", "metric",
                                          "value", "status"])
    if not with_status:
        results = results.drop(columns="status")
    scalars = pd.DataFrame(scal, columns=["group", "run_id", "epoch", "loss", "accuracy",
                                          "test_accuracy"])
    return SimpleNamespace(results=results, scalars=scalars,
                           points=pd.DataFrame({"group": ["g", "g"], "run_id": ["a", "b"]}),
                           study=SimpleNamespace(name="s"),
                           plane=lambda metric="ei": plane_summary(results, metric))


def test_study_planes_and_series_draw_bounded_means_open() -> None:
    from causal_widgets.paper.figures import plot_study_planes, plot_study_series

    ax = plot_study_planes(study_data()).axes[0]
    hollow = open_markers(ax)
    # the epoch-10 mean (of EI 3 and 4, S = 6): x = 3.5/sqrt2, y = (12 - 3.5)/sqrt2, drawn
    # as an open dot and as the open last marker
    pts = sorted((float(x), float(y)) for ln in hollow
                 for x, y in zip(np.atleast_1d(ln.get_xdata()), np.atleast_1d(ln.get_ydata())))
    assert pts == [pytest.approx((3.5 / R2, 8.5 / R2))] * 2
    assert "EI bounded in some runs" in legend_text(ax)

    fig = plot_study_series(study_data())
    ei_first = next(a for a in fig.axes if a.get_title() == "fc1: EI (bits)")
    hollow = open_markers(ei_first)
    assert len(hollow) == 1 and list(hollow[0].get_xdata()) == [10]
    assert list(hollow[0].get_ydata()) == [pytest.approx(3.5)]
    assert "bounded" in legend_text(ei_first)
    sens = next(a for a in fig.axes if a.get_title() == "fc1: sensitivity (bits)")
    assert open_markers(sens) == []

    for fig in (plot_study_planes(study_data(with_status=False)),
                plot_study_series(study_data(with_status=False))):
        assert all(open_markers(a) == [] for a in fig.axes)
        assert all("bounded" not in legend_text(a) for a in fig.axes)

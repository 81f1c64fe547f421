"""The causal plane's coordinates: the one place its formula is written (pure, no plotting).

Each layer is a point (S, D) with S = sensitivity and D = degeneracy = S - M, where M is
EI (or EI_parts in its place, with D_parts = S - EI_parts); see ``docs/metrics.md``. The
plane is drawn rotated by 45 degrees, so the horizontal coordinate is
(S - D)/sqrt(2) = M/sqrt(2) and the vertical one (S + D)/sqrt(2) = (2 S - M)/sqrt(2), all in
bits. The vertical line x = 0 is the EI nullcline; D = 0 lies on y = x, S = 0 on y = -x.

The static figures (:mod:`causal_widgets.paper.figures`), the study summaries
(:func:`causal_widgets.studies.sweeps.run_plane_coords`) and both dashboards' payloads
(:mod:`causal_widgets.widgets.payloads`) take their coordinates from here; the browser only
draws them.

>>> x, y = plane_xy(1.0, 3.0)        # EI = 1, S = 3 -> D = 2
>>> round(float(x * SQRT2), 12), round(float(y * SQRT2), 12)
(1.0, 5.0)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

SQRT2 = math.sqrt(2.0)

#: Metrics that can stand for M in the plane.
PLANE_METRICS = ("ei", "ei_parts")


def plane_xy(metric_value: Any, sensitivity: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` = ``(M / sqrt2, (2 S - M) / sqrt2)`` elementwise (float64 arrays, bits).

    ``metric_value`` is M (EI or EI_parts), ``sensitivity`` is S; scalars or arrays of
    one shape. Where either is missing (NaN) both coordinates are NaN.
    """
    m = np.asarray(metric_value, dtype=np.float64)
    s = np.asarray(sensitivity, dtype=np.float64)
    x, y = m / SQRT2, (2.0 * s - m) / SQRT2
    # x needs M only, but a point needs both: without S there is no point to place
    missing = np.isnan(m) | np.isnan(s)
    if missing.any():
        x = np.where(missing, np.nan, x)
        y = np.where(missing, np.nan, y)
    return x, y


def plane_box(
    metric_value: Any,
    metric_lo: Any,
    metric_hi: Any,
    sensitivity: Any,
    sensitivity_lo: Any,
    sensitivity_hi: Any,
) -> dict[str, np.ndarray]:
    """The plane-space error box ``{x0, x1, y0, y1}`` of 95 % CIs on M and S (bits).

    x depends on M only; y = (2 S - M)/sqrt2 is bounded by pairing S's low end with M's
    high end (and the reverse), so the box contains :func:`plane_xy` of every
    combination of the two intervals. A missing (non-finite) CI end collapses onto the
    value; where M or S itself is missing the box is NaN.
    """
    m = np.asarray(metric_value, dtype=np.float64)
    s = np.asarray(sensitivity, dtype=np.float64)

    def end(bound: Any, value: np.ndarray) -> np.ndarray:
        b = np.broadcast_to(np.asarray(bound, dtype=np.float64), value.shape)
        return np.where(np.isfinite(b), b, value)

    m_lo, m_hi = end(metric_lo, m), end(metric_hi, m)
    s_lo, s_hi = end(sensitivity_lo, s), end(sensitivity_hi, s)
    # x grows with M alone; y's extremes pair opposite ends of the two intervals
    x0, y0 = plane_xy(m_lo, s_lo)[0], plane_xy(m_hi, s_lo)[1]
    x1, y1 = plane_xy(m_hi, s_hi)[0], plane_xy(m_lo, s_hi)[1]
    missing = ~(np.isfinite(m) & np.isfinite(s))
    return {k: np.where(missing, np.nan, v) for k, v in
            (("x0", x0), ("x1", x1), ("y0", y0), ("y1", y1))}


def wide(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, epoch, layer), one column per metric (bits)."""
    df = results
    if "run" not in df.columns:
        df = df.assign(run=0)
    return (
        df.pivot_table(index=["run", "epoch", "layer"], columns="metric", values="value",
                       aggfunc="first")
        .reset_index()
        .sort_values(["run", "layer", "epoch"])
    )


def plane_coords(results: pd.DataFrame, metric: str = "ei") -> pd.DataFrame:
    """``run, epoch, layer, x, y``: the 45-degree causal-plane coordinates (bits).

    From a tidy results frame (columns ``[run,] epoch, layer, metric, value``): x and y
    are :func:`plane_xy` of M = ``metric`` (EI or EI_parts) and S = sensitivity; rows
    where either is missing are left out.
    """
    if metric not in PLANE_METRICS:
        raise ValueError(f"metric={metric!r}: the plane uses 'ei' or 'ei_parts'.")
    w = wide(results)
    missing = [m for m in (metric, "sensitivity") if m not in w.columns]
    if missing:
        raise ValueError(
            f"the results lack {missing}: measure with metrics including "
            f"{metric!r} and 'sensitivity' to draw the causal plane."
        )
    w = w.dropna(subset=[metric, "sensitivity"])
    x, y = plane_xy(w[metric].to_numpy(), w["sensitivity"].to_numpy())
    return pd.DataFrame({
        "run": w["run"].to_numpy(),
        "epoch": w["epoch"].to_numpy(),
        "layer": w["layer"].to_numpy(),
        "x": x,
        "y": y,
    })


__all__ = ["PLANE_METRICS", "SQRT2", "plane_box", "plane_coords", "plane_xy", "wide"]

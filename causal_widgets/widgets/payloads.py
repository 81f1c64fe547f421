"""What the widgets send to the browser: JSON-safe payloads built from measurements.

Pure functions of tidy frames and arrays (no widget state), shared by the training
dashboard (:mod:`causal_widgets.widgets.dashboard`) and the study dashboard
(:mod:`causal_widgets.widgets.study_dashboard`). Values are bits rounded to
:data:`_DECIMALS` places; non-finite values become ``None`` (JSON null), the package's one
NaN policy (:func:`causal_widgets.jsonable.to_jsonable`). The causal-plane coordinates
come from :mod:`causal_widgets.engine.plane`, so the browser never computes them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from causal_widgets.engine.bounds import STATUSES, combined_status
from causal_widgets.engine.plane import PLANE_METRICS as XY_METRICS
from causal_widgets.engine.plane import plane_box, plane_xy
from causal_widgets.engine.tidy import status_from_method

#: Matrices with more neurons than this on a side are sent as block means.
HEATMAP_MAX_SIDE = 80

#: Metrics carried in the ``plane`` trait (each with ``_lo`` / ``_hi`` CI bounds).
#: The front-end derives D = S - EI (or S - EI_parts) itself for its read-outs, so
#: integration and degeneracy_parts stay in ``results`` and do not cross.
PLANE_METRICS = ("ei", "ei_parts", "sensitivity", "degeneracy")

#: Decimal places kept for values sent to the browser: 1e-6 bits is far below any
#: estimate's uncertainty and keeps the JSON short (display only; ``results`` is exact).
_DECIMALS = 6

#: One letter per value's status (``causal_widgets.engine.bounds.STATUSES``) in the
#: payloads' status strings: exact, estimate, bounds; :data:`STATUS_MISSING` where nothing
#: was measured. One character per point keeps a long history's payload small.
STATUS_CODES = {"exact": "x", "estimate": "e", "bounds": "b"}
STATUS_MISSING = "-"

#: Per-epoch scalars averaged over a group's runs for the study dashboard's small charts.
CURVE_SCALARS = ("loss", "test_accuracy")


def _clean(values: Any, decimals: int | None = _DECIMALS) -> list:
    """Floats rounded to ``decimals`` places (``None``: exact) as a JSON-safe list.

    Non-finite values become ``None`` (JSON null): the browser must never see NaN.
    """
    arr = np.asarray(values, dtype=np.float64)
    rounded = arr if decimals is None else np.round(arr, decimals)
    out = rounded.astype(object)
    out[~np.isfinite(arr)] = None
    return out.tolist()


def row_statuses(frame: pd.DataFrame) -> pd.Series:
    """Each row's status (``"exact"``, ``"estimate"`` or ``"bounds"``).

    Rows written before statuses existed (no ``status`` column, or an empty cell where an
    old history was joined to a new one) get :func:`status_from_method` of their
    ``method`` (``"estimate"`` when that is missing too). Any other text is refused.
    """
    method = frame["method"] if "method" in frame.columns else pd.Series(None, index=frame.index)
    from_method = method.map(status_from_method)
    if "status" not in frame.columns:
        return from_method
    status = frame["status"].where(frame["status"].notna(), from_method)
    bad = sorted({str(s) for s in status.unique()} - set(STATUSES))
    if bad:
        raise ValueError(
            f"the results' status column holds {bad}: each row's status must be one of "
            f"{list(STATUSES)} (causal_widgets.engine.bounds), or left empty for rows "
            "written before statuses existed."
        )
    return status


def _codes(statuses: list[str | None]) -> str:
    """One :data:`STATUS_CODES` letter per value (:data:`STATUS_MISSING` for ``None``)."""
    return "".join(STATUS_MISSING if s is None else STATUS_CODES[s] for s in statuses)


def plane_payload(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per-layer column arrays of the plane metrics from a tidy results frame.

    Returns ``{layer: {"epoch": [...], "ei": [...], "ei_lo": [...], "ei_hi": [...], ...,
    "status": {...}, "xy": {...}}}`` for the metrics in :data:`PLANE_METRICS`, one entry
    per measured epoch of that layer (sorted), ``None`` where a metric was not measured
    (or is not finite). ``status[metric]`` is a string with one :data:`STATUS_CODES`
    letter per epoch (``"x"`` exact, ``"e"`` estimate, ``"b"`` bounds: ``[lo, hi]``
    brackets the truth, the value is a best guess inside it; ``"-"`` not measured).
    ``xy`` holds the causal-plane coordinates for each M in ``("ei", "ei_parts")``:
    ``{M: {"x", "y", "x0", "x1", "y0", "y1", "status"}}``, the point
    (:func:`~causal_widgets.engine.plane.plane_xy` of M and S), its interval box
    (:func:`~causal_widgets.engine.plane.plane_box`), ``None`` where M or S is missing,
    and the point's status: the less certain of M's and S's
    (:func:`~causal_widgets.engine.bounds.combined_status`), ``"-"`` where there is no
    point. Rows without a status (old histories) take it from their ``method``.
    """
    needed = {"layer", "epoch", "metric", "value"}
    if frame is None or frame.empty or not needed <= set(frame.columns):
        return {}
    cols = ["layer", "epoch", "metric", "value"]
    has_ci = {"ci_low", "ci_high"} <= set(frame.columns)
    if has_ci:
        cols += ["ci_low", "ci_high"]
    rows = frame["metric"].isin(PLANE_METRICS)
    df = frame.loc[rows, cols].copy()
    df["status"] = row_statuses(frame.loc[rows])
    # a re-measured (epoch, layer, metric) keeps its latest value
    df = df.drop_duplicates(["layer", "epoch", "metric"], keep="last")
    if df.empty:
        return {}
    df["epoch"] = df["epoch"].astype(np.int64)
    if not has_ci:
        df["ci_low"] = np.nan
        df["ci_high"] = np.nan
    # unstack (not pivot_table) so only (layer, epoch) pairs that were measured appear
    wide = df.set_index(["layer", "epoch", "metric"])[
        ["value", "ci_low", "ci_high", "status"]].unstack("metric")
    layer_order = list(dict.fromkeys(df["layer"]))
    out: dict[str, dict[str, Any]] = {}
    for layer in layer_order:
        try:
            block = wide.xs(layer, level="layer").sort_index()
        except KeyError:
            continue

        def col(kind: str, metric: str, block: pd.DataFrame = block) -> np.ndarray:
            if (kind, metric) in block.columns:
                return block[(kind, metric)].to_numpy(dtype=np.float64)
            return np.full(len(block), np.nan)

        entry: dict[str, Any] = {"epoch": [int(e) for e in block.index]}
        values = {m: (col("value", m), col("ci_low", m), col("ci_high", m)) for m in PLANE_METRICS}
        statuses: dict[str, list[str | None]] = {}
        for m, (v, lo, hi) in values.items():
            entry[m] = _clean(v)
            entry[f"{m}_lo"] = _clean(lo)
            entry[f"{m}_hi"] = _clean(hi)
            raw = (block[("status", m)].tolist() if ("status", m) in block.columns
                   else [None] * len(block))
            # a value that is missing (or not finite) has no status to show
            statuses[m] = [s if isinstance(s, str) and np.isfinite(x) else None
                           for s, x in zip(raw, v)]
        entry["status"] = {m: _codes(statuses[m]) for m in PLANE_METRICS}
        # the coordinates are computed here, from the unrounded values, by the one plane
        # function; the browser draws them as they come
        s, s_lo, s_hi = values["sensitivity"]
        xy: dict[str, dict[str, Any]] = {}
        for m in XY_METRICS:
            v, lo, hi = values[m]
            x, y = plane_xy(v, s)
            box = plane_box(v, lo, hi, s, s_lo, s_hi)
            point_status = [
                combined_status((a, b)) if a is not None and b is not None else None
                for a, b in zip(statuses[m], statuses["sensitivity"])
            ]
            xy[m] = {"x": _clean(x), "y": _clean(y), **{k: _clean(b) for k, b in box.items()},
                     "status": _codes(point_status)}
        entry["xy"] = xy
        out[str(layer)] = entry
    return out


def _block_starts(n: int, max_side: int) -> tuple[int, np.ndarray]:
    step = max(1, math.ceil(n / max_side))
    return step, np.arange(0, n, step)


def _block_mean(a: np.ndarray, starts: np.ndarray, axis: int) -> np.ndarray:
    """Means over consecutive blocks starting at ``starts`` along ``axis``."""
    sums = np.add.reduceat(a, starts, axis=axis)
    counts = np.diff(np.append(starts, a.shape[axis]))
    shape = [1, 1] if a.ndim == 2 else [1]
    shape[axis] = len(counts)
    return sums / counts.reshape(shape)


def heatmap_payload(
    matrices: Mapping[str, Any] | None,
    *,
    layer: str,
    epoch: int | None,
    requested_epoch: int,
    max_side: int = HEATMAP_MAX_SIDE,
    message: str = "",
) -> dict[str, Any]:
    """The ``heatmap`` trait for one layer at one measured epoch.

    ``matrices`` is :meth:`History.matrix`'s dict: ``ei_parts`` and ``sensitivity``
    ``(n_in, n_out)`` arrays (rows = input neuron i, columns = output neuron j, bits) and
    ``nodes`` (DataFrame ``side, node, ei, ei_parts, sensitivity``). The payload carries
    the matrices, their difference ``S - E`` (each edge's degeneracy share) and the node
    contributions for the margins; a side longer than ``max_side`` is reduced to block
    means (``row_step`` / ``col_step`` > 1, ``row_start`` / ``col_start`` give each
    block's first neuron).
    """
    base: dict[str, Any] = {
        "layer": layer,
        "epoch": epoch,
        "requested_epoch": int(requested_epoch),
        "available": False,
        "message": message,
    }
    if matrices is None:
        return base
    e = matrices.get("ei_parts")
    s = matrices.get("sensitivity")
    e = None if e is None else np.asarray(e, dtype=np.float64)
    s = None if s is None else np.asarray(s, dtype=np.float64)
    ref = e if e is not None else s
    if ref is None or ref.ndim != 2:
        base["message"] = message or "no edge matrices were recorded for this layer"
        return base
    n_in, n_out = ref.shape
    row_step, row_start = _block_starts(n_in, max_side)
    col_step, col_start = _block_starts(n_out, max_side)

    def reduce2(a: np.ndarray | None) -> list | None:
        if a is None:
            return None
        if row_step > 1:
            a = _block_mean(a, row_start, 0)
        if col_step > 1:
            a = _block_mean(a, col_start, 1)
        return [_clean(row) for row in a]

    def reduce1(v: np.ndarray, starts: np.ndarray, step: int) -> list:
        return _clean(_block_mean(v, starts, 0) if step > 1 else v)

    diff = s - e if (e is not None and s is not None) else None
    nodes_payload: dict[str, dict[str, list | None]] = {}
    nodes = matrices.get("nodes")
    for side, n, starts, step in (
        ("input", n_in, row_start, row_step),
        ("output", n_out, col_start, col_step),
    ):
        entry: dict[str, list | None] = {}
        sub = None
        if isinstance(nodes, pd.DataFrame) and {"side", "node"} <= set(nodes.columns):
            sub = nodes[nodes["side"] == side].sort_values("node")
            if len(sub) != n:
                sub = None
        for metric in ("ei", "ei_parts", "sensitivity"):
            if sub is not None and metric in sub.columns:
                v = sub[metric].to_numpy(dtype=np.float64)
            elif metric == "ei_parts" and e is not None:
                v = e.sum(axis=1 if side == "input" else 0)
            elif metric == "sensitivity" and s is not None:
                v = s.sum(axis=1 if side == "input" else 0)
            else:
                entry[metric] = None
                continue
            entry[metric] = reduce1(v, starts, step) if np.isfinite(v).any() else None
        nodes_payload[side] = entry

    base.update(
        available=True,
        message=message,
        n_in=int(n_in),
        n_out=int(n_out),
        row_step=int(row_step),
        col_step=int(col_step),
        row_start=[int(i) for i in row_start],
        col_start=[int(j) for j in col_start],
        ei_parts=reduce2(e),
        sensitivity=reduce2(s),
        difference=reduce2(diff),
        nodes=nodes_payload,
    )
    return base


def nearest(sorted_values: list[int], target: int) -> int | None:
    """The element of ``sorted_values`` closest to ``target`` (ties: the earlier one)."""
    if not sorted_values:
        return None
    i = int(np.searchsorted(sorted_values, target))
    if i == 0:
        return sorted_values[0]
    if i == len(sorted_values):
        return sorted_values[-1]
    before, after = sorted_values[i - 1], sorted_values[i]
    return before if target - before <= after - target else after


def curves_payload(scalars: pd.DataFrame, groups: list[str] | None = None
                   ) -> dict[str, dict[str, list]]:
    """Mean +- sample sd over each group's runs of :data:`CURVE_SCALARS` per epoch.

    ``{group: {"epoch": [...], "n": [...], "loss": [...], "loss_sd": [...],
    "test_accuracy": [...], "test_accuracy_sd": [...]}}``; a scalar the study did not
    record is absent; sd is 0 where a single run was recorded. Full precision (the
    scale is the user's, not bits).
    """
    if scalars is None or scalars.empty or not {"group", "epoch"} <= set(scalars.columns):
        return {}
    present = [c for c in CURVE_SCALARS if c in scalars.columns]
    df = scalars[["group", "epoch", *present]].copy()
    df["group"] = df["group"].astype(str)
    out: dict[str, dict[str, list]] = {}
    order = groups if groups is not None else list(dict.fromkeys(df["group"]))
    for name in order:
        part = df[df["group"] == name]
        if part.empty:
            continue
        g = part.groupby("epoch", sort=True)
        entry: dict[str, list] = {
            "epoch": [int(e) for e in g.size().index],
            "n": [int(v) for v in g.size().to_numpy()],
        }
        for c in present:
            mean = g[c].mean().to_numpy(dtype=np.float64)
            sd = g[c].std().fillna(0.0).to_numpy(dtype=np.float64)
            entry[c] = _clean(mean, decimals=None)
            entry[f"{c}_sd"] = _clean(sd, decimals=None)
        out[name] = entry
    return out


__all__ = [
    "CURVE_SCALARS",
    "HEATMAP_MAX_SIDE",
    "PLANE_METRICS",
    "STATUS_CODES",
    "STATUS_MISSING",
    "curves_payload",
    "heatmap_payload",
    "nearest",
    "plane_payload",
    "row_statuses",
]

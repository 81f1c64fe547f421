"""The study dashboard: the causal-plane widgets over a whole study (many runs, many seeds).

Usage (in a notebook)::

    import causal_widgets as cw
    cw.sweep(cw.preset("memorization", quick=True), "runs/mem")   # or the CLI
    cw.StudyDashboard.load("runs/mem")          # last line of a cell: shows the widget

Pick configurations (the study's groups: a grid point without its seed) and individual
runs, overlay their causal-plane trajectories (each group's mean over its seeds, with a
+-1 sd cross at the scrubbed epoch; picked runs as thin lines) and scrub one epoch across
all of them. Below the plane, one small loss / test-accuracy chart per group.

Python computes, the browser (``js/study.js``) only draws. What crosses (bits, rounded to
1e-6 like the training dashboard's payloads, :mod:`causal_widgets.widgets.payloads`):

* ``groups``: ``[{name, colour, n_runs, n_complete, settings}]`` every configuration, in
  study order (``colour`` is its index: stable when others are hidden);
* ``runs``: ``[{run_id, group, seed, status, colour}]`` every run;
* ``plane``: ``{metric, groups: {group: {layer: {epoch, n, n_bounded, x, y, x_sd, y_sd}}},
  runs: {run_id: {group, seed, layers: {layer: {epoch, n_bounded, x, y}}}}}`` for the shown groups
  (``selected_groups``), the picked runs (``selected_runs``) and the shown layers
  (``layer_filter``). ``x = M/sqrt2`` and ``y = (2 S - M)/sqrt2`` with M = EI (or
  EI_parts, ``plane_metric``) and S = sensitivity
  (:func:`causal_widgets.engine.plane.plane_xy`); a group's ``x``/``y`` are the means of
  its runs' coordinates and ``x_sd``/``y_sd`` their sample standard deviations (0 for a
  single run), as :func:`causal_widgets.studies.sweeps.plane_summary` computes them;
  ``n_bounded`` counts the runs whose point there is bounds, not an estimate (M's or
  S's status ``"bounds"``: the value is only a best guess inside a bracket), 0 or 1 for
  a run, and the front-end draws such points open;
* ``markers``: every shown trajectory's point at the scrubbed ``epoch`` (its own measured
  epoch nearest to it): ``[{group, run_id, layer, epoch, x, y, x_sd, y_sd, n_bounded}]``;
* ``curves``: ``{group: {epoch, n, loss, loss_sd, test_accuracy, test_accuracy_sd}}``
  mean +- sd over the group's runs of the per-epoch scalars (shown groups only);
* ``epochs``: the union of the measured epochs; ``layers``: every layer, network order;
  ``error``: what is wrong (no finished runs, a metric not measured, missing runs).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import pandas as pd
import traitlets

from causal_widgets.engine.plane import PLANE_METRICS
from causal_widgets.jsonable import to_jsonable
from causal_widgets.studies.sweeps import group_plane_means, run_plane_coords
from causal_widgets.widgets.frontend import _JS_DIR, esm_bundle, widget_css
from causal_widgets.widgets.payloads import (
    CURVE_SCALARS,
    _clean,
    curves_payload,
    nearest,
    row_statuses,
)

#: Metrics the plane can be drawn with (M in x = M/sqrt2, y = (2S - M)/sqrt2).
STUDY_PLANE_METRICS = PLANE_METRICS

_POINT_KEY = ["run_id", "layer", "epoch"]


def bounded_points(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``run_id, layer, epoch, bounded``: whether each run's plane point is bounds (its M
    or its S has status ``"bounds"``; rows of older runs without a status take it from
    their method, :func:`~causal_widgets.widgets.payloads.row_statuses`). A re-measured
    value counts with its latest row, as in the plane itself."""
    need = {"run_id", "layer", "epoch", "metric"}
    if results is None or results.empty or not need <= set(results.columns):
        return pd.DataFrame(columns=[*_POINT_KEY, "bounded"])
    rows = results.loc[results["metric"].isin([metric, "sensitivity"])]
    rows = rows.drop_duplicates([*_POINT_KEY, "metric"], keep="last")
    df = pd.DataFrame({
        "run_id": rows["run_id"].astype(str).to_numpy(),
        "layer": rows["layer"].astype(str).to_numpy(),
        "epoch": rows["epoch"].astype(np.int64).to_numpy(),
        "bounded": row_statuses(rows).eq("bounds").to_numpy(),
    })
    return df.groupby(_POINT_KEY, as_index=False, sort=False)["bounded"].any()


class StudyDashboard(anywidget.AnyWidget):
    """The causal-plane widgets over a whole study: ``StudyDashboard.load(DIR)``.

    ``StudyDashboard(data, title=None)`` takes the
    :class:`~causal_widgets.studies.sweeps.StudyData` of
    :func:`~causal_widgets.studies.sweeps.load_study` /
    :func:`~causal_widgets.studies.sweeps.sweep`.

    Synced state (other code may read and set these): ``selected_groups`` (configurations
    drawn; default all), ``selected_runs`` (run ids overlaid as thin lines; default none),
    ``epoch`` (the scrubbed epoch, common to all), ``plane_metric`` (``"ei"`` or
    ``"ei_parts"``), ``layer_filter`` (layers drawn; default all), and the
    Python-computed ``groups``, ``runs``, ``layers``, ``epochs``, ``plane``, ``markers``,
    ``curves``, ``error`` (see the module docstring).
    """

    _esm = esm_bundle(_JS_DIR / "study.js")
    _css = widget_css("study.css")

    title = traitlets.Unicode("Study").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    groups = traitlets.List(traitlets.Dict()).tag(sync=True)
    runs = traitlets.List(traitlets.Dict()).tag(sync=True)
    layers = traitlets.List(traitlets.Unicode()).tag(sync=True)
    epochs = traitlets.List(traitlets.Int()).tag(sync=True)

    selected_groups = traitlets.List(traitlets.Unicode()).tag(sync=True)
    selected_runs = traitlets.List(traitlets.Unicode()).tag(sync=True)
    epoch = traitlets.Int(0).tag(sync=True)
    plane_metric = traitlets.Unicode("ei").tag(sync=True)
    layer_filter = traitlets.List(traitlets.Unicode()).tag(sync=True)

    plane = traitlets.Dict().tag(sync=True)
    markers = traitlets.List(traitlets.Dict()).tag(sync=True)
    curves = traitlets.Dict().tag(sync=True)

    def __init__(self, data: Any, *, title: str | None = None) -> None:
        # validate before the widget opens its comm, so a bad call leaves nothing behind
        if isinstance(data, (str, os.PathLike)):
            raise TypeError(
                f"StudyDashboard takes a StudyData; to open the study folder {str(data)!r} "
                "use StudyDashboard.load(path)."
            )
        missing = [a for a in ("points", "results", "scalars", "study") if not hasattr(data, a)]
        if missing:
            raise TypeError(
                "StudyDashboard needs the StudyData of a study (causal_widgets.load_study(DIR) "
                f"or causal_widgets.sweep(...)); got {type(data).__name__} "
                f"(lacks {', '.join(missing)})."
            )
        self._ready = False
        self._data = data
        self._coords_cache: dict[str, tuple[dict, dict]] = {}
        name = getattr(data.study, "name", "") or "study"
        super().__init__(title=title or f"Study · {name}")
        self._build()

    # ----------------------------------------------------------------- construction
    @classmethod
    def load(cls, path: str | Path, *, title: str | None = None) -> StudyDashboard:
        """Open the study folder ``path`` (the ``--out`` of ``python -m causal_widgets sweep``).

        Raises ``FileNotFoundError`` (naming the fix) when ``path`` is not a study folder.
        """
        from causal_widgets.studies.sweeps import load_study

        return cls(load_study(path), title=title)

    @property
    def data(self) -> Any:
        """The :class:`~causal_widgets.studies.sweeps.StudyData` shown."""
        return self._data

    def reload(self) -> None:
        """Re-read the study folder (runs finished since are added); selections are kept
        where they still exist."""
        from causal_widgets.studies.sweeps import load_study

        self._data = load_study(self._data.path)
        self._coords_cache.clear()
        self._build(keep_selection=True)

    def _build(self, keep_selection: bool = False) -> None:
        data = self._data
        points = data.points.copy() if data.points is not None else pd.DataFrame()
        results = data.results if data.results is not None else pd.DataFrame()
        axes = [a for a in (getattr(data.study, "axes", None) or []) if a != "seed"]

        group_names: list[str] = []
        if "group" in points.columns:
            group_names = [str(g) for g in dict.fromkeys(points["group"])]
        if "group" in results.columns:
            group_names += [str(g) for g in dict.fromkeys(results["group"])
                            if str(g) not in group_names]
        groups = []
        for k, name in enumerate(group_names):
            rows = points[points["group"].astype(str) == name] if "group" in points else points
            settings = {}
            if len(rows):
                first = rows.iloc[0]
                settings = {a: to_jsonable(first[a]) for a in axes if a in rows.columns}
            complete = int((rows["status"] == "complete").sum()) if "status" in rows else 0
            groups.append({"name": name, "colour": k, "n_runs": int(len(rows)),
                           "n_complete": complete, "settings": settings})
        colour = {g["name"]: g["colour"] for g in groups}

        runs = []
        for _, row in points.iterrows():
            seed = row.get("seed")
            runs.append({
                "run_id": str(row["run_id"]),
                "group": str(row.get("group", "")),
                "seed": to_jsonable(seed),
                "status": str(row.get("status", "complete")),
                "colour": colour.get(str(row.get("group", "")), 0),
            })

        layers = ([str(x) for x in dict.fromkeys(results["layer"])]
                  if "layer" in results.columns else [])
        epochs = (sorted({int(e) for e in results["epoch"].dropna()})
                  if "epoch" in results.columns else [])
        metrics = set(results["metric"].unique()) if "metric" in results.columns else set()

        old_groups, old_runs = list(self.selected_groups), list(self.selected_runs)
        old_names = [g["name"] for g in self.groups]
        old_layers, old_layer_set = list(self.layer_filter), list(self.layers)
        with self.hold_sync():
            self._ready = False
            self.groups = groups
            self.runs = runs
            self.layers = layers
            self.epochs = epochs
            names = [g["name"] for g in groups]
            run_ids = [r["run_id"] for r in runs]
            if keep_selection:
                kept = [g for g in old_groups if g in names]
                # configurations new since the last look are shown too
                self.selected_groups = kept + [g for g in names if g not in old_names]
                self.selected_runs = [r for r in old_runs if r in run_ids]
                self.layer_filter = [x for x in old_layers if x in layers] + [
                    x for x in layers if x not in old_layer_set]
            else:
                self.selected_groups = names
                self.selected_runs = []
                self.layer_filter = layers
            if "ei" not in metrics and "ei_parts" in metrics:
                self.plane_metric = "ei_parts"
            if epochs and (not keep_selection or self.epoch not in epochs):
                self.epoch = epochs[-1]
            self._ready = True
            self._refresh()

    # ----------------------------------------------------------------- computation
    def _metric_frames(self, metric: str) -> tuple[dict, dict]:
        """For ``metric``, computed once: per-run points ``{(run_id, layer): frame}`` and
        per-group means ``{(group, layer): frame}`` (each frame sorted by epoch)."""
        if metric not in self._coords_cache:
            coords = run_plane_coords(self._data.results, metric)
            if coords.empty:  # nothing to flag (and its columns are untyped)
                coords = coords.assign(bounded=pd.Series(dtype=bool))
            else:
                flags = bounded_points(self._data.results, metric)
                coords = coords.merge(flags, on=_POINT_KEY, how="left")
            coords["n_bounded"] = coords["bounded"].eq(True).astype(np.int64)
            means = group_plane_means(coords)
            # how many of a group's runs are bounded at each point
            counts = coords.groupby(["group", "layer", "epoch"], as_index=False, sort=False)[
                "n_bounded"].sum()
            means = means.merge(counts, on=["group", "layer", "epoch"], how="left")
            means["n_bounded"] = means["n_bounded"].fillna(0).astype(np.int64)
            by_run = {k: f for k, f in coords.groupby(["run_id", "layer"], sort=False)}
            by_group = {k: f for k, f in means.groupby(["group", "layer"], sort=False)}
            self._coords_cache[metric] = (by_run, by_group)
        return self._coords_cache[metric]

    def _problems(self) -> list[str]:
        data = self._data
        msgs = []
        results = data.results
        path = getattr(data, "path", "")
        if results is None or results.empty:
            msgs.append(
                f"no finished runs in {str(path)!r} yet: run (or resume) the sweep, e.g. "
                "`python -m causal_widgets sweep ... --out DIR`, then call .reload()."
            )
            return msgs
        metrics = set(results["metric"].unique()) if "metric" in results.columns else set()
        metric = self.plane_metric
        for need in (metric, "sensitivity"):
            if need not in metrics:
                other = "ei_parts" if metric == "ei" else "ei"
                fix = (f" set plane_metric = {other!r}" if need == metric and other in metrics
                       else " measure with metrics including it")
                msgs.append(f"the study's results have no {need!r} measurements:{fix} to "
                            "draw the causal plane.")
        points = data.points
        if points is not None and "status" in points.columns:
            missing = points[points["status"] != "complete"]
            if len(missing):
                ids = ", ".join(map(str, missing["run_id"].head(5)))
                more = "" if len(missing) <= 5 else f" and {len(missing) - 5} more"
                msgs.append(
                    f"{len(missing)} of {len(points)} runs have no results yet ({ids}{more}): "
                    "rerun the same sweep to finish them, then call .reload()."
                )
        return msgs

    def _plane_payload(self) -> dict[str, Any]:
        metric = self.plane_metric
        by_run, by_group = self._metric_frames(metric)
        shown_layers = set(self.layer_filter)
        layer_order = [x for x in self.layers if x in shown_layers]
        groups_out: dict[str, dict[str, dict[str, list]]] = {}
        for name in self._ordered_selected_groups():
            entry: dict[str, dict[str, list]] = {}
            for layer in layer_order:
                block = by_group.get((name, layer))
                if block is None or block.empty:
                    continue
                entry[layer] = {
                    "epoch": [int(e) for e in block["epoch"]],
                    "n": [int(n) for n in block["n"]],
                    "n_bounded": [int(n) for n in block["n_bounded"]],
                    "x": _clean(block["x"]),
                    "y": _clean(block["y"]),
                    "x_sd": _clean(block["x_sd"]),
                    "y_sd": _clean(block["y_sd"]),
                }
            groups_out[name] = entry
        runs_out: dict[str, dict[str, Any]] = {}
        info = {r["run_id"]: r for r in self.runs}
        for rid in self.selected_runs:
            layers: dict[str, dict[str, list]] = {}
            for layer in layer_order:
                block = by_run.get((rid, layer))
                if block is None or block.empty:
                    continue
                layers[layer] = {
                    "epoch": [int(e) for e in block["epoch"]],
                    "n_bounded": [int(n) for n in block["n_bounded"]],
                    "x": _clean(block["x"]),
                    "y": _clean(block["y"]),
                }
            r = info.get(rid, {})
            runs_out[rid] = {"group": r.get("group", ""), "seed": r.get("seed"),
                             "colour": r.get("colour", 0), "layers": layers}
        return {"metric": metric, "groups": groups_out, "runs": runs_out}

    def _ordered_selected_groups(self) -> list[str]:
        chosen = set(self.selected_groups)
        return [g["name"] for g in self.groups if g["name"] in chosen]

    def _markers_payload(self) -> list[dict[str, Any]]:
        """Each shown trajectory's point at its measured epoch nearest to ``epoch``."""
        out = []
        plane = self.plane or {}
        for name, layers in (plane.get("groups") or {}).items():
            for layer, d in layers.items():
                e = nearest(d["epoch"], self.epoch)
                if e is None:
                    continue
                k = d["epoch"].index(e)
                out.append({"group": name, "run_id": None, "layer": layer, "epoch": e,
                            "x": d["x"][k], "y": d["y"][k],
                            "x_sd": d["x_sd"][k], "y_sd": d["y_sd"][k],
                            "n_bounded": d["n_bounded"][k]})
        for rid, r in (plane.get("runs") or {}).items():
            for layer, d in r["layers"].items():
                e = nearest(d["epoch"], self.epoch)
                if e is None:
                    continue
                k = d["epoch"].index(e)
                out.append({"group": r["group"], "run_id": rid, "layer": layer, "epoch": e,
                            "x": d["x"][k], "y": d["y"][k], "x_sd": None, "y_sd": None,
                            "n_bounded": d["n_bounded"][k]})
        return out

    def _refresh(self) -> None:
        """Recompute the plane, markers, curves and error from the selections."""
        if not self._ready:
            return
        with self.hold_sync():
            self.error = "\n".join(self._problems())
            self.plane = self._plane_payload()
            self.curves = curves_payload(self._data.scalars, self._ordered_selected_groups())
            self.markers = self._markers_payload()

    # ----------------------------------------------------------------- observers
    @traitlets.validate("plane_metric")
    def _check_metric(self, proposal: dict) -> str:
        value = proposal["value"]
        if value not in STUDY_PLANE_METRICS:
            raise traitlets.TraitError(
                f"plane_metric must be 'ei' or 'ei_parts'; got {value!r}."
            )
        return value

    def _check_names(self, proposal: dict, known: list[str], what: str, trait: str) -> list:
        value = [str(v) for v in proposal["value"]]
        unknown = [v for v in value if v not in known]
        if unknown:
            shown = ", ".join(map(repr, known[:12])) + (" ..." if len(known) > 12 else "")
            raise traitlets.TraitError(
                f"{trait}: unknown {what} {', '.join(map(repr, unknown))}; "
                f"the study has {shown}."
            )
        return list(dict.fromkeys(value))  # no duplicates, order kept

    @traitlets.validate("selected_groups")
    def _check_groups(self, proposal: dict) -> list:
        return self._check_names(proposal, [g["name"] for g in self.groups],
                                 "configuration(s)", "selected_groups")

    @traitlets.validate("selected_runs")
    def _check_runs(self, proposal: dict) -> list:
        return self._check_names(proposal, [r["run_id"] for r in self.runs],
                                 "run id(s)", "selected_runs")

    @traitlets.validate("layer_filter")
    def _check_layers(self, proposal: dict) -> list:
        return self._check_names(proposal, list(self.layers), "layer(s)", "layer_filter")

    @traitlets.observe("selected_groups", "selected_runs", "plane_metric", "layer_filter")
    def _selection_changed(self, change: dict) -> None:
        self._refresh()

    @traitlets.observe("epoch")
    def _epoch_changed(self, change: dict) -> None:
        if self._ready:
            self.markers = self._markers_payload()


__all__ = ["CURVE_SCALARS", "StudyDashboard", "curves_payload"]

"""Static figures of the reproduction (matplotlib, Agg): causal planes, time series, heatmaps.

Figures are built as bare :class:`matplotlib.figure.Figure` objects, never through
``pyplot``: no global state, no backend switch (a notebook keeps its inline backend, and
``savefig`` renders with Agg / the SVG backend headless), nothing to close.

All functions take the tidy results of :mod:`causal_widgets.paper.reproduce` (columns ``run,
epoch, layer, metric, value, ...``; values in bits) and return matplotlib figures;
:func:`save_figure` writes PNG and SVG.

**The causal plane** (``docs/metrics.md``): each layer is a point (S, D) with
S = sensitivity and D = degeneracy = S - EI. The paper draws these axes rotated by 45
degrees, so the horizontal coordinate is (S - D)/sqrt(2) = EI/sqrt(2) and the vertical
one (S + D)/sqrt(2) = (2 S - EI)/sqrt(2). The vertical line x = 0 is the EI nullcline.
With ``metric="ei_parts"`` EI_parts takes EI's place (D_parts = S - EI_parts). The
coordinates come from :func:`causal_widgets.engine.plane.plane_coords`.

**Statuses** (``docs/metrics.md``, "Honest values at every width"): a value whose status
is ``"bounds"`` (its interval ``[ci_low, ci_high]`` brackets the truth; the value is only
a best guess inside it, e.g. whole EI of a wide layer) is drawn as an open marker with its
interval (error bars in the plane, a band over epochs), and the legend says so. Rows
without a status (older results) take it from their ``method``
(:func:`causal_widgets.engine.tidy.status_from_method`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from causal_widgets.extras import missing_extra

try:  # matplotlib is the paper extra's, not the core's: say so when it is missing
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
except ImportError as err:
    raise missing_extra("the paper's figures", "paper", err) from err

# the plane's coordinates are data, not drawing: they live in the engine, where figures,
# studies and both dashboards share the one function
from causal_widgets.engine.bounds import STATUSES
from causal_widgets.engine.plane import PLANE_METRICS, plane_box, plane_coords, wide
from causal_widgets.engine.tidy import status_from_method

SERIES_METRICS = ("ei", "ei_parts", "sensitivity", "degeneracy", "integration")
LABELS = {
    "ei": "EI",
    "ei_parts": "EI_parts",
    "sensitivity": "sensitivity",
    "degeneracy": "degeneracy (S − EI)",
    "integration": "integration (EI − EI_parts)",
    "degeneracy_parts": "degeneracy (S − EI_parts)",
}


#: how a bounded value is drawn: an open marker (white face, the layer's colour around it)
OPEN_FACE = "white"


def row_bounded(results: pd.DataFrame) -> pd.Series:
    """Whether each row's value is bounds (``status == "bounds"``), not exact or estimated.

    Rows without a status (results written before statuses existed) are exact or
    estimates (:func:`~causal_widgets.engine.tidy.status_from_method`), never bounds.
    """
    if "status" not in results.columns:
        return pd.Series(False, index=results.index)
    status = results["status"]
    known = status.dropna()
    bad = sorted({str(s) for s in known.unique()} - set(STATUSES))
    if bad:
        raise ValueError(
            f"the results' status column holds {bad}: each row's status must be one of "
            f"{list(STATUSES)}, or empty for rows written before statuses existed."
        )
    if "method" in results.columns:
        status = status.where(status.notna(), results["method"].map(status_from_method))
    return status.eq("bounds")


def plane_points(results: pd.DataFrame, metric: str = "ei") -> pd.DataFrame:
    """``run, epoch, layer, x, y, x0, x1, y0, y1, bounded``: the plane's points with their
    interval boxes (:func:`~causal_widgets.engine.plane.plane_box` of M's and S's
    ``ci_low``/``ci_high``) and whether either of M (EI or EI_parts) and S is bounds.

    The points are :func:`~causal_widgets.engine.plane.plane_coords`'s; a missing
    interval collapses onto the value.
    """
    coords = plane_coords(results, metric)  # checks ``metric`` and the columns
    df = results if "run" in results.columns else results.assign(run=0)
    df = df[df["metric"].isin([metric, "sensitivity"])]
    df = df.assign(bounded=row_bounded(df))
    for c in ("ci_low", "ci_high"):
        if c not in df.columns:
            df = df.assign(**{c: np.nan})
    # groupby-first (not pivot_table, which drops all-NaN columns such as missing CIs)
    w = (df.groupby(["run", "epoch", "layer", "metric"])[
        ["value", "ci_low", "ci_high", "bounded"]].first().unstack("metric"))
    key = pd.MultiIndex.from_frame(coords[["run", "epoch", "layer"]])
    w = w.reindex(key)

    def col(kind: str, m: str) -> np.ndarray:
        return w[(kind, m)].to_numpy(dtype=np.float64)

    box = plane_box(col("value", metric), col("ci_low", metric), col("ci_high", metric),
                    col("value", "sensitivity"), col("ci_low", "sensitivity"),
                    col("ci_high", "sensitivity"))
    # a missing entry (NaN after unstacking) is not bounded
    bounded = (w[("bounded", metric)].eq(True).to_numpy()
               | w[("bounded", "sensitivity")].eq(True).to_numpy())
    return coords.reset_index(drop=True).assign(**box, bounded=bounded)


def layer_order(results: pd.DataFrame) -> list[str]:
    """Layer names in the order they first appear (network order)."""
    return list(pd.unique(results["layer"]))


def layer_colours(layers: Sequence[str]) -> dict[str, Any]:
    """One colour per layer (tab10, in network order)."""
    cmap = matplotlib.colormaps["tab10"]
    return {name: cmap(k % 10) for k, name in enumerate(layers)}


def plot_causal_plane(
    results: pd.DataFrame, metric: str = "ei", ax: Any = None, title: str | None = None
) -> Figure:
    """Trajectories of every layer through the causal plane, one line per run.

    Lines join the measurements in time order (a dot at every measurement, a triangle at
    the first, a square at the last); the dashed vertical line is the EI nullcline and the
    faint diagonals are the rotated sensitivity (y = x) and degeneracy (y = -x) axes. A
    point whose M (or S) is bounds, not an estimate, is an open marker with error bars
    spanning its interval box, and the legend says so.
    """
    coords = plane_points(results, metric)
    if ax is None:
        fig = Figure(figsize=(6.2, 5.6))
        ax = fig.subplots()
    else:
        fig = ax.figure
    layers = layer_order(results)
    colours = layer_colours(layers)
    for name in layers:
        for k, (_, g) in enumerate(coords[coords.layer == name].groupby("run")):
            g = g.sort_values("epoch")
            c = colours[name]
            ax.plot(g.x, g.y, "-", color=c, lw=1.2, alpha=0.85,
                    label=name if k == 0 else None)
            est, bnd = g[~g.bounded], g[g.bounded]
            ax.plot(est.x, est.y, ".", color=c, ms=3, alpha=0.6)
            if len(bnd):
                # the value is only a guess inside its bracket: open, with the bracket
                ax.errorbar(bnd.x, bnd.y, xerr=_spans(bnd.x, bnd.x0, bnd.x1),
                            yerr=_spans(bnd.y, bnd.y0, bnd.y1), fmt="o", ms=4, mfc=OPEN_FACE,
                            mec=c, ecolor=c, elinewidth=0.7, alpha=0.75, ls="none",
                            gid="bounds")
            for row, marker in ((g.iloc[0], "^"), (g.iloc[-1], "s")):
                ax.plot(row.x, row.y, marker, mfc=OPEN_FACE if row.bounded else c, mec=c, ms=6)
    # each axis spans its own data (a trained layer's sensitivity can be ten times its EI,
    # so equal scales would squeeze the plane into a strip); the diagonals mark the
    # rotated S (y = x) and D (y = -x) axes
    # a bounded point's bracket is what it says: the limits take it in
    bnd = coords[coords.bounded]
    xs = (np.concatenate([coords.x, bnd.x0, bnd.x1, [0.0]]) if len(coords)
          else np.array([-1.0, 1.0]))
    ys = (np.concatenate([coords.y, bnd.y0, bnd.y1, [0.0]]) if len(coords)
          else np.array([-1.0, 1.0]))
    xs, ys = xs[np.isfinite(xs)], ys[np.isfinite(ys)]
    xr = max(float(xs.max() - xs.min()), 1e-3)
    yr = max(float(ys.max() - ys.min()), 1e-3)
    x_lim = (float(xs.min()) - 0.08 * xr, float(xs.max()) + 0.08 * xr)
    y_lim = (float(ys.min()) - 0.06 * yr, float(ys.max()) + 0.06 * yr)
    ax.axvline(0.0, color="0.3", ls="--", lw=1, zorder=0)
    t = np.array([-1e6, 1e6])
    ax.plot(t, t, color="0.8", lw=0.8, zorder=0)
    ax.plot(t, -t, color="0.8", lw=0.8, zorder=0)
    ax.set_xlim(*x_lim)
    ax.set_ylim(*y_lim)
    ax.text(1.0, -0.11, "dashed: EI nullcline · grey: sensitivity (y = x) and "
            "degeneracy (y = −x) axes · ▲ first, ■ last measurement",
            transform=ax.transAxes, ha="right", va="top", fontsize=7, color="0.4")
    name = LABELS[metric]
    ax.set_xlabel(f"{name} / √2  (bits)")
    ax.set_ylabel(f"(2·sensitivity − {name}) / √2  (bits)")
    ax.set_title(title or f"causal plane ({name})")
    handles, _ = ax.get_legend_handles_labels()
    if coords.bounded.any():
        handles.append(bounds_handle(f"open: {name} bounded, not estimated (bars: its interval)"))
    ax.legend(handles=handles, title="layer", fontsize=8, loc="upper left")
    ax.grid(alpha=0.2)
    return fig


def _spans(value: pd.Series, lo: pd.Series, hi: pd.Series) -> np.ndarray:
    """matplotlib's ``xerr`` / ``yerr``: the distances from the value down to ``lo`` and up
    to ``hi`` (never negative)."""
    v = value.to_numpy(dtype=np.float64)
    return np.clip(np.vstack([v - lo.to_numpy(dtype=np.float64),
                              hi.to_numpy(dtype=np.float64) - v]), 0.0, None)


def bounds_handle(label: str) -> Any:
    """The legend entry of a bounded value: an open grey marker."""
    from matplotlib.lines import Line2D

    return Line2D([], [], ls="none", marker="o", ms=5, mfc=OPEN_FACE, mec="0.3", label=label)


def plot_time_series(
    results: pd.DataFrame, scalars: pd.DataFrame | None = None, title: str | None = None
) -> Figure:
    """Loss and every metric against epoch: one colour per layer, one line per run.

    Where a metric's value is bounds (whole EI of a wide layer, and what is derived from
    it), it is an open marker over a band spanning its interval, with a legend entry.
    """
    w = wide(results)
    long = results if "run" in results.columns else results.assign(run=0)
    long = long.assign(bounded=row_bounded(long))
    metrics = [m for m in SERIES_METRICS if m in w.columns]
    if "degeneracy" not in metrics and "degeneracy_parts" in w.columns:
        metrics.append("degeneracy_parts")
    panels = ["loss"] + metrics
    ncol = 3
    nrow = math.ceil(len(panels) / ncol)
    fig = Figure(figsize=(4.2 * ncol, 3.0 * nrow))
    axes = fig.subplots(nrow, ncol, sharex=True, squeeze=False)
    layers = layer_order(results)
    colours = layer_colours(layers)
    ax = axes.flat[0]
    src = scalars if scalars is not None and "loss" in scalars.columns else \
        results.drop_duplicates(["run", "epoch"]) if "run" in results.columns else results
    if "loss" in src.columns:
        if "run" not in src.columns:
            src = src.assign(run=0)
        for run, g in src.groupby("run"):
            g = g.sort_values("epoch")
            ax.plot(g.epoch, g.loss, color="0.2", lw=1, alpha=0.8,
                    label="train" if run == src.run.min() else None)
            if "test_loss" in g.columns:
                ax.plot(g.epoch, g.test_loss, color="tab:red", lw=0.8, alpha=0.6,
                        label="test" if run == src.run.min() else None)
        ax.legend(fontsize=8)
    ax.set_title("loss per example")
    ax.set_ylabel("squared error")
    for ax, metric in zip(axes.flat[1:], metrics):
        rows = long[long.metric == metric]
        for name in layers:
            for k, (_, g) in enumerate(w[w.layer == name].groupby("run")):
                g = g.sort_values("epoch")
                ax.plot(g.epoch, g[metric], color=colours[name], lw=1.1, alpha=0.85,
                        label=name if k == 0 else None)
            _draw_bounded(ax, rows[rows.layer == name], colours[name])
        ax.axhline(0.0, color="0.7", lw=0.6)
        ax.set_title(LABELS.get(metric, metric))
        ax.set_ylabel("bits")
        if rows.bounded.any():
            ax.legend(handles=[bounds_handle("open: bounded (band: its interval)")], fontsize=7,
                      loc="lower right")
    if len(metrics):
        ax = axes.flat[1]
        handles, _ = ax.get_legend_handles_labels()
        if long[long.metric == metrics[0]].bounded.any():
            handles.append(bounds_handle("open: bounded (band: its interval)"))
        ax.legend(handles=handles, title="layer", fontsize=8)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _draw_bounded(ax: Any, rows: pd.DataFrame, colour: Any) -> None:
    """One layer's bounded values of one metric (tidy rows): a band over each run's
    bracket and an open marker at each value."""
    rows = rows[rows.bounded]
    if rows.empty:
        return
    for _, g in rows.groupby("run"):
        g = g.sort_values("epoch")
        lo = g["ci_low"] if "ci_low" in g.columns else g["value"]
        hi = g["ci_high"] if "ci_high" in g.columns else g["value"]
        ax.fill_between(g.epoch, lo, hi, color=colour, alpha=0.15, lw=0, gid="bounds")
        ax.plot(g.epoch, g.value, "o", ms=4, mfc=OPEN_FACE, mec=colour, ls="none",
                gid="bounds")


def plot_heatmaps(
    matrices: dict[str, dict[str, Any]], title: str | None = None
) -> Figure:
    """Each layer's edge matrices: EI_parts terms E[i, j] (top), sensitivity S[i, j] (bottom).

    ``matrices`` maps layer name -> ``{"ei_parts": (n_in, n_out), "sensitivity": ...}``
    (bits), e.g. ``History.matrix(epoch, layer)``. Rows are inputs i, columns outputs j.
    """
    names = [n for n, m in matrices.items() if m is not None]
    kinds = ("ei_parts", "sensitivity")
    fig = Figure(figsize=(3.3 * max(1, len(names)) + 1.0, 6.4), layout="constrained")
    axes = fig.subplots(2, max(1, len(names)), squeeze=False)
    vmax = max(
        [float(np.nanmax(m[k])) for n in names for k in kinds
         if (m := matrices[n]).get(k) is not None and np.size(m[k])] + [1e-9]
    )
    im = None
    for c, name in enumerate(names):
        for r, kind in enumerate(kinds):
            ax = axes[r, c]
            mat = matrices[name].get(kind)
            if mat is None:
                ax.set_axis_off()
                continue
            im = ax.imshow(np.asarray(mat), cmap="viridis", vmin=0.0, vmax=vmax,
                           aspect="auto", interpolation="nearest")
            ax.set_title(f"{name}: {LABELS[kind]}", fontsize=9)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("output j")
            ax.set_ylabel("input i")
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="bits")
    if title:
        fig.suptitle(title)
    return fig


def plot_history_heatmaps(history: Any, epoch: int | None = None,
                          title: str | None = None) -> Figure:
    """:func:`plot_heatmaps` of every layer of a ``History`` at ``epoch`` (default: the last)."""
    epochs = history.epochs()
    if not epochs:
        raise ValueError("the history has no measured epochs yet: record and wait() first.")
    epoch = epochs[-1] if epoch is None else int(epoch)
    names = [d["name"] for d in history.layers()] or list(
        pd.unique(history.frame()["layer"]))
    mats = {name: history.matrix(epoch, name) for name in names}
    return plot_heatmaps(mats, title=title or f"edge matrices at epoch {epoch}")


def save_figure(fig: Figure, out_dir: str | Path, name: str) -> list[Path]:
    """Write ``fig`` as ``out_dir/name.png`` (150 dpi) and ``.svg``; return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.svg"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    return paths


def experiment_figures(
    results: pd.DataFrame,
    scalars: pd.DataFrame | None,
    histories: Sequence[Any],
    out_dir: str | Path,
    title: str = "",
) -> list[Path]:
    """All figures of a training experiment: planes (EI, EI_parts), time series, heatmaps."""
    paths: list[Path] = []
    for metric in PLANE_METRICS:
        fig = plot_causal_plane(results, metric,
                                title=f"{title}: causal plane ({LABELS[metric]})")
        paths += save_figure(fig, out_dir, f"plane_{metric}")
    paths += save_figure(plot_time_series(results, scalars, title=title), out_dir,
                         "time_series")
    if histories and histories[0].epochs():
        last = histories[0].epochs()[-1]
        fig = plot_history_heatmaps(histories[0], last,
                                    title=f"{title}: edge matrices, run 0, epoch {last}")
        paths += save_figure(fig, out_dir, "heatmaps")
    return paths


def plot_edge_curves(results: pd.DataFrame) -> Figure:
    """Toy panel 1: EI of a single edge y = act(w x) against w, one line per bin count."""
    edge = results[results.panel == "edge"]
    acts = list(pd.unique(edge.activation))
    fig = Figure(figsize=(4.2 * len(acts), 3.4))
    axes = fig.subplots(1, len(acts), squeeze=False)
    cmap = matplotlib.colormaps["viridis"]
    bins = sorted(pd.unique(edge.bins))
    for ax, act in zip(axes[0], acts):
        for k, b in enumerate(bins):
            g = edge[(edge.activation == act) & (edge.bins == b)].sort_values("w1")
            ax.plot(g.w1, g.value, color=cmap(k / max(1, len(bins) - 1)), label=f"{b} bins")
            ax.axhline(math.log2(b), color=cmap(k / max(1, len(bins) - 1)), lw=0.5, ls=":")
        ax.set_title(f"single edge, {act}")
        ax.set_xlabel("weight w")
        ax.set_ylabel("EI (bits)")
        ax.grid(alpha=0.2)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_surfaces(results: pd.DataFrame) -> Figure:
    """Toy panel 2: EI, EI_parts, sensitivity, degeneracy of a 2->1 sigmoid layer over (w1, w2)."""
    surf = results[results.panel == "surface"]
    metrics = [m for m in ("ei", "ei_parts", "sensitivity", "degeneracy", "integration")
               if m in set(surf.metric)]
    fig = Figure(figsize=(3.6 * len(metrics), 3.4))
    axes = fig.subplots(1, len(metrics), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        g = surf[surf.metric == metric].pivot_table(index="w2", columns="w1", values="value")
        extent = (g.columns.min(), g.columns.max(), g.index.min(), g.index.max())
        cmap = "RdBu_r" if metric in ("degeneracy", "integration") else "viridis"
        vals = g.to_numpy()
        kw: dict[str, Any] = {}
        if cmap == "RdBu_r":
            v = float(np.nanmax(np.abs(vals))) or 1.0
            kw = dict(vmin=-v, vmax=v)
        im = ax.imshow(vals, origin="lower", extent=extent, cmap=cmap, aspect="auto", **kw)
        fig.colorbar(im, ax=ax, shrink=0.85, label="bits")
        ax.set_title(f"2→1 sigmoid: {LABELS[metric]}", fontsize=9)
        ax.set_xlabel("w1")
        ax.set_ylabel("w2")
    fig.tight_layout()
    return fig


def toy_figures(results: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Both toy figures as PNG + SVG."""
    paths = save_figure(plot_edge_curves(results), out_dir, "edge_ei")
    paths += save_figure(plot_surfaces(results), out_dir, "surfaces_2to1")
    return paths


# --------------------------------------------------------------------------- studies


def study_bounded(results: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """``group, layer, epoch, n_bounded``: per point of a study, how many of the group's
    runs have any of ``metrics`` bounds there (:func:`row_bounded`; 0 rows when none)."""
    cols = ["group", "layer", "epoch", "n_bounded"]
    need = {"group", "run_id", "layer", "epoch", "metric"}
    if results is None or results.empty or not need <= set(results.columns):
        return pd.DataFrame(columns=cols)
    rows = results[results["metric"].isin(list(metrics))]
    rows = rows.assign(bounded=row_bounded(rows))
    per_run = rows.groupby(["group", "run_id", "layer", "epoch"], sort=False)["bounded"].any()
    out = per_run.groupby(level=["group", "layer", "epoch"], sort=False).sum()
    return out.rename("n_bounded").reset_index()


def plot_study_planes(data: Any, metric: str = "ei") -> Figure:
    """One causal plane per configuration of a study: each layer's trajectory averaged over
    seeds (line), +-1 standard deviation across seeds (error bars), first measurement ▲,
    last one ■. All panels share their axes, so configurations compare. A mean over runs
    of which any has its M or S bounds (a best guess inside a bracket, not an estimate) is
    an open circle, and the legend says so."""
    summary = data.plane(metric)
    flags = study_bounded(data.results, [metric, "sensitivity"])
    if len(flags) and len(summary):
        summary = summary.merge(flags, on=["group", "layer", "epoch"], how="left")
    summary = summary.assign(
        bounded=summary["n_bounded"].fillna(0).gt(0) if "n_bounded" in summary else False)
    groups = list(pd.unique(data.points["group"]))
    groups = [g for g in groups if g in set(summary["group"])]
    n = max(1, len(groups))
    fig = Figure(figsize=(4.2 * n, 4.2))
    axes = np.atleast_1d(fig.subplots(1, n, sharex=True, sharey=True))
    layers = list(pd.unique(summary["layer"]))
    colours = layer_colours(layers)
    for ax, group in zip(axes, groups):
        part = summary[summary.group == group]
        for name in layers:
            g = part[part.layer == name].sort_values("epoch")
            if g.empty:
                continue
            c = colours[name]
            ax.errorbar(g.x, g.y, xerr=g.x_sd, yerr=g.y_sd, color=c, lw=1.2, alpha=0.85,
                        elinewidth=0.6, capsize=0, label=name)
            bnd = g[g.bounded]
            if len(bnd):
                ax.plot(bnd.x, bnd.y, "o", ms=4, mfc=OPEN_FACE, mec=c, ls="none", gid="bounds")
            for row, marker in ((g.iloc[0], "^"), (g.iloc[-1], "s")):
                ax.plot(row.x, row.y, marker, mfc=OPEN_FACE if row.bounded else c, mec=c, ms=6)
        runs = int(part["n"].max()) if len(part) else 0
        ax.set_title(f"{group}  ({runs} seed{'s' if runs != 1 else ''})", fontsize=10)
        ax.axvline(0.0, color="0.3", ls="--", lw=1, zorder=0)
        ax.grid(alpha=0.2)
        ax.set_xlabel(f"{LABELS[metric]} / √2  (bits)")
    axes[0].set_ylabel(f"(2·sensitivity − {LABELS[metric]}) / √2  (bits)")
    # every layer of every configuration (deeper configurations have more)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colours[name], lw=1.4, label=name) for name in layers]
    if summary["bounded"].any():
        handles.append(bounds_handle(
            f"open: {LABELS[metric]} bounded in some runs (a mean of best guesses)"))
    axes[0].legend(handles=handles, title="layer", fontsize=8, loc="upper left")
    fig.suptitle(f"{data.study.name}: causal plane, mean ± sd over seeds")
    return fig


def plot_study_series(data: Any, metric: str = "ei") -> Figure:
    """Against epoch, one line per configuration (mean over seeds, band = +-1 sd): training
    loss, training and test accuracy, and ``metric``, sensitivity and EI_parts of the first
    and last layer (bits). Where any of a configuration's runs has the value bounds (a
    best guess inside a bracket), its mean is an open marker, with a legend entry."""
    res, sca = data.results, data.scalars
    groups = [g for g in pd.unique(data.points["group"]) if g in set(res["group"])]
    layers = layer_order(res)
    first, last = layers[0], layers[-1]
    panels = [("loss", None), ("accuracy", None), ("test_accuracy", None),
              ("ei_parts", last), (metric, first), ("sensitivity", first), (metric, last),
              ("sensitivity", last)]
    fig = Figure(figsize=(15, 6.6))
    axes = fig.subplots(2, 4).ravel()
    cmap = matplotlib.colormaps["viridis"]
    colours = {g: cmap(k / max(1, len(groups) - 1) * 0.9) for k, g in enumerate(groups)}
    for ax, (what, layer) in zip(axes, panels):
        if layer is None:
            df = sca[["group", "run_id", "epoch", what]].rename(columns={what: "value"})
            title = what.replace("_", " ")
        else:
            df = res[(res.layer == layer) & (res.metric == what)]
            title = f"{layer}: {LABELS.get(what, what)} (bits)"
        flags = (study_bounded(res[res.layer == layer], [what]) if layer is not None
                 else pd.DataFrame(columns=["group", "epoch", "n_bounded"]))
        any_bounded = False
        for group in groups:
            g = df[df.group == group].groupby("epoch")["value"].agg(["mean", "std"])
            g["std"] = g["std"].fillna(0.0)
            c = colours[group]
            ax.plot(g.index, g["mean"], color=c, lw=1.3, label=group)
            ax.fill_between(g.index, g["mean"] - g["std"], g["mean"] + g["std"], color=c,
                            alpha=0.2, lw=0)
            f = flags[(flags.group == group) & (flags.n_bounded > 0)]
            at = g.loc[g.index.isin(f["epoch"])]
            if len(at):
                any_bounded = True
                ax.plot(at.index, at["mean"], "o", ms=4, mfc=OPEN_FACE, mec=c, ls="none",
                        gid="bounds")
        if any_bounded:
            ax.legend(handles=[bounds_handle("open: bounded in some runs")], fontsize=7,
                      loc="lower right")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.grid(alpha=0.2)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{data.study.name}: mean ± sd over seeds")
    fig.tight_layout()
    return fig


def study_figures(data: Any, out_dir: str | Path) -> list[Path]:
    """The study's figures (PNG + SVG): causal planes per configuration, time series."""
    paths = []
    for metric in ("ei", "ei_parts"):
        if metric in set(data.results["metric"]):
            paths += save_figure(plot_study_planes(data, metric), out_dir, f"planes_{metric}")
    paths += save_figure(plot_study_series(data), out_dir, "series")
    return paths

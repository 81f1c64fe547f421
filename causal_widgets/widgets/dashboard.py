"""The live causal dashboard: an anywidget over a background measurement Monitor.

Usage (in a notebook)::

    import torch, causal_widgets as cw
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Sigmoid(),
                                torch.nn.Linear(5, 3), torch.nn.Sigmoid())
    dash = cw.CausalDashboard(model, x_train, bins=8, every=10, in_range=(0, 1))
    dash                                  # last line of a cell: shows the widget
    for epoch in range(200):
        dash.record(epoch, loss=loss, accuracy=acc)   # cheap: snapshot + queue
        train_one_epoch(model)
    dash.wait(); dash.save("runs/mine")
    cw.CausalDashboard.load("runs/mine")  # scrubbable again, no model needed

What crosses to the browser is compact (all values in bits):

* ``plane``: per layer, column arrays over its measured epochs of ``ei``, ``ei_parts``,
  ``sensitivity`` and ``degeneracy`` with each one's
  95 % CI (``<metric>_lo``, ``<metric>_hi``); the front-end draws the causal plane from
  them (horizontal ``EI/sqrt2``, vertical ``(2 S - EI)/sqrt2``, see ``docs/metrics.md``).
* ``scalars``: the loss/accuracy/... series for every recorded epoch.
* ``heatmap``: only the selected layer's edge matrices at the scrubbed epoch
  (``E[i, j] = I(X_i; Y_j)``, ``S[i, j]``, ``S - E``) and the node contributions, recomputed
  here when ``epoch`` or ``selected_layer`` changes. Layers wider than
  :data:`HEATMAP_MAX_SIDE` neurons on a side are shown as block means.
* ``edge_history``: E and S of the edge in ``pinned_edge`` over all measured epochs.

Updates from the measurement thread are coalesced: at most one push per
``min_interval`` seconds (0.2 s, stretched to five times the cost of the last push so a
history of hundreds of layers x epochs never keeps the kernel busy).
"""

from __future__ import annotations

import math
import re
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import pandas as pd
import traitlets

_JS_DIR = Path(str(files("causal_widgets.js")))

# the one import form esm_bundle inlines: `import { a, b } from "./name.js";` on one line
_LOCAL_IMPORT = re.compile(r'^import \{([^}\n]*)\} from "\./([\w.-]+\.js)";[ \t]*$', re.M)
# any static import statement (what is left of these after inlining cannot be inlined)
_OTHER_IMPORT = re.compile(r"""^[ \t]*import(?:[ \t]*[{*"']|[ \t]+[\w$])""", re.M)
_EXPORT = re.compile(r"^export\b", re.M)
# a top-level declaration (the front-end modules indent everything else), with its name
_DECLARATION = re.compile(
    r"^(export )?(?:async )?(?:function\*?|const|let|var|class) +([A-Za-z_$][\w$]*)", re.M
)


def esm_bundle(path: Path) -> str:
    """The ES module at ``path`` as one self-contained module, for an anywidget ``_esm``.

    anywidget loads ONE module per widget, so a relative import does not resolve in the
    browser. Each line ``import { a, b } from "./name.js";`` is replaced by the text of
    ``name.js`` (next to ``path``) with ``export `` taken off its top-level declarations;
    node's test runner resolves the same import natively. One level deep: the inlined
    module may not import or re-export anything itself. Raises ``ValueError`` for what
    cannot be inlined that way (another import form, a missing file or name, ``export
    default`` / ``export {...}`` in the inlined module, a top-level name declared twice).
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    own = {m.group(2) for m in _DECLARATION.finditer(text)}
    inlined: set[str] = set()

    def inline(match: re.Match) -> str:
        names = [n.strip() for n in match.group(1).split(",") if n.strip()]
        dep = path.parent / match.group(2)
        where = f"{path.name}: {match.group(0).strip()!r}"
        if dep.name in inlined:
            raise ValueError(f"{where}: {dep.name} is imported twice; import it on one line")
        inlined.add(dep.name)
        if not dep.is_file():
            raise ValueError(f"{where}: no file {dep}")
        src = dep.read_text(encoding="utf-8")
        if _OTHER_IMPORT.search(src):
            raise ValueError(f"{where}: {dep.name} imports something itself; only one level "
                             "of imports can be inlined")
        declared = {m.group(2): bool(m.group(1)) for m in _DECLARATION.finditer(src)}
        body = _DECLARATION.sub(lambda m: m.group(0)[len(m.group(1) or ""):], src)
        left = _EXPORT.search(body)
        if left:
            line = body[left.start():].splitlines()[0]
            raise ValueError(f"{where}: cannot inline {dep.name}'s {line!r} (only "
                             "`export` of function/const/let/class declarations)")
        for name in names:
            if not re.fullmatch(r"[A-Za-z_$][\w$]*", name):
                raise ValueError(f"{where}: cannot inline {name!r} (no renaming: import the "
                                 "names as they are declared)")
            if not declared.get(name):
                raise ValueError(f"{where}: {dep.name} exports no {name!r}")
        clash = sorted(own & set(declared))
        if clash:
            raise ValueError(f"{where}: {path.name} declares {clash} again, which {dep.name} "
                             "declares too (one scope once inlined)")
        return (f"// ---- {dep.name}, inlined by causal_widgets.widgets.dashboard.esm_bundle\n"
                f"{body.rstrip()}\n// ---- end of {dep.name}")

    out = _LOCAL_IMPORT.sub(inline, text)
    left = _OTHER_IMPORT.search(out)
    if left:
        line = out[left.start():].splitlines()[0].strip()
        raise ValueError(f"{path.name}: cannot inline {line!r} (only single-line "
                         '`import { a, b } from "./name.js";`)')
    return out


def widget_css(name: str) -> str:
    """A widget's ``_css``: ``js/common.css`` (the look both widgets share), then ``name``."""
    return "\n".join((_JS_DIR / f).read_text(encoding="utf-8") for f in ("common.css", name))


#: Matrices with more neurons than this on a side are sent as block means.
HEATMAP_MAX_SIDE = 80

#: Metrics carried in the ``plane`` trait (each with ``_lo`` / ``_hi`` CI bounds).
#: The front-end derives D = S - EI (or S - EI_parts) itself, so integration and
#: degeneracy_parts stay in ``results`` and do not cross (a third less to send).
PLANE_METRICS = ("ei", "ei_parts", "sensitivity", "degeneracy")

#: Decimal places kept for values sent to the browser: 1e-6 bits is far below any
#: estimate's uncertainty and keeps the JSON short (display only; ``results`` is exact).
_DECIMALS = 6

_MIN_INTERVAL = 0.2
# while only the loss curve moves (training records every epoch, no result landed), refresh
# it at most twice a second: each refresh holds the GIL against the training loop
_SCALARS_INTERVAL = 0.5


def _clean(values: Any, decimals: int | None = _DECIMALS) -> list:
    """Floats rounded to ``decimals`` places (``None``: exact) as a JSON-safe list.

    Non-finite values become ``None`` (JSON null): the browser must never see NaN.
    """
    arr = np.asarray(values, dtype=np.float64)
    rounded = arr if decimals is None else np.round(arr, decimals)
    out = rounded.astype(object)
    out[~np.isfinite(arr)] = None
    return out.tolist()


def _jsonable(value: Any) -> Any:
    """Plain JSON types for an error/status entry (numpy scalars, NaN -> None)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)


def plane_payload(frame: pd.DataFrame) -> dict[str, dict[str, list]]:
    """Per-layer column arrays of the plane metrics from a tidy results frame.

    Returns ``{layer: {"epoch": [...], "ei": [...], "ei_lo": [...], "ei_hi": [...], ...}}``
    for the metrics in :data:`PLANE_METRICS`, one entry per measured epoch of that layer
    (sorted), ``None`` where a metric was not measured (or is not finite).
    """
    needed = {"layer", "epoch", "metric", "value"}
    if frame is None or frame.empty or not needed <= set(frame.columns):
        return {}
    cols = ["layer", "epoch", "metric", "value"]
    has_ci = {"ci_low", "ci_high"} <= set(frame.columns)
    if has_ci:
        cols += ["ci_low", "ci_high"]
    df = frame.loc[frame["metric"].isin(PLANE_METRICS), cols].copy()
    # a re-measured (epoch, layer, metric) keeps its latest value
    df = df.drop_duplicates(["layer", "epoch", "metric"], keep="last")
    if df.empty:
        return {}
    df["epoch"] = df["epoch"].astype(np.int64)
    if not has_ci:
        df["ci_low"] = np.nan
        df["ci_high"] = np.nan
    # unstack (not pivot_table) so only (layer, epoch) pairs that were measured appear
    wide = df.set_index(["layer", "epoch", "metric"])[["value", "ci_low", "ci_high"]].unstack(
        "metric"
    )
    layer_order = list(dict.fromkeys(df["layer"]))
    out: dict[str, dict[str, list]] = {}
    for layer in layer_order:
        try:
            block = wide.xs(layer, level="layer").sort_index()
        except KeyError:
            continue

        def col(kind: str, metric: str, block: pd.DataFrame = block) -> np.ndarray:
            if (kind, metric) in block.columns:
                return block[(kind, metric)].to_numpy(dtype=np.float64)
            return np.full(len(block), np.nan)

        entry: dict[str, list] = {"epoch": [int(e) for e in block.index]}
        values = {m: (col("value", m), col("ci_low", m), col("ci_high", m)) for m in PLANE_METRICS}
        for m, (v, lo, hi) in values.items():
            entry[m] = _clean(v)
            entry[f"{m}_lo"] = _clean(lo)
            entry[f"{m}_hi"] = _clean(hi)
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


class CausalDashboard(anywidget.AnyWidget):
    """Watch a network's causal structure while it trains; scrub it afterwards.

    ``CausalDashboard(model, example_input, bins=8, every=1, layers=None,
    drop_stale=True, device=None, **measure_kwargs)`` starts a background
    :class:`~causal_widgets.live.monitor.Monitor` (``measure_kwargs`` go to
    ``measure_layer``, e.g. ``in_range=(0, 1)``, ``samples=``, ``metrics=``;
    ``max_pending`` goes to the monitor). ``executor="ray"`` (or a
    :class:`~causal_widgets.live.executors.RayExecutor`, or ``"process"``) measures on a Ray
    cluster (or a local process) instead of a thread here; the training loop and the
    widget are the same. Call :meth:`record` once per epoch; every
    ``every``-th epoch is measured in the background and appears live.

    Synced state (other code may read and set these): ``epoch`` (the scrubbed epoch),
    ``selected_layer`` (module path), ``epochs`` (measured so far), ``plane_metric``
    (``"ei"`` or ``"ei_parts"``), ``show_ci``, ``heatmap_kind`` (``"ei_parts"``,
    ``"sensitivity"`` or ``"difference"``), ``pinned_edge`` (``[i, j]`` or ``[]``) and the
    Python-computed ``plane``, ``scalars``, ``layers``, ``status``, ``errors``,
    ``heatmap``, ``edge_history``. :attr:`results` is the tidy table of everything.
    """

    _esm = esm_bundle(_JS_DIR / "dashboard.js")
    _css = widget_css("dashboard.css")

    epoch = traitlets.Int(0).tag(sync=True)
    selected_layer = traitlets.Unicode("").tag(sync=True)
    epochs = traitlets.List(traitlets.Int()).tag(sync=True)
    plane_metric = traitlets.Unicode("ei").tag(sync=True)
    show_ci = traitlets.Bool(False).tag(sync=True)
    heatmap_kind = traitlets.Unicode("ei_parts").tag(sync=True)
    pinned_edge = traitlets.List(traitlets.Int(), maxlen=2).tag(sync=True)

    layers = traitlets.List(traitlets.Dict()).tag(sync=True)
    plane = traitlets.Dict().tag(sync=True)
    scalars = traitlets.Dict().tag(sync=True)
    status = traitlets.Dict().tag(sync=True)
    errors = traitlets.List(traitlets.Dict()).tag(sync=True)
    heatmap = traitlets.Dict().tag(sync=True)
    edge_history = traitlets.Dict().tag(sync=True)
    title = traitlets.Unicode("Causal structure").tag(sync=True)

    def __init__(
        self,
        model: Any = None,
        example_input: Any = None,
        *,
        bins: int = 8,
        every: int = 1,
        layers: Any = None,
        drop_stale: bool = True,
        device: Any = None,
        executor: Any = None,
        title: str = "Causal structure",
        **measure_kwargs: Any,
    ) -> None:
        history = measure_kwargs.pop("_history", None)
        if history is None:
            # validate before the widget opens its comm, so a bad call leaves nothing behind
            if model is None:
                raise TypeError(
                    "CausalDashboard needs a model and an example input: "
                    "CausalDashboard(model, example_input, ...); to reopen a saved run "
                    "use CausalDashboard.load(path)."
                )
            if example_input is None:
                raise TypeError(
                    "CausalDashboard needs an example input batch (a tensor the model "
                    "accepts) to find its layers: CausalDashboard(model, x_train[:64])."
                )
            if not isinstance(every, int) or isinstance(every, bool) or every < 1:
                raise ValueError(
                    f"every must be a positive int (measure every k-th epoch); got {every!r}."
                )
        self._lock = threading.RLock()
        self._push_lock = threading.Lock()
        self._revision: int | None = None
        self._results_revision: int | None = None
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self._min_interval = _MIN_INTERVAL
        self._last_push = 0.0
        self._follow = True
        self._internal = False
        self._edge_cache: dict[tuple[str, int, int], dict[int, tuple[float, float]]] = {}
        self._heatmap_key: tuple | None = None
        self._closed = False
        self._monitor = None
        self._history = history
        super().__init__(title=title)
        if history is None:
            from causal_widgets.live.monitor import Monitor

            try:
                self._monitor = Monitor(
                    model,
                    example_input,
                    layers=layers,
                    every=every,
                    drop_stale=drop_stale,
                    device=device,
                    executor=executor,
                    on_update=self._on_update,
                    bins=bins,
                    **measure_kwargs,
                )
            except BaseException:
                super().close()  # no half-made widget left behind
                raise
            self._history = self._monitor.history
        self._push()

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_history(cls, history: Any, *, title: str = "Causal structure") -> CausalDashboard:
        """A dashboard over an existing :class:`~causal_widgets.live.store.History` (no model)."""
        return cls(_history=history, title=title)

    @classmethod
    def load(cls, path: str | Path, *, title: str | None = None) -> CausalDashboard:
        """Reopen a run saved with :meth:`save` (or any ``History.save`` directory).

        The dashboard is fully scrubbable but has no model: :meth:`record` raises.
        """
        from causal_widgets.live.store import History

        history = History.load(path)
        return cls.from_history(history, title=title or f"Causal structure · {Path(path).name}")

    # ----------------------------------------------------------------- user API
    @property
    def history(self) -> Any:
        """The :class:`~causal_widgets.live.store.History` behind the dashboard."""
        return self._history

    @property
    def monitor(self) -> Any:
        """The background :class:`~causal_widgets.live.monitor.Monitor` (``None`` after :meth:`load`)."""
        return self._monitor

    @property
    def results(self) -> pd.DataFrame:
        """The tidy table of every measurement so far (``History.frame()``, full precision)."""
        return self._history.frame()

    def record(self, epoch: int, **scalars: float) -> None:
        """Snapshot the model now for ``epoch`` (measured in the background if due).

        Scalars such as ``loss=`` and ``accuracy=`` are stored for every epoch and drawn
        in the loss panel. Cheap: the weights are copied and queued.
        """
        if self._monitor is None:
            raise RuntimeError(
                "this dashboard has no model (it was loaded from disk); create a live one "
                "with CausalDashboard(model, example_input) to record new epochs."
            )
        if self._closed:
            raise RuntimeError(
                "this dashboard was closed; create a new CausalDashboard to keep recording."
            )
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)):
            raise TypeError(f"epoch must be an int; got {type(epoch).__name__} ({epoch!r}).")
        clean = {}
        for k, v in scalars.items():
            try:
                clean[k] = float(v.item() if hasattr(v, "item") else v)
            except (TypeError, ValueError) as err:
                raise TypeError(
                    f"scalar {k!r} must be a number (e.g. loss.item()); got {type(v).__name__}."
                ) from err
        self._monitor.record(int(epoch), **clean)
        self._on_update()

    def wait(self, timeout: float | None = None) -> None:
        """Block until every queued snapshot is measured, then bring the widget up to date.

        Raises ``TimeoutError`` (from the monitor) when ``timeout`` seconds pass first.
        """
        if self._monitor is not None:
            self._monitor.wait(timeout)
        self._push()

    def save(self, path: str | Path) -> None:
        """Write the history (results, scalars, matrices, errors) to directory ``path``."""
        self._history.save(path)

    def close(self, widget: bool = False) -> None:
        """Stop the background measurement; the view stays and can still be scrubbed.

        ``widget=True`` also closes the front-end comm (ipywidgets' ``Widget.close``),
        removing every view of this dashboard.
        """
        if not getattr(self, "_closed", True):
            self._closed = True
            self._stop.set()
            self._dirty.set()
            if self._monitor is not None:
                self._monitor.close()
            try:
                self._push()
            except Exception:  # noqa: BLE001 - closing must not fail on a display refresh
                pass
        if widget:
            super().close()

    def __del__(self) -> None:
        try:
            self.close(widget=True)
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass

    def refresh(self) -> None:
        """Recompute every synced trait from the history now (normally automatic)."""
        self._push()

    # ----------------------------------------------------------------- background sync
    def _on_update(self) -> None:
        """Called from the worker thread when something landed: schedule a coalesced push."""
        self._dirty.set()
        if self._flusher is None and not self._stop.is_set():
            with self._lock:
                if self._flusher is None:
                    self._flusher = threading.Thread(
                        target=self._flush_loop, name="cw-dashboard-sync", daemon=True
                    )
                    self._flusher.start()

    def _flush_loop(self) -> None:
        while not self._stop.is_set():
            # a timeout so the status line (queued/running) also refreshes during long
            # measurements that report nothing
            self._dirty.wait(timeout=2.0)
            if self._stop.is_set():
                break
            delay = self._last_push + self._min_interval - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            self._dirty.clear()
            try:
                self._push()
            except Exception as err:  # noqa: BLE001 - a failed refresh must not kill syncing
                warnings.warn(f"causal dashboard refresh failed: {err!r}", stacklevel=1)

    def _status_payload(self, epochs: list[int]) -> dict[str, Any]:
        dropped = list(self._history.dropped())
        errors = self._history.errors()
        if self._monitor is not None:
            st = dict(self._monitor.status())
            state = "closed" if self._closed else (
                "measuring" if (st.get("running") or st.get("queued")) else "idle"
            )
        else:
            st = {"queued": 0, "running": 0, "done": len(epochs), "dropped": len(dropped)}
            state = "loaded"
        st.setdefault("errors", len(errors))
        st.setdefault("dropped", len(dropped))
        st["state"] = state
        st["measured_epochs"] = len(epochs)
        st["dropped_epochs"] = [int(e) for e in dropped[-20:]]
        n_dropped = int(st.get("dropped") or 0)
        st["notice"] = (
            f"dropped {n_dropped} stale snapshot{'s' if n_dropped != 1 else ''} to keep up "
            "with training (measure less often with every=k to keep them)"
            if n_dropped
            else ""
        )
        return _jsonable(st)

    @staticmethod
    def _scalars_payload(hist: Any) -> dict[str, list]:
        """The loss/accuracy series for the front-end: epoch + one list per scalar."""
        scal = hist.scalars()
        payload: dict[str, list] = {}
        if scal is not None and not scal.empty and "epoch" in scal.columns:
            scal = scal.sort_values("epoch")
            payload["epoch"] = [int(e) for e in scal["epoch"]]
            for c in scal.columns:
                if c != "epoch" and pd.api.types.is_numeric_dtype(scal[c]):
                    # loss/accuracy keep full precision: their scale is the user's, not bits
                    payload[str(c)] = _clean(scal[c].to_numpy(dtype=np.float64), decimals=None)
        return payload

    def _push(self) -> None:
        """Recompute the synced traits from the history (any thread).

        Pushes are serialised by ``_push_lock``; the history is read (the slow part on a
        long run) without holding ``_lock``, which guards only the trait assignments, so
        the user's scrubbing is never blocked behind a refresh.
        """
        t0 = time.monotonic()
        with self._push_lock:
            hist = self._history
            if hist is None:  # the monitor is still being built
                return
            # read the revision first: anything landing after it triggers another push
            revision = getattr(hist, "revision", None)
            results_revision = getattr(hist, "results_revision", None)
            if revision is not None and revision == self._revision:
                # nothing new in the history: only the status line may have moved
                status = self._status_payload(list(self.epochs))
                with self._lock:
                    self.status = status
                return
            if results_revision is not None and results_revision == self._results_revision:
                # only scalars (the loss curve) moved: the plane, layers and heatmap stand.
                # This is the common case while training records every epoch, and skipping
                # the frame rebuild keeps this thread from holding the GIL against training.
                scalars_payload = self._scalars_payload(hist)
                status = self._status_payload(list(self.epochs))
                with self._lock, self.hold_sync():
                    self.scalars = scalars_payload
                    self.status = status
                self._revision = revision
                self._last_push = time.monotonic()
                self._min_interval = max(self._min_interval, _SCALARS_INTERVAL)
                return
            frame = hist.frame()
            plane = plane_payload(frame)
            epochs = (
                sorted({int(e) for e in frame["epoch"].dropna()})
                if "epoch" in frame.columns
                else []
            )
            status = self._status_payload(epochs)
            layer_list = []
            seen = set()
            for entry in hist.layers() or []:
                d = _jsonable(dict(entry))
                layer_list.append(d)
                seen.add(d.get("name"))
            for name in plane:
                if name not in seen:
                    layer_list.append({"name": name, "n_in": None, "n_out": None, "kind": ""})
            scalars_payload = self._scalars_payload(hist)
            errors = [_jsonable(dict(e)) for e in hist.errors()]
            with self._lock, self.hold_sync():
                self.layers = layer_list
                self.plane = plane
                self.scalars = scalars_payload
                self.errors = errors
                self.status = status
                self.epochs = epochs
                self._internal = True
                try:
                    if self._follow and epochs and self.epoch != epochs[-1]:
                        self.epoch = epochs[-1]
                    names = [d["name"] for d in layer_list]
                    if names and self.selected_layer not in names:
                        self.selected_layer = names[0]
                finally:
                    self._internal = False
                self._refresh_heatmap(force=False)
                self._refresh_edge_history()
            self._revision = revision
            self._results_revision = results_revision
        cost = time.monotonic() - t0
        self._last_push = time.monotonic()
        self._min_interval = max(_MIN_INTERVAL, 5.0 * cost)

    # ----------------------------------------------------------------- observers
    @traitlets.validate("plane_metric")
    def _check_metric(self, proposal: dict) -> str:
        value = proposal["value"]
        if value not in ("ei", "ei_parts"):
            raise traitlets.TraitError(
                f"plane_metric must be 'ei' or 'ei_parts'; got {value!r}."
            )
        return value

    @traitlets.validate("heatmap_kind")
    def _check_kind(self, proposal: dict) -> str:
        value = proposal["value"]
        if value not in ("ei_parts", "sensitivity", "difference"):
            raise traitlets.TraitError(
                f"heatmap_kind must be 'ei_parts', 'sensitivity' or 'difference'; got {value!r}."
            )
        return value

    @traitlets.observe("epoch")
    def _epoch_changed(self, change: dict) -> None:
        if not self._internal:
            # scrubbing away from the newest epoch stops following new measurements;
            # scrubbing back to the end resumes it
            self._follow = bool(self.epochs) and change["new"] >= self.epochs[-1]
        with self._lock:
            self._refresh_heatmap(force=False)
            self._refresh_edge_history()

    @traitlets.observe("selected_layer")
    def _layer_changed(self, change: dict) -> None:
        with self._lock:
            if self.pinned_edge:
                self.pinned_edge = []
            self._refresh_heatmap(force=False)

    @traitlets.observe("pinned_edge")
    def _edge_changed(self, change: dict) -> None:
        with self._lock:
            self._refresh_edge_history()

    def _layer_epochs(self, layer: str) -> list[int]:
        return list(self.plane.get(layer, {}).get("epoch", []))

    def _refresh_heatmap(self, force: bool = True) -> None:
        layer = self.selected_layer
        if not layer:
            self.heatmap = {}
            self._heatmap_key = None
            return
        shown = nearest(self._layer_epochs(layer), self.epoch)
        key = (layer, shown, self.epoch)
        if not force and key == self._heatmap_key and self.heatmap.get("available"):
            return
        if shown is None:
            self.heatmap = heatmap_payload(
                None,
                layer=layer,
                epoch=None,
                requested_epoch=self.epoch,
                message=f"layer {layer!r} has not been measured yet",
            )
        else:
            matrices = self._history.matrix(shown, layer)
            msg = "" if shown == self.epoch else (
                f"epoch {self.epoch} was not measured for {layer}; showing epoch {shown}"
            )
            if matrices is None:
                msg = f"no edge matrices stored for {layer} at epoch {shown}"
            self.heatmap = heatmap_payload(
                matrices, layer=layer, epoch=shown, requested_epoch=self.epoch, message=msg
            )
        self._heatmap_key = key

    def _refresh_edge_history(self) -> None:
        edge = list(self.pinned_edge)
        layer = self.selected_layer
        if len(edge) != 2 or not layer:
            if self.edge_history:
                self.edge_history = {}
            return
        i, j = int(edge[0]), int(edge[1])
        cache = self._edge_cache.setdefault((layer, i, j), {})
        epochs = self._layer_epochs(layer)
        for ep in epochs:
            if ep in cache:
                continue
            m = self._history.matrix(ep, layer)
            if m is None:
                continue
            vals = []
            for kind in ("ei_parts", "sensitivity"):
                a = m.get(kind)
                ok = a is not None and i < np.shape(a)[0] and j < np.shape(a)[1]
                vals.append(float(np.asarray(a)[i, j]) if ok else float("nan"))
            cache[ep] = (vals[0], vals[1])
        known = [ep for ep in epochs if ep in cache]
        e = np.array([cache[ep][0] for ep in known], dtype=np.float64)
        s = np.array([cache[ep][1] for ep in known], dtype=np.float64)
        if known and not (np.isfinite(e).any() or np.isfinite(s).any()):
            message = f"edge ({i}, {j}) is outside layer {layer}'s matrix"
        else:
            message = ""
        self.edge_history = {
            "layer": layer,
            "i": i,
            "j": j,
            "epoch": known,
            "ei_parts": _clean(e),
            "sensitivity": _clean(s),
            "difference": _clean(s - e),
            "message": message,
        }


# --------------------------------------------------------------------------- helpers
def attach(
    model: Any,
    example_input: Any,
    *,
    every: int = 1,
    display: bool = True,
    **kwargs: Any,
) -> tuple[CausalDashboard, Callable[..., None]]:
    """A dashboard on ``model`` plus a plain hook to call once per epoch.

    >>> dash, hook = cw.attach(model, x_train, every=5)   # doctest: +SKIP
    >>> for epoch in range(100):                          # doctest: +SKIP
    ...     hook(loss=loss.item())       # epoch counted for you, or hook(epoch, loss=...)

    The dashboard is displayed right away inside a notebook (``display=False`` to
    skip). ``kwargs`` go to :class:`CausalDashboard` (``bins``, ``in_range``, ...).
    """
    dash = CausalDashboard(model, example_input, every=every, **kwargs)
    counter = {"next": 0}

    def hook(epoch: int | None = None, **scalars: float) -> None:
        """Record one epoch: ``hook(loss=...)`` counts epochs 0, 1, 2, ... itself."""
        if epoch is None:
            epoch = counter["next"]
        dash.record(int(epoch), **scalars)
        counter["next"] = int(epoch) + 1

    if display:
        try:
            from IPython import get_ipython
            from IPython.display import display as ipy_display
        except ImportError:  # pragma: no cover - IPython ships with ipywidgets
            get_ipython = None
        if get_ipython is not None and get_ipython() is not None:
            ipy_display(dash)
    return dash, hook


_LOSS_KEYS = ("train_loss", "train_loss_epoch", "loss", "train/loss")
_ACC_KEYS = ("train_acc", "train_accuracy", "acc", "accuracy", "val_acc", "val_accuracy")


def _callback_base() -> type:
    """Lightning's ``Callback`` if Lightning is installed (Trainer checks the type), else object."""
    for mod in ("lightning.pytorch", "pytorch_lightning"):
        try:
            module = __import__(mod, fromlist=["Callback"])
            return module.Callback
        except ImportError:
            continue
    return object


def _make_callback_class() -> type:
    base = _callback_base()

    class CausalDashboardCallback(base):  # type: ignore[misc, valid-type]
        """Lightning callback: ``Trainer(callbacks=[CausalDashboardCallback(dash)])``.

        At the end of each training epoch it calls ``dash.record(trainer.current_epoch,
        loss=..., accuracy=...)`` with the first of ``trainer.callback_metrics``' keys
        ``train_loss``/``loss``/... and ``train_acc``/``accuracy``/... that is present
        (override with ``loss_key=`` / ``accuracy_key=``). Works without Lightning
        installed (then it is a plain object any loop can call).
        """

        def __init__(
            self,
            dash: CausalDashboard,
            *,
            loss_key: str | None = None,
            accuracy_key: str | None = None,
        ) -> None:
            super().__init__()
            if not hasattr(dash, "record"):
                raise TypeError(
                    "CausalDashboardCallback needs a CausalDashboard (or anything with "
                    f".record(epoch, **scalars)); got {type(dash).__name__}."
                )
            self.dash = dash
            self.loss_key = loss_key
            self.accuracy_key = accuracy_key

        @staticmethod
        def _pick(metrics: Mapping[str, Any], key: str | None, candidates: tuple) -> Any:
            keys = (key,) if key else candidates
            for k in keys:
                if k in metrics:
                    v = metrics[k]
                    return float(v.item() if hasattr(v, "item") else v)
            return None

        def on_train_epoch_end(self, trainer: Any, pl_module: Any = None) -> None:
            metrics = dict(getattr(trainer, "callback_metrics", {}) or {})
            scalars = {}
            loss = self._pick(metrics, self.loss_key, _LOSS_KEYS)
            acc = self._pick(metrics, self.accuracy_key, _ACC_KEYS)
            if loss is not None:
                scalars["loss"] = loss
            if acc is not None:
                scalars["accuracy"] = acc
            self.dash.record(int(trainer.current_epoch), **scalars)

        def on_train_end(self, trainer: Any, pl_module: Any = None) -> None:
            # bring the widget up to date without blocking on pending measurements
            self.dash.refresh()

    CausalDashboardCallback.__module__ = __name__
    return CausalDashboardCallback


def __getattr__(name: str) -> Any:
    # built on first use so Lightning is imported only by those who want the callback
    if name == "CausalDashboardCallback":
        cls = _make_callback_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

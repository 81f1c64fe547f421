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
  95 % CI (``<metric>_lo``, ``<metric>_hi``) and status (``status[metric]``, one letter
  per epoch: ``x`` exact, ``e`` estimate, ``b`` bounds), and under ``xy`` the causal-plane
  coordinates computed here (horizontal ``M/sqrt2``, vertical ``(2 S - M)/sqrt2`` with
  M = EI or EI_parts, each with its interval box and status; :mod:`causal_widgets.engine.plane`,
  see ``docs/metrics.md``), which the front-end draws as they come: a point whose M is
  bounded (not estimated) is drawn as an open marker with its interval bars.
* ``scalars``: the loss/accuracy/... series for every recorded epoch.
* ``heatmap``: only the selected layer's edge matrices at the scrubbed epoch
  (``E[i, j] = I(X_i; Y_j)``, ``S[i, j]``, ``S - E``) and the node contributions, recomputed
  here when ``epoch`` or ``selected_layer`` changes. Layers wider than
  :data:`HEATMAP_MAX_SIDE` neurons on a side are shown as block means.
* ``edge_history``: E and S of the edge in ``pinned_edge`` over all measured epochs.

The payloads are built by :mod:`causal_widgets.widgets.payloads`, the bundled front-end by
:mod:`causal_widgets.widgets.frontend`; :func:`~causal_widgets.widgets.hooks.attach` and
the Lightning callback live in :mod:`causal_widgets.widgets.hooks`.

Updates from the measurement thread are coalesced: at most one push per
``min_interval`` seconds (0.2 s, stretched to five times the cost of the last push so a
history of hundreds of layers x epochs never keeps the kernel busy).
"""

from __future__ import annotations

import threading
import time
import warnings
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import pandas as pd
import traitlets

from causal_widgets.jsonable import to_jsonable
from causal_widgets.widgets.frontend import _JS_DIR, esm_bundle, widget_css
from causal_widgets.widgets.payloads import _clean, heatmap_payload, nearest, plane_payload

_MIN_INTERVAL = 0.2
# while only the loss curve moves (training records every epoch, no result landed), refresh
# it at most twice a second: each refresh holds the GIL against the training loop
_SCALARS_INTERVAL = 0.5


class CausalDashboard(anywidget.AnyWidget):
    """Watch a network's causal structure while it trains; scrub it afterwards.

    ``CausalDashboard(model, example_input, bins=8, every=1, layers=None,
    drop_stale=None, device=None, **measure_kwargs)`` starts a background
    :class:`~causal_widgets.live.monitor.Monitor` (``measure_kwargs`` go to
    ``measure_layer``, e.g. ``in_range=(0, 1)``, ``samples=``, ``metrics=``;
    ``max_pending``, ``max_pending_bytes``, ``spill_dir`` go to the monitor). Every
    recorded snapshot is measured (the newest first, then the backlog); dropping stale
    ones is an opt-in (``drop_stale=True`` or ``max_pending=k``). ``executor="ray"`` (or a
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
        drop_stale: bool | None = None,
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
        """The background :class:`~causal_widgets.live.monitor.Monitor`.

        ``None`` after :meth:`load` (a loaded dashboard has no model to measure).
        """
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
        # the monitor checks the scalars (one number each) and names the one it refuses
        self._monitor.record(int(epoch), **scalars)
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
        pending = self._history.pending() if hasattr(self._history, "pending") else []
        st["pending"] = len(pending)
        # drawn as ticks on the time axis (capped: the status is pushed often)
        st["pending_epochs"] = [int(e) for e in pending[:2000]]
        n_dropped = int(st.get("dropped") or 0)
        st["notice"] = (
            f"dropped {n_dropped} stale snapshot{'s' if n_dropped != 1 else ''} to keep up "
            "with training (measure less often with every=k to keep them)"
            if n_dropped
            else ""
        )
        if pending and (self._monitor is None or self._closed):
            # a loaded (or closed) run with a backlog: say what was not measured
            n_spilled = len(self._history.spilled())
            st["notice"] = " · ".join(filter(None, [
                f"{len(epochs)} measured · {len(pending)} pending"
                + (f" ({n_spilled} kept on disk: a Monitor given this history measures "
                   "them)" if n_spilled else ""),
                st["notice"]]))
        return to_jsonable(st)

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
                d = to_jsonable(dict(entry))
                layer_list.append(d)
                seen.add(d.get("name"))
            for name in plane:
                if name not in seen:
                    layer_list.append({"name": name, "n_in": None, "n_out": None, "kind": ""})
            scalars_payload = self._scalars_payload(hist)
            errors = [to_jsonable(dict(e)) for e in hist.errors()]
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


__all__ = ["CausalDashboard"]

"""Measure a network's layers in the background while it trains.

:class:`Monitor` takes a cheap snapshot of the model's weights at the epochs you
:meth:`~Monitor.record` and measures them in the background (by default on one daemon
thread of a :class:`~causal_widgets.live.executors.ThreadExecutor`), so training never
waits for the (much slower) information-theoretic measurements::

    mon = Monitor(model, x_example, every=10, bins=8)
    for epoch in range(n_epochs):
        train_one_epoch(model)
        mon.record(epoch, loss=loss.item())     # ~ a state_dict copy; returns at once
    mon.wait()                                   # block until every snapshot is measured
    mon.history.frame()                          # tidy results (bits), see store.History

How it works
------------
* At construction the monitor deep-copies the model once (the *private* model, put in
  ``eval()`` mode with gradients off, on ``device``). The model you pass is never
  modified: not its weights, ``.grad``, train/eval mode, nor the global RNG state.
* :meth:`record` stores the scalars for every epoch, and for every ``every``-th epoch
  (``epoch % every == 0``) clones the model's ``state_dict`` tensors (``detach().clone()``
  on the tensors' own device, so a GPU model is snapshotted GPU-to-GPU without a host
  sync) and queues the snapshot. If the model's structure changed (a parameter's shape or
  a module's type), a fresh deep copy is kept for the snapshots of the new structure
  (measured after every waiting snapshot of the old one).
* Nothing is dropped by default: every snapshot waits until it is measured, the newest
  first (the view stays live), then the backlog coarse-to-fine (the waiting epoch
  farthest from every measured one: a bisection of the recorded range; see
  :mod:`causal_widgets.live.backlog`). :meth:`wait` returns when every recorded epoch is
  measured. Waiting snapshots hold at most ``max_pending_bytes`` of memory (1 GiB); beyond
  that the oldest are spilled to ``spill_dir`` (default ``<autosave>.pending``), or,
  with no directory, dropped with a warning. ``history.pending()`` lists what waits.
* Opt-in dropping (``drop_stale=True`` or ``max_pending=k``): at most ``max_pending``
  snapshots wait; when training outruns the measurements, the *oldest waiting* snapshots
  are dropped (listed in ``history.dropped()``); the one being measured is never dropped.
* Each epoch is recorded once (a second ``record()`` of it raises). At interpreter exit
  an open monitor is stopped and joined (so the script exits with its own status), and
  what was not measured stays pending in the history, on disk when there is a directory.
* One dispatcher thread hands the queued snapshots to the executor and collects them as
  they finish, whatever the executor. With a ``ThreadExecutor`` (the default) a snapshot
  is measured in this process, as below; a process or Ray executor gets one task per
  snapshot (:func:`measure_snapshot_task`) and its results arrive when the task is done.
* The worker loads each snapshot into the private model, finds its layers with
  :func:`causal_widgets.network.discovery.find_layers` (the layer list of the first snapshot is
  the reference; a layer whose shape differs later is reported as an error naming the layer
  and both shapes, and the other layers are still measured), then measures layer after
  layer with :func:`causal_widgets.engine.layer_measure.measure_layer`, adding each result to the
  :class:`~causal_widgets.live.store.History` as soon as it is done and calling ``on_update()``.
  Any exception while measuring a layer (NaN weights, an unbounded output without
  ``out_range``, ...) becomes ``history.add_error(epoch, layer, message)`` and the worker
  carries on.

Sharing the machine with training
---------------------------------
* GPU (``device`` is CUDA): the worker measures in its own ``torch.cuda.Stream``, which
  waits (via a CUDA event recorded by :meth:`record`) for the snapshot copy on the
  training stream; snapshot memory is marked as used by the worker stream
  (``record_stream``) so the caching allocator cannot hand it back to training early.
* CPU: ``torch.set_num_threads`` is process-global, so the monitor leaves it alone.
  Instead, on Linux the worker thread lowers its own scheduling priority
  (``nice`` increment, default 10; threads inherit it, including the OpenMP team the
  worker's torch calls start). Under contention the kernel then gives the training thread
  roughly 10x the CPU share of the measurement, while an idle machine (e.g. during
  :meth:`wait`, or between epochs) still runs the measurement at full speed. Pass
  ``nice=None`` to disable (on other systems it is a no-op).
* The GIL: a lower priority does not win it back from the estimators' Python parts, so
  while training records (a :meth:`record` in the last 2 s) the worker keeps to a duty
  cycle: after a layer that took ``t`` s it pauses ``t (1 / duty - 1)`` s (``duty=0.2``
  by default; ``duty=1.0`` never pauses). Once training stops recording, or while someone
  is in :meth:`wait`, it measures at full speed.

Where measurements start: pass ``in_range=(lo, hi)`` for the network input (the data's
range); if it is omitted it is taken from ``example_input``'s min/max once, with a
warning, and then used for every snapshot.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import contextlib
import copy
import itertools
import os
import sys
import threading
import time
import traceback
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from causal_widgets.checks import check_cuda, check_materialized, check_one_batch
from causal_widgets.engine.settings import (
    LAYER_KEYWORDS,
    MeasureSettings,
    check_measure_keywords,
)
from causal_widgets.jsonable import to_jsonable
from causal_widgets.live.backlog import next_epoch, state_bytes
from causal_widgets.live.executors import Executor, ThreadExecutor, get_executor
from causal_widgets.live.store import History, _check_epoch

#: seconds an idle dispatcher sleeps between checks that its Monitor still exists
_IDLE_POLL_S = 0.5
# training counts as running while record() was called within this many seconds; only then
# does the worker hold back to its duty cycle
_ACTIVE_S = 2.0
#: default memory budget of the snapshots waiting to be measured (bytes)
DEFAULT_MAX_PENDING_BYTES = 1 << 30


def _find_layers(model: nn.Module, example_input: Any, layers: Any, in_range: Any) -> list:
    """network.discovery.find_layers, imported on first use (it pulls in torch.fx)."""
    from causal_widgets.network.discovery import find_layers

    return find_layers(model, example_input, layers=layers, in_range=in_range)


def _measure_layer(layer: Any, **kwargs: Any) -> Any:
    """measure.measure_layer, imported on first use."""
    from causal_widgets.engine.layer_measure import measure_layer

    return measure_layer(layer, **kwargs)


def _measurement_settings(
    example_input: Any, measure_kwargs: dict[str, Any], stacklevel: int = 3
) -> tuple[Any, dict[str, Any]]:
    """``(in_range, keywords for every layer's measurement)`` from Monitor's
    ``**measure_kwargs``: the one place the monitor reads its measurement settings.

    ``in_range`` (the network input's range) is split off; without it, it is taken from
    ``example_input``'s min/max, with a warning (on the caller's thread, once, so every
    snapshot agrees and the worker does not warn at every epoch).
    """
    if "device" in measure_kwargs:  # pragma: no cover - caught by the signature
        raise TypeError("device is given once, as Monitor(device=...).")
    kwargs = dict(measure_kwargs)
    in_range = kwargs.pop("in_range", None)
    if in_range is None:
        in_range = _data_range(example_input)
        if in_range is not None:
            warnings.warn(
                f"in_range not given: using example_input's range {in_range}; pass "
                "in_range=(lo, hi) (the range of your data) to set it.",
                stacklevel=stacklevel,  # Monitor's caller (or analyze_checkpoints')
            )
    return in_range, kwargs


def _layer_measurer(
    measure_fn: Callable[..., Any] | None, measure_kwargs: Mapping[str, Any], device: Any
) -> Callable[[Any], Any]:
    """``layer -> result``: ``measure_fn`` (default measure_layer) with the monitor's
    measurement keywords, on ``device``; the same call wherever a snapshot is measured.

    With measure_layer the keywords carry one checked ``MeasureSettings`` (``settings=``),
    so no layer checks them again; the device is set in it once per snapshot.
    """
    kwargs = dict(measure_kwargs)
    settings = kwargs.get("settings")
    if isinstance(settings, MeasureSettings):
        kwargs["settings"] = settings if device is None else settings.replace(device=device)
    else:
        kwargs.setdefault("device", device)
    fn = measure_fn or _measure_layer
    return lambda layer: fn(layer, **kwargs)


@dataclass(eq=False)  # compared by identity: the queue holds each once
class _Snapshot:
    epoch: int
    state: dict[str, torch.Tensor] | None = None
    model: nn.Module | None = None  # set when taken: the first of a changed structure
    event: Any = None  # torch.cuda.Event recorded after the clone, or None
    created: float = field(default_factory=time.monotonic)
    path: Path | None = None  # the state was spilled to this file (state is None then)
    generation: int = 0  # the model structure it belongs to (it grows at each change)
    nbytes: int = 0  # what the in-memory state holds (0 once spilled)
    spilling: bool = False  # handed to the spill thread (out of the memory budget already)


def _resolve_device(model: nn.Module, device: Any) -> torch.device:
    # a model built under torch.device("meta") has no values to copy or measure
    check_materialized(model, "model")
    if device is None:
        first = next(itertools.chain(model.parameters(), model.buffers()), None)
        return first.device if first is not None else torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"device={device!r} is not a torch device: pass e.g. 'cpu', 'cuda' or 'cuda:1'."
        ) from err
    check_cuda(dev, "device")
    return dev


def _to_device(x: Any, device: torch.device) -> Any:
    """A detached copy of a tensor (or a tuple/list/dict of them) on ``device``."""
    if isinstance(x, torch.Tensor):
        return x.detach().to(device, copy=True)
    if isinstance(x, (tuple, list)):
        return type(x)(_to_device(v, device) for v in x)
    if isinstance(x, Mapping):
        return {k: _to_device(v, device) for k, v in x.items()}
    return copy.deepcopy(x)


def _private_copy(model: nn.Module, device: torch.device) -> nn.Module:
    """A deep copy of ``model`` on ``device``, in eval mode, without grads."""
    try:
        with torch.no_grad():
            twin = copy.deepcopy(model)
    except Exception as err:  # noqa: BLE001 - re-raised with the fix named
        raise TypeError(
            f"could not copy the model ({type(model).__name__}) for background measurement: "
            f"{type(err).__name__}: {err}. The monitor measures a private deep copy so "
            "training is never disturbed; make the model deep-copyable (copy.deepcopy)."
        ) from err
    for p in twin.parameters():
        p.grad = None
    return twin.to(device).eval().requires_grad_(False)


def _warm_trace(model: nn.Module) -> None:
    """Trace the private copy with torch.fx now, on the caller's thread.

    Tracing patches ``nn.Module.__call__`` process-wide while it runs; done in the worker
    it could break the training loop's forward passes. network.tracing caches the trace, so
    the worker never traces this model again. Models fx cannot trace fall back to forward hooks
    on the private copy, which touch nothing global.
    """
    from causal_widgets.network.tracing import traced

    try:
        traced(model)
    except Exception:  # noqa: BLE001 - untraceable models use the hook fallback later
        pass


def _signature(model: nn.Module, state: Mapping[str, torch.Tensor]) -> tuple:
    """What must match for a snapshot to load into the private model: shapes and module types."""
    return (
        tuple(
            (k, tuple(v.shape), v.dtype) if isinstance(v, torch.Tensor) else (k, type(v))
            for k, v in state.items()
        ),
        tuple((name, type(m)) for name, m in model.named_modules()),
    )


def _data_range(x: Any) -> tuple[float, float] | None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.numel() == 0:
        return None
    lo, hi = float(x.min()), float(x.max())
    return (lo, hi) if lo < hi else None


def _describe(layer: Any) -> dict[str, Any]:
    """The dict History.set_layers stores for one measured layer."""
    extra = getattr(layer, "extra", None) or {}
    kind = extra.get("kind")
    if kind is None:
        act = getattr(layer, "activation", None)
        act_kind = getattr(act, "kind", None)
        base = "dense" if getattr(layer, "dense", None) is not None else "sampled"
        kind = f"{base}-{act_kind}" if act_kind else base
    return {
        "name": str(layer.name),
        "n_in": int(layer.n_in),
        "n_out": int(layer.n_out),
        "kind": str(kind),
        "in_shape": [int(s) for s in layer.in_shape],
        "out_shape": [int(s) for s in layer.out_shape],
        "in_range": None if layer.in_range is None else [float(v) for v in layer.in_range],
        "out_range": None if layer.out_range is None else [float(v) for v in layer.out_range],
    }


def _shape_change(old: Mapping[str, Any], new: Any) -> str | None:
    """``None`` if ``new`` (a Layer) has the shapes of ``old`` (its description), else a
    message naming the layer and both shapes."""
    o = (tuple(old["in_shape"]), tuple(old["out_shape"]))
    n = (tuple(new.in_shape), tuple(new.out_shape))
    if o == n:
        return None
    return (
        f"layer {old['name']!r} changed shape since the first measurement: it was "
        f"{o[0]} -> {o[1]} (n_in={old['n_in']}, n_out={old['n_out']}) and is now "
        f"{n[0]} -> {n[1]} (n_in={new.n_in}, n_out={new.n_out}); it is not measured. Start "
        "a new Monitor (or dashboard) for the changed model."
    )


#: what a snapshot's task returns when close() stopped it before its last layer
_STOPPED = "stopped"


def _read_spilled(path: Path, device: torch.device) -> dict[str, Any]:
    """The state_dict of a spilled snapshot, on ``device``."""
    try:
        # the monitor's own file (a state_dict, possibly with modules' extra state, which
        # weights_only would refuse)
        return torch.load(path, map_location=device, weights_only=False)
    except (OSError, RuntimeError, EOFError) as err:
        raise RuntimeError(
            f"could not read the spilled snapshot {str(path)!r}: {type(err).__name__}: "
            f"{err}. It was written when measuring fell behind training; if it was "
            "removed or damaged, that epoch cannot be measured from it."
        ) from err


class _NothingToMeasure(Exception):
    """find_layers failed on the first snapshot: there is no reference to fall back on."""


def plan_snapshot(
    model: nn.Module,
    example: Any,
    layers_arg: Any,
    in_range: Any,
    reference: list[dict[str, Any]] | None,
) -> tuple[list[dict[str, Any]] | None, list[tuple[str, Any, str | None]]]:
    """Which layers of ``model`` (weights loaded) to measure, checked against ``reference``.

    Returns ``(descriptions, plan)``: ``descriptions`` (for History.set_layers) only when
    there is no reference yet (this is the first snapshot), and ``plan`` a list of
    ``(name, layer, problem)``: a layer to measure, or ``layer=None`` and a message saying
    why it cannot be (changed shape, gone, new, broken weights). Raises
    :class:`_NothingToMeasure` when nothing can be measured and there is no reference.
    """
    try:
        found = _find_layers(model, example, layers_arg, in_range)
    except Exception as err:  # noqa: BLE001
        if reference is None:
            raise _NothingToMeasure(f"{type(err).__name__}: {err}") from err
        # e.g. NaN weights in one layer: look for the reference layers one at a time
        # so the healthy ones are still measured and the broken one is named
        out = []
        for ref in reference:
            try:
                one = _find_layers(model, example, [ref["name"]], in_range)
                out.append((ref["name"], one[0], _shape_change(ref, one[0])))
            except Exception as err1:  # noqa: BLE001
                out.append((ref["name"], None, f"{type(err1).__name__}: {err1}"))
        return None, out
    if reference is None:
        return [_describe(layer) for layer in found], [(lay.name, lay, None) for lay in found]
    by_name = {layer.name: layer for layer in found}
    out = []
    for ref in reference:
        new = by_name.pop(ref["name"], None)
        if new is None:
            out.append((ref["name"], None, (
                f"layer {ref['name']!r} is no longer in the model (it had n_in={ref['n_in']}, "
                f"n_out={ref['n_out']}); start a new Monitor for the changed model."
            )))
        else:
            out.append((ref["name"], new, _shape_change(ref, new)))
    for name, new in by_name.items():
        out.append((name, None, (
            f"layer {name!r} (n_in={new.n_in}, n_out={new.n_out}) appeared after the "
            "first measurement and is not measured; start a new Monitor for the "
            "changed model."
        )))
    return None, out


def _auto_device(device: Any) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def measure_snapshot_task(
    template: nn.Module,
    state: Mapping[str, Any] | None,
    example: Any,
    layers_arg: Any,
    in_range: Any,
    reference: list[dict[str, Any]] | None,
    measure_kwargs: Mapping[str, Any],
    measure_fn: Callable[..., Any] | None = None,
    device: Any = "auto",
) -> dict[str, Any]:
    """Measure one weight snapshot, wherever an executor runs it (a Ray task, a process).

    Loads ``state`` into a copy of ``template`` on ``device`` (``"auto"``: CUDA when this
    worker sees a GPU), plans with :func:`plan_snapshot` and measures every layer. Returns
    ``{"layers": descriptions or None, "entries": [(name, LayerResult | None, error | None)],
    "error": None or a message when nothing could be measured, "device": str, "pid": int}``.
    Exceptions while measuring one layer become that layer's error; the task itself only
    raises when it cannot start.
    """
    dev = _auto_device(device)
    out: dict[str, Any] = {"layers": None, "entries": [], "error": None, "device": str(dev),
                           "pid": os.getpid()}
    with torch.no_grad():
        model = copy.deepcopy(template).to(dev).eval().requires_grad_(False)
        if state is not None:
            model.load_state_dict(state)
        example = _to_device(example, dev)
        try:
            descs, plan = plan_snapshot(model, example, layers_arg, in_range, reference)
        except _NothingToMeasure as err:
            out["error"] = str(err)
            return out
        out["layers"] = descs
        measure = _layer_measurer(measure_fn, measure_kwargs, dev)
        for name, layer, problem in plan:
            if problem is not None:
                out["entries"].append((name, None, problem))
                continue
            try:
                out["entries"].append((name, measure(layer), None))
            except Exception as err:  # noqa: BLE001 - reported, the rest is measured
                out["entries"].append((name, None, f"{type(err).__name__}: {err}"))
    return out


def _set_thread_nice(increment: int | None) -> None:
    """Lower the calling thread's CPU priority (Linux: nice is per thread; no-op elsewhere)."""
    _set_thread_niceness(_niceness_after(increment))


def _niceness_after(increment: int | None) -> int | None:
    """The calling thread's niceness raised by ``increment`` (``None``: leave it alone)."""
    if not increment:
        return None
    try:
        return min(19, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
                   + int(increment))
    except (AttributeError, OSError):
        return None  # not Linux: measure at normal priority


def _set_thread_niceness(value: int | None) -> None:
    """Set the calling thread's niceness to ``value`` (``None``: leave it alone)."""
    if value is None:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), value)
    except (AttributeError, OSError):
        pass  # not Linux, or not permitted: measure at normal priority


@dataclass(frozen=True)
class _Options:
    """The monitor's own settings (not the measurement's), checked once, at construction."""

    every: int = 1
    drop_stale: bool | None = None
    max_pending: int | None = None
    nice: int | None = 10
    duty: float = 0.2
    layers: list[Any] | None = None
    autosave: Path | None = None
    max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES
    spill_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.drop_stale is None:
            # max_pending is the cap of dropping: giving it opts in to dropping
            object.__setattr__(self, "drop_stale", self.max_pending is not None)
        if self.max_pending is None:
            object.__setattr__(self, "max_pending", 2)
        every, max_pending, duty, nice = self.every, self.max_pending, self.duty, self.nice
        budget = self.max_pending_bytes
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ValueError(
                f"max_pending_bytes must be an int >= 1 (the bytes of memory the snapshots "
                f"waiting to be measured may hold, e.g. 1 << 30 for 1 GiB); got {budget!r}."
            )
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an int >= 1 (measure every k-th epoch); got "
                             f"{every!r}.")
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise ValueError(
                f"max_pending must be an int >= 1 (snapshots allowed to wait); got "
                f"{max_pending!r}."
            )
        if isinstance(duty, bool) or not isinstance(duty, (int, float)) or not 0 < duty <= 1:
            raise ValueError(
                f"duty must be a fraction in (0, 1] (the share of time the worker may be busy "
                f"while training records); got {duty!r}."
            )
        if nice is not None and not isinstance(nice, int):
            # checked here: a bad value would otherwise end the worker thread at its start
            raise TypeError(f"nice must be an int (a priority increment) or None; got {nice!r}.")
        # frozen: the normalised values are set through object.__setattr__
        object.__setattr__(self, "drop_stale", bool(self.drop_stale))
        object.__setattr__(self, "duty", float(duty))
        if self.layers is not None:
            object.__setattr__(self, "layers", list(self.layers))
        if self.autosave is not None:
            object.__setattr__(self, "autosave", Path(self.autosave))
        if self.spill_dir is not None:
            object.__setattr__(self, "spill_dir", Path(self.spill_dir))
        elif self.autosave is not None:
            # next to the history, so the saved history and its backlog travel together
            object.__setattr__(self, "spill_dir",
                               self.autosave.with_name(self.autosave.name + ".pending"))


def _check_objects(model: Any, on_update: Any, history: Any) -> None:
    """The objects Monitor works with are of the kinds it needs."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module; got {type(model).__name__}. Pass the "
            "network you train."
        )
    if on_update is not None and not callable(on_update):
        raise TypeError(f"on_update must be callable with no arguments; got {on_update!r}.")
    if history is not None and not isinstance(history, History):
        raise TypeError(
            f"history must be a causal_widgets.live.store.History; got {type(history).__name__}."
        )


class Monitor:
    """Measure ``model``'s layers in a background thread at the epochs you record.

    Parameters
    ----------
    model:
        the network being trained (never modified).
    example_input:
        one batch the model accepts; used to find the layers (and, without ``in_range``,
        the input range: its min/max).
    layers:
        which layers to measure (module paths / spans, as for
        :func:`causal_widgets.network.discovery.find_layers`); default: every measurable
        layer.
    every:
        measure when ``epoch % every == 0``; every recorded epoch's scalars are kept.
    drop_stale, max_pending:
        by default nothing is dropped: every recorded snapshot is kept until it is
        measured, the newest first, then the backlog coarse-to-fine (see
        :mod:`causal_widgets.live.backlog`). Dropping is an opt-in: ``drop_stale=True``,
        or giving ``max_pending`` (its cap; ``drop_stale=False`` with it keeps all), keeps
        at most ``max_pending`` (default 2) snapshots waiting and drops the oldest beyond
        that (listed in ``history.dropped()``).
    max_pending_bytes, spill_dir:
        the memory the waiting snapshots may hold (default 1 GiB; at least one snapshot
        of the model, checked here). Beyond it the oldest waiting snapshots are saved to
        ``spill_dir`` (default: ``<autosave>.pending`` next to the history; written by a
        background thread, so :meth:`record` does not wait for the disk) and read back
        when their turn comes; they are listed in ``history.spilled()``, so a history saved
        mid-backlog can be finished by a new Monitor given ``history=History.load(...)``.
        Without a directory the oldest waiting snapshot is dropped instead, with a warning,
        and listed in ``history.dropped()``.
    device:
        where to measure (default: where the model's parameters are).
    on_update:
        called with no arguments whenever something new is in the history or the status
        changed: from the monitor's background threads (results, errors) or from
        :meth:`record` (queued/dropped). Keep it quick; exceptions in it are reported once as a
        warning and otherwise ignored.
    history:
        a :class:`History` to append to (e.g. ``History.load(path)`` when resuming).
    autosave:
        a directory: the history is saved there (atomically) after every snapshot.
    nice:
        CPU priority increment (an int, or ``None``) of the monitor's dispatcher thread
        and of the measuring thread of the ``ThreadExecutor`` it starts for
        ``executor=None`` / ``"thread"`` (see the module docstring).
    duty:
        while training is recording (a ``record()`` in the last 2 s), the worker is busy at
        most this fraction of the time: after a layer that took ``t`` seconds it pauses
        ``t (1 / duty - 1)``. Why: the estimators run partly in Python and hold the GIL,
        which the training loop's many small torch calls must win back at every call; a
        lower priority (``nice``) does not help with that. Measured on 2 cores, Iris
        4-5-5-3 trained ~50 % slower with ``duty=1.0`` (see docs/benchmarks.md);
        ``duty=1.0`` measures as fast as possible, lower values keep training faster and
        the plane a little staler. Once training stops recording, or while someone is in
        :meth:`wait`, measuring runs at full speed.
    executor:
        where snapshots are measured. ``None`` or ``"thread"`` (default): a one-thread
        :class:`~causal_widgets.live.executors.ThreadExecutor` the monitor starts (a
        daemon thread at priority ``nice``); a ``ThreadExecutor`` you pass is used as it
        is (its threads keep the priority you gave them, e.g. with ``initializer=``).
        Either way snapshots are measured in this process one at a time, layer by layer
        (each result streams in as soon as it is done, with the duty cycle).
        ``"process"``: one local worker process (no GIL shared with training). ``"ray"``
        or a :class:`~causal_widgets.live.executors.RayExecutor`: Ray tasks on a
        cluster's GPUs / CPUs. With these, each snapshot is one task (the model's
        structure is shipped once, then only its weights); up to ``executor.workers``
        snapshots are measured at once, and results stream in snapshot by snapshot;
        ``duty`` does not apply. A lost task (worker killed) becomes an error entry for
        its epoch; the monitor carries on.
    measure_fn:
        replaces :func:`causal_widgets.engine.layer_measure.measure_layer` (signature
        ``measure_fn(layer, **measure_kwargs) -> LayerResult``), e.g. for custom metrics.
    **measure_kwargs:
        passed to ``measure_layer`` for every layer (``bins``, ``method``, ``samples``,
        ``seed``, ...); ``in_range`` is the network input's range.
    """

    def __init__(
        self,
        model: nn.Module,
        example_input: Any,
        *,
        layers: Sequence[Any] | None = None,
        every: int = 1,
        drop_stale: bool | None = None,
        max_pending: int | None = None,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        spill_dir: str | os.PathLike | None = None,
        device: Any = None,
        on_update: Callable[[], Any] | None = None,
        history: History | None = None,
        autosave: str | os.PathLike | None = None,
        nice: int | None = 10,
        duty: float = 0.2,
        executor: Any = None,
        measure_fn: Callable[..., Any] | None = None,
        **measure_kwargs: Any,
    ) -> None:
        _check_objects(model, on_update, history)
        # a generator or DataLoader cannot be copied or replayed at every snapshot
        check_one_batch(example_input, "example_input")
        opts = _Options(every=every, drop_stale=drop_stale, max_pending=max_pending, nice=nice,
                        duty=duty, layers=layers, autosave=autosave,
                        max_pending_bytes=max_pending_bytes, spill_dir=spill_dir)
        one_snapshot = state_bytes(model.state_dict())
        if not opts.drop_stale and one_snapshot > opts.max_pending_bytes:
            raise ValueError(
                f"max_pending_bytes={opts.max_pending_bytes} is smaller than one snapshot of "
                f"this model ({one_snapshot} bytes of state_dict): no snapshot could wait to "
                f"be measured. Pass max_pending_bytes >= {one_snapshot} (the default is "
                f"{DEFAULT_MAX_PENDING_BYTES}), or drop_stale=True to drop instead."
            )
        self._executor, self._owns_executor = _monitor_executor(
            executor, nice, f"causal_widgets-monitor-{id(self):x}-measure"
        )
        # a ThreadExecutor measures here, on the private model, layer by layer; any other
        # executor gets each snapshot shipped as one task (see _submit)
        self._in_process = isinstance(self._executor, ThreadExecutor)
        self.every = opts.every
        self.drop_stale = opts.drop_stale
        self.max_pending = opts.max_pending
        self.max_pending_bytes = opts.max_pending_bytes
        self.spill_dir = opts.spill_dir
        self.on_update = on_update
        # shipped elsewhere, the private copy stays on the CPU (it is the template sent to
        # the workers) and the workers pick their device
        self._remote_device = (None if self._in_process
                               else ("auto" if device is None else str(device)))
        self.device = (_resolve_device(model, device) if self._in_process
                       else torch.device("cpu"))
        self._layers_arg = opts.layers
        self._measure_fn = measure_fn
        self._autosave = opts.autosave
        self.duty = opts.duty
        self._last_record = float("-inf")
        self._waiting = 0  # callers blocked in wait(): no duty cycle meanwhile
        self.in_range, self.measure_kwargs = _measurement_settings(example_input, measure_kwargs)
        # what each layer's measure_fn is called with (self.measure_kwargs is what the user
        # gave, and what the history records)
        self._call_kwargs = dict(self.measure_kwargs)
        if measure_fn is None:
            # checked here, in the caller's thread: a misspelt or invalid setting raises
            # now instead of becoming an error entry for every layer of every snapshot;
            # the checked object then travels to the worker and is trusted there
            settings = check_measure_keywords(self.measure_kwargs, where="Monitor()")
            self._call_kwargs = {k: v for k, v in self.measure_kwargs.items()
                                 if k in LAYER_KEYWORDS} | {"settings": settings}

        self._source = model
        # every executor copies the model (the process and Ray paths skip _resolve_device)
        check_materialized(model, "model")
        self._model = _private_copy(model, self.device)
        _warm_trace(self._model)
        self._example = _to_device(example_input, self.device)
        if self.device.type == "cuda":
            # the copies above ran on this thread's stream; the worker uses its own
            torch.cuda.current_stream(self.device).synchronize()
        self._last_signature = _signature(model, model.state_dict())

        self.history = history if history is not None else History()
        self.history.settings.update(to_jsonable(self._settings()))

        self._reference: list[dict[str, Any]] | None = None  # first snapshot's layers
        self._queue: deque[_Snapshot] = deque()
        # the epochs handed to the worker or measured: what the backlog order measures
        # distances from (a resumed history's measured epochs count)
        self._started: set[int] = set(self.history.epochs())
        # epochs recorded already (here, or in the history resumed): a second record()
        # of one is refused instead of silently replacing the first. A pending epoch whose
        # snapshot was lost (not spilled) may be recorded again to fill it in.
        lost = set(self.history.pending()) - set(self.history.spilled())
        self._recorded: set[int] = (set(self.history.scalars()["epoch"].tolist())
                                    | set(self.history.epochs())) - lost
        self._pending_bytes = 0  # in-memory bytes of the queued snapshots
        self._to_spill: deque[_Snapshot] = deque()  # waiting snapshots to write to disk
        self._spiller: threading.Thread | None = None  # writing them, while there are any
        # structure changes: generation -> private copy of the changed model, until the
        # first snapshot of that generation is measured (see record / _next)
        self._generation = 0
        self._loaded_generation = 0
        self._structures: dict[int, nn.Module] = {}
        self._cond = threading.Condition()
        self._active: set[int] = set()  # epochs being measured
        self._template_ref: Any = None  # the model structure as shipped to an executor
        self._task_thread: threading.Thread | None = None  # measuring a snapshot here now
        self._stop = False
        self._n_done = 0
        self._n_measured = 0
        self._callback_warned = False
        self._stream = (
            torch.cuda.Stream(device=self.device) if self.device.type == "cuda" else None
        )
        # the dispatcher holds only a weak reference while idle, so an abandoned Monitor is
        # garbage-collected and its thread ends instead of leaking with a model copy
        self._thread = threading.Thread(
            target=_dispatch_main,
            args=(weakref.ref(self), self._cond, opts.nice),
            name=f"causal_widgets-monitor-{id(self):x}",
            daemon=True,
        )
        self._resume_spilled()
        self._thread.start()
        _LIVE_MONITORS.add(self)

    def _resume_spilled(self) -> None:
        """Queue the spilled snapshots of a resumed history whose files are still there."""
        for epoch, file in self.history.spilled().items():
            if Path(file).is_file():
                self._queue.append(_Snapshot(epoch, path=Path(file)))
                self._recorded.add(epoch)

    def _settings(self) -> dict[str, Any]:
        """What the history records about how it was measured."""
        return {
            "every": self.every,
            "drop_stale": self.drop_stale,
            "max_pending": self.max_pending,
            "max_pending_bytes": self.max_pending_bytes,
            "device": str(self.device) if self._in_process else self._remote_device,
            "executor": "thread" if self._in_process else self._executor.describe(),
            "layers": self._layers_arg,
            "in_range": self.in_range,
            **self.measure_kwargs,
        }

    # ------------------------------------------------------------------ training side
    def record(self, epoch: int, **scalars: Any) -> None:
        """Store ``scalars`` for ``epoch``; on every ``every``-th epoch queue a weight snapshot.

        Cheap: one clone of each ``state_dict`` tensor (on its own device) and a queue
        append (plus, beyond ``max_pending_bytes``, saving the oldest waiting snapshot to
        ``spill_dir``). Scalars may be floats, numpy scalars or one-element tensors.
        Each epoch is recorded once: a second ``record()`` of it raises ``ValueError``.
        """
        epoch = _check_epoch(epoch)
        if self._stop:
            raise RuntimeError("this Monitor is closed: create a new one to keep measuring.")
        if epoch in self._recorded:
            raise ValueError(
                f"epoch {epoch} was already recorded: each epoch is recorded once (a second "
                "record would replace its scalars and snapshot). Record a new epoch number "
                "(e.g. a global step), or start a new Monitor for a new run."
            )
        self.history.add_scalars(epoch, **scalars)
        self._recorded.add(epoch)
        self._last_record = time.monotonic()
        if epoch % self.every != 0:
            self._notify()
            return
        snap = _Snapshot(epoch)
        new_structure = None
        with torch.no_grad():
            state = self._source.state_dict()
            sig = _signature(self._source, state)
            if sig != self._last_signature:
                # the structure changed: the private model cannot load this state, so
                # the snapshots from here on load into a fresh copy (rare; one deepcopy).
                # Snapshots are not measured in recording order, so the copy belongs to
                # the structure's generation, handed to whichever of them goes first
                new_structure = _private_copy(self._source, self.device)
                _warm_trace(new_structure)
                self._last_signature = sig
                self._generation += 1
            snap.generation = self._generation
            # non-tensor entries are modules' extra state (get_extra_state)
            snap.state = {
                k: v.detach().clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)
                for k, v in state.items()
            }
            # the copies were queued on this thread's CUDA stream: the worker's stream
            # waits for this event before reading them
            cuda = [v for v in state.values() if isinstance(v, torch.Tensor) and v.is_cuda] + (
                [p for p in new_structure.parameters() if p.is_cuda] if new_structure else []
            )
            if cuda:
                snap.event = torch.cuda.Event()
                snap.event.record(torch.cuda.current_stream(cuda[0].device))
        snap.nbytes = state_bytes(snap.state)
        self.history.add_pending(epoch)
        dropped = []
        with self._cond:
            if new_structure is not None:
                self._structures[snap.generation] = new_structure
            self._queue.append(snap)
            self._pending_bytes += snap.nbytes
            while self.drop_stale and len(self._queue) > self.max_pending:
                dropped.append(self._drop_oldest_locked())
            if not self.drop_stale:
                dropped += self._keep_budget_locked()
            self._cond.notify_all()
        for e in dropped:
            self.history.remove_pending(e)
            self.history.add_dropped(e)
        self._notify()

    def _drop_oldest_locked(self) -> int:
        """Drop the oldest waiting snapshot (under ``_cond``); returns its epoch."""
        old = min(self._queue, key=lambda sn: sn.epoch)
        self._queue.remove(old)
        self._pending_bytes -= old.nbytes
        if old.path is not None:
            old.path.unlink(missing_ok=True)
        return old.epoch

    def _keep_budget_locked(self) -> list[int]:
        """Keep the in-memory waiting snapshots within ``max_pending_bytes`` (under
        ``_cond``): spill the oldest to ``spill_dir``, or, without one, drop it with a
        warning. The newest snapshot (measured next) stays in memory. Returns the epochs
        dropped."""
        dropped: list[int] = []
        while self._pending_bytes > self.max_pending_bytes:
            newest = max(sn.epoch for sn in self._queue)
            movable = [sn for sn in self._queue if sn.state is not None
                       and not sn.spilling and sn.epoch != newest]
            if not movable:
                return dropped  # only the newest is in memory: one snapshot always fits
            old = min(movable, key=lambda sn: sn.epoch)
            if self.spill_dir is None:
                self._queue.remove(old)
                self._pending_bytes -= old.nbytes
                dropped.append(old.epoch)
                warnings.warn(
                    f"the snapshots waiting to be measured exceed max_pending_bytes="
                    f"{self.max_pending_bytes} and there is no spill_dir: the snapshot of "
                    f"epoch {old.epoch} is dropped unmeasured (listed in history.dropped()). "
                    "Pass autosave=DIR or spill_dir=DIR to keep the backlog on disk, or a "
                    "larger max_pending_bytes.",
                    stacklevel=3,  # record()'s caller
                )
                continue
            # written by the spill thread, so record() never waits for the disk; counted
            # as gone from memory now (the budget is exceeded by the writes in progress)
            old.spilling = True
            self._pending_bytes -= old.nbytes
            old.nbytes = 0
            self._to_spill.append(old)
            if self._spiller is None:
                self._spiller = threading.Thread(
                    target=_spill_main, args=(weakref.ref(self), self._cond),
                    name=f"causal_widgets-monitor-{id(self):x}-spill", daemon=True)
                self._spiller.start()
        return dropped

    def _write_spill(self, snap: _Snapshot, state: Mapping[str, Any]) -> Path:
        """Save ``state`` (a waiting snapshot's) under ``spill_dir``; returns the file."""
        from causal_widgets.files import atomic_torch_save

        assert self.spill_dir is not None
        if snap.event is not None:
            snap.event.synchronize()  # the clone on the training stream must be complete
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        path = (self.spill_dir / f"epoch_{snap.epoch:09d}.pt").resolve()
        atomic_torch_save(dict(state), path)
        return path

    def _spill_one(self) -> bool:
        """The spill thread's step: write one queued snapshot to disk and free its
        memory, unless the worker took it meanwhile. ``False`` when nothing is left."""
        with self._cond:
            if not self._to_spill:
                self._spiller = None
                self._cond.notify_all()
                return False
            snap = self._to_spill.popleft()
            state = snap.state if any(sn is snap for sn in self._queue) else None
        path = None
        try:
            if state is not None:
                path = self._write_spill(snap, state)
        except Exception as err:  # noqa: BLE001 - it stays in memory, and is measured
            self.history.add_error(snap.epoch, None, "could not spill the snapshot to "
                                   f"{self.spill_dir}: {type(err).__name__}: {err}; it is "
                                   "kept in memory (over max_pending_bytes)")
        with self._cond:
            snap.spilling = False
            if path is not None and any(sn is snap for sn in self._queue):
                snap.state, snap.path = None, path
                self.history.add_pending(snap.epoch, spilled=path)
            elif path is not None:
                path.unlink(missing_ok=True)  # being measured from memory already
        return True

    def _join_spiller(self, timeout: float | None = None) -> None:
        """Wait until the spill thread has written everything handed to it."""
        spiller = self._spiller
        if spiller is not None and spiller is not threading.current_thread():
            spiller.join(timeout)

    def _spill_locked(self, snap: _Snapshot) -> None:
        """Save a waiting snapshot's state to ``spill_dir`` and free its memory, now (at
        close; while recording, the spill thread does it)."""
        assert snap.state is not None
        path = self._write_spill(snap, snap.state)
        snap.state, snap.path = None, path
        self._pending_bytes -= snap.nbytes
        snap.nbytes = 0
        self.history.add_pending(snap.epoch, spilled=path)

    # ------------------------------------------------------------------ control
    def wait(self, timeout: float | None = None) -> None:
        """Block until no snapshot is queued or being measured.

        Raises ``TimeoutError`` (with what is still pending) after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + float(timeout)
        # nobody trains while the caller waits: the worker may run at full speed
        with self._cond:
            self._waiting += 1
        try:
            self._wait_locked(deadline, timeout)
        finally:
            with self._cond:
                self._waiting -= 1

    def _wait_locked(self, deadline: float | None, timeout: float | None) -> None:
        with self._cond:
            while self._queue or self._active:
                if not self._thread.is_alive():
                    raise RuntimeError(
                        "the monitor's worker thread is not running (closed?): "
                        f"{len(self._queue)} snapshots will not be measured."
                    )
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(
                        f"measurements still pending after {timeout} s: "
                        f"{len(self._queue)} queued, epochs {sorted(self._active)} running. "
                        "Call wait() again, or with a longer timeout."
                    )
                self._cond.wait(_IDLE_POLL_S if remaining is None else min(remaining,
                                                                            _IDLE_POLL_S))

    def close(self, finish: bool | None = None, *, wait: bool | None = None,
              timeout: float | None = None) -> None:
        """Stop the worker; no recorded epoch vanishes without a trace.

        ``finish=True`` measures the whole backlog first (as :meth:`wait`, with
        ``timeout``). ``finish=False`` (the default) stops promptly: a layer being measured
        is finished, and every epoch not fully measured stays listed in
        ``history.pending()``. With a ``spill_dir`` (or ``autosave``) their snapshots are
        saved there first (``history.spilled()``), so a new Monitor given
        ``history=History.load(autosave)`` measures them; without one only the record
        that they are unmeasured remains. ``wait=`` is the former name of ``finish=``.
        """
        if finish is None:
            finish = bool(wait)
        if finish and not self._stop:
            self.wait(timeout)
        with self._cond:
            was_stopped, self._stop = self._stop, True
            self._cond.notify_all()
        # close() may come from the monitor's own threads (an on_update callback): the
        # dispatcher waits for the measuring thread, so neither may wait for it here
        if threading.current_thread() not in (self._thread, self._task_thread):
            self._thread.join(timeout)
        if not was_stopped:
            self._join_spiller()
            self._keep_backlog()
        if self._owns_executor:
            self._executor.shutdown(wait=False, cancel=True)
        self._notify()

    def _keep_backlog(self) -> None:
        """At close: the waiting snapshots go to ``spill_dir`` (when there is one) and the
        history, with its pending epochs, is autosaved."""
        with self._cond:
            waiting = list(self._queue)
            self._queue.clear()
            self._pending_bytes = 0
            if self.spill_dir is not None:
                for snap in waiting:
                    if snap.state is not None:
                        try:
                            self._spill_locked(snap)
                        except Exception as err:  # noqa: BLE001 - still listed as pending
                            self.history.add_error(
                                snap.epoch, None, f"could not keep the snapshot on disk at "
                                f"close: {type(err).__name__}: {err}")
            for snap in waiting:
                snap.state = None
        if waiting:
            self._save(waiting[-1].epoch)

    def _pending_message(self) -> str | None:
        """What a script ending with unmeasured epochs is told (None: nothing pending)."""
        pending = self.history.pending()
        if not pending:
            return None
        spilled = self.history.spilled()
        shown = ", ".join(map(str, pending[:10])) + (" ..." if len(pending) > 10 else "")
        if self._autosave is not None and len(spilled) == len(pending):
            how = (f"their snapshots are in {self.spill_dir}; to measure them: "
                   f"Monitor(model, example_input, history=History.load({str(self._autosave)!r}),"
                   f" autosave={str(self._autosave)!r}).wait()")
        elif self._autosave is not None:
            how = (f"they are listed as pending in the history saved at {self._autosave}; "
                   f"{len(pending) - len(spilled)} of them have no saved snapshot")
        else:
            how = ("their snapshots were in memory only; call wait() (or close(finish=True)) "
                   "before the end, or pass autosave=DIR to keep the backlog on disk")
        return (f"causal_widgets Monitor: {len(pending)} recorded epoch(s) not measured "
                f"(epochs {shown}): {how}.")

    @property
    def closed(self) -> bool:
        return self._stop

    def status(self) -> dict[str, Any]:
        """``queued, running, done, dropped, errors`` counts (+ ``running_epoch``, ``measured``).

        ``done``: snapshots finished; ``measured``: layer results added; ``running``:
        how many snapshots are being measured (the oldest one's epoch in ``running_epoch``).
        """
        with self._cond:
            queued = len(self._queue)
            active = sorted(self._active)
            done = self._n_done
            measured = self._n_measured
        return {
            "queued": queued,
            "running": len(active),
            "running_epoch": active[0] if active else None,
            "done": done,
            "measured": measured,
            "dropped": len(self.history.dropped()),
            "errors": len(self.history.errors()),
            "closed": self._stop,
        }

    @property
    def layer_names(self) -> list[str]:
        """Names of the measured layers (empty until the first snapshot was analysed)."""
        return [d["name"] for d in self.history.layers()]

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        s = self.status()
        return (
            f"Monitor(every={self.every}, device={self.device}, queued={s['queued']}, "
            f"running={s['running']}, done={s['done']}, dropped={s['dropped']}, "
            f"errors={s['errors']})"
        )

    # ------------------------------------------------------------------ worker side
    def _notify(self) -> None:
        cb = self.on_update
        if cb is None:
            return
        try:
            cb()
        except Exception as err:  # noqa: BLE001 - a display callback must not stop measuring
            if not self._callback_warned:
                self._callback_warned = True
                warnings.warn(
                    f"Monitor on_update callback raised {type(err).__name__}: {err} "
                    "(reported once; measurements continue).",
                    stacklevel=2,
                )

    def _next(self) -> _Snapshot | None:
        """Take the next snapshot (marks it running); ``None`` if none is waiting.

        The newest first, then the backlog coarse-to-fine (live.backlog.next_epoch).
        """
        with self._cond:
            if self._stop or not self._queue:
                return None
            # a model whose structure changed: every snapshot of the older structure first
            # (the private model holds one structure at a time), then the newer ones
            generation = min(sn.generation for sn in self._queue)
            waiting = [sn.epoch for sn in self._queue if sn.generation == generation]
            # the first snapshot measured gives the layer list every later one is checked
            # against (and broken weights are named per layer): the first recorded, the
            # model as built, not whichever is newest when the worker first wakes
            first = self._reference is None and not self._started
            epoch = min(waiting) if first else next_epoch(waiting, self._started)
            snap = next(sn for sn in self._queue if sn.epoch == epoch)
            if generation != self._loaded_generation:
                snap.model = self._structures.get(generation)
                for g in [g for g in self._structures if g <= generation]:
                    del self._structures[g]
                self._loaded_generation = generation
            self._queue.remove(snap)
            self._pending_bytes -= snap.nbytes
            snap.nbytes = 0  # no longer waiting: out of the budget
            self._started.add(epoch)
            self._active.add(snap.epoch)
            return snap

    def _finish(self, epoch: int) -> None:
        with self._cond:
            self._active.discard(epoch)
            self._n_done += 1
            self._cond.notify_all()

    def _measure_here(self, snap: _Snapshot) -> str | None:
        """The task a ThreadExecutor runs: measure one snapshot in this process.

        On the private model (traced once, on the caller's thread, so this thread never
        traces) and its CUDA stream, layer by layer: each result goes into the history as
        soon as it is done; between layers the task stops if the monitor was closed and
        keeps to the duty cycle. Every failure becomes an error entry, nothing escapes.
        Returns ``_STOPPED`` when close() stopped it before its last layer (the epoch then
        stays pending, its state spilled when there is a ``spill_dir``), else ``None``.
        """
        self._task_thread = threading.current_thread()
        epoch = snap.epoch
        try:
            stream_ctx = (
                torch.cuda.stream(self._stream) if self._stream is not None
                else contextlib.nullcontext()
            )
            with stream_ctx, torch.no_grad():
                self._load(snap)
                layers = self._discover(epoch)
                if layers is None:
                    return None
                for name, layer, problem in layers:
                    if self._stop:
                        self._keep_stopped(snap)
                        return _STOPPED  # the epoch stays pending in the history
                    if problem is not None:
                        self.history.add_error(epoch, name, problem)
                        self._notify()
                        continue
                    started = time.monotonic()
                    try:
                        result = self._measure(layer)
                    except Exception as err:  # noqa: BLE001 - reported, the worker goes on
                        self.history.add_error(epoch, name, f"{type(err).__name__}: {err}")
                    else:
                        self.history.add_result(epoch, name, result)
                        with self._cond:
                            self._n_measured += 1
                    self._notify()
                    self._hold_back(time.monotonic() - started)
        except Exception as err:  # noqa: BLE001 - never let the worker die
            self.history.add_error(
                epoch, None, f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}"
            )
        finally:
            snap.state = None  # free the snapshot's memory now, not at the next one
            self._task_thread = None
        return None

    def _keep_stopped(self, snap: _Snapshot) -> None:
        """A snapshot stopped by close() mid-way: its state to ``spill_dir`` (if there is
        one and it is not there already), so the epoch can still be measured later."""
        if self.spill_dir is None or snap.path is not None or snap.state is None:
            return
        try:
            with self._cond:
                self._spill_locked(snap)
        except Exception as err:  # noqa: BLE001 - the epoch stays listed as pending
            self.history.add_error(snap.epoch, None, "could not keep the snapshot on disk "
                                   f"at close: {type(err).__name__}: {err}")

    def _save(self, epoch: int) -> None:
        if self._autosave is not None:
            try:
                self.history.save(self._autosave)
            except Exception as err:  # noqa: BLE001
                self.history.add_error(epoch, None, f"autosave to {self._autosave} "
                                       f"failed: {type(err).__name__}: {err}")

    def _load(self, snap: _Snapshot) -> None:
        if snap.event is not None:
            if self._stream is not None:
                self._stream.wait_event(snap.event)
            else:  # a GPU model measured on the CPU: the copy to the host needs the data
                snap.event.synchronize()
        if snap.model is not None:
            self._model = snap.model
            snap.model = None
        if snap.path is not None:
            snap.state = _read_spilled(snap.path, self.device)
        if snap.state is not None:
            if self._stream is not None:
                for t in snap.state.values():
                    if isinstance(t, torch.Tensor) and t.is_cuda:
                        # the caching allocator must not recycle this memory for training
                        # before the worker stream is done reading it
                        t.record_stream(self._stream)
            self._model.load_state_dict(snap.state)

    def _discover(self, epoch: int) -> list[tuple[str, Any, str | None]] | None:
        """``(name, layer, problem)`` per layer to measure, or ``None`` if nothing can be."""
        try:
            descs, plan = plan_snapshot(self._model, self._example, self._layers_arg,
                                        self.in_range, self._reference)
        except _NothingToMeasure as err:
            self.history.add_error(epoch, None, str(err))
            self._notify()
            return None
        if descs is not None:
            self._set_reference(descs)
        return plan

    def _set_reference(self, descs: list[dict[str, Any]]) -> None:
        self._reference = list(descs)
        self.history.set_layers(descs)
        self._notify()

    # ------------------------------------------------------------------ dispatcher side
    def _max_in_flight(self) -> int:
        """How many snapshots the dispatcher keeps at the executor at once."""
        if self._in_process:
            # one private model (traced once, on the caller's thread): snapshots take turns
            return 1
        # one until the first snapshot has fixed the reference layers
        return max(1, self._executor.workers) if self._reference is not None else 1

    def _submit(self, snap: _Snapshot) -> cf.Future:
        """Hand one snapshot to the executor; returns its future."""
        if self._in_process:
            return self._executor.submit(self._measure_here, snap)
        return self._ship(snap)

    def _ship(self, snap: _Snapshot) -> cf.Future:
        """Send one snapshot to a process / Ray executor as a measure_snapshot_task."""
        if snap.event is not None:
            snap.event.synchronize()  # the clone on the training stream must be complete
        if snap.model is not None:  # the structure changed: ship the new one
            self._model = _private_copy(snap.model, torch.device("cpu"))
            self._template_ref = None
            snap.model = None
        if self._template_ref is None:
            put = getattr(self._executor, "put", None)
            self._template_ref = put(self._model) if put is not None else self._model
        state = None
        if snap.path is not None:
            snap.state = _read_spilled(snap.path, torch.device("cpu"))
        if snap.state is not None:
            state = {k: v.cpu() if isinstance(v, torch.Tensor) else v
                     for k, v in snap.state.items()}
            snap.state = None
        return self._executor.submit(
            measure_snapshot_task, self._template_ref, state, self._example,
            self._layers_arg, self.in_range, self._reference, self._call_kwargs,
            self._measure_fn, self._remote_device,
        )

    def _settle(self, epoch: int, future: cf.Future) -> None:
        """A finished task: its results (or why it failed) into the history, saved, done.

        The epoch leaves the history's pending list unless its task stopped early (a
        close() mid-snapshot): then it stays pending, with its spilled file if any.
        """
        try:
            if self._collect(epoch, future) is not _STOPPED:
                self._done_with(epoch)
            self._save(epoch)
        finally:
            self._finish(epoch)
            self._notify()

    def _done_with(self, epoch: int) -> None:
        """The snapshot of ``epoch`` is measured (or failed): no longer pending."""
        file = self.history.spilled().get(epoch)
        self.history.remove_pending(epoch)
        if file is not None:
            Path(file).unlink(missing_ok=True)

    def _collect(self, epoch: int, future: cf.Future) -> str | None:
        """Put one finished task's results (or why it failed) into the history;
        returns ``_STOPPED`` when the task stopped early."""
        try:
            out = future.result()
        except Exception as err:  # noqa: BLE001 - a lost task is reported, not fatal
            from causal_widgets.live.executors import WorkerLost, ray_lost

            why = ("its worker died (killed or out of memory)"
                   if isinstance(err, WorkerLost) or ray_lost(err) else "it raised")
            self.history.add_error(
                epoch, None, f"the measurement task for epoch {epoch} failed: {why}: "
                f"{type(err).__name__}: {err}"
            )
            return None
        if out is None or out is _STOPPED:  # measured here: results are in the history
            return out
        if out["error"] is not None:
            self.history.add_error(epoch, None, out["error"])
            return None
        if self._reference is None and out["layers"] is not None:
            self._set_reference(out["layers"])
        for name, result, problem in out["entries"]:
            if problem is not None:
                self.history.add_error(epoch, name, problem)
            else:
                self.history.add_result(epoch, name, result)
                with self._cond:
                    self._n_measured += 1
        return None

    def _stop_tasks(self, in_flight: Mapping[cf.Future, int]) -> None:
        """close(): cancel what has not started; what has finished is still collected."""
        for fut in in_flight:
            fut.cancel()
        if self._in_process:
            # a task measuring here writes into the history until it sees the stop (after
            # its current layer): wait for it, so nothing is written after close() returns.
            # A task elsewhere writes nothing until collected: it is not waited for.
            cf.wait(list(in_flight))
        for fut, epoch in in_flight.items():
            if fut.done() and not fut.cancelled():
                self._settle(epoch, fut)
            else:
                self._finish(epoch)
    def _hold_back(self, busy: float) -> None:
        """Pause ``busy * (1/duty - 1)`` s while training is recording (see ``duty``)."""
        if self.duty >= 1.0:
            return
        until = time.monotonic() + busy * (1.0 / self.duty - 1.0)
        while not self._stop:
            now = time.monotonic()
            if now >= until or now - self._last_record > _ACTIVE_S or self._waiting:
                return
            time.sleep(min(0.05, until - now))

    def _measure(self, layer: Any) -> Any:
        return _layer_measurer(self._measure_fn, self._call_kwargs, self.device)(layer)


#: every Monitor not yet closed: stopped at interpreter exit (see _close_at_exit)
_LIVE_MONITORS: weakref.WeakSet[Monitor] = weakref.WeakSet()


def _close_at_exit() -> None:
    """At interpreter exit, stop every open Monitor and join its threads.

    Why: the measuring thread is a daemon thread, usually inside a torch op. Left running
    while the interpreter finalises, torch's C++ thread pool is destroyed under it and the
    process aborts ("terminate called without an active exception", exit status 134)
    instead of exiting with the script's own status (0, 1, or 130 after Ctrl-C). Joined
    here, the worker finishes its current layer and stops; what was not measured stays
    pending in the history (spilled and autosaved when there is a directory), and stderr
    says how to finish it.
    """
    for mon in list(_LIVE_MONITORS):
        try:
            if mon.closed:
                continue
            mon.close(finish=False)
            message = mon._pending_message()
            if message is not None:
                print(message, file=sys.stderr, flush=True)
        except BaseException:  # noqa: BLE001 - one monitor must not keep the others running
            continue


atexit.register(_close_at_exit)


def _spill_main(ref: weakref.ref, cond: threading.Condition) -> None:
    """The spill thread: write the snapshots handed to it, then end (a new one starts
    when more come). Holds the Monitor only while writing one."""
    while True:
        mon = ref()
        if mon is None or not mon._spill_one():
            return
        del mon


def _wait_for_work(cond: threading.Condition, queue: deque) -> None:
    """Sleep until record() queues a snapshot (or a poll interval passes)."""
    with cond:
        # checked under the lock record() appends under, so no wake-up is missed
        if not queue:
            cond.wait(_IDLE_POLL_S)


def _dispatch_main(ref: weakref.ref, cond: threading.Condition, nice: int | None) -> None:
    """The monitor's one worker loop, whatever the executor: keep up to
    ``_max_in_flight()`` snapshots at the executor, collect each as it finishes.

    Holds a strong reference to the Monitor only while handing work over or collecting,
    never while waiting, so an abandoned Monitor is collected and this thread ends.
    """
    # submitting (pickling a snapshot) and collecting (the history, autosave) are
    # background work too; the measuring threads get the same from their executor
    _set_thread_nice(nice)
    in_flight: dict[cf.Future, int] = {}
    while True:
        mon = ref()
        if mon is None:
            for fut in in_flight:
                fut.cancel()
            return
        if mon._stop:
            mon._stop_tasks(in_flight)
            mon._notify()
            return
        while len(in_flight) < mon._max_in_flight():
            snap = mon._next()
            if snap is None:
                break
            try:
                in_flight[mon._submit(snap)] = snap.epoch
            except Exception as err:  # noqa: BLE001 - e.g. an unpicklable model
                mon.history.add_error(snap.epoch, None, f"{type(err).__name__}: {err}")
                mon._finish(snap.epoch)
                mon._notify()
        if not in_flight:
            queue = mon._queue  # the deque reference does not keep the Monitor alive
            del mon
            _wait_for_work(cond, queue)
            continue
        del mon  # not held while the work runs (a task measuring here holds its own)
        done, _ = cf.wait(list(in_flight), timeout=_IDLE_POLL_S,
                          return_when=cf.FIRST_COMPLETED)
        mon = ref()
        for fut in done:
            epoch = in_flight.pop(fut)
            if mon is not None:
                mon._settle(epoch, fut)
        del mon


def _monitor_executor(executor: Any, nice: int | None, name: str) -> tuple[Executor, bool]:
    """``(the executor snapshots go to, whether the monitor owns it)``."""
    if executor is None or executor == "thread":
        # measuring in this process: one daemon thread (the interpreter does not wait for
        # a measurement nobody closed) at lowered priority (see the module docstring). The
        # niceness is decided here, on the caller's thread: the executor's thread is
        # started by the (already lowered) dispatcher and would otherwise be lowered twice
        return ThreadExecutor(1, initializer=_set_thread_niceness,
                              initargs=(_niceness_after(nice),), daemon=True,
                              thread_name_prefix=name), True
    if isinstance(executor, ThreadExecutor):
        return executor, False
    if executor in ("process", "local", "ray"):
        return get_executor(executor, workers=1), True  # one local process; or Ray's pool
    if isinstance(executor, Executor) and executor.name != "serial":
        return executor, False
    raise ValueError(
        f"executor={executor!r} cannot run a monitor: pass None or 'thread' (a worker "
        "thread here), 'process' (a local process), 'ray' or a causal_widgets.RayExecutor."
    )


__all__ = ["Monitor"]

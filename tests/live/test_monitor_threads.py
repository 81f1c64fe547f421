"""The monitor's thread path is a ThreadExecutor: which thread measures, at what priority,
and the ThreadExecutor hooks (initializer, daemon threads) it uses for that."""

from __future__ import annotations

import gc
import os
import sys
import threading
import time

import numpy as np
import pytest
import torch
from torch import nn

import causal_widgets.live.monitor as monitor_mod
from causal_widgets.engine.layer import layer_from_module
from causal_widgets.live.executors import ThreadExecutor
from causal_widgets.live.monitor import Monitor


def _find_layers(model: nn.Module, example_input, layers, in_range) -> list:
    """The one Linear + Sigmoid of the test model, without torch.fx."""
    return [layer_from_module(model, name="0", in_range=(0.0, 1.0), out_range=(0.0, 1.0))]


class _Result:
    """The least a LayerResult must offer the History."""

    def __init__(self, layer) -> None:
        import pandas as pd

        w = layer.dense.weight
        self.ei_parts_matrix = np.abs(w).T
        self.sensitivity_matrix = (w**2).T
        self.nodes = pd.DataFrame({"side": ["input"] * w.shape[1], "node": range(w.shape[1]),
                                   "ei": np.abs(w).sum(axis=0)})
        self._frame = pd.DataFrame([dict(
            layer=layer.name, metric="ei_parts", value=float(np.abs(w).sum()), ci_low=0.0,
            ci_high=0.0, method="exact", samples=0, in_bins=8, out_bins=8,
            in_range=(0.0, 1.0), out_range=(0.0, 1.0), seed=0, version="test")])

    def to_frame(self):
        return self._frame


class _Where:
    """measure_fn stand-in that notes the thread it runs on (and its priority)."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.priorities: list[int] = []

    def __call__(self, layer, **kw):
        self.threads.append(threading.current_thread())
        if hasattr(os, "getpriority"):
            self.priorities.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return _Result(layer)


@pytest.fixture(autouse=True)
def _fake_graph(monkeypatch):
    monkeypatch.setattr(monitor_mod, "_find_layers", _find_layers)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.Sigmoid())


X = torch.rand(8, 3, generator=torch.Generator().manual_seed(1))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux")
def test_the_measuring_thread_is_a_daemon_executor_thread_at_lower_priority():
    where = _Where()
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    with Monitor(_model(), X, in_range=(0, 1), measure_fn=where, nice=3) as mon:
        mon.record(0)
        mon.record(1)
        mon.wait(timeout=30)
        assert isinstance(mon._executor, ThreadExecutor) and mon._owns_executor
    assert mon.history.epochs() == [0, 1]
    assert len(set(where.threads)) == 1
    worker = where.threads[0]
    assert worker is not threading.current_thread() and worker is not mon._thread
    assert worker.daemon  # the interpreter does not wait for an unclosed measurement
    assert where.priorities == [min(19, mine + 3)] * 2


def test_a_thread_executor_passed_in_measures_and_is_left_running():
    where = _Where()
    with ThreadExecutor(1, thread_name_prefix="mine") as ex:
        with Monitor(_model(), X, in_range=(0, 1), measure_fn=where, executor=ex,
                     drop_stale=False) as mon:
            for epoch in range(3):
                mon.record(epoch)
            mon.wait(timeout=30)
            assert mon.history.epochs() == [0, 1, 2]
            assert mon.history.settings["executor"] == "thread"
        assert {t.name for t in where.threads} == {"mine_0"}
        assert ex.submit(pow, 2, 5).result(timeout=10) == 32  # close() did not shut it down


def test_close_from_the_on_update_callback_does_not_hang():
    holder: dict[str, Monitor] = {}
    closed_from: list[str] = []

    def close_on_result() -> None:
        mon = holder.get("mon")
        if mon is not None and mon.history.epochs() and not mon.closed:
            closed_from.append(threading.current_thread().name)
            mon.close()

    mon = Monitor(_model(), X, in_range=(0, 1), measure_fn=_Where(), on_update=close_on_result)
    holder["mon"] = mon
    mon.record(0)
    deadline = time.monotonic() + 30
    while not mon.closed:
        assert time.monotonic() < deadline, "close() from on_update never returned"
        time.sleep(0.01)
    mon._thread.join(timeout=10)
    assert not mon._thread.is_alive()
    assert closed_from and closed_from[0] != threading.current_thread().name


def test_an_abandoned_monitor_ends_its_measuring_thread_too():
    where = _Where()
    mon = Monitor(_model(), X, in_range=(0, 1), measure_fn=where)
    mon.record(0)
    mon.wait(timeout=30)
    threads = [mon._thread, where.threads[0]]
    del mon
    gc.collect()
    for thread in threads:
        thread.join(timeout=5)
        assert not thread.is_alive(), thread.name


@pytest.mark.parametrize("daemon", [False, True])
def test_thread_executor_initializer_runs_once_in_each_thread(daemon):
    seen: list[int] = []
    lock = threading.Lock()

    def init(tag: str) -> None:
        with lock:
            seen.append(threading.get_ident())
        threading.current_thread().tag = tag

    gate = threading.Event()

    def job() -> str:
        gate.wait(10)
        return threading.current_thread().tag

    with ThreadExecutor(2, initializer=init, initargs=("x",), daemon=daemon) as ex:
        futs = [ex.submit(job) for _ in range(4)]
        time.sleep(0.1)
        gate.set()
        assert [f.result(timeout=10) for f in futs] == ["x"] * 4
        err = ex.submit(divmod, 1, 0).exception(timeout=10)
        assert isinstance(err, ZeroDivisionError)
    assert len(seen) == len(set(seen)) == 2


def test_daemon_thread_executor_fails_calls_when_its_initializer_raises():
    def bad() -> None:
        raise OSError("no such priority")

    with ThreadExecutor(1, initializer=bad, daemon=True) as ex:
        err = ex.submit(pow, 2, 3).exception(timeout=10)
    assert isinstance(err, RuntimeError) and "OSError: no such priority" in str(err)


def test_daemon_thread_executor_shutdown_cancels_what_has_not_started():
    gate = threading.Event()
    ex = ThreadExecutor(1, daemon=True)
    running = ex.submit(gate.wait, 10)
    waiting = ex.submit(pow, 2, 3)
    ex.shutdown(wait=False, cancel=True)
    assert waiting.cancelled()
    gate.set()
    assert running.result(timeout=10) is True
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(pow, 2, 3)
    with pytest.raises(TypeError, match="initializer must be callable"):
        ThreadExecutor(1, initializer=3)


def test_monitor_rejects_a_nice_that_is_not_an_int():
    with pytest.raises(TypeError, match="nice must be an int"):
        Monitor(_model(), X, in_range=(0, 1), nice="low")

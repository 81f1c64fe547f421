"""Monitor: background measurement of weight snapshots.

Most tests swap the engine for a tiny deterministic stand-in (``measure_fn=`` and a
patched ``find_layers``) so they test the queueing/threading logic in milliseconds and
against values computed here by hand; ``test_real_engine_*`` runs the real graph +
measure stack on a small network and compares with measuring the same weights directly.
"""

from __future__ import annotations

import concurrent.futures as cf
import gc
import math
import os
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import causal_widgets.live.monitor as monitor_mod
from causal_widgets.engine.layer import layer_from_module
from causal_widgets.live.executors import Executor
from causal_widgets.live.monitor import Monitor
from causal_widgets.live.store import History

# --------------------------------------------------------------------------- stand-ins


def fake_find_layers(model: nn.Module, example_input, layers, in_range) -> list:
    """Every ``Linear`` of a Sequential plus the activation after it, named by index."""
    mods = list(model)
    found = []
    for i, m in enumerate(mods):
        if isinstance(m, nn.Linear):
            act = mods[i + 1] if i + 1 < len(mods) else nn.Identity()
            lo, hi = in_range if i == 0 else (0.0, 1.0)
            name = str(i)
            if layers is not None and name not in layers:
                continue
            # layer_from_module raises ValueError naming the parameter on NaN weights
            found.append(
                layer_from_module(nn.Sequential(m, act), name=name, in_range=(lo, hi),
                                  out_range=(0.0, 1.0))
            )
    return found


class FakeResult:
    """LayerResult stand-in: 'EI_parts' = |W|^T, 'sensitivity' = (W^T)^2, totals their sums."""

    def __init__(self, layer) -> None:
        w = layer.dense.weight  # (n_out, n_in) float64 copy made at find time
        self.name = layer.name
        self.ei_parts_matrix = np.abs(w).T
        self.sensitivity_matrix = (w**2).T
        self.nodes = pd.DataFrame(
            {"side": ["input"] * w.shape[1], "node": range(w.shape[1]),
             "ei": np.abs(w).sum(axis=0)}
        )
        self.vals = {"ei_parts": float(np.abs(w).sum()), "sensitivity": float((w**2).sum())}

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [dict(layer=self.name, metric=m, value=v, ci_low=v, ci_high=v, method="exact",
                  samples=0, in_bins=8, out_bins=8, in_range=(0.0, 1.0),
                  out_range=(0.0, 1.0), seed=0, version="test") for m, v in self.vals.items()]
        )


class Engine:
    """measure_fn stand-in with hooks: a gate to hold a measurement, and a call log."""

    def __init__(self, delay: float = 0.0, fail_on: set[str] | None = None) -> None:
        self.delay = delay
        self.fail_on = fail_on or set()
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.calls: list[str] = []
        self.kwargs: list[dict] = []

    def __call__(self, layer, **kw):
        self.calls.append(layer.name)
        self.kwargs.append(kw)
        self.started.set()
        assert self.gate.wait(10), "test gate never opened"
        if self.delay:
            time.sleep(self.delay)
        if layer.name in self.fail_on:
            raise RuntimeError(f"engine failure on {layer.name}")
        if not np.isfinite(layer.dense.weight).all():
            raise ValueError("NaN weights")
        return FakeResult(layer)


@pytest.fixture(autouse=True)
def _fake_graph(monkeypatch):
    monkeypatch.setattr(monitor_mod, "_find_layers", fake_find_layers)


def mlp(seed: int = 0, sizes=(4, 5, 5, 3)) -> nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    mods: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        lin = nn.Linear(a, b, bias=False)
        with torch.no_grad():
            lin.weight.uniform_(-1, 1, generator=g)
        mods += [lin, nn.Sigmoid()]
    return nn.Sequential(*mods)


X = torch.rand(16, 4, generator=torch.Generator().manual_seed(1))


class InProcessPool(Executor):
    """An executor in this process (so the fakes above apply) that is not the monitor's own
    thread: snapshots go through the executor path (tasks, several in flight)."""

    name = "in-process-pool"

    def __init__(self, workers: int = 2) -> None:
        self.workers = workers
        self.pool = cf.ThreadPoolExecutor(workers)
        self.submitted = 0

    def submit(self, fn, /, *args, **kwargs):
        self.submitted += 1
        return self.pool.submit(fn, *args, **kwargs)


def executor_for(kind):
    return None if kind == "thread" else InProcessPool()


def step(model: nn.Module, k: int) -> None:
    """A deterministic 'training step': change every weight."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * (k + 1))


def expected(weights: dict[str, torch.Tensor], name: str) -> np.ndarray:
    """EI_parts stand-in matrix for layer ``name`` computed by hand from a state_dict."""
    return np.abs(weights[f"{name}.weight"].double().numpy()).T


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("kind", ["thread", "executor"])
def test_every_k_measures_only_multiples_but_keeps_all_scalars(kind):
    eng = Engine()
    model = mlp()
    ex = executor_for(kind)
    with Monitor(model, X, every=3, in_range=(0, 1), measure_fn=eng, drop_stale=False,
                 executor=ex) as mon:
        for epoch in range(10):
            step(model, epoch)
            mon.record(epoch, loss=1.0 / (epoch + 1))
        mon.wait(timeout=30)
        h = mon.history
        assert h.epochs() == [0, 3, 6, 9]
        assert h.scalars()["epoch"].tolist() == list(range(10))
        assert h.scalars()["loss"].tolist() == [1.0 / (e + 1) for e in range(10)]
        assert [d["name"] for d in h.layers()] == ["0", "2", "4"]
        assert h.layers()[0]["n_in"] == 4 and h.layers()[2]["n_out"] == 3
        s = mon.status()
        assert s["queued"] == 0 and s["running"] == 0 and s["done"] == 4
        assert s["measured"] == 12 and s["dropped"] == 0 and s["errors"] == 0
        df = h.frame()
        assert len(df) == 4 * 3 * 2
        assert df.loc[df.epoch == 3, "loss"].unique().tolist() == [0.25]
        # the worker measured on the resolved device, passed explicitly
        assert all(kw["device"] == torch.device("cpu") for kw in eng.kwargs)
        if ex is not None:  # one task per measured snapshot
            assert ex.submitted == 4


def test_snapshot_is_a_copy_taken_at_record_time():
    """Weights changed after record() (while the worker is busy) must not leak in."""
    eng = Engine()
    eng.gate.clear()
    model = mlp()
    mon = Monitor(model, X, in_range=(0, 1), measure_fn=eng, drop_stale=False)
    states = {}
    for epoch in range(3):
        states[epoch] = {k: v.clone() for k, v in model.state_dict().items()}
        mon.record(epoch)
        step(model, epoch)  # in place, right after the snapshot
    eng.gate.set()
    mon.wait(timeout=30)
    for epoch in range(3):
        for name in ("0", "2", "4"):
            got = mon.history.matrix(epoch, name)["ei_parts"]
            np.testing.assert_array_equal(got, expected(states[epoch], name))
    mon.close()


def test_model_is_untouched():
    model = mlp()
    model.train()
    model[2].eval()  # a mixed mode must come back exactly as it was
    out = model(X).sum()
    out.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    modes = [m.training for m in model.modules()]
    req = [p.requires_grad for p in model.parameters()]

    mon = Monitor(model, X, in_range=(0, 1), measure_fn=Engine())
    for epoch in range(3):
        mon.record(epoch, loss=0.5)
    mon.wait(timeout=30)
    mon.close()

    assert torch.equal(torch.get_rng_state(), rng)
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == req
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights[k])
    for n, p in model.named_parameters():
        assert torch.equal(p.grad, grads[n])
    # the private copy is a different object with no grads
    assert mon._model is not model
    assert all(p.grad is None and not p.requires_grad for p in mon._model.parameters())


def test_stale_snapshots_are_dropped_oldest_first_never_the_running_one():
    eng = Engine()
    eng.gate.clear()
    model = mlp()
    updates = []
    # dropping is an opt-in since nothing is dropped by default (issue 11)
    mon = Monitor(model, X, in_range=(0, 1), measure_fn=eng, max_pending=2,
                  drop_stale=True, on_update=lambda: updates.append(1))
    mon.record(0)
    assert eng.started.wait(10)  # epoch 0 is being measured now
    for epoch in range(1, 6):
        mon.record(epoch)
    s = mon.status()
    assert s["running"] == 1 and s["running_epoch"] == 0
    assert s["queued"] == 2 and s["dropped"] == 3
    assert mon.history.dropped() == [1, 2, 3]
    eng.gate.set()
    mon.wait(timeout=30)
    assert mon.history.epochs() == [0, 4, 5]
    assert mon.status()["done"] == 3
    assert len(updates) > 0
    mon.close()


def test_no_drops_without_drop_stale_and_a_slow_engine():
    eng = Engine(delay=0.01)
    model = mlp()
    mon = Monitor(model, X, in_range=(0, 1), measure_fn=eng, drop_stale=False, max_pending=1)
    for epoch in range(6):
        mon.record(epoch)
    mon.wait(timeout=60)
    assert mon.history.epochs() == list(range(6))
    assert mon.history.dropped() == []
    mon.close()


def test_wait_timeout_then_success():
    eng = Engine()
    eng.gate.clear()
    mon = Monitor(mlp(), X, in_range=(0, 1), measure_fn=eng)
    mon.record(0)
    with pytest.raises(TimeoutError, match="pending after 0.2 s"):
        mon.wait(timeout=0.2)
    eng.gate.set()
    mon.wait(timeout=30)
    assert mon.history.epochs() == [0]
    mon.close()


@pytest.mark.parametrize("kind", ["thread", "executor"])
def test_nan_weights_at_one_epoch_are_an_error_and_the_worker_survives(kind):
    model = mlp()
    mon = Monitor(model, X, in_range=(0, 1), measure_fn=Engine(), drop_stale=False,
                  executor=executor_for(kind))
    mon.record(0)
    good = model[2].weight.detach().clone()
    with torch.no_grad():
        model[2].weight[1, 3] = float("nan")
    mon.record(1)
    with torch.no_grad():
        model[2].weight.copy_(good)
    mon.record(2)
    mon.wait(timeout=30)
    errs = mon.history.errors()
    assert len(errs) == 1
    assert errs[0]["epoch"] == 1 and errs[0]["layer"] == "2"
    assert "contains NaN" in errs[0]["message"] and ".weight'" in errs[0]["message"]
    assert mon.history.done() == {(e, n) for e in (0, 1, 2) for n in ("0", "2", "4")} - {
        (1, "2")
    }
    assert mon.status()["errors"] == 1
    mon.close()


@pytest.mark.parametrize("kind", ["thread", "executor"])
def test_shape_change_mid_training_names_layer_and_shapes(kind):
    model = mlp()
    mon = Monitor(model, X, in_range=(0, 1), measure_fn=Engine(), drop_stale=False,
                  executor=executor_for(kind))
    mon.record(0)
    mon.wait(timeout=30)
    # the user swaps in wider layers: 4-5-7-3 instead of 4-5-5-3
    model[2] = nn.Linear(5, 7, bias=False)
    model[4] = nn.Linear(7, 3, bias=False)
    mon.record(1)
    mon.record(2)
    mon.wait(timeout=30)
    # an executor measures snapshots 1 and 2 at once: their errors may land in either order
    errs = sorted(mon.history.errors(), key=lambda e: (e["epoch"], e["layer"]))
    assert [(e["epoch"], e["layer"]) for e in errs] == [(1, "2"), (1, "4"), (2, "2"), (2, "4")]
    assert "(5,) -> (5,)" in errs[0]["message"] and "(5,) -> (7,)" in errs[0]["message"]
    assert "(7,) -> (3,)" in errs[1]["message"]
    # the unchanged first layer is still measured, with the new weights loaded
    assert mon.history.done() == {(0, "0"), (0, "2"), (0, "4"), (1, "0"), (2, "0")}
    assert mon.status()["done"] == 3
    assert not mon.closed and mon._thread.is_alive()
    mon.close()


def test_engine_exception_is_recorded_per_layer():
    eng = Engine(fail_on={"2"})
    mon = Monitor(mlp(), X, in_range=(0, 1), measure_fn=eng)
    mon.record(0)
    mon.wait(timeout=30)
    errs = mon.history.errors()
    assert errs == [{"epoch": 0, "layer": "2", "message": "RuntimeError: engine failure on 2"}]
    assert mon.history.done() == {(0, "0"), (0, "4")}
    mon.close()


def test_failed_discovery_on_first_snapshot_is_a_model_error(monkeypatch):
    def broken(*a, **k):
        raise ValueError("cannot trace this model")

    monkeypatch.setattr(monitor_mod, "_find_layers", broken)
    mon = Monitor(mlp(), X, in_range=(0, 1), measure_fn=Engine())
    mon.record(0)
    mon.wait(timeout=30)
    assert mon.history.errors() == [
        {"epoch": 0, "layer": None, "message": "ValueError: cannot trace this model"}
    ]
    assert mon._thread.is_alive()
    mon.close()


def test_on_update_exception_warns_once_and_measuring_continues():
    calls = []

    def bad():
        calls.append(1)
        raise KeyError("display broke")

    mon = Monitor(mlp(), X, in_range=(0, 1), measure_fn=Engine(), on_update=bad)
    with pytest.warns(UserWarning, match="on_update callback raised KeyError"):
        mon.record(0)
    mon.record(1)
    mon.wait(timeout=30)
    assert mon.history.epochs() == [0, 1]
    assert len(calls) > 3
    mon.close()


def test_close_stops_worker_and_record_after_close_raises():
    eng = Engine()
    eng.gate.clear()
    mon = Monitor(mlp(), X, in_range=(0, 1), measure_fn=eng, drop_stale=False)
    mon.record(0)
    assert eng.started.wait(10)
    mon.record(1)
    mon.record(2)
    eng.gate.set()
    mon.close(timeout=10)
    assert not mon._thread.is_alive()
    # epoch 0 was running: its current layer finished, the rest was skipped; 1, 2 discarded
    assert set(mon.history.epochs()) <= {0}
    assert mon.status()["queued"] == 0 and mon.status()["closed"]
    with pytest.raises(RuntimeError, match="closed"):
        mon.record(3)
    mon.wait(timeout=1)  # nothing pending: returns at once


def test_close_with_wait_measures_everything():
    mon = Monitor(mlp(), X, in_range=(0, 1), measure_fn=Engine(delay=0.005), drop_stale=False)
    for e in range(4):
        mon.record(e)
    mon.close(wait=True, timeout=30)
    assert mon.history.epochs() == [0, 1, 2, 3]


def test_abandoned_monitor_is_collected_and_its_thread_ends():
    mon = Monitor(mlp(), X, in_range=(0, 1), measure_fn=Engine())
    mon.record(0)
    mon.wait(timeout=30)
    thread = mon._thread
    del mon
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_in_range_inferred_once_with_a_warning():
    x = torch.linspace(0.25, 0.75, 8).reshape(2, 4)
    with pytest.warns(UserWarning, match=r"example_input's range \(0.25, 0.75\)"):
        mon = Monitor(mlp(), x, measure_fn=Engine())
    assert mon.in_range == (0.25, 0.75)
    mon.close()


def test_argument_errors():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        Monitor(lambda x: x, X)
    with pytest.raises(ValueError, match="every must be an int >= 1"):
        Monitor(mlp(), X, every=0, in_range=(0, 1))
    with pytest.raises(ValueError, match="max_pending"):
        Monitor(mlp(), X, max_pending=0, in_range=(0, 1))
    with pytest.raises(TypeError, match="on_update must be callable"):
        Monitor(mlp(), X, on_update=3, in_range=(0, 1))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no GPU"):
            Monitor(mlp(), X, device="cuda", in_range=(0, 1))
    with Monitor(mlp(), X, in_range=(0, 1), measure_fn=Engine()) as mon:
        with pytest.raises(TypeError, match="epoch must be an int"):
            mon.record(1.0)


def test_autosave_and_resume(tmp_path):
    path = tmp_path / "hist"
    model = mlp()
    mon = Monitor(model, X, in_range=(0, 1), measure_fn=Engine(), autosave=path,
                  drop_stale=False)
    for e in range(3):
        mon.record(e, loss=float(e))
    mon.wait(timeout=30)
    mon.close()
    h = History.load(path)
    assert h.epochs() == [0, 1, 2]
    assert h.settings["every"] == 1 and h.settings["in_range"] == [0.0, 1.0]
    # resume into the loaded history: earlier results are kept, new ones appended
    mon2 = Monitor(model, X, in_range=(0, 1), measure_fn=Engine(), history=h, autosave=path)
    mon2.record(3, loss=3.0)
    mon2.wait(timeout=30)
    mon2.close()
    h2 = History.load(path)
    assert h2.epochs() == [0, 1, 2, 3]
    assert h2.scalars()["loss"].tolist() == [0.0, 1.0, 2.0, 3.0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux")
def test_worker_thread_runs_at_lower_priority():
    mon = Monitor(mlp(), X, in_range=(0, 1), measure_fn=Engine(), nice=5)
    mon.record(0)
    mon.wait(timeout=30)
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    worker = os.getpriority(os.PRIO_PROCESS, mon._thread.native_id)
    assert worker == min(19, mine + 5)
    mon.close()


def test_real_engine_matches_direct_measurement():
    """Real graph + measure on a 4-5-5-3 sigmoid net: same numbers as measuring directly."""
    discovery = pytest.importorskip("causal_widgets.network.discovery")
    pytest.importorskip("causal_widgets.engine.exact")
    pytest.importorskip("causal_widgets.engine.estimators")
    from causal_widgets.engine.layer_measure import measure_layer

    monitor_mod_find = monitor_mod.__dict__["_find_layers"]
    assert monitor_mod_find is fake_find_layers  # autouse fixture; use the real one here
    real = lambda m, x, layers, in_range: discovery.find_layers(  # noqa: E731
        m, x, layers=layers, in_range=in_range
    )
    monitor_mod._find_layers = real
    try:
        model = mlp(seed=3)
        kw = dict(bins=8, metrics=["ei_parts", "sensitivity"], seed=0)
        mon = Monitor(model, X, in_range=(0.0, 1.0), drop_stale=False, **kw)
        states = {}
        for epoch in range(2):
            states[epoch] = {k: v.clone() for k, v in model.state_dict().items()}
            mon.record(epoch, loss=1.0)
            step(model, epoch)
        mon.wait(timeout=120)
        mon.close()
        assert mon.history.errors() == []
        twin = mlp(seed=99)
        for epoch, st in states.items():
            twin.load_state_dict(st)
            for layer in discovery.find_layers(twin, X, in_range=(0.0, 1.0)):
                r = measure_layer(layer, device="cpu", **kw)
                got = mon.history.frame()
                got = got[(got.epoch == epoch) & (got.layer == layer.name)]
                for metric in ("ei_parts", "sensitivity"):
                    v = got.loc[got.metric == metric, "value"].item()
                    assert math.isclose(v, getattr(r, metric), rel_tol=0, abs_tol=1e-12)
                m = mon.history.matrix(epoch, layer.name)
                np.testing.assert_array_equal(m["ei_parts"], r.ei_parts_matrix)
                np.testing.assert_array_equal(m["sensitivity"], r.sensitivity_matrix)
    finally:
        monitor_mod._find_layers = monitor_mod_find


def test_buffers_are_snapshotted(monkeypatch):
    """BatchNorm running stats (buffers) travel with the snapshot, not only parameters."""
    seen = []

    def find(model, x, layers, in_range):
        seen.append(model[1].running_mean.clone())
        return fake_find_layers(nn.Sequential(model[0], nn.Sigmoid()), x, layers, in_range)

    monkeypatch.setattr(monitor_mod, "_find_layers", find)
    model = nn.Sequential(nn.Linear(4, 3, bias=False), nn.BatchNorm1d(3))
    mon = Monitor(model, X, in_range=(0, 1), measure_fn=Engine(), drop_stale=False)
    model.train()
    model(X)  # updates the running statistics
    mon.record(0)
    snapshot_mean = model[1].running_mean.clone()
    model(X * 3)  # changes them again after the snapshot
    mon.wait(timeout=30)
    mon.close()
    assert not torch.equal(snapshot_mean, torch.zeros(3))
    assert torch.equal(seen[-1], snapshot_mean)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_snapshots_on_a_side_stream_match_the_weights():
    model = mlp().cuda()
    eng = Engine()
    mon = Monitor(model, X.cuda(), in_range=(0, 1), measure_fn=eng, drop_stale=False)
    states = {}
    for epoch in range(4):
        states[epoch] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        mon.record(epoch)
        step(model, epoch)  # in place on the training stream, right after the snapshot
    mon.wait(timeout=60)
    mon.close()
    assert mon._stream is not None
    assert all(kw["device"].type == "cuda" for kw in eng.kwargs)
    for epoch in range(4):
        for name in ("0", "2", "4"):
            got = mon.history.matrix(epoch, name)["ei_parts"]
            np.testing.assert_allclose(got, expected(states[epoch], name), rtol=0, atol=1e-7)


def test_worker_never_traces_with_fx_while_training_runs(monkeypatch):
    """torch.fx tracing patches nn.Module.__call__ process-wide; the worker must not trace.

    The model is traced once on the caller's thread (at construction); afterwards every
    snapshot reuses that trace, so a symbolic_trace call from the worker thread fails this test.
    """
    import threading

    import causal_widgets.network.tracing as tracing

    model = nn.Sequential(nn.Linear(4, 5), nn.Sigmoid(), nn.Linear(5, 3), nn.Sigmoid())
    x = torch.rand(16, 4, generator=torch.Generator().manual_seed(0))
    traced_from = []
    real = tracing.fx.symbolic_trace

    def spy(*args, **kwargs):
        traced_from.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(tracing.fx, "symbolic_trace", spy)
    main = threading.current_thread().name
    mon = Monitor(model, x, in_range=(0, 1), drop_stale=False, cells=64, points_per_cell=8)
    try:
        for epoch in range(4):
            with torch.no_grad():
                model[0].weight.mul_(1.1)
            mon.record(epoch)
        mon.wait(timeout=120)
    finally:
        mon.close()
    assert traced_from and set(traced_from) == {main}
    assert mon.history.epochs() == [0, 1, 2, 3]
    assert not mon.history.errors()


def test_duty_cycle_pauses_only_while_training_records(monkeypatch):
    """After a layer that kept the worker busy t s it pauses t (1/duty - 1) s, but only while
    record() was called recently; a fake clock makes this exact."""
    model = nn.Sequential(nn.Linear(2, 2), nn.Sigmoid())
    mon = Monitor(model, torch.rand(4, 2), in_range=(0, 1), duty=0.2)
    clock = {"now": 100.0}
    slept = []

    def fake_sleep(dt):
        slept.append(dt)
        clock["now"] += dt

    monkeypatch.setattr(monitor_mod.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(monitor_mod.time, "sleep", fake_sleep)
    try:
        mon._last_record = clock["now"]  # training just recorded
        mon._hold_back(0.1)
        # 0.1 * (1/0.2 - 1) = 0.4 s, unless training went quiet for 2 s first (it did not)
        assert sum(slept) == pytest.approx(0.4)
        slept.clear()
        mon._last_record = clock["now"] - 10.0  # training stopped recording: full speed
        mon._hold_back(0.1)
        assert slept == []
        mon._last_record = clock["now"]
        mon._waiting = 1  # the caller is blocked in wait(): nobody is training
        mon._hold_back(0.1)
        assert slept == []
        mon._waiting = 0
        mon.duty = 1.0
        mon._hold_back(0.1)
        assert slept == []
    finally:
        monkeypatch.undo()
        mon.close()


@pytest.mark.parametrize("duty", [0, -0.5, 1.5, True, "half"])
def test_duty_must_be_a_fraction(duty):
    with pytest.raises(ValueError, match="duty"):
        Monitor(nn.Linear(2, 2), torch.rand(4, 2), in_range=(0, 1), duty=duty)


def _train_and_measure(executor, epochs: int = 3) -> pd.DataFrame:
    """The real engine (no fakes) on a small net, every epoch measured; the tidy results."""
    from causal_widgets.training.models import make_mlp

    model = make_mlp([4, 5, 5, 3], "sigmoid", seed=2)
    kw = dict(in_range=(0, 1), bins=8, seed=5, cells=128, points_per_cell=16,
              drop_stale=False, executor=executor)
    with Monitor(model, X, **kw) as mon:
        for epoch in range(epochs):
            step(model, epoch)
            mon.record(epoch)
        mon.wait(timeout=300)
        assert not mon.history.errors()
        return mon.history.frame().sort_values(["epoch", "layer", "metric"]).reset_index(
            drop=True)


@pytest.mark.usefixtures("_real_graph")
def test_a_process_worker_gives_the_thread_workers_numbers():
    here = _train_and_measure(None)
    there = _train_and_measure("process")
    assert len(here) == 3 * 3 * 5 and here[["epoch", "layer", "metric"]].equals(
        there[["epoch", "layer", "metric"]])
    for col in ("value", "ci_low", "ci_high"):
        np.testing.assert_allclose(there[col].to_numpy(float), here[col].to_numpy(float),
                                   rtol=0, atol=1e-12, err_msg=col)


@pytest.fixture
def _real_graph(monkeypatch):
    from causal_widgets.network.discovery import find_layers

    monkeypatch.setattr(monitor_mod, "_find_layers",
                        lambda m, x, layers, r: find_layers(m, x, layers=layers, in_range=r))


@pytest.mark.usefixtures("_real_graph")
def test_a_lost_measurement_task_is_an_error_and_the_monitor_goes_on():
    from causal_widgets.live.executors import WorkerLost

    class LosesSecond(InProcessPool):
        def submit(self, fn, /, *args, **kwargs):
            if self.submitted == 1:  # the second snapshot's task is lost
                self.submitted += 1
                fut = cf.Future()
                fut.set_exception(WorkerLost("a local worker process died (test)"))
                return fut
            return super().submit(fn, *args, **kwargs)

    model = mlp()
    with Monitor(model, X, in_range=(0, 1), bins=8, cells=64, points_per_cell=8,
                 drop_stale=False, executor=LosesSecond()) as mon:
        for epoch in range(3):
            step(model, epoch)
            mon.record(epoch)
        mon.wait(timeout=120)
        errs = mon.history.errors()
        # which epoch the second task carried depends on when the dispatcher looked: the
        # newest waiting snapshot goes first (issue 11), so it is not always epoch 1
        assert len(errs) == 1 and errs[0]["layer"] is None
        lost = errs[0]["epoch"]
        assert "its worker died" in errs[0]["message"]
        assert mon.history.epochs() == sorted({0, 1, 2} - {lost})
        assert mon.history.pending() == []  # failed, not left waiting

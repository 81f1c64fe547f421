"""Nothing dropped by default (issue 11): every recorded snapshot is measured, the newest
first and then the backlog coarse-to-fine; memory beyond ``max_pending_bytes`` spills to
disk; ``close()`` leaves every unmeasured epoch pending; an epoch is recorded once.

The first test runs the real engine on a 4-5-5-3 net trained as a user would. The others
hold the measurement with a gate (a ``measure_fn`` stand-in whose value is ``sum |W|`` of
the layer, computed here by hand from the weights recorded at each epoch), so the order
and the bookkeeping are checked deterministically.
"""

from __future__ import annotations

import threading
import time
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import causal_widgets.live.monitor as monitor_mod
from causal_widgets.engine.layer import layer_from_module
from causal_widgets.live.monitor import Monitor
from causal_widgets.live.store import History
from causal_widgets.training.models import make_mlp

X = torch.rand(32, 4, generator=torch.Generator().manual_seed(3))


# --------------------------------------------------------------------------- stand-ins
def linear_layers(model: nn.Module, example_input, layers, in_range) -> list:
    """Every Linear of a Sequential with the activation after it, named by index."""
    mods = list(model)
    out = []
    for i, m in enumerate(mods):
        if isinstance(m, nn.Linear):
            act = mods[i + 1] if i + 1 < len(mods) else nn.Identity()
            lo, hi = in_range if i == 0 else (0.0, 1.0)
            out.append(layer_from_module(nn.Sequential(m, act), name=str(i),
                                         in_range=(lo, hi), out_range=(0.0, 1.0)))
    return out


class SumAbs:
    """A LayerResult stand-in: one metric, ``sum |W|`` of the layer's weights."""

    def __init__(self, layer) -> None:
        self.name, self.value = layer.name, float(np.abs(layer.dense.weight).sum())

    def to_frame(self) -> pd.DataFrame:
        v = self.value
        return pd.DataFrame([dict(layer=self.name, metric="ei_parts", value=v, ci_low=v,
                                  ci_high=v, method="exact")])


def sum_abs(layer, **kw) -> SumAbs:
    return SumAbs(layer)


class Gated:
    """measure_fn: the first call waits for ``gate`` (so the test can queue a backlog)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()
        self.calls = 0

    def __call__(self, layer, **kw):
        self.calls += 1
        self.started.set()
        assert self.gate.wait(30), "test gate never opened"
        return SumAbs(layer)


class Order:
    """on_update hook: the epochs in the order their first result reached the history."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[int] = []
        self.history: History | None = None

    def __call__(self) -> None:
        if self.history is None:
            return
        with self.lock:
            for e in self.history.epochs():
                if e not in self.seen:
                    self.seen.append(e)


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 5, bias=False), nn.Sigmoid(),
                         nn.Linear(5, 3, bias=False), nn.Sigmoid())


def set_weights(model: nn.Module, epoch: int) -> dict[str, torch.Tensor]:
    """Weights that tell the epochs apart; returns a copy (the truth the test checks)."""
    g = torch.Generator().manual_seed(100 + epoch)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.rand(p.shape, generator=g) - 0.5)
    return {k: v.clone() for k, v in model.state_dict().items()}


def by_hand(weights: dict[str, torch.Tensor], layer: str) -> float:
    return float(weights[f"{layer}.weight"].double().abs().sum())


def values(history: History) -> dict[tuple[int, str], float]:
    df = history.frame()
    return {(int(r.epoch), str(r.layer)): float(r.value) for r in df.itertuples()}


@pytest.fixture
def stand_in(monkeypatch):
    monkeypatch.setattr(monitor_mod, "_find_layers", linear_layers)


# --------------------------------------------------------------------------- tests
def test_40_fast_epochs_are_all_measured_the_newest_before_the_backlog():
    """The issue's case: a 4-5-5-3 net, 40 quick epochs, record(epoch, loss=...), wait()."""
    torch.manual_seed(0)
    model = make_mlp([4, 5, 5, 3], "sigmoid", seed=2)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 4, generator=g), torch.randint(0, 3, (64,), generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    order = Order()
    mon = Monitor(model, x, in_range=(0, 1), bins=8, cells=64, points_per_cell=8,
                  on_update=order)
    order.history = mon.history
    try:
        for epoch in range(40):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            if epoch == 39:
                mon.record(epoch, loss=loss.item())
                # read what is running first: an epoch finishing meanwhile leaves pending
                running = {mon.status()["running_epoch"]} - {39}
                waiting = set(mon.history.pending()) - running - {39}
            else:
                mon.record(epoch, loss=loss.item())
        mon.wait(timeout=300)
        order()
        assert mon.history.epochs() == list(range(40))
        assert mon.history.dropped() == [] and mon.history.pending() == []
        assert mon.status()["dropped"] == 0 and not mon.history.errors()
        # every layer of every epoch (3 Linear layers)
        assert len(mon.history.done()) == 40 * 3
        assert sorted(order.seen) == list(range(40))
        # the newest epoch was measured before every epoch still waiting when it came
        first = order.seen.index(39)
        assert all(order.seen.index(e) > first for e in waiting), (order.seen, waiting)
    finally:
        mon.close()


@pytest.mark.usefixtures("stand_in")
def test_a_held_backlog_goes_newest_first_then_bisects_the_range():
    eng, order = Gated(), Order()
    model = mlp()
    mon = Monitor(model, X, in_range=(0, 1), measure_fn=eng, on_update=order)
    order.history = mon.history
    truth = {}
    try:
        truth[0] = set_weights(model, 0)
        mon.record(0, loss=0.0)
        assert eng.started.wait(30)  # epoch 0 is being measured, the gate holds it
        for epoch in range(1, 40):
            truth[epoch] = set_weights(model, epoch)
            mon.record(epoch, loss=float(epoch))
        assert mon.history.pending() == list(range(40))
        assert mon.status()["queued"] == 39
        eng.gate.set()
        mon.wait(timeout=60)
        order()
        # 0 was running; then the newest; then the farthest from {0, 39}: 19 (tie with 20,
        # the older wins), then 29 (10 from 19 and 39) and 9
        assert order.seen[:5] == [0, 39, 19, 29, 9]
        assert sorted(order.seen) == list(range(40)) and mon.history.pending() == []
        got = values(mon.history)
        for epoch, w in truth.items():
            for layer in ("0", "2"):
                assert got[(epoch, layer)] == pytest.approx(by_hand(w, layer), abs=1e-9)
    finally:
        eng.gate.set()
        mon.close()


@pytest.mark.usefixtures("stand_in")
def test_snapshots_beyond_the_budget_spill_to_disk_and_are_measured(tmp_path):
    eng = Gated()
    model = mlp()
    one = sum(v.numel() * v.element_size() for v in model.state_dict().values())
    autosave = tmp_path / "hist"
    # room for two waiting snapshots in memory
    mon = Monitor(model, X, in_range=(0, 1), measure_fn=eng, autosave=autosave,
                  max_pending_bytes=2 * one)
    truth = {}
    try:
        truth[0] = set_weights(model, 0)
        mon.record(0)
        assert eng.started.wait(30)
        for epoch in range(1, 7):
            truth[epoch] = set_weights(model, epoch)
            mon.record(epoch)
        # 1..6 wait; the newest (6) and one more stay in memory, the oldest go to disk
        # (written by the monitor's spill thread: record() does not wait for the disk)
        deadline = time.monotonic() + 60
        while len(mon.history.spilled()) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        spilled = mon.history.spilled()
        assert sorted(spilled) == [1, 2, 3, 4]
        spill_dir = tmp_path / "hist.pending"
        assert all(str(spill_dir) in f for f in spilled.values())
        for epoch, file in spilled.items():
            on_disk = torch.load(file, weights_only=True)
            assert all(torch.equal(on_disk[k], truth[epoch][k]) for k in truth[epoch])
        eng.gate.set()
        mon.wait(timeout=60)
        assert mon.history.epochs() == list(range(7)) and mon.history.dropped() == []
        assert mon.history.spilled() == {} and list(spill_dir.glob("*.pt")) == []
        got = values(mon.history)
        for epoch, w in truth.items():
            assert got[(epoch, "0")] == pytest.approx(by_hand(w, "0"), abs=1e-9)
    finally:
        eng.gate.set()
        mon.close()


@pytest.mark.usefixtures("stand_in")
def test_beyond_the_budget_without_a_directory_the_oldest_is_dropped_with_a_warning():
    eng = Gated()
    model = mlp()
    one = sum(v.numel() * v.element_size() for v in model.state_dict().values())
    mon = Monitor(model, X, in_range=(0, 1), measure_fn=eng, max_pending_bytes=one)
    try:
        mon.record(0)
        assert eng.started.wait(30)
        mon.record(1)
        with pytest.warns(UserWarning, match=r"epoch 1 is dropped .*spill_dir"):
            mon.record(2)
        assert mon.history.dropped() == [1] and mon.history.pending() == [0, 2]
        eng.gate.set()
        mon.wait(timeout=60)
        assert mon.history.epochs() == [0, 2] and mon.history.pending() == []
    finally:
        eng.gate.set()
        mon.close()


@pytest.mark.parametrize("budget", [0, -5, 1.5, True, "1GiB"])
def test_max_pending_bytes_must_be_a_positive_int(budget):
    with pytest.raises(ValueError, match="max_pending_bytes must be an int >= 1"):
        Monitor(mlp(), X, in_range=(0, 1), max_pending_bytes=budget)


def test_a_budget_smaller_than_one_snapshot_is_refused():
    model = mlp()
    one = sum(v.numel() * v.element_size() for v in model.state_dict().values())
    with pytest.raises(ValueError, match=rf"smaller than one snapshot .*\({one} bytes"):
        Monitor(model, X, in_range=(0, 1), max_pending_bytes=one - 1)


@pytest.mark.usefixtures("stand_in")
def test_recording_an_epoch_twice_is_refused_naming_it():
    with Monitor(mlp(), X, in_range=(0, 1), measure_fn=sum_abs) as mon:
        mon.record(3, loss=1.0)
        with pytest.raises(ValueError, match="epoch 3 was already recorded"):
            mon.record(3, loss=2.0)
        mon.wait(timeout=60)
        # the first record is intact
        assert mon.history.scalars()["loss"].tolist() == [1.0]
        assert mon.history.epochs() == [3]


@pytest.mark.usefixtures("stand_in")
def test_a_resumed_history_refuses_its_recorded_epochs(tmp_path):
    with Monitor(mlp(), X, in_range=(0, 1), measure_fn=sum_abs, autosave=tmp_path / "h",
                 every=2) as mon:
        for e in range(3):
            mon.record(e, loss=float(e))
        mon.wait(timeout=60)
    h = History.load(tmp_path / "h")
    with Monitor(mlp(), X, in_range=(0, 1), measure_fn=sum_abs, history=h) as mon2:
        for e in (0, 1, 2):  # measured (0, 2) or scalars only (1): recorded before
            with pytest.raises(ValueError, match=f"epoch {e} was already recorded"):
                mon2.record(e)
        mon2.record(3)  # the run goes on


@pytest.mark.usefixtures("stand_in")
def test_close_without_finish_leaves_every_unmeasured_epoch_pending():
    eng = Gated()
    model = mlp()
    mon = Monitor(model, X, in_range=(0, 1), measure_fn=eng)
    mon.record(0)
    assert eng.started.wait(30)
    for epoch in range(1, 6):
        mon.record(epoch)
    opener = threading.Timer(0.3, eng.gate.set)  # the running layer finishes during close
    opener.start()
    mon.close()  # finish=False is the default
    opener.join()
    h = mon.history
    measured, pending = set(h.epochs()), set(h.pending())
    # each recorded epoch is measured, or listed as pending: none vanished, none dropped
    assert h.dropped() == [] and measured | pending == set(range(6))
    # epoch 0 was stopped after its running layer: partly measured, still pending
    assert 0 in pending and h.done() <= {(0, "0")}
    assert h.spilled() == {}  # no directory: only the record remains


@pytest.mark.usefixtures("stand_in")
def test_close_finish_measures_the_whole_backlog():
    eng = Gated()
    model = mlp()
    mon = Monitor(model, X, in_range=(0, 1), measure_fn=eng)
    mon.record(0)
    assert eng.started.wait(30)
    for epoch in range(1, 6):
        mon.record(epoch)
    eng.gate.set()
    mon.close(finish=True, timeout=60)
    assert mon.history.epochs() == list(range(6)) and mon.history.pending() == []


@pytest.mark.usefixtures("stand_in")
def test_a_spilled_backlog_survives_close_save_load_and_resume(tmp_path):
    eng = Gated()
    model = mlp()
    autosave = tmp_path / "run"
    mon = Monitor(model, X, in_range=(0, 1), measure_fn=eng, autosave=autosave)
    truth = {0: set_weights(model, 0)}
    mon.record(0)
    assert eng.started.wait(30)
    for epoch in range(1, 6):
        truth[epoch] = set_weights(model, epoch)
        mon.record(epoch)
    opener = threading.Timer(0.3, eng.gate.set)
    opener.start()
    mon.close(finish=False)
    opener.join()
    saved = History.load(autosave)
    # every unmeasured epoch is on disk, with its snapshot, in the autosaved history
    # (0 was stopped after its running layer: partly measured, so still pending too)
    assert saved.pending() == list(range(6)) and sorted(saved.spilled()) == list(range(6))
    assert saved.done() <= {(0, "0")}
    # a new Monitor over the loaded history finishes the backlog from the spilled files
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing dropped, nothing to warn about
        mon2 = Monitor(mlp(), X, in_range=(0, 1), measure_fn=sum_abs, history=saved,
                       autosave=autosave)
    mon2.wait(timeout=60)
    mon2.close()
    done = History.load(autosave)
    assert done.epochs() == list(range(6)) and len(done.done()) == 6 * 2
    assert done.spilled() == {} and done.pending() == [] and not done.errors()
    assert list((tmp_path / "run.pending").glob("*.pt")) == []
    got = values(done)
    for epoch in range(6):
        for layer in ("0", "2"):
            assert got[(epoch, layer)] == pytest.approx(by_hand(truth[epoch], layer),
                                                        abs=1e-9)


# --------------------------------------------------------------------------- the dashboard
@pytest.mark.usefixtures("stand_in")
def test_the_dashboard_keeps_all_40_epochs_by_default():
    from causal_widgets.widgets.dashboard import CausalDashboard

    model = mlp()
    dash = CausalDashboard(model, X, in_range=(0, 1), measure_fn=sum_abs)
    try:
        for epoch in range(40):
            set_weights(model, epoch)
            dash.record(epoch, loss=1.0 / (epoch + 1))
        dash.wait(timeout=120)
        assert dash.epochs == list(range(40))
        assert dash.status["dropped"] == 0 and dash.status["pending"] == 0
        assert dash.status["notice"] == ""
    finally:
        dash.close(widget=True)


@pytest.mark.usefixtures("stand_in")
def test_a_dashboard_saved_mid_backlog_reopens_with_its_pending_epochs(tmp_path):
    from causal_widgets.widgets.dashboard import CausalDashboard

    eng = Gated()
    model = mlp()
    dash = CausalDashboard(model, X, in_range=(0, 1), measure_fn=eng,
                           spill_dir=tmp_path / "backlog")
    try:
        dash.record(0)
        assert eng.started.wait(30)
        for epoch in range(1, 5):
            dash.record(epoch)
        opener = threading.Timer(0.3, eng.gate.set)
        opener.start()
        dash.close()
        opener.join()
        dash.save(tmp_path / "run")
    finally:
        eng.gate.set()
        dash.close(widget=True)
    loaded = CausalDashboard.load(tmp_path / "run")
    try:
        pending = loaded.history.pending()
        assert pending == list(range(5)) and sorted(loaded.history.spilled()) == pending
        assert loaded.status["pending"] == 5
        assert loaded.status["notice"].startswith(f"{len(loaded.epochs)} measured · 5 pending")
    finally:
        loaded.close(widget=True)

"""Post-hoc analysis of saved checkpoints (live.checkpoints and ``python -m causal_widgets
analyze``): every checkpoint measured into the history CausalDashboard.load opens, epochs
from the file names, resumable after SIGKILL with every row exactly once, bad input named.

Values are checked against the saved weights by hand (a ``measure_fn`` stand-in whose one
metric is ``sum |W|`` of the layer); the CLI runs the real engine on a 4-5-5-3 net.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from causal_widgets.live.checkpoints import analyze_checkpoints, find_checkpoints
from causal_widgets.live.store import History
from causal_widgets.training.models import make_mlp

X = torch.rand(32, 4, generator=torch.Generator().manual_seed(7))


class SumAbs:
    def __init__(self, layer) -> None:
        self.name, self.value = layer.name, float(np.abs(layer.dense.weight).sum())

    def to_frame(self) -> pd.DataFrame:
        v = self.value
        return pd.DataFrame([dict(layer=self.name, metric="ei_parts", value=v, ci_low=v,
                                  ci_high=v, method="exact")])


def sum_abs(layer, **kw) -> SumAbs:
    return SumAbs(layer)


def net() -> nn.Module:
    return make_mlp([4, 5, 5, 3], "sigmoid", seed=0)


def save_training(folder: Path, epochs, name: str = "epoch_{}.pt") -> dict[int, dict]:
    """Train a little, saving a state_dict per epoch; returns the weights saved (truth)."""
    folder.mkdir(parents=True, exist_ok=True)
    model = net()
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 3, (32,), generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    saved = {}
    for epoch in range(max(epochs) + 1):
        opt.zero_grad()
        nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
        if epoch in epochs:
            state = {k: v.clone() for k, v in model.state_dict().items()}
            torch.save(state, folder / name.format(epoch))
            saved[epoch] = state
    return saved


def test_every_checkpoint_is_measured_into_a_loadable_history(tmp_path):
    saved = save_training(tmp_path / "ckpts", [0, 3, 7, 12])
    out = tmp_path / "hist"
    h = analyze_checkpoints(tmp_path / "ckpts", net, X, out, in_range=(0, 1),
                            measure_fn=sum_abs, progress=False)
    assert h.epochs() == [0, 3, 7, 12] and not h.errors()
    loaded = History.load(out)
    got = {(int(r.epoch), r.layer): r.value for r in loaded.frame().itertuples()}
    for epoch, state in saved.items():
        for layer in ("fc1", "fc2", "fc3"):
            want = float(state[f"{layer}.weight"].double().abs().sum())
            assert got[(epoch, layer)] == pytest.approx(want, abs=1e-9)
    from causal_widgets.widgets.dashboard import CausalDashboard

    dash = CausalDashboard.load(out)
    try:
        assert dash.epochs == [0, 3, 7, 12]
    finally:
        dash.close(widget=True)


def test_a_pattern_picks_the_files_and_the_epoch(tmp_path):
    folder = tmp_path / "ckpts"
    save_training(folder, [2, 10], name="run7-step{}.pth")
    (folder / "notes-2024.txt").write_text("not a checkpoint")
    files = find_checkpoints(folder, pattern="run7-step{epoch}.pth")
    assert {e: p.name for e, p in files.items()} == {2: "run7-step2.pth", 10: "run7-step10.pth"}
    # default: the last number of a .pt/.pth/.ckpt name (run7 is not the epoch)
    assert sorted(find_checkpoints(folder)) == [2, 10]


def test_lightning_style_checkpoints_are_read(tmp_path):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    state = net().state_dict()
    torch.save({"epoch": 4, "state_dict": state, "optimizer_states": []}, folder / "e4.ckpt")
    h = analyze_checkpoints(folder, net(), X, tmp_path / "h", in_range=(0, 1),
                            measure_fn=sum_abs, progress=False)
    assert h.epochs() == [4]


def test_a_checkpoint_of_another_model_is_refused_naming_it(tmp_path):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    torch.save(make_mlp([4, 5, 3], "sigmoid", seed=0).state_dict(), folder / "epoch_1.pt")
    with pytest.raises(ValueError, match=r"epoch_1.pt' does not match the model .*fc2.weight"):
        analyze_checkpoints(folder, net, X, tmp_path / "h", in_range=(0, 1),
                            measure_fn=sum_abs, progress=False)


def test_no_matching_file_is_refused_naming_the_folder(tmp_path):
    folder = tmp_path / "ckpts"
    save_training(folder, [1])
    with pytest.raises(ValueError, match=r"no file matches pattern='ckpt_\{epoch\}.pt'.*"
                                         r"'epoch_1.pt'"):
        find_checkpoints(folder, pattern="ckpt_{epoch}.pt")
    with pytest.raises(ValueError, match=r"must contain \{epoch\} once"):
        find_checkpoints(folder, pattern="epoch_1.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint folder"):
        find_checkpoints(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no file ends in"):
        find_checkpoints(tmp_path / "empty")


def test_two_files_of_one_epoch_are_refused(tmp_path):
    folder = tmp_path / "ckpts"
    save_training(folder, [3])
    save_training(folder, [3], name="best_{}.pt")
    with pytest.raises(ValueError, match="both give epoch 3"):
        find_checkpoints(folder)


def test_a_rerun_with_other_settings_is_refused(tmp_path):
    save_training(tmp_path / "ckpts", [0, 1])
    analyze_checkpoints(tmp_path / "ckpts", net, X, tmp_path / "h", in_range=(0, 1),
                        measure_fn=sum_abs, progress=False, bins=8)
    with pytest.raises(ValueError, match="other settings"):
        analyze_checkpoints(tmp_path / "ckpts", net, X, tmp_path / "h", in_range=(0, 1),
                            measure_fn=sum_abs, progress=False, bins=6)


# --------------------------------------------------------------------------- the CLI
NET_PY = textwrap.dedent("""
    from causal_widgets.training.models import make_mlp

    def make_net():
        return make_mlp([4, 5, 5, 3], "sigmoid", seed=0)
""")


def analyze_cmd(tmp_path: Path) -> list[str]:
    return [sys.executable, "-m", "causal_widgets", "analyze", str(tmp_path / "ckpts"),
            "--model", f"{tmp_path / 'net.py'}:make_net", "--example-input", "4",
            "--in-range", "0,1", "--out", str(tmp_path / "hist"), "--no-progress"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_the_cli_killed_and_rerun_measures_every_checkpoint_exactly_once(tmp_path):
    epochs = list(range(0, 16, 2))
    save_training(tmp_path / "ckpts", epochs)
    (tmp_path / "net.py").write_text(NET_PY)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen(analyze_cmd(tmp_path), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    meta = tmp_path / "hist" / "meta.json"
    deadline = time.monotonic() + 180
    # killed once the first checkpoint is saved, before the last
    while not meta.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    partial = History.load(tmp_path / "hist")
    assert 1 <= len(partial.epochs()) < len(epochs), "the kill did not land mid-run"
    res = subprocess.run(analyze_cmd(tmp_path), env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    h = History.load(tmp_path / "hist")
    assert h.epochs() == epochs and not h.errors()
    df = h.frame()
    keys = df[["epoch", "layer", "metric"]]
    assert not keys.duplicated().any()
    per_epoch = df.groupby("epoch").size()
    assert (per_epoch == per_epoch.iloc[0]).all() and len(per_epoch) == len(epochs)
    assert set(df.layer) == {"fc1", "fc2", "fc3"}
    # the kept rows of the first run are the rerun's too: nothing measured twice differently
    before = partial.frame().set_index(["epoch", "layer", "metric"]).value
    after = df.set_index(["epoch", "layer", "metric"]).value
    pd.testing.assert_series_equal(after.loc[before.index], before)


def test_local_worker_processes_give_the_serial_numbers(tmp_path):
    """The executors apply as in sweep: two local processes, the real engine."""
    save_training(tmp_path / "ckpts", [0, 5, 9])
    kw = dict(in_range=(0, 1), bins=8, seed=3, cells=64, points_per_cell=8, progress=False)
    here = analyze_checkpoints(tmp_path / "ckpts", net, X, tmp_path / "serial", **kw)
    there = analyze_checkpoints(tmp_path / "ckpts", net, X, tmp_path / "procs",
                                executor="local", workers=2, **kw)
    assert there.epochs() == [0, 5, 9] and not there.errors()
    key = ["epoch", "layer", "metric"]
    a = here.frame().sort_values(key).reset_index(drop=True)
    b = there.frame().sort_values(key).reset_index(drop=True)
    assert a[key].equals(b[key])
    np.testing.assert_allclose(b.value.to_numpy(float), a.value.to_numpy(float),
                               rtol=0, atol=1e-12)

"""The reproduction: config, CLI smoke per experiment, outputs, errors, kill-and-resume."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from causal_widgets.__main__ import main
from causal_widgets.engine.plane import plane_coords
from causal_widgets.paper import reproduce as rp
from causal_widgets.training import loop
from causal_widgets.training.models import make_mlp, make_optimizer, one_hot, train_epoch

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--ei-samples", "2048", "--no-progress"]
METRICS = {"ei", "ei_parts", "sensitivity", "degeneracy", "integration"}
FIGURES = ["plane_ei", "plane_ei_parts", "time_series", "heatmaps"]


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "causal_widgets", *args], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=timeout,
    )


def check_figures(folder: Path, names: list[str]) -> None:
    for name in names:
        png, svg = folder / f"{name}.png", folder / f"{name}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert png.stat().st_size > 5000, png  # a drawn figure, not an empty canvas
        assert b"<svg" in svg.read_bytes()[:2000], svg


def check_results(out: Path, runs: int, epochs: list[int], layers: list[str]) -> pd.DataFrame:
    res = pd.read_parquet(out / "results.parquet")
    for col in ["run", "epoch", "layer", "metric", "value", "ci_low", "ci_high", "loss",
                "accuracy", "method", "samples", "in_bins", "out_bins", "in_range",
                "out_range", "seed", "version"]:
        assert col in res.columns, col
    assert list(res.columns[:7]) == ["run", "epoch", "layer", "metric", "value", "ci_low",
                                     "ci_high"]
    key = ["run", "epoch", "layer", "metric"]
    assert not res.duplicated(key).any()
    assert sorted(res.run.unique()) == list(range(runs))
    assert sorted(res.epoch.unique()) == epochs
    assert list(pd.unique(res.layer)) == layers
    assert METRICS <= set(res.metric)
    # every (run, epoch, layer) has every metric
    assert len(res[res.metric.isin(METRICS)]) == runs * len(epochs) * len(layers) * 5
    # derived metrics are the differences they are defined as (bits)
    w = res.pivot_table(index=["run", "epoch", "layer"], columns="metric", values="value")
    assert np.allclose(w.degeneracy, w.sensitivity - w.ei, atol=1e-9)
    assert np.allclose(w.integration, w.ei - w.ei_parts, atol=1e-9)
    assert res.in_bins.eq(8).all()
    return res


def test_config_presets_and_overrides() -> None:
    cfg = rp.make_config("iris")
    assert (cfg.sizes, cfg.epochs, cfg.every, cfg.runs, cfg.batch_size, cfg.lr, cfg.bins) == (
        [4, 5, 5, 3], 4000, 50, 3, 10, 0.01, 8)
    assert len(cfg.measured_epochs()) == 80  # the paper's 80 measurements
    assert cfg.measured_epochs()[-1] == 3950
    d = rp.make_config("digits")
    assert (d.sizes, d.batch_size, d.every) == ([25, 6, 6, 6, 5], 50, 10)
    assert rp.make_config("digits", activation="tanh").every == 20
    assert rp.make_config("digits", activation="relu").every == 20
    assert rp.make_config("digits", layers="25,6,5").sizes == [25, 6, 5]
    assert rp.make_config("iris", quick=True).runs == 1
    assert rp.make_config("iris", epochs=10, every=5).measured_epochs() == [0, 5]
    with pytest.raises(ValueError, match="--data-dir"):
        rp.make_config("mnist")
    with pytest.raises(ValueError, match="training experiment"):
        rp.make_config("cifar")


def test_layers_must_fit_the_data() -> None:
    cfg = rp.make_config("iris", layers="5,5,3")
    with pytest.raises(ValueError, match="needs 4 inputs and 3 outputs"):
        loop.load_dataset(cfg)


def test_plane_coordinates_by_hand() -> None:
    # EI = 1, S = 2 (so D = 1): x = EI/sqrt2, y = (2 S - EI)/sqrt2 = (S + D)/sqrt2
    res = pd.DataFrame({"run": 0, "epoch": 0, "layer": "a",
                        "metric": ["ei", "ei_parts", "sensitivity"],
                        "value": [1.0, 0.5, 2.0]})
    c = plane_coords(res, "ei")
    assert c.x.iloc[0] == pytest.approx(1 / math.sqrt(2))
    assert c.y.iloc[0] == pytest.approx(3 / math.sqrt(2))
    c = plane_coords(res, "ei_parts")
    assert c.x.iloc[0] == pytest.approx(0.5 / math.sqrt(2))
    assert c.y.iloc[0] == pytest.approx(3.5 / math.sqrt(2))


def test_cli_iris_smoke(tmp_path: Path) -> None:
    out = tmp_path / "iris"
    p = cli("reproduce", "iris", "--out", str(out), "--epochs", "4", "--every", "2",
            "--runs", "2", *TINY)
    assert p.returncode == 0, p.stderr
    res = check_results(out, runs=2, epochs=[0, 2], layers=["fc1", "fc2", "fc3"])
    assert res.loss.notna().all() and res.accuracy.between(0, 1).all()
    sca = pd.read_parquet(out / "scalars.parquet")
    assert sorted(sca.epoch.unique()) == [0, 1, 2, 3, 4]  # loss at every epoch + the end
    check_figures(out / "figures", FIGURES)
    from causal_widgets.widgets.dashboard import CausalDashboard

    dash = CausalDashboard.load(out / "run_1" / "history")
    assert dash.epochs == [0, 2]
    assert set(dash.results.layer) == {"fc1", "fc2", "fc3"}
    dash.close(widget=True)
    # the runs differ (own seeds) but share the data split
    w = res[res.metric == "sensitivity"].pivot_table(index=["epoch", "layer"], columns="run",
                                                     values="value")
    assert not np.allclose(w[0], w[1])


def test_finished_runs_are_kept_and_settings_checked(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "iris"
    args = ["reproduce", "iris", "--out", str(out), "--epochs", "2", "--every", "2",
            "--runs", "1", *TINY, "--no-figures"]
    assert main(args) == 0
    # a finished run is not recomputed: a rerun only rewrites the summary files
    t = (out / "run_0" / "history" / "meta.json").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "run_0" / "history" / "meta.json").stat().st_mtime_ns == t
    # more runs of the same experiment extend it
    assert main(args[:-len(TINY) - 3] + ["--runs", "2", *TINY, "--no-figures"]) == 0
    assert sorted(pd.read_parquet(out / "results.parquet").run.unique()) == [0, 1]
    capsys.readouterr()
    # other settings into the same folder are refused, naming the difference
    assert main(["reproduce", "iris", "--out", str(out), "--epochs", "6", *TINY,
                 "--no-figures"]) == 2
    assert "epochs: 2 before, 6 now" in capsys.readouterr().err


def test_cli_digits_variant_smoke(tmp_path: Path) -> None:
    out = tmp_path / "digits"
    p = cli("reproduce", "digits", "--out", str(out), "--epochs", "2", "--every", "1",
            "--runs", "1", "--layers", "25,6,5", "--activation", "tanh", *TINY)
    assert p.returncode == 0, p.stderr
    res = check_results(out, runs=1, epochs=[0, 1], layers=["fc1", "fc2"])
    # tanh layers feed (-1, 1) into the next layer
    fc2 = res[res.layer == "fc2"].iloc[0]
    assert tuple(fc2.in_range) == (-1.0, 1.0) and tuple(fc2.out_range) == (-1.0, 1.0)
    check_figures(out / "figures", FIGURES)


def test_mnist_errors(tmp_path: Path, capsys: pytest.CaptureFixture, write_idx) -> None:
    data = tmp_path / "mnist"
    data.mkdir()
    rng = np.random.default_rng(0)
    write_idx(data / "train-images-idx3-ubyte", rng.integers(0, 256, (60, 28, 28), np.uint8))
    write_idx(data / "train-labels-idx1-ubyte", (np.arange(60) % 10).astype(np.uint8))
    # 30 examples are digits 0-4: fewer than the paper's 25 000, so the split fails clearly
    assert main(["reproduce", "mnist", "--out", str(tmp_path / "o1"), "--data-dir", str(data),
                 "--epochs", "1", *TINY]) == 2
    assert "n_train=25000" in capsys.readouterr().err
    assert main(["reproduce", "mnist", "--out", str(tmp_path / "o2"), "--data-dir",
                 str(tmp_path / "missing"), *TINY]) == 2
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte" in err and "does not exist" in err
    assert main(["reproduce", "mnist", "--out", str(tmp_path / "o3"), *TINY]) == 2
    assert "--data-dir" in capsys.readouterr().err


def test_mnist_runs_on_idx_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_idx
) -> None:
    # the real split is 25 000 train; shrink it for a 60-image fake MNIST
    data = tmp_path / "mnist"
    data.mkdir()
    rng = np.random.default_rng(1)
    write_idx(data / "train-images-idx3-ubyte", rng.integers(0, 256, (60, 28, 28), np.uint8))
    write_idx(data / "train-labels-idx1-ubyte", (np.arange(60) % 10).astype(np.uint8))
    import causal_widgets.training.data as data_mod

    real = data_mod.load_mnist_data
    # the training loop loads the data sets (paper.reproduce only configures the run)
    monkeypatch.setattr(loop, "load_mnist_data", lambda d: real(d, n_train=20))
    cfg = rp.make_config("mnist", data_dir=str(data), epochs=1, every=1, runs=1,
                         layers="25,6,5", ei_samples=2048)
    res = rp.run_experiment(cfg, tmp_path / "out", progress=False, figures=False,
                            log=lambda s: None)
    assert set(res.layer) == {"fc1", "fc2"} and set(res.epoch) == {0}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--layers", "4,x,3"], "comma-separated integers"),
        (["--bins", "1"], "at least 2"),
        (["--epochs", "0"], "positive integer"),
        (["--data-dir", "."], "only for the mnist"),
    ],
)
def test_cli_argument_errors(tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str],
                             message: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "iris", "--out", str(tmp_path), *args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_unknown_experiment(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["reproduce", "cifar", "--out", str(tmp_path)])
    assert "invalid choice" in capsys.readouterr().err


def test_cli_toy_smoke(tmp_path: Path) -> None:
    out = tmp_path / "toy"
    p = cli("reproduce", "toy", "--out", str(out), "--quick", *TINY)
    assert p.returncode == 0, p.stderr
    res = pd.read_parquet(out / "results.parquet")
    edge = res[res.panel == "edge"]
    assert set(edge.activation) == {"sigmoid", "tanh", "relu"}
    assert set(edge.bins) == {8, 16, 32, 64}
    # ReLU with out_range (0, 1) and w = 1 maps x ~ U(0, 1) onto the bins exactly:
    # EI = log2(bins); a zero weight carries nothing
    relu = edge[(edge.activation == "relu")]
    for b in (8, 16, 32, 64):
        at = relu[relu.bins == b].set_index("w1").value
        assert at.loc[1.0] == pytest.approx(math.log2(b), abs=1e-6)
        assert at.loc[0.0] == pytest.approx(0.0, abs=1e-9)
    surf = res[res.panel == "surface"]
    assert METRICS <= set(surf.metric)
    # zero weights: the output is constant, every metric ~ 0
    zero = surf[(surf.w1 == 0) & (surf.w2 == 0)].set_index("metric").value
    assert abs(zero["ei_parts"]) < 1e-9 and abs(zero["sensitivity"]) < 1e-9
    assert abs(zero["ei"]) < 0.05
    check_figures(out / "figures", ["edge_ei", "surfaces_2to1"])


def _measured(out: Path) -> int:
    from causal_widgets.live.store import History

    try:
        return len(History.load(out / "run_0" / "history").epochs())
    except (FileNotFoundError, ValueError):
        return 0


def test_kill_and_resume(tmp_path: Path) -> None:
    out = tmp_path / "iris"
    args = ["reproduce", "iris", "--out", str(out), "--epochs", "150", "--every", "10",
            "--runs", "1", *TINY, "--no-figures"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "causal_widgets", *args], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while _measured(out) < 2:
            assert proc.poll() is None, f"the run ended before the kill: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "no measurements landed in time"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    kept = _measured(out)
    assert 2 <= kept < 15, "the kill must land mid-run"
    p = cli(*args)
    assert p.returncode == 0, p.stderr
    assert "resuming at epoch" in p.stdout
    res = check_results(out, runs=1, epochs=list(range(0, 150, 10)),
                        layers=["fc1", "fc2", "fc3"])
    assert not res.duplicated(["run", "epoch", "layer", "metric"]).any()
    sca = pd.read_parquet(out / "scalars.parquet")
    assert sorted(sca.epoch) == list(range(151))
    # the resumed run is the uninterrupted run: replay the training without measurements
    cfg = rp.make_config("iris", epochs=150, every=10, runs=1)
    ds = loop.load_dataset(cfg)
    model = make_mlp(cfg.sizes, seed=loop.derive_seed(cfg.seed, 0, 1))
    opt = make_optimizer(model)
    gen = torch.Generator().manual_seed(loop.derive_seed(cfg.seed, 0, 2))
    targets = one_hot(ds.y_train, 3)
    for _ in range(150):
        train_epoch(model, opt, ds.x_train, targets, 10, gen)
    final = torch.load(out / "run_0" / "checkpoint.pt", weights_only=False)
    assert final["finished"] and final["epoch"] == 150
    for name, value in model.state_dict().items():
        assert torch.equal(final["model"][name], value), name


def test_interrupt_between_checkpoint_and_history_save(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # the riskiest moment: the checkpoint of epoch 20 is written, the measurement (and so the
    # history save) never happens; the scalars of epochs 11-19 live only in the checkpoint
    cfg = rp.make_config("iris", epochs=40, every=10, runs=1, ei_samples=2048)
    real = loop.measure_model  # train_run (in the training loop) calls it there

    def interrupted(model, example, cfg_, seed, skip=None):
        if interrupted.calls == 2:
            raise KeyboardInterrupt
        interrupted.calls += 1
        return real(model, example, cfg_, seed, skip)

    interrupted.calls = 0
    monkeypatch.setattr(loop, "measure_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rp.run_experiment(cfg, tmp_path, progress=False, figures=False, log=lambda s: None)
    monkeypatch.setattr(loop, "measure_model", real)
    res = rp.run_experiment(cfg, tmp_path, progress=False, figures=False, log=lambda s: None)
    sca = pd.read_parquet(tmp_path / "scalars.parquet")
    assert sorted(sca.epoch) == list(range(41))
    assert sorted(res.epoch.unique()) == [0, 10, 20, 30]
    assert not res.duplicated(["run", "epoch", "layer", "metric"]).any()


def test_dropout_runs_do_not_depend_on_the_global_rng(tmp_path: Path) -> None:
    """Dropout draws from torch's global generator; a run must not inherit its state (the
    same run in a fresh worker process and after other runs must give the same numbers),
    and must leave the caller's global state as it was."""
    cfg = rp.make_config("iris", epochs=12, every=4, runs=1, ei_samples=512)
    cfg.dropout = 0.5
    ds = loop.load_dataset(cfg)
    frames = []
    for k, state in enumerate((1, 12345)):
        torch.manual_seed(state)
        before = torch.get_rng_state()
        hist = loop.train_run(cfg, 0, ds, tmp_path / f"r{k}", progress=False, log=lambda s: None)
        assert torch.equal(torch.get_rng_state(), before)
        frames.append(hist.frame().sort_values(["epoch", "layer", "metric"]))
    assert len(frames[0]) > 0
    np.testing.assert_array_equal(frames[0].value.to_numpy(), frames[1].value.to_numpy())
    # and dropout is really on while training: without it the weights end elsewhere
    cfg.dropout = 0.0
    plain = loop.train_run(cfg, 0, ds, tmp_path / "plain", progress=False, log=lambda s: None)
    assert not np.array_equal(
        plain.frame().sort_values(["epoch", "layer", "metric"]).value.to_numpy(),
        frames[0].value.to_numpy())


def test_notebook_path_finds_the_checkouts_notebooks() -> None:
    # --headless executes notebooks/<name>.ipynb beside the package, not inside it
    for name in ("iris", "digits", "toy_layers"):
        assert rp.notebook_path(name) == ROOT / "notebooks" / f"{name}.ipynb"
        assert rp.notebook_path(name).is_file()


def test_ei_samples_keeps_its_old_name_samples():
    from causal_widgets.__main__ import build_parser

    assert rp.make_config("iris", samples=512) == rp.make_config("iris", ei_samples=512)
    assert rp.make_config("iris", samples=512).ei_samples == 512
    with pytest.raises(TypeError, match="old name of ei_samples"):
        rp.make_config("iris", samples=512, ei_samples=512)
    for flag in ("--samples", "--ei-samples"):
        args = build_parser().parse_args(["reproduce", "iris", "--out", "x", flag, "64"])
        assert args.ei_samples == 64

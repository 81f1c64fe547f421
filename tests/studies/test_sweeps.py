"""Sweeps: every run finished exactly once, retried when lost, resumed, kept on Ctrl-C."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import pytest

from causal_widgets import __main__ as cli
from causal_widgets.live.executors import Executor, ProcessExecutor, SerialExecutor
from causal_widgets.studies.spec import Study, StudyError
from causal_widgets.studies.sweeps import finished_runs, load_study, plane_summary, sweep

TINY = {"dataset": "iris", "epochs": 30, "every": 10, "ei_samples": 1024}
QUIET = {"log": lambda s: None, "figures": False}


def tiny_study(**grid) -> Study:
    return Study("tiny", grid=grid or {"label_noise": [0.0, 1.0], "seed": [0]},
                 settings=dict(TINY))


def check_exactly_once(out: Path, study: Study) -> pd.DataFrame:
    """Every run has one partition, each (epoch, layer, metric) once, every epoch measured."""
    points = study.points()
    assert finished_runs(out) == {p["run_id"] for p in points}
    # the partition folders form one hive-partitioned dataset pyarrow reads directly
    table = pads.dataset(out / "results", format="parquet", partitioning="hive").to_table()
    res = table.to_pandas()
    res["run_id"] = res["run_id"].astype(str)
    assert not res.duplicated(["run_id", "epoch", "layer", "metric"]).any()
    for p in points:
        mine = res[res.run_id == p["run_id"]]
        assert sorted(mine.epoch.unique()) == list(range(0, p["epochs"], p["every"]))
        assert set(mine.layer) == {"fc1", "fc2", "fc3"}
        assert (mine.label_noise == p["label_noise"]).all()
    leftovers = [q for q in (out / "results").iterdir() if q.name.startswith(".tmp")]
    assert not leftovers
    return res


def events(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "sweep_log.jsonl").read_text().splitlines()]


def test_serial_sweep_writes_one_self_describing_dataset(tmp_path):
    study = tiny_study()
    data = sweep(study, tmp_path, executor="serial", **QUIET)
    res = check_exactly_once(tmp_path, study)
    assert data.complete and len(data.points) == 2
    assert set(data.points.status) == {"complete"}
    assert len(data.results) == len(res)
    assert {"group", "seed", "dataset", "layers", "loss", "test_accuracy"} <= set(
        data.results.columns)
    assert set(data.scalars.epoch) == set(range(0, 31))  # every epoch's loss is kept
    assert (tmp_path / "study.toml").is_file() and (tmp_path / "study.json").is_file()
    # each run is the reproduction's run: its history reopens in the dashboard
    rid = data.points.run_id[0]
    assert (tmp_path / "work" / rid / "history").is_dir()


def test_label_noise_replaces_that_fraction_of_training_labels_only():
    from causal_widgets.training.data import load_iris_data
    from causal_widgets.training.loop import randomize_labels

    ds = load_iris_data(seed=0)
    noisy = randomize_labels(ds, 0.5, seed=7)
    changed = int((noisy.y_train != ds.y_train).sum())
    # 50 of the 100 labels are redrawn uniformly from 3 classes: about 2/3 of them change
    # (binomial(50, 2/3): mean 33.3, sd 3.3), the other 50 cannot
    assert 20 <= changed <= 47
    assert bool((noisy.y_test == ds.y_test).all()) and noisy.y_train.max() < 3
    assert bool((randomize_labels(ds, 0.5, seed=7).y_train == noisy.y_train).all())
    assert bool((randomize_labels(ds, 0.0, seed=7).y_train == ds.y_train).all())
    with pytest.raises(ValueError, match="label_noise=1.5 must lie in"):
        randomize_labels(ds, 1.5, seed=0)


def test_rerun_skips_finished_runs_and_another_study_is_refused(tmp_path):
    study = tiny_study()
    sweep(study, tmp_path, executor="serial", **QUIET)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("*.parquet")}
    sweep(study, tmp_path, executor="serial", **QUIET)
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("*.parquet")}
    assert before == after
    starts = [e for e in events(tmp_path) if e["event"] == "start"]
    assert starts[-1]["todo"] == 0
    assert sum(e["event"] == "submitted" for e in events(tmp_path)) == 2
    with pytest.raises(StudyError, match="holds another study"):
        sweep(tiny_study(seed=[0, 1]), tmp_path, executor="serial", **QUIET)


class FlakyExecutor(Executor):
    """Serial, but the first attempt of chosen runs fails (as a lost task would)."""

    name = "flaky"

    def __init__(self, fail: set[str], always: bool = False) -> None:
        self.fail, self.always, self.calls = set(fail), always, []

    def submit(self, fn, /, *args, **kwargs):
        rid = args[0]["run_id"]
        self.calls.append(rid)
        if rid in self.fail:
            if not self.always:
                self.fail.discard(rid)
            fut: cf.Future = cf.Future()
            fut.set_exception(ConnectionError(f"lost the node running {rid}"))
            return fut
        return SerialExecutor().submit(fn, *args, **kwargs)


def test_a_failed_task_is_retried(tmp_path):
    study = tiny_study()
    victim = study.points()[0]["run_id"]
    ex = FlakyExecutor({victim})
    sweep(study, tmp_path, executor=ex, **QUIET)
    check_exactly_once(tmp_path, study)
    assert ex.calls.count(victim) == 2
    retry = [e for e in events(tmp_path) if e["event"] == "retry"]
    assert [e["run_id"] for e in retry] == [victim] and "lost the node" in retry[0]["error"]


def test_a_run_that_keeps_failing_is_named_and_the_others_are_kept(tmp_path):
    study = tiny_study()
    victim = study.points()[0]["run_id"]
    with pytest.raises(RuntimeError, match=f"1 run\\(s\\) failed after 1 retries.*{victim}"):
        sweep(study, tmp_path, executor=FlakyExecutor({victim}, always=True),
              max_retries=1, **QUIET)
    assert finished_runs(tmp_path) == {study.points()[1]["run_id"]}
    data = load_study(tmp_path)
    assert dict(zip(data.points.run_id, data.points.status))[victim] == "missing"


class InterruptingExecutor(SerialExecutor):
    """Ctrl-C arrives while the second run is being submitted."""

    def __init__(self) -> None:
        self.n = 0

    def submit(self, fn, /, *args, **kwargs):
        self.n += 1
        if self.n == 2:
            raise KeyboardInterrupt
        return super().submit(fn, *args, **kwargs)


def test_ctrl_c_keeps_what_finished_and_a_rerun_completes(tmp_path):
    study = tiny_study()
    with pytest.raises(KeyboardInterrupt):
        sweep(study, tmp_path, executor=InterruptingExecutor(), **QUIET)
    assert len(finished_runs(tmp_path)) == 1
    assert events(tmp_path)[-1]["event"] == "interrupted"
    sweep(study, tmp_path, executor="serial", **QUIET)
    check_exactly_once(tmp_path, study)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def kill_mid_run(out: Path, study: Study, run) -> str:
    """Start ``run()`` (a sweep) in a thread, SIGKILL the worker of the first run once it has
    checkpointed, and wait for the sweep; returns the killed run's id."""
    victim = study.points()[0]["run_id"]
    work = out / "work" / victim
    box: dict = {}

    def target():
        try:
            box["data"] = run()
        except BaseException as err:  # noqa: BLE001 - re-raised in the test thread
            box["error"] = err

    t = threading.Thread(target=target)
    t.start()
    _wait_for(lambda: (work / "checkpoint.pt").exists() and (work / "worker.pid").exists(),
              240, "the first run's checkpoint")
    assert victim not in finished_runs(out), "the run finished before it could be killed"
    pid = int((work / "worker.pid").read_text())
    assert pid != os.getpid()
    os.kill(pid, signal.SIGKILL)
    t.join(600)
    assert not t.is_alive()
    if "error" in box:
        raise box["error"]
    return victim


LONG = {"dataset": "iris", "epochs": 300, "every": 10, "ei_samples": 1024}


def test_killed_local_worker_is_retried_and_every_run_completes_once(tmp_path):
    study = Study("kill", grid={"seed": [0, 1]}, settings=dict(LONG))
    victim = kill_mid_run(
        tmp_path, study,
        lambda: sweep(study, tmp_path, executor=ProcessExecutor(2), **QUIET))
    res = check_exactly_once(tmp_path, study)
    lost = [e for e in events(tmp_path) if e["event"] == "retry" and e["run_id"] == victim]
    assert lost and lost[0]["lost"] is True
    # the resumed run is the run that would have happened: compare with an unbroken one
    clean = tmp_path / "clean"
    sweep(Study("kill", grid={"seed": [0]}, settings=dict(LONG)), clean, executor="serial",
          **QUIET)
    a = res[res.run_id == victim].sort_values(["epoch", "layer", "metric"])
    b = load_study(clean).results.sort_values(["epoch", "layer", "metric"])
    assert len(a) == len(b)
    np.testing.assert_allclose(a.value.to_numpy(), b.value.to_numpy(), rtol=0, atol=1e-12)


def test_plane_summary_is_the_mean_over_seeds(tmp_path):
    study = tiny_study(seed=[0, 1])
    data = sweep(study, tmp_path, executor="serial", **QUIET)
    summary = plane_summary(data.results, "ei")
    row = summary.iloc[len(summary) // 2]
    sel = data.results[(data.results.layer == row.layer) & (data.results.epoch == row.epoch)]
    x = [sel[(sel.run_id == r) & (sel.metric == "ei")].value.item() / np.sqrt(2)
         for r in sel.run_id.unique()]
    s = [sel[(sel.run_id == r) & (sel.metric == "sensitivity")].value.item()
         for r in sel.run_id.unique()]
    y = [(2 * si - xi * np.sqrt(2)) / np.sqrt(2) for si, xi in zip(s, x)]
    assert row.n == 2
    assert row.x == pytest.approx(np.mean(x), abs=1e-12)
    assert row.y == pytest.approx(np.mean(y), abs=1e-12)
    assert row.x_sd == pytest.approx(np.std(x, ddof=1), abs=1e-12)


def test_cli_sweep_runs_a_study_file_and_rejects_bad_ones(tmp_path, capsys):
    good = tmp_path / "s.toml"
    good.write_text('name = "cli"\n[grid]\nseed = [0]\n[settings]\ndataset = "iris"\n'
                    "epochs = 20\nevery = 10\nei_samples = 512\n")
    assert cli.main(["sweep", str(good), "--out", str(tmp_path / "o"), "--serial",
                     "--no-figures"]) == 0
    assert len(finished_runs(tmp_path / "o")) == 1
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid]\nseed = [0]\nwidth = [3]\n")
    assert cli.main(["sweep", str(bad), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3: unknown key 'width'" in err
    assert not (tmp_path / "b").exists()  # rejected up front: nothing written
    assert cli.main(["sweep", "--out", str(tmp_path / "c")]) == 2
    assert "give a study file" in capsys.readouterr().err


def test_study_figures_are_drawn(tmp_path):
    data = sweep(tiny_study(), tmp_path, executor="serial", log=lambda s: None)
    names = {p.name for p in (tmp_path / "figures").iterdir()}
    assert {"planes_ei.png", "planes_ei_parts.png", "series.png"} <= names
    assert data.complete


def test_summary_is_the_mean_and_sd_over_runs_at_the_last_epoch(tmp_path):
    study = tiny_study(label_noise=[0.0, 1.0], seed=[0, 1])
    data = sweep(study, tmp_path, executor="serial", **QUIET)
    table = data.summary()
    assert set(table.group) == {"label_noise=0", "label_noise=1"} and (table.n == 2).all()
    row = table[(table.group == "label_noise=1") & (table.layer == "fc2")].iloc[0]
    res = data.results
    sel = res[(res.group == "label_noise=1") & (res.layer == "fc2") & (res.epoch == 20)
              & (res.metric == "sensitivity")]
    assert len(sel) == 2
    assert row.sensitivity == pytest.approx(sel.value.mean(), abs=1e-12)
    assert row.sensitivity_sd == pytest.approx(sel.value.std(ddof=1), abs=1e-12)
    at0 = data.summary(epoch=0)
    sel0 = res[(res.group == "label_noise=1") & (res.layer == "fc2") & (res.epoch == 0)
               & (res.metric == "ei_parts")]
    r0 = at0[(at0.group == "label_noise=1") & (at0.layer == "fc2")].iloc[0]
    assert r0.ei_parts == pytest.approx(sel0.value.mean(), abs=1e-12)


@pytest.mark.parametrize("target", ["group", "driver"])
def test_ctrl_c_stops_the_workers_and_keeps_finished_runs(tmp_path, target):
    """A real Ctrl-C: SIGINT to the CLI's process group (a terminal: driver and pool workers
    alike) or to the driver alone (Jupyter's interrupt): either way the driver stops the
    running worker at once and keeps what finished."""
    import subprocess
    import sys

    study = tmp_path / "s.toml"
    study.write_text('name = "sigint"\n[grid]\nseed = [0, 1, 2]\n[settings]\n'
                     'dataset = "iris"\nepochs = 300\nevery = 10\nsamples = 1024\n')
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "causal_widgets", "sweep", str(study), "--out", str(out),
           "--workers", "1", "--no-figures"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        # wait for the first run to finish and the second to have checkpointed
        def second_started() -> bool:
            return (len(finished_runs(out)) >= 1
                    and len(list((out / "work").glob("*/checkpoint.pt"))) >= 2)
        _wait_for(second_started, 300, "one finished run and a second one under way")
        running = [int(p.read_text()) for p in (out / "work").glob("*/worker.pid")
                   if p.parent.name not in finished_runs(out)]
        if target == "group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, output
    assert "interrupted" in output and "rerun the same command" in output
    for pid in running:  # the worker of the unfinished run is gone, not left behind
        _wait_for(lambda pid=pid: not _alive(pid), 30, f"worker {pid} to exit")
    kept = finished_runs(out)
    assert 1 <= len(kept) < 3
    assert events(out)[-1]["event"] == "interrupted"
    # the rerun finishes the rest and leaves every run complete once
    assert subprocess.run(cmd, capture_output=True, timeout=600).returncode == 0
    check_exactly_once(out, Study.from_toml(study))
    assert finished_runs(out) >= kept


def test_bad_sweep_arguments_are_refused_up_front(tmp_path, capsys):
    with pytest.raises(ValueError, match="max_retries must be an int >= 0"):
        sweep(tiny_study(), tmp_path / "a", max_retries=-1, **QUIET)
    with pytest.raises(TypeError, match="a causal_widgets.Study or a path"):
        sweep({"grid": {}}, tmp_path / "b", **QUIET)
    with pytest.raises(FileNotFoundError, match="not a study folder"):
        load_study(tmp_path)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--preset", "depth", "--out", str(tmp_path / "c"),
                  "--max-retries", "-1"])
    assert "--max-retries must be >= 0" in capsys.readouterr().err

"""The Ray executor on a real Ray cluster started here, on 127.0.0.1.

A head node is started with ``ray start --head`` (its own processes: GCS, raylet, workers),
and the tests connect to it by address, as a user connects to a cluster. Skipped when Ray is
not installed (``pip install 'causal_widgets[ray]'``).
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray", reason="Ray is optional: pip install 'causal_widgets[ray]'")

from test_sweeps import LONG, QUIET, check_exactly_once, events, kill_mid_run  # noqa: E402

from causal_widgets.live.executors import LocalRayCluster, RayExecutor  # noqa: E402
from causal_widgets.studies.spec import Study  # noqa: E402
from causal_widgets.studies.sweeps import sweep  # noqa: E402
from causal_widgets.training.models import make_mlp  # noqa: E402

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def cluster():
    """A one-node Ray cluster on 127.0.0.1 (2 CPUs), and this process connected to it."""
    with LocalRayCluster(num_cpus=2) as address:
        yield RayExecutor(address=address)


def test_executor_runs_tasks_on_the_cluster(cluster):
    assert cluster.address.endswith(str(cluster.address.split(":")[-1]))
    assert cluster.workers == 2 and cluster.num_gpus == 0
    pids = {cluster.submit(os.getpid).result(timeout=120) for _ in range(4)}
    assert os.getpid() not in pids  # the work ran in Ray's worker processes


def test_tiny_sweep_on_ray(cluster, tmp_path):
    study = Study("ray", grid={"label_noise": [0.0, 1.0]},
                  settings={"dataset": "iris", "epochs": 30, "every": 10, "ei_samples": 1024})
    data = sweep(study, tmp_path, executor=cluster, **QUIET)
    check_exactly_once(tmp_path, study)
    assert data.complete
    assert [e for e in events(tmp_path) if e["event"] == "executor"][0]["executor"] == "ray"
    # the same study run locally gives the same numbers (same seeds, one thread each)
    local = sweep(study, tmp_path / "local", executor="serial", **QUIET)
    key = ["run_id", "epoch", "layer", "metric"]
    a = data.results.sort_values(key).reset_index(drop=True)
    b = local.results.sort_values(key).reset_index(drop=True)
    assert a[key].equals(b[key])
    np.testing.assert_allclose(a.value.to_numpy(), b.value.to_numpy(), rtol=0, atol=1e-12)


def test_killed_ray_worker_is_retried_and_every_run_completes_once(cluster, tmp_path):
    study = Study("ray-kill", grid={"seed": [0, 1]}, settings=dict(LONG))
    victim = kill_mid_run(tmp_path, study,
                          lambda: sweep(study, tmp_path, executor=cluster, **QUIET))
    check_exactly_once(tmp_path, study)
    retries = [e for e in events(tmp_path) if e["event"] == "retry"]
    assert [e["run_id"] for e in retries] == [victim] and retries[0]["lost"] is True


def _dashboard_numbers(executor):
    """Train a small net 4 epochs with the dashboard measuring every epoch; its results."""
    from causal_widgets.widgets.dashboard import CausalDashboard

    model = make_mlp([4, 5, 5, 3], "sigmoid", seed=3)
    x = torch.rand(64, 4, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dash = CausalDashboard(model, x, in_range=(0.0, 1.0), bins=8, seed=11,
                               cells=256, points_per_cell=16, drop_stale=False,
                               executor=executor)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for epoch in range(4):
        loss = ((model(x) - 0.5) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        dash.record(epoch, loss=float(loss.detach()))
    dash.wait(300)
    frame = dash.results.sort_values(["epoch", "layer", "metric"]).reset_index(drop=True)
    status, errors = dict(dash.status), list(dash.errors)
    dash.close()
    return frame, status, errors


def test_dashboard_with_ray_shows_the_local_numbers(cluster):
    local, _, local_errors = _dashboard_numbers(None)
    remote, status, errors = _dashboard_numbers(cluster)
    assert not local_errors and not errors
    assert sorted(remote.epoch.unique()) == [0, 1, 2, 3]
    cols = ["epoch", "layer", "metric"]
    assert remote[cols].equals(local[cols])
    for c in ("value", "ci_low", "ci_high"):
        np.testing.assert_allclose(remote[c].to_numpy(float), local[c].to_numpy(float),
                                   rtol=0, atol=1e-12, err_msg=c)
    assert status  # the widget's status payload was pushed


def test_cli_sweep_with_ray_address(cluster, tmp_path):
    from causal_widgets import __main__ as cli
    from causal_widgets.studies.sweeps import load_study

    study = tmp_path / "s.toml"
    study.write_text('name = "cli-ray"\n[grid]\nseed = [0, 1]\n[settings]\ndataset = "iris"\n'
                     "epochs = 20\nevery = 10\nsamples = 512\n")
    out = tmp_path / "out"
    assert cli.main(["sweep", str(study), "--out", str(out), "--ray", cluster.address,
                     "--no-figures"]) == 0
    data = load_study(out)
    assert data.complete and len(data.points) == 2
    assert [e for e in events(out) if e["event"] == "executor"][0]["executor"] == "ray"

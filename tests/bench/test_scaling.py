"""Smoke test of benchmarks/scaling.py: the quick run's JSON, the power-law fit, the pieces.

Timing values are never asserted beyond being positive: the machine is shared.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import scaling


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> dict:
    out = tmp_path_factory.mktemp("scaling") / "scaling.json"
    proc = subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / "scaling.py"), "--quick", "--out",
         str(out)],
        capture_output=True, text=True, timeout=300, cwd=repo_root,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "### 1000-run study on 16 GPUs" in proc.stdout
    return json.loads(out.read_text())


def positive(v: object) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def test_quick_json_has_every_section(quick: dict) -> None:
    for k in ("config", "machine", "exact", "sampled", "whole", "training", "models",
              "memory", "fits", "study", "command"):  # fmt: skip
        assert k in quick, k
    m = quick["machine"]
    assert m["cpu_count"] >= 1 and m["torch"] == torch.__version__
    assert len(m["load_avg_start"]) == 3 and len(m["load_avg_end"]) == 3
    assert m["torch_threads"] == 1


def test_quick_json_numbers_are_positive(quick: dict) -> None:
    assert quick["exact"]
    for r in quick["exact"]:
        assert positive(r["ei_parts_cpu_s"]) and positive(r["sensitivity_cpu_s"])
        assert positive(r["ei_parts_bits"])
    assert quick["sampled"]
    for r in quick["sampled"]:
        assert positive(r["library_cpu_s"]) and positive(r["pieces_total_cpu_s"])
        assert set(r["pieces_cpu_s"]) == {"draw", "forward", "binning", "onehot", "gemm"}
        assert all(v >= 0 for v in r["pieces_cpu_s"].values())
    assert quick["whole"]
    for r in quick["whole"]:
        assert positive(r["library_cpu_s"]) and positive(r["sampling_cpu_s"])
        assert r["samples"] == r["cells"] * r["points_per_cell"]
    for name in ("iris", "digits", "mnist_paper", "mlp784", "cnn"):
        t = quick["training"][name]
        assert positive(t["train_epoch_cpu_s"]) and positive(t["evaluate_cpu_s"])
        assert positive(t["ops_per_step"]) and positive(t["flops_per_step"])
    assert quick["models"]
    for r in quick["models"].values():
        assert positive(r["checkpoint_cpu_s"]) and r["layers"]
        for lay in r["layers"]:
            assert positive(lay["cpu_s"])
            if r["setting"] == "no_nodes":
                assert positive(lay["ops"])
    for r in quick["memory"]:
        assert r["status"] == "ok" and positive(r["peak_mib"])


def test_quick_study_arithmetic(quick: dict) -> None:
    st = quick["study"]
    assert st["runs"] == 1000 and st["gpus"] == 16
    plan = st["plans"]["iris"]
    assert plan["checkpoints"] == 80 and plan["layers"] == 3
    assert math.isclose(
        plan["per_run_cpu_s"],
        80 * plan["checkpoint_cpu_s"] + 4000 * plan["epoch_cpu_s"], rel_tol=1e-9,
    )  # fmt: skip
    c = plan["cpu_only"]
    assert c["waves"] == math.ceil(1000 / (16 * c["runs_per_gpu_k"]))
    assert math.isclose(c["wall_s"], c["waves"] * plan["per_run_cpu_s"], rel_tol=1e-9)
    g = plan["gpu_estimate"]
    assert g is not None and positive(g["per_run_s"])
    assert math.isclose(g["wall_s"], g["waves"] * g["per_run_s"], rel_tol=1e-9)


def test_fit_power_law_recovers_known_exponents() -> None:
    rng = np.random.default_rng(0)
    x1 = rng.uniform(1, 1000, 30)
    x2 = rng.uniform(2, 64, 30)
    y = 3e-6 * x1**2.0 * x2**0.5
    fit = scaling.fit_power_law({"nm": x1, "bins": x2}, y)
    assert fit["exponents"]["nm"] == pytest.approx(2.0, abs=1e-9)
    assert fit["exponents"]["bins"] == pytest.approx(0.5, abs=1e-9)
    assert fit["c"] == pytest.approx(3e-6, rel=1e-9)
    assert fit["r2"] == pytest.approx(1.0) and fit["max_rel_err"] < 1e-9
    assert scaling.predict_power_law(fit, nm=10.0, bins=4.0) == pytest.approx(3e-6 * 100 * 2)
    noisy = y * np.exp(rng.normal(0, 0.05, 30))  # 5 % multiplicative noise
    fit = scaling.fit_power_law({"nm": x1, "bins": x2}, noisy)
    assert fit["exponents"]["nm"] == pytest.approx(2.0, abs=0.05)
    assert fit["exponents"]["bins"] == pytest.approx(0.5, abs=0.15)


def test_fit_power_law_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="points"):
        scaling.fit_power_law({"x": [1.0, 2.0]}, [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        scaling.fit_power_law({"x": [1.0, 2.0, 3.0]}, [1.0, 0.0, 2.0])


def test_sampled_pieces_count_the_pair_tables() -> None:
    n, m, bins, samples = 3, 2, 4, 5000
    w = torch.randn(m, n, generator=torch.Generator().manual_seed(1)) * 3
    times, counts = scaling.sampled_pieces(w, samples, bins=bins, chunk=samples, seed=7)
    assert set(times) == {"draw", "forward", "binning", "onehot", "gemm"}
    # the same draws, binned and counted with numpy
    x = torch.rand((samples, n), generator=torch.Generator().manual_seed(7))
    y = torch.sigmoid(x @ w.T)
    xb = np.minimum((x.numpy() * bins).astype(int), bins - 1)
    yb = np.minimum((y.numpy() * bins).astype(int), bins - 1)
    want = np.zeros((n, m, bins, bins), dtype=np.int64)
    for i in range(n):
        for j in range(m):
            np.add.at(want[i, j], (xb[:, i], yb[:, j]), 1)
    np.testing.assert_array_equal(counts.numpy(), want)


def test_waves() -> None:
    assert scaling.waves(1000, 16, 16) == 4
    assert scaling.waves(1000, 16, 1) == 63
    assert scaling.waves(256, 16, 16) == 1

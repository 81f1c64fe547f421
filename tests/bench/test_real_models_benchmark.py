"""Smoke tests of benchmarks/real_models.py and benchmarks/gpu.py at tiny sizes: they run,
their JSON has the fields, the truths they check against are right. No timing asserts."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import real_models


def run(repo_root: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / script), *args],
        capture_output=True, text=True, timeout=600, cwd=repo_root,
    )  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> dict:
    out = tmp_path_factory.mktemp("real_models") / "real.json"
    proc = run(repo_root, "real_models.py", "--tiny", "--models", "cifar,mlp", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(out.read_text())


def test_real_models_json_has_the_fields(tiny: dict) -> None:
    assert tiny["config"] == "tiny"
    assert tiny["machine"]["torch_threads"] == 1
    assert len(tiny["machine"]["load_avg_start"]) == 3 and len(tiny["machine"]["load_avg_end"]) == 3
    assert [m["model"] for m in tiny["models"]] == ["cifar", "mlp"]
    for m in tiny["models"]:
        assert m["train"]["images"] == real_models.CONFIGS["tiny"]["images"]
        assert m["train"]["cpu_s"] > 0 and m["train_cpu_s_10k_images"] > 0
        assert m["measure"]["cpu_s"] > 0 and math.isfinite(m["ratio_measure_to_train"])
        assert m["measure"]["layers"], m["model"]
        for row in m["measure"]["layers"]:
            assert {"layer", "n_in", "n_out", "cpu_s", "values", "ci", "method"} <= set(row)
            for metric, (lo, hi) in row["ci"].items():
                assert lo <= row["values"][metric] <= hi, (row["layer"], metric)
        phases = m["phases_cpu_s"]
        assert "forward pass" in phases and "other" in phases
        assert sum(v for k, v in phases.items() if k != "total (profiled)") == pytest.approx(
            phases["total (profiled)"]
        )
    cifar = tiny["models"][0]
    names = [r["layer"] for r in cifar["measure"]["layers"]]
    assert names == ["conv1", "pool", "conv2", "pool#2", "fc1", "fc2", "fc3"]
    # both max pools are checked against enumeration, EI / EI_parts / sensitivity each
    pools = [c for c in cifar["checks"] if c["layer"].startswith("pool")]
    assert {(c["layer"], c["metric"]) for c in pools} == {
        (p, m) for p in ("pool", "pool#2") for m in ("ei", "ei_parts", "sensitivity")
    }
    assert all(c["inside"] for c in pools), pools


def test_maxpool_truth_by_brute_force() -> None:
    # Y = max of 3 bins of 4 each, by counting all 64 states, written out independently
    k, bins = 3, 4
    ys = [max(s) for s in itertools.product(range(bins), repeat=k)]
    p = np.bincount(ys, minlength=bins) / len(ys)
    h_y = -sum(q * math.log2(q) for q in p if q > 0)
    # I(X_1; Y) = H(Y) - H(Y | X_1), H(Y | X_1 = a) from the 16 states with X_1 = a
    h_cond = 0.0
    for a in range(bins):
        sub = [max(a, *s) for s in itertools.product(range(bins), repeat=k - 1)]
        q = np.bincount(sub, minlength=bins) / len(sub)
        h_cond += -sum(v * math.log2(v) for v in q if v > 0) / bins
    truth = real_models.maxpool_truth(k, bins, held_bin=0)
    assert truth["ei"] == pytest.approx(h_y, abs=1e-12)
    assert truth["ei_parts"] == pytest.approx(k * (h_y - h_cond), abs=1e-12)
    assert truth["sensitivity"] == pytest.approx(k * math.log2(bins), abs=1e-12)  # Y = X_i
    # held at bin 2 of 4: bins 0, 1, 2 merge, so each input's MI is H(3/4, 1/4)
    h = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert real_models.maxpool_truth(k, bins, held_bin=2)["sensitivity"] == pytest.approx(k * h)


def test_gpu_script_fails_at_once_without_cuda(repo_root: Path, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the missing-device path cannot run")
    proc = run(repo_root, "gpu.py", "--out", str(tmp_path / "gpu.json"))
    assert proc.returncode == 2
    assert "no CUDA device" in proc.stderr and "--device cpu" in proc.stderr
    assert not (tmp_path / "gpu.json").exists()


def test_gpu_script_on_cpu_both_columns(repo_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    proc = run(repo_root, "gpu.py", "--device", "cpu", "--tiny", "--threads", "1", "--out",
               str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["device"] == "cpu" and res["cpu_device"] == "cpu"
    assert [m["model"] for m in res["models"]] == ["tutorial_cifar_net", "resnet18_width4"]
    for m in res["models"]:
        assert m["all_agree"] and m["layers_compared"]
        for lay in m["layers"]:
            assert lay["device_wall_s"] > 0
            assert lay["agreement"] and all(a["agree"] for a in lay["agreement"])


def test_gpu_agreement_rule() -> None:
    from benchmarks import gpu

    a = {"values": {"ei": 1.0, "ei_parts": 2.0}, "ci": {"ei": [0.9, 1.1], "ei_parts": [2, 2]},
         "method": {"ei": "sampled", "ei_parts": "exact"}}  # fmt: skip
    near = {"values": {"ei": 1.15, "ei_parts": 2.0}, "ci": {"ei": [1.05, 1.25],
            "ei_parts": [2, 2]}, "method": dict(a["method"])}  # fmt: skip
    far = {"values": {"ei": 1.3, "ei_parts": 2.0 + 1e-6}, "ci": {"ei": [1.2, 1.4],
           "ei_parts": [2.0 + 1e-6] * 2}, "method": dict(a["method"])}  # fmt: skip
    assert all(r["agree"] for r in gpu.agree(a, near))
    assert not any(r["agree"] for r in gpu.agree(a, far))

"""Smoke test of benchmarks/dashboard_overhead.py at tiny size (no timing assertions).

Checks the bookkeeping, not the speed: every recorded epoch is either measured or dropped,
every latency is split into parts that add up to it, and the results block is written only
between its markers.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest


def _load_script(repo_root: Path):
    spec = importlib.util.spec_from_file_location(
        "dashboard_overhead", repo_root / "benchmarks" / "dashboard_overhead.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script(repo_root: Path):
    return _load_script(repo_root)


@pytest.fixture(scope="module")
def report(script, tmp_path_factory):
    out = tmp_path_factory.mktemp("overhead") / "report.json"
    rep = script.main([
        "--iris-epochs", "4", "--digits-epochs", "2", "--trials", "1",
        "--settings", "smoke", "--json", str(out),
    ])
    assert json.loads(out.read_text())["summary"].keys() == rep["summary"].keys()
    return rep


def test_arms_and_counts(report):
    results = report["results"]
    assert {(r["net"], r["arm"]) for r in results} == {
        ("iris", "base"), ("iris", "dash"), ("digits", "base"), ("digits", "dash")
    }
    for r in results:
        assert r["loop_s"] > 0
        if r["arm"] == "dash" and r["failed"] is not None:
            # the training thread raised (the known torch.fx race, see docs/benchmarks.md):
            # the script must say where and what, and leave the trial out of the timings
            assert r["failed"].startswith("epoch ") and ":" in r["failed"]
            continue
        if r["arm"] == "dash":
            assert len(r["record_ms"]) == r["epochs"]
            assert r["errors"] == 0
            # drained: each recorded snapshot was measured or dropped, never lost
            assert r["measured"] + r["dropped"] == r["epochs"]
            assert r["measured"] >= 1  # the newest snapshot is never dropped


def test_latency_parts_add_up(report):
    for r in report["results"]:
        if r["arm"] != "dash" or r["failed"] is not None:
            continue
        epochs = [e["epoch"] for e in r["latency"]]
        assert epochs == sorted(set(epochs))
        assert r["epochs"] - 1 in epochs  # the last epoch appears on the plane
        for e in r["latency"]:
            parts = e["queued_s"] + e["measuring_s"] + e["push_s"]
            assert math.isclose(parts, e["total_s"], rel_tol=1e-9, abs_tol=1e-9)
            assert e["queued_s"] >= 0 and e["measuring_s"] > 0 and e["push_s"] >= 0


def test_summary_and_render(script, report):
    s = report["summary"]
    assert set(s) == {"iris", "digits"}
    for r in s.values():
        if "slowdown" not in r:  # every dashboard trial failed: reported instead
            assert r["training_failures"]
            continue
        assert r["slowdown"] == pytest.approx(r["dash_loop_s"] / r["base_loop_s"] - 1)
        assert r["target_met"] == (max(r["slowdown"], r["slowdown_paired_median"]) < 0.10)
        assert r["latency_s_median"] <= r["latency_s_p90"]
    text = script.render(report)
    assert "| iris 4-5-5-3 |" in text and "| digits 25-6-6-6-5 |" in text
    assert "load_avg_start" in text


def test_write_docs_only_between_markers(script, tmp_path):
    page = tmp_path / "bench.md"
    page.write_text(f"# top\n<!-- results:begin -->\nX\n<!-- results:end -->\n"
                    f"## Dashboard overhead\nprose\n{script.BEGIN}\nold\n{script.END}\nafter\n")
    script.write_docs("NEW", page)
    assert page.read_text() == (
        "# top\n<!-- results:begin -->\nX\n<!-- results:end -->\n"
        f"## Dashboard overhead\nprose\n{script.BEGIN}\nNEW\n{script.END}\nafter\n"
    )
    (tmp_path / "bare.md").write_text("# no markers\n")
    with pytest.raises(ValueError, match="markers"):
        script.write_docs("NEW", tmp_path / "bare.md")


def test_bad_settings(script):
    with pytest.raises(ValueError, match="settings"):
        script.engine_kwargs("fast")


def test_failed_trial_is_reported_not_timed(script):
    def arm(net, arm, trial, loop, failed=None):
        r = {"net": net, "arm": arm, "trial": trial, "epochs": 4, "loop_s": loop,
             "loop_thread_cpu_s": loop / 2, "failed": failed}
        if arm == "dash":
            r.update(record_ms=[0.1, 0.3], dropped=1, errors=0, measured=3, construct_s=0.1,
                     drain_s=0.2, latency=[{"epoch": 3, "total_s": 1.0, "queued_s": 0.5,
                                            "measuring_s": 0.4, "push_s": 0.1}])
        return r

    results = [
        arm("iris", "base", 0, 2.0), arm("iris", "dash", 0, 3.0),
        arm("iris", "base", 1, 4.0), arm("iris", "dash", 1, 0.01, failed="epoch 0: NameError: x"),
    ]
    s = script.summarize(results)["iris"]
    # medians: base (2 + 4) / 2 = 3, dash only the trial that ran: 3 -> slowdown 0
    assert s["base_loop_s"] == 3.0 and s["dash_loop_s"] == 3.0
    assert s["slowdown"] == 0.0
    assert s["slowdown_paired_all"] == [0.5]  # trial 0 only: 3 / 2 - 1
    assert s["training_failures"] == ["epoch 0: NameError: x"]
    assert s["measured"] == 3 and s["dropped"] == 1 and s["snapshots"] == 4
    report = {"summary": {"iris": s}, "args": {"settings": "smoke", "trials": 2},
              "started": "t", "machine": {"commit": "c"}, "load_avg_start": [1.0, 1.0, 1.0],
              "load_avg_end": [1.0, 1.0, 1.0], "command": "cmd"}
    text = script.render(report)
    assert "training loop itself raised" in text and "NameError: x" in text

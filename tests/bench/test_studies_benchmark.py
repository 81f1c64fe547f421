"""Smoke test of benchmarks/studies.py at tiny size, without Ray (no timing assertions)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def test_sequential_and_pool_sweeps_agree_and_the_block_is_written(tmp_path, repo_root: Path):
    spec = importlib.util.spec_from_file_location("studies_bench",
                                                  repo_root / "benchmarks" / "studies.py")
    script = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = script
    spec.loader.exec_module(script)
    rep = script.main(["--epochs", "20", "--every", "10", "--samples", "512", "--tasks", "10",
                       "--workers", "2", "--no-ray", "--json", str(tmp_path / "s.json")])
    assert [r["mode"] for r in rep["rows"]] == ["sequential", "local pool"]
    for r in rep["rows"]:
        assert r["runs"] == 8 and r["wall_s"] > 0 and r["run_s_sum"] > 0
    assert rep["identical_results"] == {"sequential": True, "local pool": True}
    assert set(rep["task_overhead"]) == {"sequential", "local pool"}
    assert all(v["single_ms"] > 0 for v in rep["task_overhead"].values())
    page = tmp_path / "page.md"
    page.write_text(f"# x\n\n{script.BEGIN}\nold\n{script.END}\ntail\n")
    script.write_docs(script.render(rep), page)
    text = page.read_text()
    assert "old" not in text and "| local pool | 2 |" in text and text.endswith("tail\n")

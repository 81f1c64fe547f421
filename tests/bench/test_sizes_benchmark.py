"""benchmarks/sizes.py runs end to end at tiny sizes: rows with both libraries' times, the
paper initialisation's weights in range, and a docs block that can be written twice."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("deep_ei")

from benchmarks import run, sizes  # noqa: E402


def test_paper_init_is_pytorchs_default_range():
    w = sizes.paper_init_layer(9, 4)[0].weight
    assert w.shape == (4, 9) and float(w.abs().max()) <= 1 / math.sqrt(9)
    assert sizes.paper_init_layer(9, 4)[0].weight.equal(w)  # seeded


def test_a_tiny_row_and_its_docs_block(tmp_path):
    cfg = run.CONFIGS["tiny"]
    row = sizes.measure_size(2, 2, "paper", cfg, (4000,))
    assert row["ours_cpu_s"] > 0 and row["deep_cpu_s"] > 0
    assert row["ratio"] == pytest.approx(row["deep_cpu_s"] / row["ours_cpu_s"])
    assert set(row["ours_values"]) >= {"ei", "ei_parts", "sensitivity"}
    res = {"config": "tiny", "samples": cfg.samples, "ours_samples": cfg.paper_ours_samples,
           "machine": {**run.machine_info(), "load_avg_start": [0.0, 0.0, 0.0]},
           "rows": [row], "command": "test"}
    doc = tmp_path / "b.md"
    doc.write_text("# x\n")
    sizes.write_docs(sizes.render(res), doc)
    sizes.write_docs(sizes.render(res), doc)  # replaces its block, does not append again
    text = doc.read_text()
    assert text.count(sizes.BEGIN) == 1 and "| 2x2 | paper |" in text

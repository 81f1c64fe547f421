"""The benchmark harness: reference integrals, the deep-ei shim, the floor, a tiny full run.

Timing is never asserted (the machine is shared); what is checked is that every piece
computes what it claims, against values derived by hand or by an independent method.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmarks import deepei_shim, floor, run, truth


def h2(p: float) -> float:
    """Binary entropy (bits)."""
    return -p * math.log2(p) - (1 - p) * math.log2(1 - p)


def brute_force_ei(w: np.ndarray, kind: str, bins: int, g: int) -> float:
    """Whole EI by a plain midpoint grid over all n dimensions (no analytic step): a method
    independent of truth.joint_integrals. Inputs in (0, 1); output range the activation's."""
    m, n = w.shape
    u = (np.arange(bins * g) + 0.5) / (bins * g)
    x = np.stack(np.meshgrid(*([u] * n), indexing="ij"), -1).reshape(-1, n)
    z = x @ w.T
    y, lo = (1 / (1 + np.exp(-z)), 0.0) if kind == "sigmoid" else (np.tanh(z), -1.0)
    xb = np.minimum((x * bins).astype(int), bins - 1)
    yb = np.clip(((y - lo) / (1 - lo) * bins).astype(int), 0, bins - 1)
    xid = (xb * bins ** np.arange(n)).sum(1)
    yid = (yb * bins ** np.arange(m)).sum(1)
    joint = np.bincount(xid * bins**m + yid, minlength=bins ** (n + m)).astype(float)
    joint /= joint.sum()

    def ent(p: np.ndarray) -> float:
        p = p[p > 0]
        return float(-(p * np.log2(p)).sum())

    return ent(joint.reshape(bins**n, -1).sum(1)) + ent(joint.reshape(bins**n, -1).sum(0)) - ent(
        joint
    )


# ----------------------------------------------------------------------------- truth


def test_thresholds_are_logits_of_the_interior_edges():
    t = truth.thresholds("sigmoid", (0.0, 1.0), 4)
    np.testing.assert_allclose(t, [math.log(1 / 3), 0.0, math.log(3)], rtol=0, atol=1e-12)
    np.testing.assert_allclose(truth.thresholds("identity", (0.0, 2.0), 4), [0.5, 1.0, 1.5])
    # an output range wider than tanh's: edges beyond +-1 are never / always reached
    t = truth.thresholds("tanh", (-2.0, 2.0), 4)
    assert t[0] == -np.inf and t[1] == 0.0 and t[2] == np.inf
    with pytest.raises(ValueError, match="not supported"):
        truth.thresholds("relu", (0.0, 1.0), 4)


@pytest.mark.parametrize(
    ("w", "expected"),
    [(1.0, 3.0), (0.5, 2.0), (0.0, 0.0)],  # identity onto (0,1): x -> its bin, x/2 -> bin//2
)
def test_truth_one_edge_closed_forms(w, expected):
    tr = truth.layer_truth(np.array([[w]]), None, "identity", out_range=(0.0, 1.0), bins=8)
    assert tr.ei == pytest.approx(expected, abs=1e-12)
    assert tr.ei_parts == pytest.approx(expected, abs=1e-12)
    assert tr.sensitivity == pytest.approx(expected, abs=1e-12)


def test_truth_two_input_average_by_hand():
    """y = (x1 + x2) / 2 on 2 bins. Cells (0,0) -> Y=0, (1,1) -> Y=1, mixed cells -> Y=1 with
    probability 1/2 (symmetry of x1 + x2 about 1). So H(Y) = 1, H(Y|X) = 1/2: EI = 1/2.
    I(X1; Y): P(Y=1 | X1=0) = 1/4, P(Y=1 | X1=1) = 3/4, so 1 - h2(1/4) per input.
    Sensitivity: x2 = 0 gives y = x1/2 < 1/2, always bin 0: 0 bits."""
    w = np.array([[0.5, 0.5]])
    for grid in (2, 8):
        tr = truth.layer_truth(w, None, "identity", out_range=(0.0, 1.0), bins=2, grid=grid)
        assert tr.ei == pytest.approx(0.5, abs=1e-12)
        assert tr.ei_parts == pytest.approx(2 * (1 - h2(0.25)), abs=1e-12)
        assert tr.sensitivity == pytest.approx(0.0, abs=1e-12)


def test_truth_sensitivity_is_a_one_dimensional_closed_form():
    """S[i, j] of y = sigmoid(w x): 8 input bins, with the x-cut points at logit(k/8) / w."""
    w = 4.0
    s = truth.sensitivity_matrix(np.array([[w]]), np.zeros(1), "sigmoid", (0, 1), 8, (0, 1), 8)
    # independent: bin a fine 1-D grid of x and its output
    x = (np.arange(8 * 20000) + 0.5) / (8 * 20000)
    yb = np.minimum((8 / (1 + np.exp(-w * x))).astype(int), 7)
    xb = (x * 8).astype(int)
    p = np.bincount(xb * 8 + yb, minlength=64).reshape(8, 8) / len(x)
    px, py = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    expected = float((p[nz] * np.log2(p[nz] / (px @ py)[nz])).sum())
    assert s[0, 0] == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(("shape", "kind", "bins", "grid", "g_brute"), [
    ((2, 2), "sigmoid", 8, 64, 128),
    ((2, 3), "tanh", 4, 32, 24),
])
def test_truth_matches_an_independent_brute_force_grid(shape, kind, bins, grid, g_brute):
    rng = np.random.default_rng(5)
    w = rng.normal(size=shape) * 4 / math.sqrt(shape[1])
    tr = truth.layer_truth(w, None, kind, bins=bins, grid=grid)
    brute = brute_force_ei(w, kind, bins, g_brute)
    # the brute-force grid converges as g^-2 too; measured gaps here are 3e-6 and 1.4e-5
    assert tr.ei > 0.1
    assert tr.ei == pytest.approx(brute, abs=2e-4)
    assert tr.ei_error_estimate < 1e-3


def test_truth_rejects_bad_grids():
    w = np.ones((1, 2))
    with pytest.raises(ValueError, match="half of grid"):
        truth.layer_truth(w, None, "sigmoid", grid=6, grid_coarse=2)
    with pytest.raises(ValueError, match="grid=0"):
        truth.joint_integrals(w, np.zeros(1), "sigmoid", (0, 1), 8, (0, 1), 8, 0)
    with pytest.raises(ValueError, match="too many"):
        truth.joint_integrals(np.ones((9, 2)), np.zeros(9), "sigmoid", (0, 1), 8, (0, 1), 8, 1)


# ----------------------------------------------------------------------------- deep-ei shim


def _tiny_net(w: float) -> torch.nn.Sequential:
    net = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), torch.nn.Sigmoid())
    with torch.no_grad():
        net[0].weight.fill_(w)
    return net


def test_shim_runs_deep_ei_unmodified_and_restores_it():
    import deep_ei
    import networkx

    net = _tiny_net(1.0)
    if int(networkx.__version__.split(".")[0]) >= 3:
        # a separate module: the failed call leaves deep-ei's forward hooks registered on it
        with pytest.raises(ValueError, match="None cannot be a node"):
            deep_ei.topology_of(_tiny_net(1.0), torch.zeros(1, 1))
    with deepei_shim.patched_deep_ei() as d:
        top = d.topology_of(net, torch.zeros(1, 1))
        assert top.nodes[net[0]]["input"]["shape"] == (1, 1)
        assert isinstance(top.nodes[net[0]]["output"]["activation"], torch.nn.Sigmoid)
    assert deep_ei.nx is networkx


def test_deep_ei_wrappers_agree_with_the_closed_form_on_one_edge():
    """A 1->1 sigmoid layer: EI = EI_parts = sensitivity = I(X; Y) (closed form). deep-ei's
    plug-in estimates at N samples sit above it by about (Bx-1)(By-1)/(2 N ln 2) bits."""
    w = 6.0
    net = _tiny_net(w)
    exact = truth.layer_truth(np.array([[w]]), None, "sigmoid", bins=8).sensitivity
    n = 40_000
    bias = 49 / (2 * n * math.log(2))
    vals = deepei_shim.paper_measurement(net, samples=n, sensitivity_samples=n, batch_size=n)
    for key in ("ei", "ei_parts", "sensitivity"):
        assert vals[key] == pytest.approx(exact + bias, abs=0.02), key
    assert deepei_shim.ei_parts(net, samples=n, batch_size=5000) == pytest.approx(
        exact + bias, abs=0.02
    )
    assert deepei_shim.whole_ei(net, samples=n, batch_size=5000) == pytest.approx(
        exact + bias, abs=0.02
    )


# ----------------------------------------------------------------------------- floor


@pytest.mark.parametrize("method", floor.FLOOR_METHODS)
def test_floor_counts_every_pair_table(method):
    """The floor's tables equal a direct count of the same draws (one chunk, same seed)."""
    if method == "int8" and not floor.int8_gemm_available():
        pytest.skip("torch._int_mm is not available in this torch build")
    n, m, bins, samples = 3, 2, 4, 3000
    w = torch.randn((m, n), generator=torch.Generator().manual_seed(1)) * 2
    got = floor.count_pair_tables(w, None, samples, bins=bins, method=method, chunk=samples,
                                  seed=11)
    x = torch.rand((samples, n), generator=torch.Generator().manual_seed(11)).double().numpy()
    y = 1 / (1 + np.exp(-(x @ w.double().numpy().T)))
    xb = np.minimum((x * bins).astype(int), bins - 1)
    yb = np.minimum((y * bins).astype(int), bins - 1)
    expected = np.zeros((n, m, bins, bins))
    for i in range(n):
        for j in range(m):
            np.add.at(expected[i, j], (xb[:, i], yb[:, j]), 1)
    np.testing.assert_array_equal(got.numpy(), expected)
    # chunking does not change the tables of a different chunk size in total mass
    chunked = floor.count_pair_tables(w, None, samples, bins=bins, method=method, chunk=700)
    assert chunked.sum().item() == samples * n * m


def test_floor_rejects_unknown_method():
    with pytest.raises(ValueError, match="unknown"):
        floor.count_pair_tables(torch.ones(1, 1), None, 10, method="magic")


# ----------------------------------------------------------------------------- harness


def test_whole_budget_plans():
    # measure_layer's own default: all cells up to 2**14 of them, else sampled cells of 16
    assert run.whole_budget(4, 8, 10**6) == {"cells": "all", "points_per_cell": 244}
    assert run.whole_budget(5, 8, 10**6) == {"cells": 62500, "points_per_cell": 16}
    assert run.whole_budget(4, 8, 4000) == {"cells": 250, "points_per_cell": 16}


def test_make_layer_is_seeded_and_scaled():
    a, b = run.make_layer(25, 6), run.make_layer(25, 6)
    assert torch.equal(a[0].weight, b[0].weight) and a[0].bias is None
    assert a[0].weight.std().item() == pytest.approx(4 / 5, rel=0.3)


def test_tiny_run_end_to_end(tmp_path):
    """Every benchmark at tiny sizes: the results have the right shape and render."""
    pytest.importorskip("causal_widgets.engine.estimators")
    threads = torch.get_num_threads()
    logs: list[str] = []
    res = run.run_all(run.CONFIGS["tiny"], log=logs.append)
    assert torch.get_num_threads() == threads  # restored
    res = run._jsonable(res)
    paper = res["paper"]["layers"]
    assert set(paper) == {"2x2", "3x2"}
    for row in paper.values():
        assert row["ratio"] > 0 and row["ours"]["cpu_s"] > 0
        assert set(row["deep_ei"]["by_batch"]) == {"4000"}
        e = row["errors"]["ei"]
        assert e["deep_mean_abs"] >= 0 and e["ours_mean_abs"] >= 0
        assert math.isfinite(row["truth"]["ei"])
    parts = res["parts"]
    assert set(parts["deep_ei"]["sweep"]) == {"500", "4000"}
    assert parts["floor"]["cpu_s"] > 0 and parts["floor_ratio"] > 0
    # ours' sampled EI_parts sees the same layer as the exact engine: near it at 4000 samples
    assert parts["ours"]["values"][0]["ei_parts"] == pytest.approx(parts["exact_ei_parts"],
                                                                   abs=0.3)
    assert res["whole"]["errors"]["truth"] == paper["3x2"]["truth"]["ei"]
    assert set(res["big"]) == {"20x8 trained-like", "20x8 paper-init"}
    md = run.render_markdown(res)
    assert "| (1) paper measurement 2x2 (ours: 2e+03 whole-EI samples) |" in md
    assert "| (1) same, ours at deep-ei's 4e+03 samples, 3x2 |" in md
    assert "| (4) exact EI_parts 20x8" in md
    assert "Machine:" in md and res["machine"]["torch"] in md
    doc = tmp_path / "bench.md"
    doc.write_text(f"# Title\n\nprose\n\n{run.BEGIN}\nSTALE-RESULTS\n{run.END}\n\nafter\n")
    run.write_docs(res, doc)
    text = doc.read_text()
    assert text.startswith("# Title\n\nprose") and text.rstrip().endswith("after")
    assert "STALE-RESULTS" not in text and "| (3) whole EI 3x2 |" in text
    # the reference integral is cached by the exact weights: a second lookup hits the cache
    cache = tmp_path / "truth.json"
    w = run.make_layer(2, 2)[0].weight.detach().double().numpy()
    first = run.layer_truth_cached(w, 4, 4, cache, logs.append)
    again = run.layer_truth_cached(w, 4, 4, cache, logs.append)
    assert not first["cached"] and again["cached"] and again["ei"] == first["ei"]
    assert again["ei"] == pytest.approx(paper["2x2"]["truth"]["ei"], abs=1e-12)
    other = run.layer_truth_cached(2 * w, 4, 4, cache, logs.append)
    assert not other["cached"]


def test_cli_render_from_json(tmp_path, capsys):
    """--render re-renders a results file without running anything."""
    res = {
        "config": run._jsonable(run.asdict(run.CONFIGS["tiny"])),
        "machine": {"date": "d", "git_commit": "c", "torch": "t"},
        "paper": {"layers": {"2x2": {
            "n_in": 2, "n_out": 2, "ratio": 150.0,
            "deep_ei": {"cpu_s": 1.5, "best_batch": 20},
            "ours": {"cpu_s": 0.01},
        }}},
        "parts": {"layer": "6x3", "ratio": 4.0, "floor_ratio": 1.2, "met_speed": True,
                  "met_floor": True, "deep_ei": {"cpu_s": 0.4, "best_batch": 500,
                                                 "sweep": {"500": {"cpu_s": 0.4, "value": 1.0}}},
                  "ours": {"cpu_s": 0.1, "values": [{"ei_parts": 1.0}]},
                  "floor": {"best": "gemm/1024", "cpu_s": 0.08, "variants": {"gemm/1024": 0.08}},
                  "exact_ei_parts": 0.99},
        "whole": {"layer": "3x2", "ratio": 40.0, "met_speed": True,
                  "deep_ei": {"cpu_s": 4.0, "best_batch": 20}, "ours": {"cpu_s": 0.1}},
        "big": {"20x8 trained-like": {"cpu_s": 0.5, "wall_s": 0.3, "threads": 2, "met": True}},
    }
    js = tmp_path / "r.json"
    js.write_text(run.json.dumps(res))
    doc = tmp_path / "b.md"
    assert run.main(["--render", "--json", str(js), "--docs", str(doc)]) == 0
    text = doc.read_text()
    assert ("| (1) paper measurement 2x2 (ours: 2e+03 whole-EI samples) | 1.5 (batch 20) | 0.01 "
            "| 150x | >= 100x, EI error <= deep-ei's | yes (speed; no EI reference) |") in text
    assert "| (2) sampled EI_parts 6x3 | 0.4 (batch 500) | 0.1 | 4.0x | >= 3x | yes |" in text
    assert "no reference" in text  # a layer without a truth says so instead of an error

"""The reference harness: ``causal_widgets.measure_layer``, end to end, against values
computed independently of it. Never against our own earlier output.

A plain module beside the engine tests (no ``__init__.py`` here: pytest's default
``prepend`` import mode puts this folder on ``sys.path``, so ``tests/engine/test_*.py``
import it, and the references of ``test_exact.py``, by name).

References, none of which shares code with ``causal_widgets``:

* ``benchmarks/truth.py`` (numpy only): whole EI and EI_parts of ``act(W x + b)`` by an
  integral Richardson-extrapolated from two grids, with the size of that last correction
  as its stated error (``ei_error_estimate``, ``ei_parts_error_estimate``); sensitivity in
  closed form. The benchmark's layers whose integral takes minutes are read from
  ``benchmarks/truth_cache.json`` through ``benchmarks.run.layer_truth_cached``, the
  benchmark's own lookup (keyed by the exact weights, bins and grid, so a value is never
  served for another layer), on a temporary copy: a missing entry is computed (slowly)
  into the copy, and the repository's file is never written.
* ``test_exact.gl_tables``: joint tables by piecewise Gauss-Legendre integration, exact up
  to rounding for small layers.

What is checked:

* **Sampled whole EI** (:func:`check_whole_ei`): over several seeds, the reference lies in
  the reported 95 % interval in at least :func:`min_covered` of the runs (as many as a
  95 % interval covers but for a ``FALSE_ALARM`` chance), and no run misses it by more
  than the interval's own half-width again (an error over twice the half-width is a
  3.9-sigma event for a normal estimate). The interval is used as reported: it already
  carries the estimator's documented bias allowances (``WholeEI``'s within-cell allowance,
  added in quadrature, and ``measure_layer``'s half-points gap). The one widening is the
  reference's own stated error, since the reference is not exact either.
* **Exact EI_parts and sensitivity** (:func:`check_exact`): a zero-width interval, so the
  value must equal the reference within the reference's stated error.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmarks import run, truth
from causal_widgets import LayerResult, measure_layer

#: nominal coverage of the reported intervals
LEVEL = 0.95
#: chance that an estimator whose intervals do cover at LEVEL fails check_whole_ei's count
FALSE_ALARM = 1e-3
#: error of values that are exact up to float64 rounding (closed forms, gl_tables), bits
ROUNDING = 1e-9
#: the whole-EI seeds: enough runs that a coverage count means something (16: at least 12
#: must cover), few enough for a few seconds per layer
SEEDS = tuple(range(16))


@dataclass(frozen=True)
class Reference:
    """An independent value (bits), the bound its source states on its own error, and where
    it came from (for failure messages)."""

    value: float
    error: float
    source: str


def linear_layer(weight: Any, bias: Any, act: nn.Module) -> nn.Sequential:
    """``Sequential(Linear, act)`` holding exactly the given (float32) weights and bias."""
    w = torch.as_tensor(np.asarray(weight), dtype=torch.float32)
    lin = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
    with torch.no_grad():
        lin.weight.copy_(w)
        if bias is not None:
            lin.bias.copy_(torch.as_tensor(np.asarray(bias), dtype=torch.float32))
    return nn.Sequential(lin, act)


def weights_of(layer: nn.Sequential) -> tuple[np.ndarray, np.ndarray]:
    """The float64 ``(W, b)`` of ``Sequential(Linear, act)``: the very values measured."""
    lin = layer[0]
    w = lin.weight.detach().double().numpy()
    b = np.zeros(w.shape[0]) if lin.bias is None else lin.bias.detach().double().numpy()
    return w, b


def _references(d: dict[str, Any], source: str) -> dict[str, Reference]:
    """``Truth.to_dict()``-shaped values as References (sensitivity is closed form)."""
    if d["ei_error_estimate"] is None or d["ei_parts_error_estimate"] is None:
        raise ValueError(f"{source}: no error estimate (use an even grid >= 2)")
    return {
        "ei": Reference(d["ei"], d["ei_error_estimate"], source),
        "ei_parts": Reference(d["ei_parts"], d["ei_parts_error_estimate"], source),
        "sensitivity": Reference(d["sensitivity"], ROUNDING, f"{source} (closed form)"),
    }


def truth_of(
    layer: nn.Sequential, kind: str, in_range: tuple[float, float], bins: int, grid: int
) -> tuple[dict[str, Reference], truth.Truth]:
    """``benchmarks.truth.layer_truth`` of ``layer`` (cheap for small layers): the References
    and the full :class:`~benchmarks.truth.Truth` (its matrices too)."""
    w, b = weights_of(layer)
    tr = truth.layer_truth(w, b, kind, in_range, bins, grid=grid)
    return _references(tr.to_dict(), f"truth.py grid {grid}"), tr


def cached_truth_of(
    layer: nn.Sequential, bins: int, grid: int, scratch: Path
) -> dict[str, Reference]:
    """The benchmark's cached reference values of a bias-free sigmoid layer on ``(0, 1)``,
    looked up in a copy of ``benchmarks/truth_cache.json`` kept in ``scratch``."""
    if layer[0].bias is not None or not isinstance(layer[1], nn.Sigmoid):
        raise ValueError("the truth cache holds bias-free sigmoid layers only")
    copy = scratch / "truth_cache.json"
    if not copy.exists():
        shutil.copyfile(run.TRUTH_CACHE, copy)
    w, _ = weights_of(layer)
    d = run.layer_truth_cached(w, bins, grid, copy, lambda _msg: None)
    return _references(d, f"truth_cache.json grid {grid}")


def min_covered(runs: int, level: float = LEVEL, false_alarm: float = FALSE_ALARM) -> int:
    """Smallest count ``c`` with ``P(Binomial(runs, level) < c) <= false_alarm``: how many of
    ``runs`` intervals of coverage ``level`` must hold the truth."""
    below = 0.0  # P(count < c)
    for c in range(runs + 1):
        p_c = math.comb(runs, c) * level**c * (1 - level) ** (runs - c)
        if below + p_c > false_alarm:
            return c
        below += p_c
    return runs


def covers(ref: Reference, ci: Sequence[float], widen: float = 0.0) -> bool:
    """Whether ``ci``, widened by the reference's stated error (and ``widen``), holds it."""
    slack = ref.error + widen
    return ci[0] - slack <= ref.value <= ci[1] + slack


def check_whole_ei(
    layer: nn.Module,
    in_range: tuple[float, float],
    ref: Reference,
    *,
    bins: int,
    seeds: Iterable[int] = SEEDS,
    **settings: Any,
) -> list[LayerResult]:
    """Sampled whole EI of ``layer`` with each seed against ``ref`` (see the module
    docstring); ``settings`` go to ``measure_layer`` unchanged. Returns the results."""
    results = [
        measure_layer(layer, in_range=in_range, bins=bins, metrics=["ei"], seed=s,
                      device="cpu", **settings)
        for s in seeds
    ]  # fmt: skip
    runs = [(r.ei, r.ci["ei"]) for r in results]
    table = "\n".join(f"  seed-run {k}: {v:.5f} in [{lo:.5f}, {hi:.5f}]"
                      for k, (v, (lo, hi)) in enumerate(runs))  # fmt: skip
    where = f"reference {ref.value:.5f} +- {ref.error:.1e} ({ref.source})"
    hits = sum(covers(ref, ci) for _, ci in runs)
    need = min_covered(len(runs))
    assert hits >= need, f"whole EI: {hits}/{len(runs)} intervals hold the {where}; " \
                         f"want >= {need}\n{table}"  # fmt: skip
    for _, ci in runs:
        half = (ci[1] - ci[0]) / 2
        assert covers(ref, ci, widen=half), f"whole EI missed the {where} by more than " \
                                            f"twice its half-width:\n{table}"  # fmt: skip
    return results


def check_exact(
    layer: nn.Module,
    in_range: tuple[float, float],
    refs: dict[str, Reference],
    *,
    bins: int,
    **settings: Any,
) -> LayerResult:
    """Exact EI_parts and sensitivity of ``layer`` against ``refs`` (``metric -> Reference``)
    within each reference's stated error; their intervals must have zero width."""
    r = measure_layer(layer, in_range=in_range, bins=bins, metrics=list(refs),
                      method="exact", device="cpu", **settings)  # fmt: skip
    for metric, ref in refs.items():
        value = getattr(r, metric)
        assert r.method[metric] == "exact", (metric, r.method)
        assert r.ci[metric] == (value, value), (metric, r.ci[metric])
        assert abs(value - ref.value) <= ref.error, (
            f"exact {metric} {value:.12f} vs {ref.value:.12f} +- {ref.error:.1e} ({ref.source})"
        )
    return r


def pair_mi_matrix(tables: np.ndarray, mi: Any) -> np.ndarray:
    """``(n, m)`` matrix of ``mi(tables[i, j])`` over ``(n, m, in_bins, out_bins)`` tables."""
    n, m = tables.shape[:2]
    return np.array([[mi(tables[i, j]) for j in range(m)] for i in range(n)])

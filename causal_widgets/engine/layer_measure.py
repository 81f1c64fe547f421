"""The measure API for one layer: EI, EI_parts, sensitivity, degeneracy, integration.

>>> import torch, causal_widgets as cw
>>> layer = torch.nn.Sequential(torch.nn.Linear(25, 6), torch.nn.Sigmoid())
>>> r = cw.measure_layer(layer, in_range=(0.0, 1.0), bins=8)          # doctest: +SKIP
>>> r.ei, r.ei_parts, r.sensitivity, r.degeneracy, r.integration    # doctest: +SKIP

All quantities are in **bits** and follow ``docs/metrics.md``. With ``X`` the
binned inputs and ``Y`` the binned outputs under the maximum-entropy intervention
(every input independently uniform over ``in_range``):

* ``ei`` = I(X; Y) (whole tuples), always *sampled* with the cell-conditional estimator
  :class:`~causal_widgets.engine.estimators.WholeEI`: draw input cells (one bin per input),
  ``M`` points uniformly inside each cell, and estimate ``H(Y) - mean_cell H(Y | cell)``.
  All ``in_bins ** n_in`` cells are enumerated when that is at most ``cell_limit``
  (2**14); otherwise cells are drawn uniformly.
* ``ei_parts`` = sum_ij I(X_i; Y_j), all inputs intervened together; ``sensitivity`` =
  sum_ij I(X_i; Y_j) with only X_i intervened and every other input held at 0. Both are
  computed *exactly* (``exact.py``, no sampling) when the layer is ``act(W x + b)`` with a
  monotone elementwise ``act`` (``layer.dense is not None``) and ``method`` is ``"auto"``
  or ``"exact"``; otherwise they are sampled with
  :class:`~causal_widgets.engine.estimators.PairwiseMI`.
* ``degeneracy`` = sensitivity - ei and ``integration`` = ei - ei_parts. When ``ei`` is not
  computed but ``ei_parts`` and ``sensitivity`` are, ``degeneracy_parts`` = sensitivity -
  ei_parts is reported instead (under its own name: the two are never mixed).

Whole EI and finite points per cell: ``H(Y | cell)`` from ``M`` points is biased when a
cell's outputs take many values (Grassberger's estimator, used within cells, removes most
but not all of it). The same cells' entropies are therefore also estimated from the first
half of their points (a paired comparison, inside the one estimator); when
``|EI(M/2) - EI(M)|`` exceeds one standard error, the interval is extended by that gap on
the side the bias points to and a warning gives the numbers (``settings["whole_ei"]``
keeps ``ei_half_points``, ``half_points_gap`` and ``bias_allowance``, the signed gap).

Confidence intervals (95 %) come from the estimators; exact values have a zero-width
interval. Derived metrics combine intervals by interval arithmetic
(``[a_lo - b_hi, a_hi - b_lo]`` for ``a - b``). Every metric is drawn from its own random
stream, so the two terms are independent; for independent, approximately normal
estimates the half-width of the combined interval (sum of half-widths) is at least the
exact one (square root of the sum of squares), so coverage is >= 95 % (conservative).

Sample sizes adapt: with ``samples=None`` the number of interventions grows (at least
doubling each round, jumping to the size the current interval width predicts) until the
95 % interval of each requested total is narrower than ``tol`` bits, up to ``max_samples``
forward evaluations per metric. Hitting the cap is **not** an error: the result is returned
with its (wider) interval and a warning in ``r.warnings`` that gives the numbers, because
a background monitor must not lose a measurement to an undersampled layer.

Reproducibility: every draw comes from a ``torch.Generator`` seeded from ``seed`` and the
metric's name, so a metric's value does not depend on which other metrics were asked for.
The caller's global RNG state, grad mode and the module's train/eval flags are restored.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from causal_widgets.engine import memory
from causal_widgets.engine.binning import bin_index, check_range
from causal_widgets.engine.bounds import (
    combined_status,
    entropy_upper,
    weight_blocks,
    whole_ei_bounds,
)
from causal_widgets.engine.layer import (
    DenseForm,
    Layer,
    check_finite_weights,
    conv_dense_form,
    layer_from_module,
)
from causal_widgets.engine.settings import (  # noqa: F401  (METRICS etc. re-exported)
    CELL_LIMIT,
    MAX_SAMPLES,
    METHODS,
    METRICS,
    MeasureSettings,
    check_pairwise_budget,
)
from causal_widgets.engine.tidy import TIDY_COLUMNS
from causal_widgets.guards import untouched
from causal_widgets.jsonable import to_jsonable

#: Order of the scalar metrics in :meth:`LayerResult.to_frame`.
SCALAR_METRICS = (
    "ei",
    "ei_parts",
    "sensitivity",
    "degeneracy",
    "integration",
    "degeneracy_parts",
    "group_ei",
)
# starting sizes of the doubling (chosen so a small layer is done in the first rounds)
_START_PAIRS = 2**16  # interventions for sampled EI_parts
_START_SENS = 2**12  # interventions per input for sampled sensitivity
_START_CELLS = 2**12  # sampled cells for whole EI
_START_PPC = 16  # points per cell when all cells are enumerated
# points per cell when cells are sampled. Measured (Grassberger within-cell entropies,
# 2**18 samples, 8 seeds, 8-bin sigmoid layers 5->5, 4->5, 5->3 against benchmarks/truth.py):
# RMSE 0.016-0.029 bits at 16, 0.015-0.022 at 32, 0.016-0.022 at 64, with the bias
# smallest at 64 (<= 0.007); wide layers with many outputs per cell keep more bias at
# fewer points (25->6, weights 1.5: EI(M/2) - EI(M) is ~0.05 bits at 16, ~0.02 at 64)
_DEFAULT_PPC = 64
# the half-points bias diagnostic needs at least this many points per cell in the half
_MIN_HALF_PPC = 8
# Input-node EI, I(X_i; Y), keeps one sparse entry per (input, bin, output tuple seen): up
# to n_in x samples entries when every output tuple is distinct. Peak memory measured with
# benchmarks/scaling.py is ~600-800 bytes per entry then (keys, values, the merge's sort
# buffers): 32 -> 32 at 2**17 samples (2**22 entries) peaked at 3.3 GiB, 64 -> 64 at
# 4.9 GB; 256 -> 256 was killed for memory on a 24 GB machine. Contractive layers (the
# paper's 25 -> 6) repeat output tuples and stay far below the worst case, so two bounds:
# skipped up front when even the *planned* worst case is absurd, and dropped while
# measuring once the table really holds more than _INPUT_NODE_LIVE_ENTRIES entries.
_INPUT_NODE_ENTRIES = 2**25
_INPUT_NODE_LIVE_ENTRIES = 2**22
# whole EI stops growing once this many output tuples per sampled cell are distinct: a
# cell's 64 points then keep showing new tuples, and 4x the cells (the default cap) would
# still leave H(Y) undersampled
_SATURATED_FRACTION = 0.5
# the random stream that picks an output subset (memory planning); not a metric's
_SUBSET_STREAM = 5
# stage ids for the per-metric random streams (never renumber: results would change)
_STAGE = {"ei_parts": 1, "sensitivity": 2, "ei": 3, "group_ei": 4}


# --------------------------------------------------------------------------- result


@dataclass
class LayerResult:
    """What :func:`measure_layer` measured on one layer. Values in bits.

    Scalars (``None`` when not requested): ``ei``, ``ei_parts``, ``sensitivity``,
    ``degeneracy`` (= sensitivity - ei), ``integration`` (= ei - ei_parts),
    ``degeneracy_parts`` (= sensitivity - ei_parts, only when ``ei`` was not computed) and
    ``group_ei`` (= I(X_G; Y_H) when ``groups`` was given).

    ``ei_parts_matrix`` / ``sensitivity_matrix``: ``(n_in, n_out)`` arrays of the pairwise
    terms (``E[i, j] = I(X_i; Y_j)``), with 95 % intervals in ``matrix_ci[name] = (low,
    high)``. ``ci[metric] = (low, high)``: 95 % interval of each scalar. ``nodes``: one row
    per input and output neuron (see :func:`measure_layer`). ``method`` / ``samples``:
    per metric, how it was computed (``"exact"``, ``"sampled"``, ``"derived"``) and from how
    many interventions (EI_parts: draws of the whole input; sensitivity: draws *per
    input*; ei: cells x points per cell; exact: 0; derived: the larger of its terms').
    ``status``: per metric, what its interval means (:mod:`causal_widgets.engine.bounds`):
    ``"exact"`` (no sampling), ``"estimate"`` (a 95 % interval) or ``"bounds"`` (the
    interval brackets the truth; the value is only a best guess inside it).
    """

    name: str
    n_in: int
    n_out: int
    ei: float | None = None
    ei_parts: float | None = None
    sensitivity: float | None = None
    degeneracy: float | None = None
    integration: float | None = None
    degeneracy_parts: float | None = None
    group_ei: float | None = None
    ei_parts_matrix: np.ndarray | None = None
    sensitivity_matrix: np.ndarray | None = None
    matrix_ci: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    nodes: pd.DataFrame | None = None
    method: dict[str, str] = field(default_factory=dict)
    samples: dict[str, int] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """The scalar metrics that were computed, ``name -> value`` (bits)."""
        out = {}
        for m in SCALAR_METRICS:
            v = getattr(self, m)
            if v is not None:
                out[m] = float(v)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Everything, as JSON-compatible builtins (lists, floats, str, None; NaN is None).

        Keys: ``layer``, ``n_in``, ``n_out``, every scalar metric, ``ci``, ``method``,
        ``samples``, ``ei_parts_matrix`` / ``sensitivity_matrix`` (nested lists or None),
        ``matrix_ci``, ``nodes`` (list of row dicts or None), ``in_bins``, ``out_bins``,
        ``in_range``, ``out_range``, ``seed``, ``version``, ``settings``, ``warnings``.
        """
        s = self.settings
        d: dict[str, Any] = {"layer": self.name, "n_in": self.n_in, "n_out": self.n_out}
        for m in SCALAR_METRICS:
            v = getattr(self, m)
            d[m] = None if v is None else float(v)
        d["ci"] = {k: [float(v[0]), float(v[1])] for k, v in self.ci.items()}
        d["method"] = dict(self.method)
        d["samples"] = {k: int(v) for k, v in self.samples.items()}
        d["status"] = dict(self.status)
        for m in ("ei_parts_matrix", "sensitivity_matrix"):
            v = getattr(self, m)
            d[m] = None if v is None else np.asarray(v, dtype=float).tolist()
        d["matrix_ci"] = {
            k: [np.asarray(lo, float).tolist(), np.asarray(hi, float).tolist()]
            for k, (lo, hi) in self.matrix_ci.items()
        }
        d["nodes"] = None if self.nodes is None else _records(self.nodes)
        for k in ("in_bins", "out_bins", "seed", "version"):
            d[k] = s.get(k)
        d["in_range"] = list(s["in_range"]) if s.get("in_range") is not None else None
        d["out_range"] = list(s["out_range"]) if s.get("out_range") is not None else None
        d["settings"] = s
        d["warnings"] = list(self.warnings)
        return to_jsonable(d)  # one NaN policy: a value not computed (NaN, inf) is None

    def to_frame(self) -> pd.DataFrame:
        """Tidy rows, one per computed scalar metric.

        Columns: :data:`~causal_widgets.engine.tidy.TIDY_COLUMNS` (``layer, metric, value,
        ci_low, ci_high, status, method, samples, in_bins, out_bins, in_range, out_range,
        seed, version``; ranges as ``(lo, hi)`` tuples).
        """
        s = self.settings
        rows = []
        for m, v in self.metrics().items():
            lo, hi = self.ci.get(m, (math.nan, math.nan))
            rows.append(
                {
                    "layer": self.name,
                    "metric": m,
                    "value": v,
                    "ci_low": float(lo),
                    "ci_high": float(hi),
                    "status": self.status.get(m, "estimate"),
                    "method": self.method.get(m, ""),
                    "samples": int(self.samples.get(m, 0)),
                    "in_bins": s.get("in_bins"),
                    "out_bins": s.get("out_bins"),
                    "in_range": tuple(s["in_range"]),
                    "out_range": tuple(s["out_range"]),
                    "seed": s.get("seed"),
                    "version": s.get("version"),
                }
            )
        return pd.DataFrame(rows, columns=TIDY_COLUMNS)

    def __repr__(self) -> str:
        vals = ", ".join(f"{k}={v:.4f}" for k, v in self.metrics().items())
        warn = f", {len(self.warnings)} warning(s)" if self.warnings else ""
        return f"LayerResult({self.name!r}, {self.n_in}->{self.n_out}, {vals}{warn})"


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
        for row in df.to_dict(orient="records")
    ]


# --------------------------------------------------------------------------- helpers


def _stage_generator(seed: int, stage: str, device: torch.device, sub: int = 0
                     ) -> torch.Generator:
    """An independent generator per metric, seeded from ``(seed, stage)`` (and ``sub``, the
    block of a layer measured block by block: each block its own stream)."""
    entropy = [seed, _STAGE[stage]] + ([sub] if sub else [])
    state = np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]
    gen = torch.Generator(device=device)
    gen.manual_seed(int(state) >> 1)  # 63 bits: manual_seed wants a non-negative int64
    return gen


def _module_device_dtype(fn: Any) -> tuple[torch.device | None, torch.dtype | None]:
    if isinstance(fn, nn.Module):
        for t in list(fn.parameters()) + list(fn.buffers()):
            if t.is_floating_point():
                return t.device, t.dtype
        for t in fn.buffers():
            return t.device, None
    return None, None


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    return a.type != "cuda" or (a.index or 0) == (b.index or 0)


def _resolve_layer(
    layer: Any,
    in_range: Sequence[float] | None,
    out_range: Sequence[float] | None,
    name: str | None,
    in_shape: Sequence[int] | None,
) -> Layer:
    """A :class:`Layer` with validated ranges from a Layer, a module or a callable."""
    if isinstance(layer, Layer):
        if in_shape is not None and tuple(int(s) for s in in_shape) != tuple(layer.in_shape):
            raise ValueError(
                f"in_shape={tuple(in_shape)} disagrees with the Layer's in_shape "
                f"{layer.in_shape}: drop in_shape when passing a Layer."
            )
        changes: dict[str, Any] = {}
        changes["in_range"] = check_range(
            in_range if in_range is not None else layer.in_range, "in_range"
        )
        if out_range is not None:
            changes["out_range"] = check_range(out_range, "out_range")
        if name is not None:
            changes["name"] = str(name)
        # a shallow copy: the caller's Layer keeps its ranges; `extra` (a cache) is shared
        layer = dataclasses.replace(layer, **changes)
        if layer.dense is not None and not (
            np.isfinite(layer.dense.weight).all() and np.isfinite(layer.dense.bias).all()
        ):
            raise ValueError(
                f"layer {layer.name!r} has NaN or inf weights: the model has diverged; "
                "lower the learning rate or restore a finite checkpoint before measuring."
            )
        if isinstance(layer.fn, nn.Module):
            check_finite_weights(layer.fn, layer.name)
        if layer.out_range is None:
            if layer.dense is None:
                kind = layer.activation.kind if layer.activation is not None else "unknown"
                raise ValueError(
                    f"layer {layer.name!r}: the output is unbounded (activation: {kind}) "
                    "and cannot be derived; pass out_range=(lo, hi)."
                )
            derived = layer.dense.interval_bounds(layer.in_range)
            if derived[0] == derived[1]:
                derived = (derived[0] - 0.5, derived[1] + 0.5)
            layer = dataclasses.replace(layer, out_range=derived)
        layer = dataclasses.replace(layer, out_range=check_range(layer.out_range, "out_range"))
        return layer
    if not isinstance(layer, nn.Module) and not callable(layer):
        raise TypeError(
            f"expected a causal_widgets Layer, a torch.nn.Module or a callable mapping a "
            f"tensor to a tensor; got {type(layer).__name__}."
        )
    conv_dense = None
    if isinstance(layer, nn.Module) and in_shape is not None and in_range is not None:
        try:
            conv_dense = conv_dense_form(layer, tuple(int(s) for s in in_shape))
        except Exception:  # noqa: BLE001 - not a receptive-field conv; layer_from_module
            conv_dense = None  # below reports whatever is wrong with the module
        if conv_dense is not None and out_range is None:
            if conv_dense.activation.natural_range is None:
                # an unbounded conv output: its exact interval bound, as for dense layers
                lo_hi = conv_dense.interval_bounds(check_range(in_range, "in_range"))
                if lo_hi[0] == lo_hi[1]:
                    lo_hi = (lo_hi[0] - 0.5, lo_hi[1] + 0.5)
                out_range = lo_hi
    lyr = layer_from_module(
        layer,
        name=str(name) if name is not None else "layer",
        in_shape=in_shape,
        in_range=in_range,
        out_range=out_range,
    )
    if lyr.dense is None and conv_dense is not None:
        lyr.dense = conv_dense
        lyr.activation = conv_dense.activation
        lyr.note = "Conv2d on one receptive field, measured through its dense form"
    return lyr


def _pick_device(lyr: Layer, device: Any) -> tuple[torch.device, torch.dtype]:
    mod_dev, mod_dtype = _module_device_dtype(lyr.fn)
    default = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if lyr.dense is not None:
        # the dense forward runs on any device from the float64 copy of the weights
        return (torch.device(device) if device is not None else default), torch.float32
    if device is None:
        dev = mod_dev if mod_dev is not None else default
    else:
        dev = torch.device(device)
        if mod_dev is not None and not _same_device(dev, mod_dev):
            raise ValueError(
                f"layer {lyr.name!r} lives on {mod_dev} but device={str(device)!r} was "
                f"asked for: pass device={str(mod_dev)!r} or move the module with .to()."
            )
    dtype = mod_dtype if mod_dtype in (torch.float64, torch.float32) else torch.float32
    return dev, dtype


def _check_groups(groups: Any, n_in: int, n_out: int) -> tuple[list[int], list[int]] | None:
    if groups is None:
        return None
    try:
        g_in, g_out = groups
        g_in, g_out = list(g_in), list(g_out)
    except (TypeError, ValueError) as err:
        raise ValueError(
            "groups must be a pair (input_indices, output_indices), e.g. "
            f"groups=([0, 1], [2]); got {groups!r}."
        ) from err
    out = []
    for idx, n, side in ((g_in, n_in, "input"), (g_out, n_out, "output")):
        if not idx:
            raise ValueError(f"groups: the {side} group is empty; name at least one {side}.")
        clean = []
        for v in idx:
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise ValueError(f"groups: {side} index {v!r} is not an integer.")
            if not 0 <= v < n:
                raise ValueError(
                    f"groups: {side} index {v} is out of bounds: the layer has {n} "
                    f"{side}s, indices 0..{n - 1}."
                )
            clean.append(int(v))
        if len(set(clean)) != len(clean):
            raise ValueError(f"groups: the {side} group {idx} repeats an index; list each once.")
        out.append(clean)
    return out[0], out[1]


class _Tally:
    """Counts sampled output values outside ``out_range`` (clipped into edge bins)."""

    def __init__(self) -> None:
        self.outside = 0
        self.total = 0

    def add(self, outside: int, total: int) -> None:
        self.outside += outside
        self.total += total


class _Sampler:
    """Draws interventions, runs the layer and bins both sides, chunk by chunk."""

    def __init__(
        self,
        lyr: Layer,
        in_bins: int,
        out_bins: int,
        device: torch.device,
        dtype: torch.dtype,
        chunk_rows: int,
        tally: _Tally,
    ) -> None:
        self.lyr, self.in_bins, self.out_bins = lyr, in_bins, out_bins
        self.device, self.dtype, self.chunk_rows, self.tally = device, dtype, chunk_rows, tally
        self.lo, self.hi = lyr.in_range
        self.n_in, self.n_out = lyr.n_in, lyr.n_out
        # exact I(X_i; Y_j) of a dense layer, computed once if a whole-EI bound needs it
        self.exact_pairs: np.ndarray | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Binned outputs ``(N, n_out)`` of the layer at inputs ``x`` ``(N, n_in)``."""
        y = self.lyr.forward_flat(x)
        if y.ndim != 2 or y.shape[0] != x.shape[0] or y.shape[1] != self.n_out:
            raise TypeError(
                f"layer {self.lyr.name!r} returned shape {tuple(y.shape)} for {x.shape[0]} "
                f"inputs; expected ({x.shape[0]}, {self.n_out}) after flattening. Measure a "
                "module that maps each sample to one output of fixed size."
            )
        idx, outside = bin_index(y, self.lyr.out_range, self.out_bins)
        self.tally.add(outside, y.numel())
        return idx

    def uniform(self, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
        """U[0, 1) draws; an input is ``lo + u (hi - lo)``."""
        return torch.rand(shape, generator=gen, device=self.device, dtype=self.dtype)

    def offsets_in_bins(self, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
        """Positions inside a bin, in units of the bin's width: ``(k + 0.5) / 256`` for a
        uniform byte ``k`` (one random bit per bit, 8 positions per int64 draw).

        Whole EI draws most of its inputs inside given cells; a byte per input costs a
        quarter of a float32 draw. The position is the midpoint of one of 256 equal parts
        of the bin, so the binned input is exactly uniform and the output inside a cell is
        integrated by the 256-point midpoint rule (error ~1/256^2 of its variation:
        measured unchanged against benchmarks/truth.py on the 4->5, 5->5, 5->3 layers).
        """
        n = math.prod(shape)
        words = torch.randint(-(2**63), 2**63 - 1, ((n + 7) // 8,), generator=gen,
                              device=self.device, dtype=torch.int64)
        k = words.view(torch.uint8)[:n].view(shape).to(self.dtype)
        return k.add_(0.5).mul_(1.0 / 256.0)

    def input_bins(self, u: torch.Tensor) -> torch.Tensor:
        """Input bin of ``x = lo + u (hi - lo)``: ``floor(u * in_bins)``.

        Equal to ``bin_index(x)`` except when rounding ``x`` in float32 crosses a bin
        edge (probability ~1e-7), and much cheaper: no float64 copy, no range checks
        (``u`` is in [0, 1) by construction).
        """
        return (u * self.in_bins).to(torch.int64).clamp_(max=self.in_bins - 1)

    def pairs(self, est: Any, n: int, gen: torch.Generator) -> None:
        """``n`` interventions with every input uniform over in_range -> ``est.update``."""
        done = 0
        while done < n:
            k = min(self.chunk_rows, n - done)
            u = self.uniform((k, self.n_in), gen)
            x = u * (self.hi - self.lo) + self.lo
            est.update(self.input_bins(u), self.forward(x))
            done += k

    def single(self, est: Any, n: int, gen: torch.Generator) -> None:
        """``n`` interventions *per input*: x_i uniform, every other input held at 0.

        All inputs are batched into shared forward passes (rows ``r`` of input ``r // n``),
        then each input's rows go to ``est.update_single``.
        """
        total = self.n_in * n
        start = 0
        while start < total:
            stop = min(total, start + self.chunk_rows)
            rows = torch.arange(start, stop, device=self.device)
            owner = rows // n
            u = self.uniform((stop - start,), gen)
            x = torch.zeros((stop - start, self.n_in), device=self.device, dtype=self.dtype)
            x[torch.arange(stop - start, device=self.device), owner] = (
                u * (self.hi - self.lo) + self.lo
            )
            x_idx = self.input_bins(u)
            y_idx = self.forward(x)
            first, last = start // n, (stop - 1) // n
            for i in range(first, last + 1):
                a = max(start, i * n) - start
                b = min(stop, (i + 1) * n) - start
                est.update_single(i, x_idx[a:b], y_idx[a:b])
            start = stop

    def cells(
        self,
        est: Any,
        cells: torch.Tensor,
        m: int,
        gen: torch.Generator,
        g_in: list[int],
        g_out: list[int],
    ) -> None:
        """``m`` points inside each cell of the inputs ``g_in`` -> ``est.update``.

        Inputs in ``g_in`` are uniform inside their cell's bin; every other input is
        uniform over the whole in_range (the intervention covers all inputs, and the
        ones outside the group act as noise on ``Y_H``).
        """
        width = (self.hi - self.lo) / self.in_bins
        per = max(1, self.chunk_rows // m)
        gi = torch.as_tensor(g_in, device=self.device)
        go = torch.as_tensor(g_out, device=self.device)
        full_in = len(g_in) == self.n_in and g_in == list(range(self.n_in))
        full_out = len(g_out) == self.n_out and g_out == list(range(self.n_out))
        for c0 in range(0, cells.shape[0], per):
            c = cells[c0 : c0 + per]
            if full_in:
                u = self.offsets_in_bins((c.shape[0], m, self.n_in), gen)
                x = self.lo + (c[:, None, :].to(self.dtype) + u) * width
            else:
                u = self.uniform((c.shape[0], m, self.n_in), gen)
                x = self.lo + u * (self.hi - self.lo)
                x[:, :, gi] = self.lo + (c[:, None, :].to(self.dtype) + u[:, :, gi]) * width
            y_idx = self.forward(x.reshape(-1, self.n_in)).reshape(c.shape[0], m, self.n_out)
            if not full_out:
                y_idx = y_idx[:, :, go]
            est.update(c, y_idx)


def _width(est: Any) -> float:
    w = float(est.ci_high) - float(est.ci_low)
    return w if math.isfinite(w) else math.inf


def _next_size(n: int, width: float, tol: float) -> int:
    """The next sample size: the one the current CI width predicts, at least doubled.

    A CI width scales as ``n**-1/2`` (as ``n**-1`` near zero information, where this
    over-predicts, which only costs time); aiming 20 % past the prediction and growing
    by 2x..16x per round keeps the number of (costly) ``compute()`` calls small.
    """
    if not math.isfinite(width):
        return 2 * n
    want = math.ceil(n * 1.2 * (width / tol) ** 2)
    return int(min(16 * n, max(2 * n, want)))


def _grow(
    add: Callable[[int], None],
    compute: Callable[[], Any],
    total_of: Callable[[Any], Any],
    *,
    fixed: int | None,
    start: int,
    cap: int,
    tol: float,
    label: str,
    unit: str,
    warns: list[str],
    hopeless: Callable[[Any], bool] | None = None,
) -> tuple[Any, int]:
    """Add samples (growing geometrically) until the total's 95 % CI is narrower than ``tol``.

    ``fixed``: add exactly that many and stop. ``hopeless(result)``: stop early, because
    more samples of this kind cannot make the estimate valid (its value is then reported
    as bounds). Returns (result, samples used).
    """
    if fixed is not None:
        add(fixed)
        return compute(), fixed
    n, target = 0, min(start, cap)
    while True:
        add(target - n)
        n = target
        res = compute()
        width = _width(total_of(res))
        if width < tol or (hopeless is not None and hopeless(res)):
            return res, n
        if n >= cap:
            warns.append(
                f"{label}: the 95 % CI is still {width:.4g} bits wide after {n} {unit} "
                f"(the max_samples cap); tol={tol} bits was not reached. Raise max_samples, "
                "loosen tol, or use fewer bins."
            )
            return res, n
        target = min(_next_size(n, width, tol), cap)


def _saturated(r: Any) -> bool:
    """Whole EI whose output tuples are mostly new in every cell: H(Y) is beyond what a few
    times more cells can show, so growing to the cap would only cost time; the value is
    reported as bounds (see _whole_metric)."""
    return bool(r.undersampled) and r.distinct_outputs >= _SATURATED_FRACTION * r.cells


def _estimate_parts(est: Any) -> tuple[float, tuple[float, float], list[str]]:
    return (
        float(est.value),
        (float(est.ci_low), float(est.ci_high)),
        list(getattr(est, "warnings", []) or []),
    )


def _exact_range_warning(lyr: Layer, dense: DenseForm, single: bool) -> str | None:
    """Warn when the exact engine clips part of an output's distribution at out_range."""
    lo, hi = lyr.in_range
    w, b = dense.weight, dense.bias
    if single:  # z = b_j + w_ji x_i, every other input at 0
        z_lo = np.minimum(w * lo, w * hi) + b[:, None]
        z_hi = np.maximum(w * lo, w * hi) + b[:, None]
    else:
        z_lo = np.minimum(w * lo, w * hi).sum(axis=1) + b
        z_hi = np.maximum(w * lo, w * hi).sum(axis=1) + b
    y_lo = dense.activation.apply_numpy(z_lo)
    y_hi = dense.activation.apply_numpy(z_hi)
    o_lo, o_hi = lyr.out_range
    eps = 1e-9 * max(1.0, abs(o_lo), abs(o_hi))
    if (y_lo < o_lo - eps).any() or (y_hi > o_hi + eps).any():
        what = "sensitivity" if single else "ei_parts"
        return (
            f"{what} (exact): outputs can reach [{float(y_lo.min()):.4g}, "
            f"{float(y_hi.max()):.4g}], beyond out_range={lyr.out_range}; values outside "
            "are clipped into the edge bins. Widen out_range to measure them."
        )
    return None


# --------------------------------------------------------------------------- measure


def measure_layer(
    layer: Any,
    *,
    in_range: Sequence[float] | None = None,
    out_range: Sequence[float] | None = None,
    bins: int = 8,
    in_bins: int | None = None,
    out_bins: int | None = None,
    metrics: str | Iterable[str] | None = None,
    method: str = "auto",
    interventions: int | None = None,
    sensitivity_interventions: int | None = None,
    cells: int | str | None = None,
    points_per_cell: int | None = None,
    tol: float = 0.01,
    max_samples: int | None = None,
    seed: int = 0,
    device: Any = None,
    chunk_size: int | None = None,
    group: tuple[Sequence[int], Sequence[int]] | None = None,
    name: str | None = None,
    in_shape: Sequence[int] | None = None,
    cell_limit: int = CELL_LIMIT,
    memory_budget: int | None = None,
    settings: MeasureSettings | None = None,
    **old_names: Any,
) -> LayerResult:
    """Measure EI, EI_parts, sensitivity, degeneracy and integration of one layer (bits).

    Parameters
    ----------
    layer
        A :class:`~causal_widgets.engine.layer.Layer`, an ``nn.Module`` or a callable mapping a
        tensor ``(N, *in_shape)`` to a tensor. ``Sequential(Linear, act)`` with a monotone
        ``act`` (and ``Conv2d`` + act on exactly one receptive field) is *dense*: its
        EI_parts and sensitivity are computed exactly.
    in_range, out_range
        ``(lo, hi)`` of every input (required for a module) / output. ``out_range``
        defaults to the last activation's range (sigmoid (0, 1), tanh (-1, 1)), or the
        exact interval bound of a dense layer with an unbounded activation; otherwise it
        must be given. Sampled outputs outside it are clipped and reported in ``warnings``.
    bins, in_bins, out_bins
        Equal-width bins per neuron (``in_bins``/``out_bins`` default to ``bins``; >= 2).
    metrics
        Subset of ``ei, ei_parts, sensitivity, degeneracy, integration, nodes`` (default
        all). A metric's inputs are computed too (degeneracy needs sensitivity and ei;
        integration needs ei and ei_parts; nodes needs the whole-EI run).
    method
        ``"auto"``: exact EI_parts and sensitivity for dense layers, sampled otherwise;
        ``"exact"``: require the exact engine (``ValueError`` if the layer is not dense with
        a monotone activation); ``"sampled"``: always sample. Whole EI is always sampled.
    interventions
        (Old name: ``samples``.) ``None``: grow the number of sampled EI_parts
        interventions (at least doubling) until each requested total's 95 % CI is
        narrower than ``tol`` (up to ``max_samples``). An int: exactly that many.
    sensitivity_interventions
        (Old name: ``sensitivity_samples``.) Interventions *per input* for sampled
        sensitivity (``None``: adaptive as above).
    cells, points_per_cell
        Whole EI: the number of sampled input cells (``"all"`` to enumerate them; default:
        all when ``in_bins ** n_in <= cell_limit``, else adaptive) and points drawn inside
        each (default: 64 for sampled cells; growing from 16 when all cells are
        enumerated). Both fixed: one run, no adaptation.
    tol, max_samples
        Target CI width (bits) and cap on forward evaluations per metric (default 2**17).
        Reaching the cap without meeting ``tol`` is a warning (with the numbers), not an
        error: the result keeps its wider interval.
    seed
        Seeds one ``torch.Generator`` per metric; the global RNG is not used.
    device, chunk_size
        Where to sample (default: the module's device, or cuda when available for dense
        layers) and how many rows per forward pass (default: a memory-based choice).
    memory_budget
        Bytes the measurement's tables may take (default 4 GiB), planned before anything
        is allocated (:mod:`causal_widgets.engine.memory`). A layer whose sampled pairwise
        tables do not fit is measured on a seeded random subset of its outputs that
        does: EI_parts and sensitivity scaled up with an interval over the subset, whole
        EI as ``bounds`` (I(X; Y_S) is a lower bound), recorded in
        ``settings["output_subset"]`` and said in ``warnings``. One that cannot fit even
        so raises a ``ValueError`` naming the layer, the size and what to change.
    group
        (Old name: ``groups``.) ``(input_indices, output_indices)``: also estimate
        ``r.group_ei`` = I(X_G; Y_H) under the full intervention (cell-conditional, inputs
        outside G as noise).
    name, in_shape
        The layer's name in tables; one sample's input shape (e.g. ``(C, k, k)`` for a
        conv receptive field) when it cannot be inferred.
    settings
        A :class:`~causal_widgets.engine.settings.MeasureSettings` holding every setting
        above (bins ... memory_budget) at once; keywords that differ from their defaults
        override it.

    Returns
    -------
    LayerResult
        ``nodes`` (when requested) has one row per neuron: ``side`` (``"input"`` /
        ``"output"``), ``node`` (index), ``ei`` (I(X_i; Y) for inputs, I(X; Y_j) for
        outputs), ``ei_parts`` / ``sensitivity`` (row / column sums of the matrices),
        ``ei_ci_low`` / ``ei_ci_high`` and ``ei_status`` (what that interval means).
        ``status[metric]`` says the same of each scalar: ``"exact"``, ``"estimate"`` (a
        95 % interval) or ``"bounds"`` (whole EI of a layer too wide for its output
        entropy to be sampled is bracketed: below by the pairwise terms, above by the
        output marginals; see :mod:`causal_widgets.engine.bounds`).
    """
    if "groups" in old_names:  # the old name of ``group``
        if group is not None:
            raise TypeError("measure_layer() got both 'groups' and 'group': pass group= only.")
        group = old_names.pop("groups")
    given = {
        "bins": bins, "in_bins": in_bins, "out_bins": out_bins, "metrics": metrics,
        "method": method, "interventions": interventions,
        "sensitivity_interventions": sensitivity_interventions, "cells": cells,
        "points_per_cell": points_per_cell, "tol": tol, "max_samples": max_samples,
        "seed": seed, "device": device, "chunk_size": chunk_size, "cell_limit": cell_limit,
        "memory_budget": memory_budget,
    }  # fmt: skip
    changed = {k: v for k, v in given.items() if v is not _SETTING_DEFAULTS[k]}
    changed.update(old_names)  # old names (samples=...) or misspelt ones: checked here
    if settings is None:
        settings = MeasureSettings.from_kwargs(changed)
    elif not isinstance(settings, MeasureSettings):
        raise TypeError(
            f"settings must be a MeasureSettings (causal_widgets.engine.settings); got "
            f"{type(settings).__name__}: pass MeasureSettings(**your_keywords)."
        )
    elif changed:
        settings = settings.replace(**changed)

    fn = layer.fn if isinstance(layer, Layer) else layer
    with untouched(fn):
        lyr = _resolve_layer(layer, in_range, out_range, name, in_shape)
        return _measure_planned(lyr, settings, group)


def _measure_planned(lyr: Layer, s: MeasureSettings, group: Any) -> LayerResult:
    """Plan the memory first; measure the whole layer, or a seeded subset of its outputs."""
    pairs = {"ei_parts", "sensitivity"} & set(s.computed)
    dense = lyr.dense if lyr.dense is not None and lyr.dense.activation.monotone else None
    exact = bool(pairs) and dense is not None and s.method in ("auto", "exact")
    p = memory.plan(lyr.name, lyr.n_in, lyr.n_out, s.in_bins, s.out_bins,
                    sampled_pairs=bool(pairs) and not exact, exact_pairs=exact,
                    budget=s.memory_budget)
    if p.outputs == 0:
        raise ValueError(p.why)
    if not p.subset:
        return _measure(lyr, s, group)
    if group is not None:
        raise ValueError(
            f"group= cannot be measured on layer {lyr.name!r}: its {lyr.n_out} outputs do "
            f"not fit memory_budget={memory.human_bytes(s.memory_budget)} (only {p.outputs} "
            "do, so it would be measured on a subset of them); raise memory_budget or use "
            "fewer bins."
        )
    rng = np.random.default_rng(np.random.SeedSequence([s.seed, _SUBSET_STREAM]))
    outputs = sorted(int(j) for j in rng.choice(lyr.n_out, size=p.outputs, replace=False))
    res = _measure(_output_subset(lyr, outputs), s, None)
    return _scale_subset(res, lyr, outputs, s, p)


def _output_subset(lyr: Layer, outputs: list[int]) -> Layer:
    """The layer restricted to ``outputs`` (a flat index list)."""
    index = torch.as_tensor(outputs)
    fn = lyr.fn

    def sub(x: torch.Tensor) -> torch.Tensor:
        y = fn(x)
        return y.reshape(y.shape[0], -1)[:, index.to(y.device)]

    dense = None
    if lyr.dense is not None:
        d = lyr.dense
        dense = DenseForm(d.weight[outputs], d.bias[outputs], d.activation)
    return dataclasses.replace(lyr, fn=sub, out_shape=(len(outputs),), dense=dense)


def _scale_subset(res: LayerResult, lyr: Layer, outputs: list[int], s: MeasureSettings,
                  p: memory.MemoryPlan) -> LayerResult:
    """Whole-layer values from a random subset S of k of the m outputs.

    EI_parts and sensitivity are sums over outputs: estimated as (m / k) sum_{j in S} of
    their column sums, with a finite-population interval from the spread across outputs
    (simple random sampling without replacement) added to the scaled estimation
    interval. Whole EI of the subset, I(X; Y_S), is a lower bound of the layer's EI: it is
    reported as ``bounds`` up to min(n_in log2(in_bins), m log2(out_bins)).
    """
    m, k = lyr.n_out, len(outputs)
    scale = m / k
    for metric in ("ei_parts", "sensitivity"):
        mat = getattr(res, f"{metric}_matrix")
        if getattr(res, metric) is None or mat is None:
            continue
        cols = np.asarray(mat, dtype=np.float64).sum(axis=0)
        total = scale * float(cols.sum())
        spread = m * float(cols.std(ddof=1)) / math.sqrt(k) * math.sqrt(1.0 - k / m)
        lo, hi = res.ci[metric]
        value = float(getattr(res, metric))
        ci = (total - _Z975 * spread - scale * (value - lo),
              total + _Z975 * spread + scale * (hi - value))
        _set_metric(res, metric, total, ci, res.method[metric], res.samples[metric],
                    "estimate")
    if res.ei is not None:
        lo, _ = res.ci["ei"]
        high = min(lyr.n_in * math.log2(s.in_bins), m * math.log2(s.out_bins))
        _set_metric(res, "ei", float(res.ei), (max(lo, 0.0), high), res.method["ei"],
                    res.samples["ei"], "bounds")
    for derived in ("degeneracy", "integration", "degeneracy_parts"):
        for table in (res.ci, res.method, res.samples, res.status):
            table.pop(derived, None)
        setattr(res, derived, None)
    _derive(res)
    res.n_out = m
    if res.nodes is not None:
        out_rows = res.nodes["side"] == "output"
        res.nodes.loc[out_rows, "node"] = np.asarray(outputs)[
            res.nodes.loc[out_rows, "node"].to_numpy()]
    res.settings["output_subset"] = {"outputs": outputs, "of": m, "seed": s.seed,
                                     "needed_bytes": p.needed, "budget": p.budget}
    res.settings["out_shape"] = tuple(lyr.out_shape)
    res.warnings.append(
        f"layer {lyr.name!r}: its {m} outputs need {memory.human_bytes(p.needed)} of tables, "
        f"over memory_budget={memory.human_bytes(p.budget)}: measured on a random subset of "
        f"{k} outputs (seed {s.seed}; settings['output_subset']). EI_parts and sensitivity "
        "are scaled up with an interval over the subset; EI is bounds. Raise memory_budget "
        "to measure every output."
    )
    return res


# a setting keyword counts as given when it is not its default (the very same object)
_SETTING_DEFAULTS = {
    k: p.default for k, p in inspect.signature(measure_layer).parameters.items()
    if k in MeasureSettings.keywords()
}


def _measure(lyr: Layer, s: MeasureSettings, group: Any) -> LayerResult:
    """Measure a resolved layer: pairwise metrics, whole EI (and group EI), derived ones."""
    grp = _check_groups(group, lyr.n_in, lyr.n_out)
    dense = lyr.dense
    if dense is not None and not dense.activation.monotone:
        dense = None  # a hand-made Layer could carry a non-monotone DenseForm
    if s.method == "exact" and dense is None:
        act = lyr.dense.activation if lyr.dense is not None else lyr.activation
        why = (
            f"its activation ({act.kind}) is not monotone"
            if act is not None and not act.monotone
            else "it is not act(W x + b) (Linear, or Conv2d on one receptive field, plus "
            "a monotone elementwise activation)"
        )
        raise ValueError(
            f"method='exact' cannot measure layer {lyr.name!r}: {why}. "
            "Use method='sampled' (or 'auto')."
        )
    dev, dtype = _pick_device(lyr, s.device)
    chunk_size = s.chunk_size or _default_chunk(lyr, s, dev)
    warns: list[str] = []
    tally = _Tally()
    sampler = _Sampler(lyr, s.in_bins, s.out_bins, dev, dtype, chunk_size, tally)
    res = LayerResult(name=lyr.name, n_in=lyr.n_in, n_out=lyr.n_out)

    pool_k = _exact_max_pool(lyr, s)
    for metric in ("ei_parts", "sensitivity"):
        if metric in s.computed:
            if pool_k:
                _exact_pool_pairwise(res, metric, lyr, s, pool_k)
                continue
            if dense is not None and s.method in ("auto", "exact"):
                try:
                    _exact_pairwise(res, metric, lyr, dense, s, warns)
                    continue
                except ValueError as err:
                    # weights too disparate for the exact engine's error control: with
                    # method="auto" the layer is still measured, by sampling
                    if s.method == "exact" or "exact engine cannot" not in str(err):
                        raise
                    warns.append(f"{metric}: {err} Sampled instead (method='auto').")
            _sampled_pairwise(res, metric, sampler, s, warns)

    # whole EI and group EI: one path, the cell-conditional estimator on (inputs, outputs)
    whole = None
    whole_info: dict[str, Any] = {}
    if "ei" in s.computed and pool_k and s.in_bins**pool_k <= s.cell_limit:
        whole, whole_info = _exact_pool_whole(res, lyr, s, pool_k)
    elif "ei" in s.computed:
        every = (list(range(lyr.n_in)), list(range(lyr.n_out)))
        nodes = "nodes" in s.metrics
        blocks = weight_blocks(lyr.dense.weight) if lyr.dense is not None else None
        if blocks is not None and not _one_block_of_all(blocks, lyr.n_in, lyr.n_out):
            whole, whole_info = _whole_by_blocks(res, blocks, sampler, s, warns, nodes)
        else:
            whole, whole_info = _whole_metric(res, "ei", sampler, every, s, warns, nodes=nodes)
    if grp is not None:
        _, ginfo = _whole_metric(res, "group_ei", sampler, grp, s, warns)
        whole_info["group"] = {"inputs": grp[0], "outputs": grp[1], **ginfo}

    _derive(res)
    if "nodes" in s.metrics:
        res.nodes = _nodes_frame(res, whole, lyr.n_in, lyr.n_out)
    if tally.outside:
        frac = tally.outside / max(tally.total, 1)
        warns.append(
            f"{frac:.3%} of sampled output values ({tally.outside} of {tally.total}) fell "
            f"outside out_range={lyr.out_range} and were clipped into the edge bins; widen "
            "out_range to measure them."
        )
    res.warnings = list(dict.fromkeys(warns))  # results repeat some in their Estimates
    res.settings = _settings_record(res, lyr, s, dev, chunk_size, whole_info)
    return res


def _exact_max_pool(lyr: Layer, s: MeasureSettings) -> int:
    """The window size of a max-pool layer the exact max-pool terms apply to, else 0."""
    k = int(lyr.extra.get("max_pool", 0) or 0)
    if not k or s.method == "sampled" or lyr.n_in != k or lyr.n_out != 1:
        return 0
    return k


def _exact_pool_pairwise(res: LayerResult, metric: str, lyr: Layer, s: MeasureSettings,
                         k: int) -> None:
    """EI_parts / sensitivity of one max-pool window, exactly (exact_max_pool_mi)."""
    from causal_widgets.engine.exact import exact_max_pool_mi

    mat = np.asarray(exact_max_pool_mi(
        k, lyr.in_range, s.in_bins, lyr.out_range, s.out_bins,
        intervention="single" if metric == "sensitivity" else "all"), dtype=np.float64)
    total = float(mat.sum())
    _set_metric(res, metric, total, (total, total), "exact", 0)
    setattr(res, f"{metric}_matrix", mat)
    res.matrix_ci[metric] = (mat.copy(), mat.copy())


def _exact_pool_whole(res: LayerResult, lyr: Layer, s: MeasureSettings, k: int
                      ) -> tuple[Any, dict[str, Any]]:
    """Whole EI of one max-pool window by enumerating its cells (exact_max_pool_ei); its
    nodes are exact too: one output (I(X; Y) is EI) and I(X_i; Y) its pairwise terms."""
    from causal_widgets.engine.estimate import Estimate, WholeResult
    from causal_widgets.engine.exact import exact_max_pool_ei, exact_max_pool_mi

    v = exact_max_pool_ei(k, lyr.in_range, s.in_bins, lyr.out_range, s.out_bins,
                          cell_limit=s.cell_limit)
    _set_metric(res, "ei", v, (v, v), "exact", 0)
    pairs = np.asarray(exact_max_pool_mi(k, lyr.in_range, s.in_bins, lyr.out_range,
                                         s.out_bins))[:, 0]
    ins = [Estimate(float(p), float(p), float(p), 0, float(p), status="exact") for p in pairs]
    outs = [Estimate(v, v, v, 0, v, status="exact")]
    whole = WholeResult(Estimate(v, v, v, 0, v, status="exact"), outs, ins, [], 0, 0)
    return whole, {"cells": "all", "n_cells": s.in_bins**k, "exact": "max pool"}


def _default_chunk(lyr: Layer, s: MeasureSettings, dev: torch.device) -> int:
    """Rows per forward pass: bound the one-hot / index tensors the estimators build."""
    width = lyr.n_in * s.in_bins + lyr.n_out * s.out_bins
    budget = 2**27 if dev.type == "cuda" else 2**24
    return int(min(2**18 if dev.type == "cuda" else 2**16, max(256, budget // width)))


def _exact_pairwise(
    res: LayerResult, metric: str, lyr: Layer, dense: DenseForm, s: MeasureSettings,
    warns: list[str],
) -> None:
    """EI_parts (all inputs intervened) or sensitivity (one at a time), computed exactly."""
    from causal_widgets.engine.exact import exact_pair_mi

    single = metric == "sensitivity"
    mat = np.asarray(
        exact_pair_mi(
            dense, lyr.in_range, s.in_bins, lyr.out_range, s.out_bins,
            intervention="single" if single else "all",
        ),
        dtype=np.float64,
    )  # fmt: skip
    total = float(mat.sum())
    _set_metric(res, metric, total, (total, total), "exact", 0)
    setattr(res, f"{metric}_matrix", mat)
    res.matrix_ci[metric] = (mat.copy(), mat.copy())
    w = _exact_range_warning(lyr, dense, single)
    if w:
        warns.append(w)


def _sampled_pairwise(
    res: LayerResult, metric: str, sampler: _Sampler, s: MeasureSettings, warns: list[str]
) -> None:
    """EI_parts or sensitivity from sampled interventions, grown until ``tol`` is met."""
    from causal_widgets.engine.estimators import PairwiseMI

    n_in = sampler.lyr.n_in
    est = PairwiseMI(n_in, sampler.lyr.n_out, s.in_bins, s.out_bins, device=sampler.device)
    gen = _stage_generator(s.seed, metric, sampler.device)
    if metric == "sensitivity":

        def add(k: int) -> None:
            sampler.single(est, k, gen)

        fixed, start = s.sensitivity_interventions, _START_SENS
        unit_cap, unit = max(start, s.max_samples // n_in), "interventions per input"
        keyword = "sensitivity_interventions"
    else:

        def add(k: int) -> None:
            sampler.pairs(est, k, gen)

        fixed, start, unit_cap, unit = s.interventions, _START_PAIRS, s.max_samples, "interventions"
        keyword = "interventions"
    _check_pairwise_budget(metric, fixed, unit_cap, s, keyword)
    pres, n_used = _grow(
        add, est.compute, lambda r: r.total, fixed=fixed, start=start, cap=unit_cap,
        tol=s.tol, label=f"{metric} (sampled)", unit=unit, warns=warns,
    )  # fmt: skip
    total, ci, w2 = _estimate_parts(pres.total)
    _set_metric(res, metric, total, ci, "sampled", int(n_used))
    setattr(res, f"{metric}_matrix", np.asarray(pres.matrix, dtype=np.float64))
    res.matrix_ci[metric] = (
        np.asarray(pres.matrix_ci_low, dtype=np.float64),
        np.asarray(pres.matrix_ci_high, dtype=np.float64),
    )
    warns.extend(f"{metric}: {w}" for w in list(getattr(pres, "warnings", [])) + w2)


def _check_pairwise_budget(
    metric: str, fixed: int | None, cap: int, s: MeasureSettings, keyword: str
) -> None:
    """The settings refused a fixed budget too small for a valid interval; a growing one
    is refused here when ``max_samples`` caps it below that size."""
    if fixed is None:
        check_pairwise_budget(keyword, cap, s.in_bins, s.out_bins,
                              given_as=f"{metric} (sampled): max_samples={s.max_samples}")


def _whole_metric(
    res: LayerResult, metric: str, sampler: _Sampler, group: tuple[list[int], list[int]],
    s: MeasureSettings, warns: list[str], nodes: bool = False, sub: int = 0,
    record: bool = True, pair_low: np.ndarray | None = None,
) -> tuple[Any, dict[str, Any]]:
    """``ei`` (every input and output) or ``group_ei`` (a group): estimate and record it.

    The interval is widened by the half-points bias allowance on the side it points to,
    then checked against the bounds of :mod:`causal_widgets.engine.bounds`: when H(Y) is
    undersampled, or the interval misses the bounds, the value is reported as ``bounds``.
    ``sub`` picks the random stream (a block's); ``record=False`` only returns
    ``info["value"]`` etc. (for a block's partial sum); ``pair_low``: the group's pairwise
    lower bounds, when the caller has them (a block measured on its own sub-layer).
    """
    wres, info = _whole_ei(sampler, group[0], group[1], metric, s, warns,
                           with_inputs=nodes, with_outputs=nodes, sub=sub)
    value, (lo, hi), w = _estimate_parts(wres.ei)
    a = info["bias_allowance"]
    lo, hi = lo - max(a, 0.0), hi + max(-a, 0.0)
    def bounds(exact_pairs: bool) -> tuple[float, float]:
        return whole_ei_bounds(
            len(group[0]), len(group[1]), s.in_bins, s.out_bins,
            pair_low=(pair_low if pair_low is not None
                      else _pair_low(res, sampler, s, group, exact_pairs)),
            output_node_low=[e.ci_low for e in wres.output_nodes] or None,
            output_entropy_high=(None if wres.output_counts is None
                                 else entropy_upper(wres.output_counts)),
            conditional_low=None if wres.conditional is None else wres.conditional.ci_low,
        )  # fmt: skip

    # the exact pairwise terms of a dense layer cost extra when EI_parts was not asked
    # for: computed only when the estimate is in doubt
    b_lo, b_hi = bounds(exact_pairs=wres.undersampled)
    info["bounds"] = [b_lo, b_hi]
    status = "estimate"
    if wres.undersampled or hi < b_lo or lo > b_hi:
        # the estimate cannot be trusted (saturated H(Y)) or contradicts what the bounds
        # prove: report the bracket, with the estimate moved inside it as the best guess
        if wres.undersampled and sub == 0:
            b_lo = max(b_lo, _subset_lower_bound(sampler, group, wres, info, metric, s, warns))
            b_hi = max(b_hi, b_lo)
            info["bounds"] = [b_lo, b_hi]
        status, lo, hi = "bounds", b_lo, b_hi
        warns.append(
            f"{metric}: whole EI of {len(group[0])} inputs x {len(group[1])} outputs cannot "
            f"be estimated from {info['samples']} samples (the estimate {value:.4g} bits "
            f"{'saturates' if wres.undersampled else 'contradicts the bounds'}); reported "
            f"as bounds [{b_lo:.4g}, {b_hi:.4g}] bits (status 'bounds')."
        )
        _bound_input_nodes(wres, _pair_low(res, sampler, s, group, True), s.in_bins, b_hi)
    else:  # both intervals hold the truth: so does their intersection
        lo, hi = max(lo, b_lo), min(hi, b_hi)
    value = min(max(value, lo), hi)
    info.update(value=value, ci=[lo, hi], status=status)
    if record:
        _set_metric(res, metric, value, (lo, hi), "sampled", info["samples"], status)
    warns.extend(f"{metric}: {x}" for x in list(getattr(wres, "warnings", [])) + w)
    return wres, info


_Z975, _Z9995 = 1.959964, 3.290527  # standard normal quantiles
# stream of the output-subset lower bound's estimate (apart from every block's stream)
_SUBSET_BOUND_SUB = 1 << 20


def _subset_lower_bound(
    sampler: _Sampler, group: tuple[list[int], list[int]], wres: Any, info: dict[str, Any],
    metric: str, s: MeasureSettings, warns: list[str],
) -> float:
    """A sampled lower bound of I(X_G; Y_H): I(X_G; Y_S) for the subset S of outputs whose
    joint entropy the same number of cells can still show (I(X; Y) >= I(X; Y_S) for any S).

    S takes the outputs with the largest marginal entropies while their sum stays 3 bits
    below log2(cells), so the tuples of S are far fewer than the cells; its 95 % interval's
    low end is the bound (0 if S would be empty or is itself undersampled). It uses a
    quarter of the main estimate's cells: the bound is a cheap addition, not a second EI.
    """
    counts = wres.output_counts
    n_cells = int(info.get("n_cells", 0)) // 4
    if counts is None or n_cells < 64 or len(group[1]) < 2:
        return 0.0
    h = np.array([float(entropy_upper(counts[j : j + 1], z=0.0)[0])
                  for j in range(counts.shape[0])])
    room, chosen = math.log2(n_cells) - 3.0, []
    for j in np.argsort(-h):
        if h[j] <= 0 or h[chosen].sum() + h[j] > room:
            continue
        chosen.append(int(j))
    if not chosen or len(chosen) == len(group[1]):
        return 0.0
    outputs = [group[1][j] for j in sorted(chosen)]
    fixed = s.replace(cells=n_cells, points_per_cell=info["points_per_cell"])
    sub_res, _ = _whole_ei(sampler, group[0], outputs, metric, fixed, [],
                           sub=_SUBSET_BOUND_SUB)
    if sub_res.undersampled:
        return 0.0
    low = float(sub_res.ei.ci_low)
    info["subset_bound"] = {"outputs": outputs, "low": low}
    warns.append(f"{metric}: lower bound {low:.4g} bits from I(X; Y_S), the {len(outputs)} "
                 "outputs whose tuples the cells can show (settings['whole_ei']"
                 "['subset_bound']).")
    return max(low, 0.0)


def _bound_input_nodes(wres: Any, pair_low: np.ndarray | None, in_bins: int,
                       ei_high: float) -> None:
    """I(X_i; Y) needs H(Y) as EI does: when that is undersampled, bracket each input
    node by max_j I(X_i; Y_j) <= I(X_i; Y) <= min(H(X_i), EI's upper bound)."""
    high = min(math.log2(in_bins), ei_high)
    for i, e in enumerate(wres.input_nodes):
        low = 0.0
        if pair_low is not None:
            low = float(np.nan_to_num(pair_low[i], nan=0.0).clip(min=0.0).max())
        e.ci_low, e.ci_high = low, max(high, low)
        guess = e.value if math.isfinite(e.value) else low  # none estimated: the sure part
        e.value, e.status = min(max(guess, e.ci_low), e.ci_high), "bounds"


def _pair_low(
    res: LayerResult, sampler: _Sampler, s: MeasureSettings, group: tuple[list[int], list[int]],
    exact_pairs: bool,
) -> np.ndarray | None:
    """Lower bounds of the group's pairwise terms I(X_i; Y_j), when EI_parts has them, or
    (``exact_pairs``) exactly from the dense form when it has not been computed."""
    low = res.matrix_ci.get("ei_parts", (None, None))[0]
    if low is not None and res.method.get("ei_parts") == "sampled":
        # a sampled term's 95 % interval, moved out to a one-sided 99.95 % lower bound: a
        # node's bracket rests on one term, and a layer has many nodes
        mat = np.asarray(res.ei_parts_matrix)
        low = mat - (mat - np.asarray(low)) * (_Z9995 / _Z975)
    if low is None and exact_pairs:
        low = _exact_pairs(res, sampler, s)
    return None if low is None else np.asarray(low)[np.ix_(group[0], group[1])]


def _exact_pairs(res: LayerResult, sampler: _Sampler, s: MeasureSettings) -> np.ndarray | None:
    """The exact I(X_i; Y_j) matrix of a monotone dense layer (EI_parts' own when it was
    computed exactly, else computed once here); None for other layers."""
    if res.method.get("ei_parts") == "exact":
        return res.ei_parts_matrix
    dense, lyr = sampler.lyr.dense, sampler.lyr
    if dense is None or not dense.activation.monotone:
        return None
    if sampler.exact_pairs is None:
        from causal_widgets.engine.exact import exact_pair_mi

        sampler.exact_pairs = exact_pair_mi(dense, lyr.in_range, s.in_bins, lyr.out_range,
                                            s.out_bins)
    return sampler.exact_pairs


def _block_sampler(sampler: _Sampler, group: tuple[list[int], list[int]]) -> _Sampler:
    """A sampler over one block of a dense layer: ``act(W[H, G] x_G + b[H])``."""
    dense, lyr = sampler.lyr.dense, sampler.lyr
    assert dense is not None  # blocks come from the dense form
    gi, go = group
    w_np, b_np = dense.weight[np.ix_(go, gi)], dense.bias[go]
    w = torch.as_tensor(w_np, dtype=sampler.dtype, device=sampler.device)
    b = torch.as_tensor(b_np, dtype=sampler.dtype, device=sampler.device)
    act = dense.activation

    def fn(x: torch.Tensor) -> torch.Tensor:
        return act(x @ w.T + b)

    part = Layer(f"{lyr.name}[block]", fn, (len(gi),), (len(go),), lyr.in_range,
                 lyr.out_range, dense=DenseForm(w_np, b_np, act), activation=act)
    return _Sampler(part, sampler.in_bins, sampler.out_bins, sampler.device, sampler.dtype,
                    sampler.chunk_rows, sampler.tally)


def _one_block_of_all(blocks: list[tuple[list[int], list[int]]], n_in: int, n_out: int) -> bool:
    return len(blocks) == 1 and len(blocks[0][0]) == n_in and len(blocks[0][1]) == n_out


def _whole_by_blocks(
    res: LayerResult, blocks: list[tuple[list[int], list[int]]], sampler: _Sampler,
    s: MeasureSettings, warns: list[str], nodes: bool,
) -> tuple[Any, dict[str, Any]]:
    """Whole EI of a layer whose weights split into independent blocks: the exact sum of
    the blocks' EIs (docs/metrics.md). A one-input, one-output block is its exact pairwise
    term; every other block is measured as a group, on its own random stream, to ``tol /
    sqrt(blocks)``. Unused inputs and constant outputs add 0.

    The sum's interval: the estimates' errors are independent (own streams), so their
    half-widths add in quadrature, each side on its own; bounds add linearly.
    """
    from causal_widgets.engine.estimate import Estimate, WholeResult

    k = len(blocks)
    s_block = s.replace(tol=s.tol / math.sqrt(k)) if k > 1 else s
    total, samples = 0.0, 0
    bound_lo = bound_hi = 0.0  # linear sums of the bounded blocks' sides (about value)
    est_lo2 = est_hi2 = 0.0  # quadrature sums of the estimated blocks' half-widths
    statuses, parts = [], []
    zero = Estimate(0.0, 0.0, 0.0, 0, 0.0, status="exact")  # unused inputs, constant outputs
    ins: list[Estimate] = [zero] * sampler.lyr.n_in
    outs: list[Estimate] = [zero] * sampler.lyr.n_out
    exact = _exact_pairs(res, sampler, s)
    low = res.matrix_ci.get("ei_parts", (None, None))[0]
    low = exact if low is None else low
    for b, group in enumerate(blocks, start=1):
        if exact is not None and len(group[0]) == len(group[1]) == 1:
            # one input, one output: the block's EI is its one pairwise term, exactly
            (i,), (j,) = group
            v = float(exact[i, j])
            total += v
            statuses.append("exact")
            parts.append({"inputs": group[0], "outputs": group[1], "value": v,
                          "status": "exact"})
            ins[i] = outs[j] = Estimate(v, v, v, 0, v, status="exact")
            continue
        # the block on its own: a forward pass costs its size, not the layer's
        part = _block_sampler(sampler, group)
        local = (list(range(len(group[0]))), list(range(len(group[1]))))
        wres, info = _whole_metric(
            res, "ei", part, local, s_block, warns, nodes=nodes, sub=b, record=False,
            pair_low=None if low is None else np.asarray(low)[np.ix_(group[0], group[1])],
        )  # fmt: skip
        v, (lo, hi) = info["value"], info["ci"]
        total += v
        if info["status"] == "bounds":
            bound_lo, bound_hi = bound_lo + (v - lo), bound_hi + (hi - v)
        else:
            est_lo2, est_hi2 = est_lo2 + (v - lo) ** 2, est_hi2 + (hi - v) ** 2
        samples += info["samples"]
        statuses.append(info["status"])
        parts.append({"inputs": group[0], "outputs": group[1], **info})
        for i, e in zip(group[0], wres.input_nodes):
            ins[i] = e
        for j, e in zip(group[1], wres.output_nodes):
            outs[j] = e
    lo = total - bound_lo - math.sqrt(est_lo2)
    hi = total + bound_hi + math.sqrt(est_hi2)
    status = combined_status(statuses)
    _set_metric(res, "ei", total, (lo, hi), "exact" if status == "exact" else "sampled",
                samples, status)
    info = {"blocks": parts, "n_blocks": k, "samples": samples, "status": status}
    whole = WholeResult(Estimate(total, lo, hi, samples, math.nan), outs, ins, [], 0, 0)
    return whole, info


def _set_metric(
    res: LayerResult, metric: str, value: float, ci: tuple[float, float], method: str,
    samples: int, status: str | None = None,
) -> None:
    setattr(res, metric, value)
    res.ci[metric] = ci
    res.method[metric], res.samples[metric] = method, samples
    res.status[metric] = status or ("exact" if method == "exact" else "estimate")


def _derive(res: LayerResult) -> None:
    """Degeneracy and integration by interval arithmetic on independent streams."""

    def diff(name: str, a: str, b: str) -> None:
        # a difference of bracketed values is bracketed by the same interval arithmetic
        (alo, ahi), (blo, bhi) = res.ci[a], res.ci[b]
        _set_metric(res, name, getattr(res, a) - getattr(res, b), (alo - bhi, ahi - blo),
                    "derived", max(res.samples[a], res.samples[b]),
                    combined_status((res.status[a], res.status[b])))

    if res.ei is not None and res.sensitivity is not None:
        diff("degeneracy", "sensitivity", "ei")
    if res.ei is not None and res.ei_parts is not None:
        diff("integration", "ei", "ei_parts")
    if res.ei is None and res.ei_parts is not None and res.sensitivity is not None:
        diff("degeneracy_parts", "sensitivity", "ei_parts")


def _settings_record(
    res: LayerResult, lyr: Layer, s: MeasureSettings, dev: torch.device, chunk_size: int,
    whole_info: dict[str, Any],
) -> dict[str, Any]:
    """What the result records of how it was measured (version, estimator, samples...)."""
    from causal_widgets import __version__

    return {
        "layer": lyr.name,
        "method": dict(res.method),
        "samples": dict(res.samples),
        "status": dict(res.status),
        "requested_method": s.method,
        "metrics": sorted(s.metrics),
        "in_bins": s.in_bins,
        "out_bins": s.out_bins,
        "in_range": tuple(float(v) for v in lyr.in_range),
        "out_range": tuple(float(v) for v in lyr.out_range),
        "seed": s.seed,
        "tol": s.tol,
        "max_samples": s.max_samples,
        "device": str(dev),
        "chunk_size": chunk_size,
        "in_shape": tuple(lyr.in_shape),
        "out_shape": tuple(lyr.out_shape),
        "whole_ei": whole_info,
        "version": __version__,
    }


def _whole_ei(
    sampler: _Sampler,
    g_in: list[int],
    g_out: list[int],
    stage: str,
    s: MeasureSettings,
    warns: list[str],
    with_inputs: bool = False,
    with_outputs: bool = False,
    sub: int = 0,
) -> tuple[Any, dict[str, Any]]:
    """Cell-conditional I(X_G; Y_H): all cells with doubling points per cell, or sampled
    cells (doubling their number) with a fixed number of points per cell."""
    from causal_widgets.engine.estimate import Estimate
    from causal_widgets.engine.estimators import WholeEI

    seed, cells, points_per_cell, tol = s.seed, s.cells, s.points_per_cell, s.tol
    cap, cell_limit = s.max_samples, s.cell_limit
    in_bins, out_bins = sampler.in_bins, sampler.out_bins
    dev = sampler.device
    g = len(g_in)
    n_all = in_bins**g
    gen = _stage_generator(seed, stage, dev, sub)
    exhaustive = cells == "all" or (cells is None and n_all <= cell_limit)
    if exhaustive and n_all > 2**17:  # WholeEI keeps per-cell tables for at most ~2**18
        raise ValueError(
            f"cells='all' would enumerate {in_bins}**{g} = {n_all} cells: too many; pass "
            "cells=<number of sampled cells> or leave cells=None."
        )
    label = f"{stage} (sampled, {'all' if exhaustive else 'random'} cells)"
    planned = cap
    if points_per_cell is not None and (exhaustive or isinstance(cells, int)):
        planned = min(cap, (n_all if exhaustive else int(cells)) * points_per_cell)
    if with_inputs and g * planned > _INPUT_NODE_ENTRIES:
        # the worst case (every output tuple distinct) is far beyond memory: see above
        with_inputs = False
        warns.append(
            f"nodes: I(X_i; Y) of the {g} inputs was skipped (its table could reach "
            f"{g} x {planned} entries); the input rows' ei is NaN. Pass a smaller "
            "max_samples (or fixed cells and points_per_cell) to get it."
        )

    def new_est() -> Any:
        # node terms only when asked for: they cost as much again as EI itself
        return WholeEI(
            g, len(g_out), in_bins, out_bins, device=dev, exhaustive=exhaustive,
            input_nodes=with_inputs, output_nodes=with_outputs,
            max_input_entries=_INPUT_NODE_LIVE_ENTRIES,
        )  # fmt: skip

    def finish(wres: Any, info: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """Add the input nodes (left out while growing; not worth computing when H(Y) is
        undersampled: they are bracketed instead, see _bound_input_nodes) and the
        half-points bias diagnostic (``WholeResult.ei_half_points``: the same cells'
        H(Y | cell) from the first half of their points) to ``info``."""
        if with_inputs and not est.input_nodes_dropped:
            if not wres.undersampled:
                wres = est.compute()
            else:  # the bounds need entries, not estimates: one per input, to bracket
                wres.input_nodes = [Estimate(math.nan, math.nan, math.nan, 0, math.nan)
                                    for _ in range(g)]
        info["bias_allowance"] = 0.0
        if est.input_nodes_dropped:
            warns.append(
                f"nodes: I(X_i; Y) of the {g} inputs was dropped while measuring: its table "
                f"passed {_INPUT_NODE_LIVE_ENTRIES} entries (distinct input-bin x output-tuple "
                "pairs; several hundred bytes each at peak); the input rows' ei is NaN. Pass "
                "a smaller max_samples (or fixed cells and points_per_cell) to get it."
            )
        half = float(wres.ei_half_points)
        if info["points_per_cell"] < 2 * _MIN_HALF_PPC or not math.isfinite(half):
            return wres, info
        gap = half - float(wres.ei.value)
        info["ei_half_points"], info["half_points_gap"] = half, gap
        sd = _width(wres.ei) / 3.92
        if abs(gap) > sd:
            # significant: extend the interval towards the side the bias points to (EI
            # falling with more points: biased high, extend down; rising: extend up)
            info["bias_allowance"] = gap
            warns.append(
                f"{label}: EI from half the points per cell is {abs(gap):.3g} bits "
                f"{'higher' if gap > 0 else 'lower'} ({half:.4f} vs "
                f"{float(wres.ei.value):.4f} with {info['points_per_cell']} points per cell): "
                "the finite-points bias is not negligible; the interval was extended "
                f"{'down' if gap > 0 else 'up'} by that gap (the bias may be larger). Raise "
                "points_per_cell for a less biased value."
            )
        return wres, info

    if exhaustive:
        powers = in_bins ** torch.arange(g, device=dev)
        all_cells = (torch.arange(n_all, device=dev)[:, None] // powers) % in_bins
        est = new_est()
        m_target = points_per_cell or _START_PPC
        m = 0
        while True:
            # every cell gets the same number of new points; the estimator pools a cell's
            # points across updates, so doubling M costs only the new points
            sampler.cells(est, all_cells, m_target - m, gen, g_in, g_out)
            m = m_target
            wres = est.compute(input_nodes=False)
            width = _width(wres.ei)
            if points_per_cell is not None or width < tol:
                break
            if n_all * m * 2 > cap:
                warns.append(
                    f"{label}: the 95 % CI is still {width:.4g} bits wide with {m} points in "
                    f"each of the {n_all} cells ({n_all * m} samples; max_samples={cap}); "
                    f"tol={tol} bits was not reached. Raise max_samples or loosen tol."
                )
                break
            # points per cell only grow: keep the total within the cap
            m_target = max(2 * m, min(_next_size(m, width, tol), cap // n_all))
        info = {"cells": "all", "n_cells": n_all, "points_per_cell": m, "samples": n_all * m}
        return finish(wres, info)

    m = points_per_cell or _DEFAULT_PPC
    est = new_est()

    def add(k: int) -> None:
        for c0 in range(0, k, 2**16):
            c = torch.randint(0, in_bins, (min(2**16, k - c0), g), generator=gen, device=dev)
            sampler.cells(est, c, m, gen, g_in, g_out)

    wres, n_cells = _grow(
        add,
        lambda: est.compute(input_nodes=False),
        lambda r: r.ei,
        fixed=cells if isinstance(cells, int) else None,
        start=_START_CELLS,
        cap=max(1, cap // m),
        tol=tol,
        label=label,
        unit=f"cells of {m} points",
        warns=warns,
        hopeless=_saturated,
    )
    info = {"cells": "sampled", "n_cells": n_cells, "points_per_cell": m, "samples": n_cells * m}
    return finish(wres, info)


def _nodes_frame(res: LayerResult, whole: Any, n_in: int, n_out: int) -> pd.DataFrame:
    """One row per input and output neuron (see :func:`measure_layer`)."""
    nan_in, nan_out = np.full(n_in, np.nan), np.full(n_out, np.nan)
    e, s = res.ei_parts_matrix, res.sensitivity_matrix
    parts_in = e.sum(axis=1) if e is not None else nan_in
    parts_out = e.sum(axis=0) if e is not None else nan_out
    sens_in = s.sum(axis=1) if s is not None else nan_in
    sens_out = s.sum(axis=0) if s is not None else nan_out

    def col(items: list[Any] | None, attr: str, n: int) -> np.ndarray:
        if not items or len(items) != n:  # not computed (e.g. skipped for a wide layer)
            return np.full(n, np.nan)
        return np.array([float(getattr(it, attr)) for it in items], dtype=np.float64)

    def status(items: list[Any] | None, n: int) -> list[str | None]:
        if not items or len(items) != n:
            return [None] * n
        return [getattr(it, "status", "estimate") for it in items]

    ins = getattr(whole, "input_nodes", None) if whole is not None else None
    outs = getattr(whole, "output_nodes", None) if whole is not None else None
    frame_in = pd.DataFrame(
        {
            "side": "input",
            "node": np.arange(n_in),
            "ei": col(ins, "value", n_in),
            "ei_parts": parts_in,
            "sensitivity": sens_in,
            "ei_ci_low": col(ins, "ci_low", n_in),
            "ei_ci_high": col(ins, "ci_high", n_in),
            "ei_status": status(ins, n_in),
        }
    )
    frame_out = pd.DataFrame(
        {
            "side": "output",
            "node": np.arange(n_out),
            "ei": col(outs, "value", n_out),
            "ei_parts": parts_out,
            "sensitivity": sens_out,
            "ei_ci_low": col(outs, "ci_low", n_out),
            "ei_ci_high": col(outs, "ci_high", n_out),
            "ei_status": status(outs, n_out),
        }
    )
    return pd.concat([frame_in, frame_out], ignore_index=True)


# --------------------------------------------------------------------------- shortcuts


def _one(metric: str, layer: Any, kw: dict[str, Any]) -> float:
    if "metrics" in kw:
        raise TypeError(
            f"{metric}() measures one metric: drop metrics=..., or call measure_layer()."
        )
    value = getattr(measure_layer(layer, metrics=[metric], **kw), metric)
    return float(value)


def ei(layer: Any, **kw: Any) -> float:
    """Whole-layer EI = I(X; Y) in bits (keywords as :func:`measure_layer`)."""
    return _one("ei", layer, kw)


def ei_parts(layer: Any, **kw: Any) -> float:
    """EI_parts = sum_ij I(X_i; Y_j) in bits (keywords as :func:`measure_layer`)."""
    return _one("ei_parts", layer, kw)


def sensitivity(layer: Any, **kw: Any) -> float:
    """Sensitivity = sum_ij I(X_i; Y_j), one input intervened at a time, in bits."""
    return _one("sensitivity", layer, kw)


__all__ = [
    "CELL_LIMIT",
    "LayerResult",
    "METRICS",
    "ei",
    "ei_parts",
    "measure_layer",
    "sensitivity",
]

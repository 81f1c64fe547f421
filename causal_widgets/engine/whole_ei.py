"""Streaming cell-conditional estimator of whole-layer EI = I(X; Y), in bits.

The driver draws input *cells* (one bin per input, uniformly; or all of them,
``exhaustive=True``) and ``M`` points uniformly inside each cell. Since the cell is
uniform under the intervention,

    I(X; Y) = H(Y) - E_cell H(Y | cell),

with ``H(Y)`` the entropy of the average of the cells' output distributions.
Unlike plug-in MI over joint tuples, this does not saturate at ``log2 N``: when every
sampled input tuple is unique the tuple plug-in gives ``H(Y | X) = 0`` and collapses
to ``H(Y)``, whereas the within-cell points measure ``H(Y | cell)`` directly.

The two ways of choosing cells are two classes on one base, :class:`WholeEI` (what both
share: arguments, output-tuple codes, ``update``/``merge``/``compute``, the jackknife):
:class:`SampledWholeEI` (cells drawn i.i.d.) and :class:`ExhaustiveWholeEI` (every cell
enumerated). ``WholeEI(..., exhaustive=True/False)`` builds the matching one;
``exhaustive=None`` leaves the choice to the first ``update()`` or ``merge()``.
Like :class:`~causal_widgets.engine.pairwise.PairwiseMI`, feed chunks with ``update()``,
combine independent streams with ``merge()``, read a result with ``compute()`` (as often
as wanted; it never changes the state).

*Confidence intervals.* With sampled cells, the cells are i.i.d., so the CI comes from a
delete-a-batch jackknife over ``batches`` round-robin batches of cells (t quantile,
``batches - 1`` degrees of freedom). With all cells enumerated there is no cell-sampling
noise; the points are dealt into batches instead and the jackknife is over point batches.
The jackknife is slightly conservative (up to a factor 2 in variance) when EI is near 0.

*Within-cell entropies.* ``H(Y | cell)`` comes from only ``M`` points (16-64)
spread over many output tuples, where Miller-Madow leaves a large higher-order bias that
does not shrink with more cells, only with more points per cell (measured on 8-bin
sigmoid layers, 24-16 points per cell: +0.05 to +0.16 bits of EI). The points inside a
cell are i.i.d. uniform, so each cell's counts are exactly multinomial and Grassberger's
estimator (2003; :func:`~causal_widgets.engine.information.entropy_grassberger_bits`),
built for few counts per state, is used for every within-cell histogram instead (0 for a
one-state cell, as Miller-Madow). Its first-order bias matches Miller-Madow's, so it stays
consistent with the mixture correction of ``H(Y)``; on the same layers the EI error falls
to 0.01-0.02 bits. (Latin hypercube points inside the cells were tried as well: they lower
the plug-in bias a little, but make the counts non-multinomial, so that Grassberger
over-corrects; i.i.d. points with Grassberger were more accurate.) The bias left is
estimated by the mean over cells of |jackknife - Grassberger| entropy (0 for cells whose
points all share one output), which over-states it severalfold in the cases measured; it
is added to the jackknife half-width in quadrature. :attr:`WholeResult.ei_half_points
<causal_widgets.engine.estimate.WholeResult.ei_half_points>` gives EI from the same cells
with (about) half of their points, a paired diagnostic of the bias left.

*Cost.* Within-cell histograms are never formed with ``torch.unique``: with up to 32
points per cell, each point's multiplicity comes from an ``M x M`` comparison (a sum over
a cell's distinct values of ``f(c)`` is a sum over its points of ``f(c_i) / c_i``), and
``c ln c``, ``c G(c)`` come from lookup tables over the integer counts. When the output
space is small (``out_bins ** n_out <= 2**16``) output tuples are coded by a dense table
and the ``H(Y)`` sums are dense arrays.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch

from causal_widgets.checks import check_int
from causal_widgets.engine.estimate import Estimate, WholeResult
from causal_widgets.engine.information import (
    LN2,
    _dense_hist_sums,
    _hist_entropies,
    _point_hist_sums,
    _sparse_hist_sums,
    _t_quantile,
    _xlog2x,
    encode_rows,
)
from causal_widgets.engine.tallies import (
    _U_BITS,
    _U_MASK,
    _batches_arg,
    _check_idx,
    _DenseSum,
    _IdMap,
    _SparseSum,
)

__all__ = ["WholeEI", "SampledWholeEI", "ExhaustiveWholeEI"]

# output spaces up to this many tuples get a dense code table and dense H(Y) sums
_DENSE_SPACE = 1 << 16
# up to this many points per cell, within-cell histograms come from pairwise comparisons
_PAIRWISE_M = 32


def _replicates(x: torch.Tensor) -> torch.Tensor:
    """Jackknife replicate columns ``(..., K) -> (..., 1 + K)``: column 0 sums every
    batch, column ``1 + k`` leaves batch ``k`` out."""
    tot = x.sum(-1, keepdim=True)
    return torch.cat([tot, tot - x], -1)


def _cpu_items(sp: _SparseSum | _DenseSum) -> tuple[torch.Tensor, torch.Tensor]:
    """A keyed sum's keys and sums, on the CPU (where the results are computed)."""
    keys, vals = sp.items()
    return keys.to("cpu"), vals.to("cpu")


def _per_batch(sp: _SparseSum | _DenseSum, k: int):
    """Decode a keyed sum whose keys are ``((owner * k + batch) << _U_BITS) | tuple``.

    Returns ``(keys, counts, batch, vals)``: the distinct ``(owner << _U_BITS) | tuple``
    keys, sorted; their sums per point batch ``(E, k)``; and each raw entry's batch and
    value (for per-batch totals).
    """
    keys, vals = _cpu_items(sp)
    hi = keys >> _U_BITS
    owner, batch, u = hi // k, hi % k, keys & _U_MASK
    pair = (owner << _U_BITS) | u
    upair, inv = torch.unique(pair, sorted=True, return_inverse=True)
    counts = torch.zeros(upair.numel(), k, dtype=torch.float64)
    counts.index_put_((inv, batch), vals, accumulate=True)
    return upair, counts, batch, vals


def _mix_entropy(
    s1: torch.Tensor, s2: torch.Tensor, c_r: torch.Tensor, seg: torch.Tensor | None, n_seg: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrected and plug-in entropies of mixtures p = S1/C (per segment); bias from the
    between-cell variance: -(sum S2/S1 - 1) / (2 ln2 (C - 1))."""
    pbar = s1 / c_r.clamp(min=1.0)
    hk = -_xlog2x(pbar)
    full = s1[:, :1]
    ratio = torch.where(full > 0, s2[:, None] / full.clamp(min=1e-300), 0.0)
    if seg is None:
        h, rt = hk.sum(0), ratio.sum(0)
    else:
        h = torch.zeros(n_seg, hk.shape[1], dtype=torch.float64).index_add_(0, seg, hk)
        rt = torch.zeros(n_seg, 1, dtype=torch.float64).index_add_(0, seg, ratio)
    bias = (rt - 1).clamp(min=0) / (2 * LN2 * (c_r - 1).clamp(min=1.0))
    return h + bias, h


class WholeEI:
    """Streaming cell-conditional estimator of whole-layer EI = I(X; Y) (bits).

    ``update(cells, y_idx)``: ``cells`` ``(C, n_in)`` integer bin tuples, ``y_idx``
    ``(C, M, n_out)`` the binned outputs of ``M`` points drawn uniformly inside each cell.
    Cells are drawn uniformly (i.i.d.), or, with ``exhaustive=True``, every cell is
    passed (each ``update`` may hold any subset; points of a cell pool across updates).

    ``WholeEI(..., exhaustive=False)`` returns a :class:`SampledWholeEI` and
    ``exhaustive=True`` an :class:`ExhaustiveWholeEI`; with ``exhaustive=None`` (the
    default) the estimator becomes one of them at the first ``update`` (its
    ``exhaustive=`` argument, sampled when not given) or ``merge`` (the other's mode).

    Besides ``ei`` the result holds ``output_nodes[j]`` = I(X; Y_j) and
    ``input_nodes[i]`` = I(X_i; Y) (``P(X_i = a) = 1/in_bins`` known). Set
    ``input_nodes=False`` to skip the latter: it keeps a sparse table of
    ``(input, bin, output tuple)`` sums whose size grows with the number of distinct
    output tuples (about ``(batches + 1) * 16`` bytes per entry). Set
    ``output_nodes=False`` to skip I(X; Y_j) (about as costly again as EI in exhaustive
    mode); the skipped list is then empty. ``max_input_entries`` caps that table in
    sampled mode: once it holds more entries, the input nodes are dropped (their tables
    freed, ``input_nodes_dropped`` set, the list empty) and EI goes on; at peak an entry
    costs several hundred bytes (sort buffers), so the cap bounds the memory.
    ``batches`` (default 16) is the number of jackknife batches of the CI; ``groups=``
    is its old name, still accepted.
    """

    #: the mode of the class: True (every cell), False (sampled cells), None (undecided)
    _MODE: ClassVar[bool | None] = None

    def __new__(cls, *args: Any, exhaustive: bool | None = None, **kwargs: Any) -> WholeEI:
        # WholeEI(..., exhaustive=...) keeps building the estimator for that mode: the
        # base picks the strategy subclass (pickling calls __new__ with the class alone)
        if cls is WholeEI and exhaustive is not None:
            cls = ExhaustiveWholeEI if exhaustive else SampledWholeEI
        return super().__new__(cls)

    def __init__(
        self,
        n_in: int,
        n_out: int,
        in_bins: int,
        out_bins: int,
        *,
        device: str | torch.device = "cpu",
        exhaustive: bool | None = None,
        batches: int | None = None,
        input_nodes: bool = True,
        output_nodes: bool = True,
        max_input_entries: int | None = None,
        groups: int | None = None,
    ):
        if exhaustive is not None and self._MODE is not None and bool(exhaustive) != self._MODE:
            raise ValueError(
                f"{type(self).__name__} is the exhaustive={self._MODE} estimator; got "
                f"exhaustive={exhaustive}: use WholeEI(..., exhaustive={exhaustive})."
            )
        self.n_in = check_int(n_in, "n_in", 1)
        self.n_out = check_int(n_out, "n_out", 1)
        self.in_bins = check_int(in_bins, "in_bins", 2)
        self.out_bins = check_int(out_bins, "out_bins", 2)
        batches, batches_name = _batches_arg(batches, groups, 16)
        self.batches = check_int(batches, batches_name, 2)
        self.device = torch.device(device)
        self._acc = torch.device("cpu") if self.device.type == "mps" else self.device
        self.with_inputs = bool(input_nodes)
        self.with_outputs = bool(output_nodes)
        self.max_input_entries = max_input_entries
        self.input_nodes_dropped = False
        k = self.batches
        if self.with_inputs and self.n_in * self.in_bins * k >= 1 << 22:
            raise ValueError(
                f"input_nodes for {self.n_in} inputs x {self.in_bins} bins x {k} batches is too "
                "large: pass input_nodes=False (or fewer batches)."
            )
        space = self.out_bins**self.n_out
        # the dense/sparse choice is made here, once, for the codes and the mode's sums
        self._space = space if space <= _DENSE_SPACE else None
        self._ids = _IdMap(self._acc, self._space)
        self._samples = 0
        self._cells = 0
        # every output's bin counts (the marginals H(Y_j) of the bounds come from these)
        self._ymarg = torch.zeros(self.n_out * self.out_bins, dtype=torch.float64,
                                  device=self._acc)
        if self._MODE is not None:
            self._init_state()

    # ---- the mode
    @property
    def exhaustive(self) -> bool | None:
        """True: every cell is enumerated; False: cells are sampled; None: not decided yet
        (the first ``update`` or ``merge`` decides)."""
        return self._MODE

    @property
    def groups(self) -> int:
        """The old name of :attr:`batches` (kept for code written before the rename)."""
        return self.batches

    def _decide(self, exhaustive: bool) -> None:
        """Become the estimator of ``exhaustive`` mode (this one was built undecided)."""
        # exhaustive=None defers the choice to the first update() or merge(), but callers
        # already hold this object: it takes the strategy's class in place. The subclasses
        # add no attributes of their own beyond what _init_state allocates.
        self.__class__ = ExhaustiveWholeEI if exhaustive else SampledWholeEI
        self._init_state()

    def _init_state(self) -> None:
        """Allocate the mode's accumulators (each strategy defines its own)."""
        raise NotImplementedError("an undecided WholeEI has no state: update() decides")

    # ---- properties
    @property
    def samples(self) -> int:
        """Points fed in total (cells x points per cell)."""
        return self._samples

    @property
    def cells_seen(self) -> int:
        """Cells fed (sampled mode: cell draws; exhaustive: distinct cells with points)."""
        return self._cells

    # ---- accumulation
    def update(
        self, cells: torch.Tensor, y_idx: torch.Tensor, exhaustive: bool | None = None
    ) -> None:
        """Add ``C`` cells with ``M`` points each (see the class docstring)."""
        if exhaustive is not None:
            if self.exhaustive is not None and bool(exhaustive) != self.exhaustive:
                raise ValueError(
                    f"this WholeEI is in exhaustive={self.exhaustive} mode; got "
                    f"exhaustive={exhaustive}: use one estimator per mode."
                )
            if self.exhaustive is None:
                self._decide(bool(exhaustive))
        if self.exhaustive is None:
            self._decide(False)
        c = _check_idx(cells, "cells", (None, self.n_in), self.in_bins, self._acc)
        if not isinstance(y_idx, torch.Tensor) or y_idx.dim() != 3:
            raise ValueError(
                "y_idx must be a (C, M, n_out) integer tensor: the binned outputs of M points "
                f"in each of the C cells; got {getattr(y_idx, 'shape', type(y_idx))}."
            )
        y = _check_idx(y_idx, "y_idx", (c.shape[0], None, self.n_out), self.out_bins, self._acc)
        n_c, m = y.shape[0], y.shape[1]
        if n_c == 0 or m == 0:
            return
        u = self._ids.codes(encode_rows(y, self.out_bins))  # (C, M) compact codes
        self._update(c, y, u)
        flat = (y.reshape(-1, self.n_out).long()
                + torch.arange(self.n_out, device=y.device) * self.out_bins).reshape(-1)
        self._ymarg += torch.bincount(flat, minlength=self._ymarg.numel()).to(self._ymarg)
        self._samples += n_c * m
        self._cells += n_c

    def _update(self, c: torch.Tensor, y: torch.Tensor, u: torch.Tensor) -> None:
        """Add checked cells ``c``, outputs ``y`` and their codes ``u`` (C, M)."""
        raise NotImplementedError

    def merge(self, other: WholeEI) -> WholeEI:
        """Add another estimator's data (same arguments and mode) into this one; returns self."""
        if not isinstance(other, WholeEI):
            raise TypeError(f"can only merge a WholeEI; got {type(other).__name__}.")
        mine = (self.n_in, self.n_out, self.in_bins, self.out_bins, self.batches, self.with_inputs,
                self.with_outputs)  # fmt: skip
        theirs = (
            other.n_in, other.n_out, other.in_bins, other.out_bins, other.batches,
            other.with_inputs, other.with_outputs,
        )  # fmt: skip
        if mine != theirs:
            raise ValueError(
                f"cannot merge WholeEI{theirs} into WholeEI{mine} "
                "(n_in, n_out, in_bins, out_bins, batches, input_nodes, output_nodes): use the "
                "same arguments."
            )
        if other._samples == 0:
            return self
        if self.exhaustive is not None and other.exhaustive is not None:
            if self.exhaustive != other.exhaustive:
                raise ValueError("cannot merge an exhaustive WholeEI with a sampled one.")
        if self.exhaustive is None and other.exhaustive is not None:
            self._decide(other.exhaustive)
        trans = self._ids.codes(other._ids.raw().to(self._acc))  # other's code -> my code
        self._merge_state(other, trans)
        self._ymarg += other._ymarg.to(self._ymarg)
        self._samples += other._samples
        self._cells += other._cells
        return self

    def _merge_state(self, other: WholeEI, trans: torch.Tensor) -> None:
        """Add ``other``'s accumulators (same mode), its output codes mapped by ``trans``."""
        raise NotImplementedError

    def _remap(self, src: _SparseSum | _DenseSum, dst: _SparseSum | _DenseSum,
               trans: torch.Tensor) -> None:  # fmt: skip
        """Add ``src``'s sums into ``dst``, its keys' output codes (low bits) mapped by
        ``trans``."""
        keys, vals = src.items()
        keys = keys.to(self._acc)
        hi, lo = keys >> _U_BITS, keys & _U_MASK
        dst.add((hi << _U_BITS) | trans[lo], vals.to(self._acc))

    # ---- results
    def compute(self, input_nodes: bool = True) -> WholeResult:
        """EI, node-level terms, their 95 % CIs (jackknife; see the module docstring).

        ``input_nodes=False`` leaves out I(X_i; Y) (the costliest part) for this call only:
        for the intermediate results of a growing sample, whose input nodes nobody reads.
        """
        if self._samples == 0:
            nan = math.nan
            e = Estimate(nan, nan, nan, 0, nan, ["no samples yet: call update() first"])
            return WholeResult(e, [], [], list(e.warnings), 0, 0)
        kept = self.with_inputs
        self.with_inputs = kept and input_nodes and not self.input_nodes_dropped
        try:
            res = self._compute()
        finally:
            self.with_inputs = kept
        res.output_counts = self._ymarg.to("cpu").view(self.n_out, self.out_bins).numpy().copy()
        return res

    def _compute(self) -> WholeResult:
        """The result from the accumulators (at least one sample)."""
        raise NotImplementedError

    def _jack(self, full: torch.Tensor, loo: torch.Tensor, valid: torch.Tensor):
        """Delete-a-batch jackknife: ``full`` (...,), ``loo`` (..., K) -> (low, high) arrays."""
        kv = int(valid.sum())
        if kv < 2:
            inf = torch.full_like(full, math.inf)
            return (-inf).numpy(), inf.numpy()
        th = loo[..., valid]
        var = (kv - 1) / kv * ((th - th.mean(-1, keepdim=True)) ** 2).sum(-1)
        half = _t_quantile(kv - 1) * var.sqrt()
        return (full - half).numpy(), (full + half).numpy()

    def _estimates(self, full, loo, valid, plug, warns_each=None, allow=None) -> list[Estimate]:
        """Estimates with jackknife CIs whose half-width ``h`` is widened to
        ``sqrt(h^2 + a^2)`` by ``allow`` ``a`` (bits, per estimate): the higher-order
        within-cell bias allowance, mean |jackknife - Grassberger| (the two bias-reduced
        estimators' disagreement bounds the bias left; it is added in quadrature since it
        over-states that bias severalfold in the cases measured)."""
        lo, hi = self._jack(full, loo, valid)
        f, p = full.numpy(), plug.numpy()
        a = np.zeros(f.shape[0]) if allow is None else np.asarray(allow, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            h = np.sqrt(((hi - lo) / 2) ** 2 + a**2)
        return [
            Estimate(float(f[i]), float(f[i] - h[i]), float(f[i] + h[i]), self._samples,
                     float(p[i]), list(warns_each or []))
            for i in range(f.shape[0])
        ]  # fmt: skip


class SampledWholeEI(WholeEI):
    """:class:`WholeEI` over cells drawn uniformly (i.i.d.): the jackknife is over
    round-robin batches of cells. Build it as ``WholeEI(..., exhaustive=False)`` or
    directly, with the same arguments."""

    _MODE = False

    def _init_state(self) -> None:
        k, acc, space = self.batches, self._acc, self._space
        self._ncell = torch.zeros(k, dtype=torch.float64, device=acc)  # cells per batch
        self._hc = torch.zeros(2, k, dtype=torch.float64, device=acc)  # corrected, plug-in
        self._kc = 0.0  # sum over cells of distinct outputs / M (undersampling check)
        # sum over cells of |jackknife - Grassberger| within-cell entropy: [Y, Y_0, Y_1, ...]
        self._gap = torch.zeros(1 + self.n_out, dtype=torch.float64)
        # half-points diagnostic: [sum over cells of H(Y | cell) from the first M/2 points, cells]
        self._half = torch.zeros(2, dtype=torch.float64)
        # key (g << 40) | u : sum_c q_cu; key u : sum_c q_cu^2 (dense when codes are few)
        self._y1 = _SparseSum(acc) if space is None else _DenseSum(acc, k, space)
        self._y2 = _SparseSum(acc) if space is None else _DenseSum(acc, 1, space)
        self._o1 = torch.zeros(k, self.n_out, self.out_bins, dtype=torch.float64, device=acc)
        self._o2 = torch.zeros(self.n_out, self.out_bins, dtype=torch.float64, device=acc)
        self._ho = torch.zeros(2, k, self.n_out, dtype=torch.float64, device=acc)
        self._cia = torch.zeros(k, self.n_in * self.in_bins, dtype=torch.float64, device=acc)
        self._i1: _SparseSum | None = _SparseSum(acc)  # key ((ia * K + g) << 40) | u : sum q_cu
        self._i2: _SparseSum | None = _SparseSum(acc)  # key (ia << 40) | u : sum q_cu^2

    @staticmethod
    def _cell_runs(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-cell histograms of the rows of ``u`` (C, M): runs of equal codes after a
        row sort -> (count, cell, code) per distinct (cell, code)."""
        n_c, m = u.shape
        s, _ = u.sort(dim=1)
        start = torch.ones_like(s, dtype=torch.bool)
        start[:, 1:] = s[:, 1:] != s[:, :-1]
        flat = start.reshape(-1)
        pos = torch.nonzero(flat).squeeze(1)
        ends = torch.cat([pos[1:], pos.new_full((1,), n_c * m)])
        # a run never crosses a row boundary (each row's first entry starts a run)
        return (ends - pos).to(torch.float64), pos // m, s.reshape(-1)[pos]

    def _update(self, c: torch.Tensor, y: torch.Tensor, u: torch.Tensor) -> None:
        k_, (n_c, m) = self.batches, u.shape
        dev = u.device
        grp = (self._cells + torch.arange(n_c, device=dev)) % k_
        n_m = torch.full((n_c,), float(m), dtype=torch.float64, device=dev)
        pairwise = m <= _PAIRWISE_M and not self.with_inputs
        if pairwise:
            # no sort: each point's multiplicity in its cell from an (M x M) comparison;
            # a sum over distinct values of f(c_v) is the sum over points of f(c_i) / c_i
            sums, mult, *hs_ = _point_hist_sums(u, m // 2 if m >= 4 else 0)
        else:
            cnt, r_c, r_u = self._cell_runs(u)
            r_g = grp[r_c]
            q = cnt / m
            sums = _sparse_hist_sums(cnt, r_c, n_c)
        h_p, h_g, h_j = _hist_entropies(sums, n_m)
        self._hc[0].index_add_(0, grp, h_g)
        self._hc[1].index_add_(0, grp, h_p)
        self._ncell.index_add_(0, grp, torch.ones(n_c, dtype=torch.float64, device=dev))
        self._kc += float(sums[:, 3].sum()) / m
        self._gap[0] += float((h_j - h_g).abs().sum())
        if m >= 4:  # the half-points diagnostic: the same cells, their first M/2 points
            if pairwise:
                hs = hs_[0]
            else:
                hcnt, hr_c, _ = self._cell_runs(u[:, : m // 2])
                hs = _sparse_hist_sums(hcnt, hr_c, n_c)
            hh = _hist_entropies(hs, torch.full_like(n_m, float(m // 2)))[1]
            self._half += torch.stack(
                [hh.sum().to(self._half.device), torch.tensor(float(n_c), dtype=torch.float64)]
            )
        if pairwise:  # per point: sum_c q_cu = sum_i 1/m, sum_c q_cu^2 = sum_i c_i / m^2
            self._y1.add((grp[:, None] << _U_BITS) | u, torch.full(u.shape, 1.0 / m,
                                                                    dtype=torch.float64,
                                                                    device=dev))  # fmt: skip
            self._y2.add(u, mult / (m * m))
        else:
            self._y1.add((r_g << _U_BITS) | r_u, q)
            self._y2.add(r_u, q * q)
        if self.with_outputs:
            self._update_outputs(y, grp, n_m)
        if self.with_inputs:
            ia = c + torch.arange(self.n_in, device=dev) * self.in_bins  # (C, n_in)
            self._cia.view(-1).index_add_(
                0, (grp[:, None] * (self.n_in * self.in_bins) + ia).reshape(-1),
                torch.ones(ia.numel(), dtype=torch.float64, device=dev),
            )  # fmt: skip
            r_ia = ia[r_c]  # (R, n_in)
            self._i1.add(
                ((r_ia * k_ + r_g[:, None]) << _U_BITS) | r_u[:, None], q[:, None].expand_as(r_ia)
            )
            self._i2.add((r_ia << _U_BITS) | r_u[:, None], (q * q)[:, None].expand_as(r_ia))
            held = self._i1.keys.numel() + self._i1._pending
            if self.max_input_entries is not None and held > self.max_input_entries:
                # the table grows with distinct (input, bin, output tuple) entries: stop
                # before it exhausts memory; EI and the output nodes do not need it
                self.with_inputs, self.input_nodes_dropped = False, True
                self._i1 = self._i2 = None

    def _update_outputs(self, y: torch.Tensor, grp: torch.Tensor, n_m: torch.Tensor):
        """Output nodes: per cell histogram of each Y_j."""
        n_c, m, dev = y.shape[0], y.shape[1], y.device
        oc = torch.zeros(n_c, self.n_out, self.out_bins, dtype=torch.float64, device=dev)
        oc.scatter_add_(
            2,
            y.transpose(1, 2),
            torch.ones(y.transpose(1, 2).shape, dtype=torch.float64, device=dev),
        )
        qj = oc / m
        self._o1.index_add_(0, grp, qj)
        self._o2 += (qj * qj).sum(0)
        hjp, hjg, hjj = _hist_entropies(_dense_hist_sums(oc), n_m[:, None])
        self._ho[0].index_add_(0, grp, hjg)
        self._ho[1].index_add_(0, grp, hjp)
        self._gap[1:] += (hjj - hjg).abs().sum(0).to(self._gap.device)

    def _merge_state(self, other: WholeEI, trans: torch.Tensor) -> None:
        assert isinstance(other, SampledWholeEI)  # merge() checked the modes
        self._remap(other._y1, self._y1, trans)
        self._remap(other._i1, self._i1, trans)
        keys, vals = other._y2.items()
        self._y2.add(trans[keys.to(self._acc)], vals.to(self._acc))
        keys, vals = other._i2.items()
        keys = keys.to(self._acc)
        self._i2.add(((keys >> _U_BITS) << _U_BITS) | trans[keys & _U_MASK], vals.to(self._acc))
        for name in ("_ncell", "_hc", "_o1", "_o2", "_ho", "_cia"):
            getattr(self, name).add_(getattr(other, name).to(self._acc))
        self._kc += other._kc
        self._gap += other._gap
        self._half += other._half

    def _compute(self) -> WholeResult:
        k_ = self.batches
        warns: list[str] = []
        n_u = self._ids.n
        ck = self._ncell.to("cpu")
        c_tot = float(ck.sum())
        valid = ck > 0
        # replicate columns: 0 = all batches, 1..K = leave batch k out
        c_r = torch.cat([ck.sum().view(1), c_tot - ck])  # (R,)

        # -- whole EI
        keys, vals = _cpu_items(self._y1)
        s1 = torch.zeros(n_u, k_, dtype=torch.float64)
        s1.index_put_((keys & _U_MASK, keys >> _U_BITS), vals, accumulate=True)
        s2 = torch.zeros(n_u, dtype=torch.float64)
        k2, v2 = _cpu_items(self._y2)
        s2.index_put_((k2,), v2, accumulate=True)
        hy_c, hy_p = _mix_entropy(_replicates(s1), s2, c_r, None, 1)
        hc = self._hc.to("cpu")
        cond = _replicates(hc[0]) / c_r.clamp(min=1.0)
        ei_r = hy_c - cond
        ei_plug = hy_p[0] - hc[1].sum() / c_tot
        hy_plug = float(hy_p[0])
        # -- warnings with numbers
        undersampled = hy_plug > math.log2(max(c_tot, 1)) - 1.0 or n_u > 0.2 * c_tot
        if undersampled:
            warns.append(
                f"H(Y) is undersampled: {n_u} distinct output tuples among {int(c_tot)} cells "
                f"(plug-in H(Y) = {hy_plug:.2f} bits, log2(cells) = {math.log2(c_tot):.2f}); "
                "EI may be underestimated. Sample more cells or use fewer output bins."
            )
        m_frac = self._kc / c_tot
        if m_frac > 0.25:
            warns.append(
                f"within-cell entropies are undersampled: a cell's points show on average "
                f"{100 * m_frac:.0f} % distinct output tuples; use more points per cell."
            )
        if int(valid.sum()) < k_:
            warns.append(
                f"only {int(valid.sum())} cells: the jackknife uses {int(valid.sum())} batches."
            )
        gap = (self._gap / max(c_tot, 1.0)).numpy()
        ei = self._estimates(
            ei_r[:1], ei_r[1:].view(1, -1), valid, ei_plug.view(1), warns, gap[:1]
        )[0]
        conditional = self._estimates(
            cond[:1], cond[1:].view(1, -1), valid, (hc[1].sum() / c_tot).view(1), None, gap[:1]
        )[0]
        outs: list[Estimate] = []
        if self.with_outputs:
            outs = self._output_nodes(c_r, valid, gap)
        # -- input nodes I(X_i; Y) = H(Y) - sum_a (1/B) H(Y | X_i = a)
        ins: list[Estimate] = []
        if self.with_inputs:
            ins = self._input_nodes(hy_c, hy_p, valid, warns)
        ei_half = math.nan
        if float(self._half[1]) > 0:
            ei_half = float(hy_c[0]) - float(self._half[0] / self._half[1])
        return WholeResult(ei, outs, ins, warns, int(c_tot), n_u, ei_half,
                           conditional=conditional, undersampled=undersampled)

    def _output_nodes(self, c_r, valid, gap) -> list[Estimate]:
        """I(X; Y_j) per output from the per-cell histograms of each Y_j."""
        k_, c_tot = self.batches, float(c_r[0])
        o1 = self._o1.to("cpu").permute(1, 2, 0).reshape(-1, k_)  # (n_out*Bout, K)
        o2 = self._o2.to("cpu").reshape(-1)
        seg = torch.arange(self.n_out).repeat_interleave(self.out_bins)
        hj_c, hj_p = _mix_entropy(_replicates(o1), o2, c_r, seg, self.n_out)
        ho = self._ho.to("cpu")  # (2, K, n_out)
        condj = _replicates(ho[0].T) / c_r.clamp(min=1.0)
        oj = hj_c - condj  # (n_out, R)
        oj_plug = hj_p[:, 0] - ho[1].sum(0) / c_tot
        return self._estimates(oj[:, 0], oj[:, 1:], valid, oj_plug, None, gap[1:])

    def _input_nodes(self, hy_c, hy_p, valid, warns) -> list[Estimate]:
        """I(X_i; Y) per input from the (input, bin, output tuple) sums."""
        k_, nia = self.batches, self.n_in * self.in_bins
        upair, s1, _, _ = _per_batch(self._i1, k_)  # keys (input bin, output tuple)
        k2, v2 = _cpu_items(self._i2)
        pos = torch.searchsorted(k2, upair).clamp(max=max(k2.numel() - 1, 0))
        s2 = torch.where(k2[pos] == upair, v2[pos], 0.0)
        seg = upair >> _U_BITS
        cia = _replicates(self._cia.to("cpu").T)  # (n_in*Bin, R)
        # per (i, a) mixture entropies, each with its own cell count per replicate
        s1_r = _replicates(s1)
        pb = s1_r / cia[seg].clamp(min=1.0)
        hk = -_xlog2x(pb)
        h = torch.zeros(nia, hk.shape[1], dtype=torch.float64).index_add_(0, seg, hk)
        full = s1_r[:, :1]
        ratio = torch.where(full > 0, s2[:, None] / full.clamp(min=1e-300), 0.0)
        rt = torch.zeros(nia, 1, dtype=torch.float64).index_add_(0, seg, ratio)
        bias = (rt - 1).clamp(min=0) / (2 * LN2 * (cia - 1).clamp(min=1.0))
        h_c, h_p = (h + bias).view(self.n_in, self.in_bins, -1), h.view(self.n_in, self.in_bins, -1)
        seen = (cia[:, 0] > 0).view(self.n_in, self.in_bins).to(torch.float64)
        w = seen / seen.sum(1, keepdim=True).clamp(min=1.0)
        cond_c = (w[..., None] * h_c).sum(1)  # (n_in, R)
        cond_p = (w * h_p[..., 0]).sum(1)
        full_i = hy_c - cond_c
        plug_i = hy_p[0] - cond_p
        if bool((seen < 1).any()):
            warns.append(
                "some input bins were never drawn for some inputs: input-node terms use the "
                "observed bins only; sample more cells."
            )
        return self._estimates(full_i[:, 0], full_i[:, 1:], valid, plug_i)


class ExhaustiveWholeEI(WholeEI):
    """:class:`WholeEI` over every cell (``in_bins ** n_in`` of them; each ``update`` may
    hold any subset, and a cell's points pool across updates): no cell-sampling noise, so
    the jackknife is over round-robin batches of points. Build it as
    ``WholeEI(..., exhaustive=True)`` or directly, with the same arguments."""

    _MODE = True

    def _init_state(self) -> None:
        acc = self._acc
        self._ex = _SparseSum(acc)  # key ((cell * K + g) << 40) | u : count
        self._exo = _SparseSum(acc)  # key ((cell*K + g) * n_out + j) * Bout + b : count
        self._pt: torch.Tensor | None = None  # points per cell so far

    @property
    def cells_seen(self) -> int:
        """Distinct cells with points."""
        if self._pt is not None:
            return int((self._pt > 0).sum())
        return self._cells

    def _ncells_all(self) -> int:
        return self.in_bins**self.n_in

    def _update(self, c: torch.Tensor, y: torch.Tensor, u: torch.Tensor) -> None:
        k_, m = self.batches, u.shape[1]
        dev = u.device
        n_all = self._ncells_all()
        if n_all * k_ >= 1 << 22:
            raise ValueError(
                f"exhaustive=True with {self.in_bins}**{self.n_in} = {n_all} cells is too many "
                "to keep per cell: sample cells instead (exhaustive=False)."
            )
        if self._pt is None:
            self._pt = torch.zeros(n_all, dtype=torch.int64, device=dev)
        cid = encode_rows(c, self.in_bins)  # (C,)
        # points are dealt round-robin into batches, offset per cell so batches stay balanced
        g = (cid[:, None] + self._pt[cid][:, None] + torch.arange(m, device=dev)) % k_
        self._pt.index_add_(0, cid, torch.full_like(cid, m))
        base = cid[:, None] * k_ + g  # (C, M)
        self._ex.add((base << _U_BITS) | u, torch.ones(u.shape, dtype=torch.float64, device=dev))
        if self.with_outputs:
            jb = torch.arange(self.n_out, device=dev) * self.out_bins + y  # (C, M, n_out)
            key = base[..., None] * (self.n_out * self.out_bins) + jb
            self._exo.add(key, torch.ones(key.shape, dtype=torch.float64, device=dev))

    def _merge_state(self, other: WholeEI, trans: torch.Tensor) -> None:
        assert isinstance(other, ExhaustiveWholeEI)  # merge() checked the modes
        self._remap(other._ex, self._ex, trans)
        keys, vals = other._exo.items()
        self._exo.add(keys.to(self._acc), vals.to(self._acc))
        if other._pt is not None:
            self._pt = other._pt.clone() if self._pt is None else self._pt + other._pt.to(self._acc)

    def _compute(self) -> WholeResult:
        k_ = self.batches
        warns: list[str] = []
        n_all = self._ncells_all()
        n_u = self._ids.n
        pt = self._pt.to("cpu")
        if int((pt == 0).sum()):
            warns.append(
                f"exhaustive mode but {int((pt == 0).sum())} of {n_all} cells have no points: "
                "EI is over the observed cells only."
            )
        if int(pt[pt > 0].min()) < 2 * k_:
            warns.append(
                f"only {int(pt[pt > 0].min())} points in some cells for {k_} jackknife batches: "
                "the CI is rough; use more points per cell."
            )

        # -- per (cell, output tuple): counts per point batch -> replicates
        upair, cnt_g, g, vals = _per_batch(self._ex, k_)  # keys (cell, output tuple)
        cnt = _replicates(cnt_g)  # (E, R)
        e_cell, e_u = upair >> _U_BITS, upair & _U_MASK
        n_cell = torch.zeros(n_all, cnt.shape[1], dtype=torch.float64).index_add_(0, e_cell, cnt)
        pts_k = torch.zeros(k_, dtype=torch.float64).index_add_(0, g, vals)
        valid = pts_k > 0
        ei_c, ei_p, hy, gap_c = self._ei_parts(cnt, e_cell, e_u, n_cell, n_u, self.with_inputs)
        seen = n_cell[:, 0] > 0
        gap_y = float(gap_c[0][seen].mean())
        ei = self._estimates(ei_c[:1], ei_c[1:].view(1, -1), valid, ei_p.view(1), warns, [gap_y])[0]
        # half-points diagnostic: the point batches 0 .. K/2 - 1 (about half of every
        # cell's points, since points are dealt round-robin with a per-cell offset)
        c_half = cnt_g[:, : k_ // 2].sum(1, keepdim=True)
        n_half = torch.zeros(n_all, 1, dtype=torch.float64).index_add_(0, e_cell, c_half)
        h_half = _hist_entropies(_sparse_hist_sums(c_half, e_cell, n_all), n_half)[1][:, 0]
        # paired: EI(M/2) - EI(M) = mean H(Y | cell) from all points - from half of them
        ei_half = float(ei_c[0]) + float(gap_c[1][seen].mean() - h_half[seen].mean())
        outs: list[Estimate] = []
        if self.with_outputs:
            outs = self._output_nodes(n_all, seen, valid)
        ins: list[Estimate] = []
        if self.with_inputs:
            ins = self._input_nodes(cnt, e_cell, e_u, n_cell, n_all, hy, valid)
        return WholeResult(ei, outs, ins, warns, int((pt > 0).sum()), n_u, ei_half)

    def _output_nodes(self, n_all, seen, valid) -> list[Estimate]:
        """I(X; Y_j): units (cell, j), outcomes (j, b)."""
        k_ = self.batches
        keys, vals = _cpu_items(self._exo)
        nb = self.n_out * self.out_bins
        jb, rest = keys % nb, keys // nb
        cell_o, g_o = rest // k_, rest % k_
        ukey, inv = torch.unique(cell_o * nb + jb, sorted=True, return_inverse=True)
        cnt_o = torch.zeros(ukey.numel(), k_, dtype=torch.float64)
        cnt_o.index_put_((inv, g_o), vals, accumulate=True)
        cnt_o = _replicates(cnt_o)
        oc, ojb = ukey // nb, ukey % nb
        oj = ojb // self.out_bins
        unit = oc * self.n_out + oj
        n_unit = torch.zeros(n_all * self.n_out, cnt_o.shape[1], dtype=torch.float64)
        n_unit.index_add_(0, unit, cnt_o)
        outs_c, outs_p, gap_u = self._mixture(
            cnt_o, unit, ojb, n_unit, nb, torch.arange(nb) // self.out_bins, self.n_out,
            unit_stratum=torch.arange(n_all * self.n_out) % self.n_out,
        )  # fmt: skip
        gap_o = gap_u[0].view(n_all, self.n_out)[seen].mean(0).numpy()
        return self._estimates(outs_c[:, 0], outs_c[:, 1:], valid, outs_p, None, gap_o)

    def _input_nodes(self, cnt, e_cell, e_u, n_cell, n_all, hy, valid):
        """H(Y) - sum_a (1/B) H(Y | X_i = a), mixtures over the cells with c_i = a."""
        powers = self.in_bins ** torch.arange(self.n_in - 1, -1, -1)
        tup = (e_cell[:, None] // powers) % self.in_bins  # (E, n_in)
        ia = tup + torch.arange(self.n_in) * self.in_bins  # (E, n_in)
        nia = self.n_in * self.in_bins
        q = cnt / n_cell[e_cell].clamp(min=1.0)
        v = q * (1 - q) / n_cell[e_cell].clamp(min=1.0)
        cell_tup = (torch.arange(n_all)[:, None] // powers) % self.in_bins
        cell_ia = cell_tup + torch.arange(self.n_in) * self.in_bins  # (n_all, n_in)
        obs = (n_cell > 0).to(torch.float64)  # (n_all, R)
        c_ia = torch.zeros(nia, obs.shape[1], dtype=torch.float64)
        c_ia.index_add_(0, cell_ia.reshape(-1), obs.repeat_interleave(self.n_in, 0))
        okey = (ia << _U_BITS) | e_u[:, None]  # (E, n_in)
        uok, oinv = torch.unique(okey.reshape(-1), sorted=True, return_inverse=True)
        wt = 1.0 / c_ia[ia.reshape(-1)].clamp(min=1.0)  # (E*n_in, R)
        qe = q.repeat_interleave(self.n_in, 0)
        ve = v.repeat_interleave(self.n_in, 0)
        pbar = torch.zeros(uok.numel(), q.shape[1], dtype=torch.float64)
        pbar.index_add_(0, oinv, qe * wt)
        var = torch.zeros_like(pbar).index_add_(0, oinv, ve * wt * wt)
        seg = uok >> _U_BITS
        hk = -_xlog2x(pbar)
        bk = torch.where(pbar > 0, var / pbar.clamp(min=1e-300), 0.0) / (2 * LN2)
        h_ia = torch.zeros(nia, q.shape[1], dtype=torch.float64).index_add_(0, seg, hk)
        b_ia = torch.zeros_like(h_ia).index_add_(0, seg, bk)
        cond_c_i = ((h_ia + b_ia).view(self.n_in, self.in_bins, -1)).mean(1)
        cond_p_i = h_ia.view(self.n_in, self.in_bins, -1)[..., 0].mean(1)
        full_i = hy[0] - cond_c_i
        plug_i = hy[1] - cond_p_i
        return self._estimates(full_i[:, 0], full_i[:, 1:], valid, plug_i)

    def _ei_parts(self, cnt, e_cell, e_u, n_cell, n_u, hy_parts: bool = True):
        """Whole EI from per-cell histograms (replicate columns)."""
        n_all = n_cell.shape[0]
        ei_c, ei_p, gap = self._mixture(
            cnt, e_cell, e_u, n_cell, n_u, torch.zeros(n_u, dtype=torch.int64), 1,
            unit_stratum=torch.zeros(n_all, dtype=torch.int64),
        )  # fmt: skip
        if not hy_parts:
            return ei_c[0], ei_p[0], (ei_c[0] + math.nan, math.nan), gap
        # H(Y) parts alone (for input nodes)
        q = cnt / n_cell[e_cell].clamp(min=1.0)
        obs = (n_cell > 0).to(torch.float64)
        w = 1.0 / obs.sum(0).clamp(min=1.0)
        pbar = torch.zeros(n_u, cnt.shape[1], dtype=torch.float64).index_add_(0, e_u, q * w)
        v = q * (1 - q) / n_cell[e_cell].clamp(min=1.0)
        var = torch.zeros_like(pbar).index_add_(0, e_u, v * w * w)
        h = -_xlog2x(pbar).sum(0)
        b = (torch.where(pbar > 0, var / pbar.clamp(min=1e-300), 0.0) / (2 * LN2)).sum(0)
        return ei_c[0], ei_p[0], (h + b, h[0]), gap

    def _mixture(self, cnt, unit, outcome, n_unit, n_outcome, outcome_stratum, n_strata,
                 unit_stratum):  # fmt: skip
        """I(cell; Y_s) per stratum s from per-unit histograms (columns = replicates).

        ``unit`` = histogram owner (a cell, or a (cell, output) pair) of each entry,
        ``outcome`` its outcome key. Mixture ``p = mean over observed units of q_unit``
        per stratum; bias of H(p) from the within-unit multinomial variance; the
        conditional part is the mean Grassberger entropy of the units. Also returns
        ``[|jackknife - Grassberger|, Grassberger]`` per unit (all points; the first is
        the bias allowance).
        """
        nu = n_unit[unit].clamp(min=1.0)
        q = cnt / nu
        obs = (n_unit > 0).to(torch.float64)  # (units, R)
        n_obs = torch.zeros(n_strata, cnt.shape[1], dtype=torch.float64)
        n_obs.index_add_(0, unit_stratum, obs)
        w = 1.0 / n_obs.clamp(min=1.0)  # (strata, R)
        we = w[outcome_stratum[outcome]]
        pbar = torch.zeros(n_outcome, cnt.shape[1], dtype=torch.float64)
        pbar.index_add_(0, outcome, q * we)
        var = torch.zeros_like(pbar).index_add_(0, outcome, q * (1 - q) / nu * we * we)
        hk = -_xlog2x(pbar)
        bk = torch.where(pbar > 0, var / pbar.clamp(min=1e-300), 0.0) / (2 * LN2)
        h = torch.zeros(n_strata, cnt.shape[1], dtype=torch.float64)
        h.index_add_(0, outcome_stratum, hk)
        b = torch.zeros_like(h).index_add_(0, outcome_stratum, bk)
        hu, hg, hj = _hist_entropies(_sparse_hist_sums(cnt, unit, n_unit.shape[0]), n_unit)
        wu = w[unit_stratum] * obs
        cond_c = torch.zeros_like(h).index_add_(0, unit_stratum, hg * wu)
        cond_p = torch.zeros_like(h).index_add_(0, unit_stratum, hu * wu)
        return h + b - cond_c, (h - cond_p)[:, 0], torch.stack([(hj - hg)[:, 0].abs(), hg[:, 0]])

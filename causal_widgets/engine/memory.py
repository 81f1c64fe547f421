"""Memory planned before allocating: what a measurement's tables will take, per layer.

:func:`measure_layer` asks :func:`plan` before it builds anything. The big allocations
are known in closed form from the layer's size and the settings:

* sampled EI_parts / sensitivity (:class:`~causal_widgets.engine.pairwise.PairwiseMI`):
  one ``(n_out * out_bins, n_in * in_bins)`` count table per CI batch, in float64 plus
  an int32 staging copy;
* the exact engine: per block of outputs, ``n_in x block x in_bins x (out_bins + 1)``
  float64 CDF tables, two of them at once (its ``block`` shrinks to one output at a time,
  so one output's tables must fit);
* the dense form of the layer itself (``n_out x n_in`` float64) and one forward chunk.

Whole EI's tables grow with the samples drawn (``max_samples`` caps them), not with the
layer, and are bounded by the estimator itself.

A layer whose pairwise tables do not fit ``memory_budget`` is measured on a seeded random
subset of its outputs that does (docs/metrics.md, "Subsets for wide layers"); one that
does not fit even with a single output (too many bins, or too many inputs) is refused
with an error naming the layer, the size and what to change.
"""

from __future__ import annotations

from dataclasses import dataclass

#: default memory_budget (bytes): the largest tables one layer's measurement may build
DEFAULT_MEMORY_BUDGET = 2**32
#: CI batches of PairwiseMI (its default), each with its own count table
_PAIRWISE_BATCHES = 20
#: bytes per count-table entry: a float64 table and an int32 staging copy
_PAIRWISE_ENTRY = 12
#: the exact engine keeps about two float64 CDF tables of one block at a time
_EXACT_ENTRY = 16
#: fewest outputs a subset measures (below that, the interval over outputs means little)
MIN_SUBSET = 8


def human_bytes(n: float) -> str:
    """``1.5 GiB``-style size."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"  # pragma: no cover


def pairwise_bytes(n_in: int, n_out: int, in_bins: int, out_bins: int) -> int:
    """Peak bytes of PairwiseMI's tables for ``n_out`` outputs."""
    return _PAIRWISE_BATCHES * _PAIRWISE_ENTRY * n_in * in_bins * n_out * out_bins


def exact_bytes(n_in: int, in_bins: int, out_bins: int) -> int:
    """Peak bytes of the exact engine's tables for one output (its smallest block)."""
    return _EXACT_ENTRY * n_in * in_bins * (out_bins + 1)


@dataclass(frozen=True)
class MemoryPlan:
    """What fits: ``outputs`` is every output (``n_out``), a smaller subset size, or 0 (the
    layer cannot be measured within the budget; ``why`` says what does not fit)."""

    outputs: int
    n_out: int
    needed: int  # bytes the full measurement would take
    budget: int
    why: str = ""

    @property
    def subset(self) -> bool:
        return 0 < self.outputs < self.n_out


def plan(
    name: str, n_in: int, n_out: int, in_bins: int, out_bins: int, *,
    sampled_pairs: bool, exact_pairs: bool, budget: int,
) -> MemoryPlan:
    """How many of ``n_out`` outputs a measurement can take within ``budget`` bytes."""
    fixed = 8 * n_in * n_out  # the dense form (or a chunk of outputs) of the layer
    if exact_pairs and exact_bytes(n_in, in_bins, out_bins) > budget:
        need = exact_bytes(n_in, in_bins, out_bins)
        return MemoryPlan(0, n_out, need, budget, (
            f"layer {name!r} ({n_in} -> {n_out}): the exact engine's tables for one output "
            f"take {human_bytes(need)} at {in_bins} x {out_bins} bins (inputs x in_bins x "
            f"out_bins floats), over memory_budget={human_bytes(budget)}: use fewer bins "
            "(the paper uses 8) or raise memory_budget."))
    if not sampled_pairs:
        return MemoryPlan(n_out, n_out, fixed, budget)
    per_output = pairwise_bytes(n_in, 1, in_bins, out_bins)
    need = fixed + per_output * n_out
    if need <= budget:
        return MemoryPlan(n_out, n_out, need, budget)
    fits = int((budget - min(fixed, budget // 2)) // per_output)
    if fits < min(MIN_SUBSET, n_out):
        return MemoryPlan(0, n_out, need, budget, (
            f"layer {name!r} ({n_in} -> {n_out}): its sampled pairwise tables take "
            f"{human_bytes(per_output)} per output ({human_bytes(need)} in all) at "
            f"{in_bins} x {out_bins} bins, so not even {min(MIN_SUBSET, n_out)} outputs "
            f"fit memory_budget={human_bytes(budget)}: use fewer bins, measure a smaller "
            "piece of the network (a conv layer by receptive field: leave in_shape=None, "
            "or use cw.measure(model, example_input)), or raise memory_budget."))
    return MemoryPlan(min(fits, n_out), n_out, need, budget)

"""Output ranges observed under the intervention: for spans whose sound bound is too wide.

A layer's ``out_range`` sets its output bins, so it should be the range its outputs take
**under the layer's own intervention** (every input independently uniform over
``in_range``, do(X = H^max)). For one Linear/Conv plus activation the exact interval
bound is that range (a corner of the input box attains it), and the exact engine uses it.
For a deeper span -- a residual block, a span of modules, a submodule, a transformer
sublayer, a LayerNorm -- the sound bound (interval propagation, ``beta -+ |gamma|
sqrt(d - 1)``) is attained only at corners the intervention practically never draws,
while the outputs, sums of many independent terms, concentrate: on a small ResNet the
block's bound is (0, 43.9) but its outputs under the intervention stay below 3.2, so at
4 bins nearly every output falls in one bin and every EI term is ~0 bits.

Such layers get the range **observed on a seeded probe of the intervention itself**:
:data:`PROBES` draws of the layer's input, uniform over ``in_range`` from a
``torch.Generator`` seeded by the layer's name (stable across processes: CRC-32, not
Python's salted ``hash``), run through the layer; the range is ``[min, max]`` over every
output and draw, widened by :data:`MARGIN` of its width on each side, and intersected with
the sound bound (never wider than it). The layer's ``extra["out_range_kind"]`` is then
``"observed"`` (``"bound"`` / ``"natural"`` otherwise) and its ``note`` says so; values a
measurement draws outside the range are still clipped into the edge bins and counted in
``LayerResult.warnings``.

Why min/max and not quantiles: the range is shared by every output neuron, and for each
neuron ``j`` a fresh draw exceeds the maximum of ``N`` exchangeable probe draws of
``Y_j`` with probability at most ``1 / (N + 1)`` (order statistics), and the shared
maximum is at least ``Y_j``'s own. So with min/max at most ``2 / (N + 1)`` of a
measurement's values (0.024 % at ``N = 8192``) are expected outside before the margin,
which also absorbs the probe's own sampling noise at the extremes. Quantiles ``q`` and
``1 - q`` would instead clip about ``2 q`` of every measurement into the edge bins by
design (merging the tails there, a bias on every term) and gain bin resolution only when
tails are heavy; outputs of bounded inputs through a network are light-tailed (sums of
many bounded terms concentrate), so min/max costs few bins. The measured value depends on
the probe only through this range, and the probe is deterministic given the weights.

Only the maximum-entropy intervention is probed, because that is the one the range is
defined by. Sensitivity's intervention (one input uniform, every other held at 0) can
leave it: a LayerNorm then puts the perturbed feature at ``beta_i -+ gamma_i sqrt(d - 1)``,
its sound extreme, which lands clipped in an edge bin (on the small encoder of
``tests/network/real_models.py`` 1.5-4 % of the sensitivity values of each norm; the edge
bins keep the sign, which is all that output carries there). The engine counts and
reports them like any clipped value.

``SPAN_RANGES`` (the default of ``find_layers(span_ranges=...)``): ``"observed"`` as
above, chained (an observed range of a discovered block, norm or sublayer is the next
layer's input range), or ``"bound"``: the sound bounds only, as before. Cost: one probe
of :data:`PROBES` forward rows per observed layer, at ``find_layers`` time.
"""

from __future__ import annotations

import zlib

import torch

from causal_widgets.engine.binning import Range
from causal_widgets.engine.layer import Layer

__all__ = ["MARGIN", "PROBES", "SPAN_RANGE_CHOICES", "SPAN_RANGES", "observe_out_range"]

PROBES = 8192
MARGIN = 0.02
SPAN_RANGES = "observed"
SPAN_RANGE_CHOICES = ("observed", "bound")
# rows per forward call of the probe: bounds its memory for wide receptive fields
_CHUNK = 1024


def probe_seed(name: str) -> int:
    """The probe's seed: from the layer's name, the same in every process and run."""
    return zlib.crc32(name.encode("utf-8"))


def _device_of(fn) -> torch.device:
    """Where a layer function's weights live (CPU for a plain callable)."""
    if isinstance(fn, torch.nn.Module):
        for t in (*fn.parameters(), *fn.buffers()):
            return t.device
    return torch.device("cpu")


def observe_out_range(layer: Layer, bound: Range, *, probes: int = PROBES) -> Range | None:
    """``[min, max]`` of ``layer``'s outputs under its intervention, widened, inside ``bound``.

    ``None`` when the probe gives no finite outputs (the caller keeps ``bound``). A
    constant output gets a unit-width range around its value (still inside ``bound``).
    """
    # drawn on the CPU (the same draws whatever the model's device), run where it lives
    gen = torch.Generator().manual_seed(probe_seed(layer.name))
    device = _device_of(layer.fn)
    lo_in, hi_in = (float(v) for v in layer.in_range)
    y_lo, y_hi = float("inf"), float("-inf")
    with torch.no_grad():
        for start in range(0, probes, _CHUNK):
            rows = min(_CHUNK, probes - start)
            x = lo_in + (hi_in - lo_in) * torch.rand((rows, layer.n_in), generator=gen)
            y = layer.forward_flat(x.to(device))
            if not torch.isfinite(y).all():
                return None
            y_lo = min(y_lo, float(y.min()))
            y_hi = max(y_hi, float(y.max()))
    width = y_hi - y_lo
    pad = MARGIN * width if width > 0 else 0.5
    lo, hi = max(y_lo - pad, float(bound[0])), min(y_hi + pad, float(bound[1]))
    if not lo < hi:  # the bound is itself (almost) a point: keep it
        return None
    return lo, hi

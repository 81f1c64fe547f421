"""Spans and residual blocks by receptive field: one output position and the inputs it needs.

A span of a convolutional network (a residual block, ``("conv1", "bn2")``, ...) maps a
feature map to a feature map. Measured as one vector it would have
``C_in * H * W`` inputs and ``C_out * H' * W'`` outputs -- a 16x32x32 block is 16 384 x
16 384, far past any memory budget -- and its EI terms would mix positions that do not
interact. It is measured like a conv layer instead: the outputs are the ``C_out``
channels at **one output position** ``o`` (the centre of the output map), the inputs
**exactly the input neurons they depend on** (their receptive field), and it runs on a
crop of the input around that field, so memory scales with the receptive field, not with
the feature map.

How the receptive field is found (:func:`receptive_field_layer`)
-----------------------------------------------------------------
* **Support by gradient on probes.** The span runs (float64, a private copy) on
  ``_PROBES`` inputs drawn uniformly from its input range by a seeded generator; the
  gradient of ``sum_j v_j y_j(o)`` (random ``v``: an exact cancellation has probability
  zero) is taken with respect to the input, and the union of its non-zero entries over
  the probes is the support. Several probes matter: a ReLU that is off on one probe hides
  its inputs' gradient there.
* **Stride.** The support of the neighbouring output position ``o + 1`` (per spatial
  dimension) is shifted by the span's total stride ``S``. The crop starts at a multiple
  of ``S`` so that the cropped run samples the same input grid as the full map, and the
  output position in the crop is ``o - start / S``.
* **Whole dimensions.** A dimension whose support covers every input position (attention
  over a sequence) or whose output has size 1 is not cropped.
* **Verification.** On fresh random full inputs the cropped computation at the chosen
  position must equal the full-map computation there (float64, relative 1e-7), with
  every input outside the support drawn at random and the non-support cells inside the
  crop filled with the middle of the input range. If not (a position-dependent op, a
  global pooling inside the span, a missed dependency), ``ValueError`` says so: such a
  span has no per-position form, so request its layers one by one.

The layer's inputs are the support (shape ``crop_shape`` when the support fills the crop,
else a flat ``(k,)`` vector of the support cells in ``crop.reshape(-1)`` order); the
layer function embeds them in the crop (:class:`_CropFn`).

Layouts: per-sample tensors ``(C, L)``/``(C, H, W)`` are channels-first (conv maps);
``(T, d)`` tensors of a span without 1-d convs are channels-last (a sequence of tokens,
``batch_first`` transformers), so one output position is one token's ``d`` features.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from causal_widgets.engine.binning import Range

__all__ = ["ReceptiveField", "receptive_field_layer"]

_PROBES = 4
_CHECKS = 3
_RTOL = 1e-7


@dataclass
class ReceptiveField:
    """What :func:`receptive_field_layer` found: the layer function and its shapes."""

    fn: nn.Module
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    note: str
    extra: dict = field(default_factory=dict)


class _CropFn(nn.Module):
    """The span on a crop: support values in, the channels at one output position out."""

    def __init__(
        self, inner: nn.Module, crop_shape: tuple[int, ...], support: torch.Tensor | None,
        fill: float, out_index: tuple[int, ...], channels_last: bool,
    ):
        super().__init__()
        self.inner = inner
        self.crop_shape = crop_shape
        self.register_buffer("support", support)  # flat indices into the crop, or None
        self.fill = fill
        self.out_index = out_index
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if self.support is None:
            crop = x.reshape(n, *self.crop_shape)
        else:
            flat = torch.full((n, math.prod(self.crop_shape)), self.fill,
                              dtype=x.dtype, device=x.device)
            flat[:, self.support.to(x.device)] = x.reshape(n, -1)
            crop = flat.reshape(n, *self.crop_shape)
        y = self.inner(crop)
        if self.channels_last:
            return y[(slice(None), *self.out_index)]
        return y[(slice(None), slice(None), *self.out_index)]


def _private_copy(module: nn.Module) -> nn.Module:
    inner = copy.deepcopy(module).eval()
    inner.requires_grad_(False)
    return inner


def _spatial(shape: tuple[int, ...], channels_last: bool) -> tuple[int, ...]:
    return tuple(shape[:-1]) if channels_last else tuple(shape[1:])


def _at(y: torch.Tensor, o: tuple[int, ...], channels_last: bool) -> torch.Tensor:
    return y[(slice(None), *o)] if channels_last else y[(slice(None), slice(None), *o)]


def _support(
    f: nn.Module, in_shape: tuple[int, ...], o: tuple[int, ...], in_range: Range,
    channels_last: bool, gen: torch.Generator, probes: int,
) -> torch.Tensor:
    """Union over probes of the input cells with a non-zero gradient of the output at ``o``."""
    lo, hi = in_range
    x = (lo + (hi - lo) * torch.rand((probes, *in_shape), generator=gen,
                                     dtype=torch.float64)).requires_grad_(True)
    with torch.enable_grad():
        y = _at(f(x), o, channels_last).reshape(probes, -1)
        v = torch.randn(y.shape, generator=gen, dtype=torch.float64)
        (grad,) = torch.autograd.grad((y * v).sum(), x)
    return (grad != 0).any(dim=0)


def _box(mask: torch.Tensor, channels_last: bool) -> list[tuple[int, int]]:
    """Per spatial dimension, ``(first, last)`` index where ``mask`` is set."""
    spatial_dims = range(mask.dim() - 1) if channels_last else range(1, mask.dim())
    out = []
    for dim in spatial_dims:
        hit = mask.movedim(dim, 0).reshape(mask.shape[dim], -1).any(dim=1)
        idx = torch.nonzero(hit).reshape(-1)
        out.append((int(idx.min()), int(idx.max())))
    return out


def receptive_field_layer(
    module: nn.Module,
    in_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
    in_range: Range,
    *,
    name: str,
    channels_last: bool,
    seed: int = 0,
) -> ReceptiveField | None:
    """The span ``module`` as a per-position layer, or ``None`` when it is not spatial.

    ``in_shape`` / ``out_shape``: one sample's full input / output shapes. Not spatial:
    either tensor has one dimension (a vector span is measured whole). Raises
    ``ValueError`` when the cropped computation does not reproduce the full map.
    """
    if len(in_shape) < 2 or len(out_shape) < 2 or len(in_shape) != len(out_shape):
        return None
    gen = torch.Generator().manual_seed(seed)
    f64 = _private_copy(module).cpu().double()  # probes run on the CPU, whatever the device
    s_in = _spatial(in_shape, channels_last)
    s_out = _spatial(out_shape, channels_last)
    o = tuple((s - 1) // 2 for s in s_out)
    mask = _support(f64, in_shape, o, in_range, channels_last, gen, _PROBES)
    constant = False
    if not mask.any():  # dead units on these probes: try harder before giving up
        mask = _support(f64, in_shape, o, in_range, channels_last, gen, 8 * _PROBES)
    if not mask.any():
        # the output at o is constant on every probe (e.g. a ReLU off everywhere): there
        # is no receptive field to find; measure the input channels at the matching
        # position, on which every EI term of a truly constant output is 0
        constant = True
        centre = tuple(min(n_i - 1, (o_k * n_i) // max(n_o, 1))
                       for o_k, n_i, n_o in zip(o, s_in, s_out, strict=True))
        mask = torch.zeros(in_shape, dtype=torch.bool)
        mask[(*centre, slice(None)) if channels_last else (slice(None), *centre)] = True
    box = _box(mask, channels_last)
    shifted, ratio = [], []  # per spatial dim: stride from the neighbour's support, size ratio
    for k, ((a, b), n_in, n_out) in enumerate(zip(box, s_in, s_out, strict=True)):
        if n_out == 1 or (a == 0 and b == n_in - 1):
            shifted.append(0)  # not cropped: the whole dimension
            ratio.append(0)
            continue
        ratio.append(max(1, n_in // n_out))
        step = 1 if o[k] + 1 < n_out else -1
        o_next = tuple(v + step if j == k else v for j, v in enumerate(o))
        mask_next = _support(f64, in_shape, o_next, in_range, channels_last, gen, 1)
        if constant or not mask_next.any():
            shifted.append(ratio[-1])  # no gradient to tell
        else:
            shifted.append(max(1, abs(_box(mask_next, channels_last)[k][0] - a)))
    # the neighbour's support can be clipped by the map's border, so its shift can
    # understate the stride: the size ratio is the second candidate
    candidates = [tuple(shifted)] + ([tuple(ratio)] if tuple(ratio) != tuple(shifted) else [])
    problem = ""
    for strides in candidates:
        plan = _crop(mask, box, o, s_in, strides, channels_last, fill_range=in_range)
        fn, crop_slices, crop_shape, starts, full = plan
        problem = _verify(fn, f64, in_shape, in_range, crop_slices, o, channels_last, gen)
        if not problem:
            break
    if problem:
        raise ValueError(
            f"layer {name!r}: the span computed on the cropped receptive field {crop_shape} "
            f"does not reproduce the full feature map at output position {o} ({problem}). "
            "The span is not a per-position map (e.g. it pools globally or depends on the "
            "absolute position); request its Linear/Conv layers one by one instead."
        )
    fn.inner = _private_copy(module)  # the layer runs its own snapshot, in its dtype
    layer_in_shape = crop_shape if full else (int(fn.support.numel()),)
    channels = out_shape[-1] if channels_last else out_shape[0]
    what = "token" if channels_last else "position"
    note = (
        f"receptive field of output {what} {o} of the {tuple(s_out)} output map: "
        f"{int(mask.sum())} input neurons in a {crop_shape} crop"
        + ("" if full else " (inputs: the support cells only)")
        + f"; outputs: that {what}'s {channels} channels"
    )
    if constant:
        note += (
            "; the output there was constant on every probe, so no receptive field could be "
            "found: the inputs are the channels at the matching input position"
        )
    if channels_last and all(v == 0 for v in strides) and s_in:
        note += f"; window: the whole sequence of length {s_in[0]}"
    extra = {
        "receptive_field": int(mask.sum()), "crop_shape": crop_shape,
        "crop_start": tuple(starts), "out_position": o, "stride": tuple(strides),
        "channels_last": channels_last,
    }
    return ReceptiveField(fn, tuple(int(v) for v in layer_in_shape), (int(channels),),
                          note, extra)


def _crop(mask, box, o, s_in, strides, channels_last: bool, fill_range: Range):
    """The crop for given strides: the layer function, slices, shape, starts, full?"""
    starts, ends, o_crop = [], [], []
    for k, ((a, b), n_in, stride) in enumerate(zip(box, s_in, strides, strict=True)):
        if stride == 0:  # the whole dimension
            starts.append(0)
            ends.append(n_in)
            o_crop.append(o[k])
            continue
        start = (a // stride) * stride  # the cropped run samples the full map's grid
        starts.append(start)
        ends.append(b + 1)
        o_crop.append(o[k] - start // stride)
    spans = tuple(slice(a, b) for a, b in zip(starts, ends, strict=True))
    crop_slices = (*spans, slice(None)) if channels_last else (slice(None), *spans)
    crop_mask = mask[crop_slices]
    crop_shape = tuple(int(v) for v in crop_mask.shape)
    full = bool(crop_mask.all())
    support = None if full else torch.nonzero(crop_mask.reshape(-1)).reshape(-1)
    fill = 0.5 * (float(fill_range[0]) + float(fill_range[1]))
    return _CropFn(None, crop_shape, support, fill, tuple(o_crop), channels_last), \
        crop_slices, crop_shape, tuple(starts), full


def _verify(
    fn: _CropFn, f64: nn.Module, in_shape, in_range: Range, crop_slices, o,
    channels_last: bool, gen: torch.Generator,
) -> str:
    """``""`` if the cropped computation equals the full map's at ``o``, else what differs.

    Runs a float64 copy; on success ``fn`` gets its own (float32) copy of the module.
    """
    lo, hi = in_range
    x = lo + (hi - lo) * torch.rand((_CHECKS, *in_shape), generator=gen, dtype=torch.float64)
    fn.inner = f64
    try:
        with torch.no_grad():
            want = _at(f64(x), o, channels_last).reshape(_CHECKS, -1)
            crop = x[(slice(None), *crop_slices)].reshape(_CHECKS, -1)
            inputs = crop if fn.support is None else crop[:, fn.support]
            got = fn(inputs).reshape(_CHECKS, -1)
    except (RuntimeError, IndexError, ValueError) as err:
        return f"it does not run on the crop: {type(err).__name__}: {err}"
    finally:
        fn.inner = None
    scale = float(want.abs().max()) + 1e-12
    err = float((got - want).abs().max()) if got.shape == want.shape else math.inf
    if not err <= _RTOL * scale + 1e-12:
        return f"max difference {err:.3g}, output scale {scale:.3g}"
    return ""

"""Building layers: a discovered unit as a :class:`~causal_widgets.engine.layer.Layer`.

Each layer's ``fn`` is a private snapshot of the weights it runs (:class:`_DenseFn` for a
Linear/Conv plus activation, :class:`_PoolFn` for one pooling window, :class:`_ModuleFn`
for a block, submodule or span over vectors, ``receptive_field._CropFn`` for one over
feature maps or sequences), so training the model further does not change
it. Linear and Conv layers with a monotone activation (with an eval BatchNorm folded in,
:mod:`~causal_widgets.network.norm_folding`), standalone eval BatchNorm and average
pooling carry their dense form (built by :func:`causal_widgets.engine.layer.dense_form`),
so the exact engine applies, over their exact interval bound. Blocks, spans, submodules,
transformer sublayers and LayerNorms get the output range observed under their
intervention (:mod:`~causal_widgets.network.observed_ranges`), unless
``span_ranges="bound"``; ``extra["out_range_kind"]`` is ``"observed"``, ``"bound"`` or
``"natural"`` (sigmoid/tanh ends, pooling).
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from causal_widgets.engine.binning import Range, check_range
from causal_widgets.engine.layer import (
    Activation,
    DenseForm,
    Layer,
    check_finite_weights,
    dense_form,
)
from causal_widgets.network.interval_bounds import span_bounds
from causal_widgets.network.layer_norm import layer_norm_bounds, normalised_size
from causal_widgets.network.norm_folding import batchnorm_affine, fold_batchnorm
from causal_widgets.network.observed_ranges import (
    MARGIN,
    PROBES,
    _device_of,
    observe_out_range,
)
from causal_widgets.network.ranges import _Act
from causal_widgets.network.receptive_field import receptive_field_layer

if TYPE_CHECKING:  # only annotations: discovery imports this module
    from causal_widgets.network.discovery import _Discovery, _Unit


# --------------------------------------------------------------------------- layer functions


class _DenseFn(nn.Module):
    """``act(W x + b)`` for a Linear, or a conv on one receptive field (a weight snapshot).

    A module (weights as buffers) so that ``measure_layer`` finds its device and dtype.
    """

    def __init__(self, weight, bias, act: _Act | None, conv_dims: int = 0, groups: int = 1):
        super().__init__()
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.act = act.apply if act is not None else None
        self.conv_dims = conv_dims
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.device, x.dtype)
        b = None if self.bias is None else self.bias.to(x.device, x.dtype)
        if self.conv_dims == 1:
            z = F.conv1d(x, w, b, groups=self.groups).reshape(x.shape[0], -1)
        elif self.conv_dims == 2:
            z = F.conv2d(x, w, b, groups=self.groups).reshape(x.shape[0], -1)
        else:
            z = F.linear(x, w, b)
        return self.act(z) if self.act is not None else z


class _PoolFn(nn.Module):
    """One pooling window of one channel, ``(N, 1, *k) -> (N, 1)``: max or mean."""

    def __init__(self, kind: str, divisor: float):
        super().__init__()
        self.kind = kind
        self.divisor = divisor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1)
        if self.kind == "max":
            return flat.amax(dim=1, keepdim=True)
        return flat.sum(dim=1, keepdim=True) / self.divisor


class _ModuleFn(nn.Module):
    """A private eval-mode copy of a (sub)module or span: a snapshot of its weights."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.inner = copy.deepcopy(module).eval()
        self.inner.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def _channels_last(module: nn.Module, in_shape: tuple[int, ...]) -> bool:
    """``(T, d)`` token sequences are channels-last; conv maps ``(C, L)``/``(C, H, W)`` are not."""
    if len(in_shape) != 2:
        return False
    conv_like = (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AvgPool1d,
                 nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d)
    return not any(isinstance(m, conv_like) for m in module.modules())


def _widen(r: Range) -> Range:
    lo, hi = r
    if hi - lo <= 0:  # a constant side (e.g. dead ReLUs): give it a unit-width range
        return lo - 0.5, hi + 0.5
    return lo, hi


def _pool_window(mod: nn.Module, in_shape: tuple[int, ...]) -> tuple[tuple[int, ...], str]:
    """The window shape of one pooling output (adaptive pools: from the input size)."""
    dims = 1 if isinstance(mod, (nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d,
                                 nn.AdaptiveMaxPool1d)) else 2
    note = ""
    if hasattr(mod, "kernel_size"):
        k = mod.kernel_size
        k = (k,) * dims if isinstance(k, int) else tuple(k)
        return tuple(int(v) for v in k), note
    size = mod.output_size
    size = (size,) * dims if isinstance(size, int) or size is None else tuple(size)
    spatial = in_shape[-dims:]
    window = []
    for s_in, s_out in zip(spatial, size, strict=True):
        s_out = s_in if s_out is None else s_out
        window.append(math.ceil(s_in / s_out))
        if s_in % s_out:
            note = (
                f"adaptive pooling windows vary in size ({s_in} -> {s_out}); "
                "measured the largest window"
            )
    return tuple(window), note


def _build_layer(d: _Discovery, unit: _Unit) -> Layer:
    net = d.net
    info_in = net.info.get(unit.in_node)
    info_out = net.info.get(unit.out_node)
    notes = [unit.note] if unit.note else []
    r_in = d.ranges.get(unit.in_node)
    r_out = d.ranges.get(unit.out_node)
    if unit.kind in ("module", "span"):
        # a requested span's bound: the sound ranges, never ranges observed for other
        # layers under their own interventions (they need not cover this one's outputs)
        r_out = d.sound_ranges.get(unit.out_node)
    if unit.part is not None:  # a transformer sublayer: its own sound input/output bounds
        r_in, r_out = unit.part.in_range, unit.part.out_range
    if r_in is None or r_out is None:
        # a range that could not be derived is most often NaN weights upstream: name them
        check_finite_weights(net.model, "")
    if info_in is None or r_in is None:
        raise ValueError(
            f"layer {unit.name!r}: its input is not a tensor the probing pass saw; "
            "request a different layer or span."
        )
    if unit.in_node in d.observed:
        notes.append("in_range observed on example_input (no interval rule upstream)")
    extra: dict = {"kind": unit.kind, "path": unit.path}
    if unit.kind == "span":
        extra["span"] = tuple(unit.name.split("..", 1))
    dense = None
    activation = unit.act.activation if unit.act is not None else None
    if unit.kind in ("linear", "conv"):
        mod = net.modules[unit.path]
        check_finite_weights(mod, unit.path)
        if unit.norm_path:
            bn = net.modules[unit.norm_path]
            check_finite_weights(bn, unit.norm_path)
            mod = fold_batchnorm(mod, bn)  # a folded copy: same function, one dense form
            notes.append(
                f"folded {type(bn).__name__} {unit.norm_path!r} (eval mode, running "
                "statistics) into the weights and bias"
            )
            extra["folded_norm"] = unit.norm_path
        if unit.act is not None:
            notes.append(f"activation: {unit.act.desc}")
        else:
            activation = Activation("identity")
        if isinstance(mod, nn.Linear):
            in_shape, out_shape = (mod.in_features,), (mod.out_features,)
            fn = _DenseFn(mod.weight, mod.bias, unit.act)
        else:
            dims = 1 if isinstance(mod, nn.Conv1d) else 2
            in_shape = (mod.in_channels, *mod.kernel_size)
            out_shape = (mod.out_channels,)
            fn = _DenseFn(mod.weight, mod.bias, unit.act, conv_dims=dims, groups=mod.groups)
            notes.append(f"receptive field of one output position: {in_shape}")
        if activation.monotone:
            dense = dense_form(mod, activation)
    elif unit.kind == "transformer":
        check_finite_weights(unit.module_obj, unit.path)
        d_model = info_in.shape[-1]
        if unit.part.per_token:  # MLP sublayer / LayerNorm: one token's d features
            fn = _ModuleFn(unit.module_obj)
            in_shape = out_shape = (d_model,)
            if not unit.note:
                notes.append(f"LayerNorm over one token's {d_model} features (sampled)")
        else:  # self-attention: the whole window in, one token out
            rf = receptive_field_layer(unit.module_obj, info_in.shape, info_in.shape,
                                       _widen(r_in), name=unit.name, channels_last=True)
            fn, in_shape, out_shape = rf.fn, rf.in_shape, rf.out_shape
            notes.append(rf.note)
            extra.update(rf.extra)
            extra["sequence_length"] = int(info_in.shape[0])
    elif unit.kind == "norm":
        mod = net.modules[unit.path]
        check_finite_weights(mod, unit.path)
        if isinstance(mod, nn.LayerNorm):
            if r_in is not None:  # sound whatever its input; never a range observed later
                r_out = layer_norm_bounds(mod, r_in)
            in_shape = out_shape = tuple(int(v) for v in mod.normalized_shape)
            fn = _ModuleFn(mod)
            notes.append(
                f"LayerNorm over one position's {normalised_size(mod)} features (sampled: "
                "no dense form); its sound out_range from gamma, beta and sqrt(d - 1)"
            )
        else:  # eval-mode BatchNorm not after a Linear/Conv: y_c = s_c z_c + t_c
            scale, shift = batchnorm_affine(mod)
            in_shape = out_shape = (int(mod.num_features),)
            activation = Activation("identity")
            dense = DenseForm(np.diag(scale.numpy()), shift.numpy().copy(), activation)
            fn = _DenseFn(torch.diag(scale).to(mod.running_var.dtype),
                          shift.to(mod.running_var.dtype), None)
            notes.append(
                f"{type(mod).__name__} (eval mode, running statistics) not directly after a "
                "Linear/Conv: one position's channels, a diagonal affine map"
            )
    elif unit.kind == "pool":
        mod = net.modules[unit.path]
        window, note = _pool_window(mod, info_in.shape)
        if note:
            notes.append(note)
        in_shape, out_shape = (1, *window), (1,)
        k = math.prod(window)
        if "Max" in type(mod).__name__:
            fn = _PoolFn("max", 1.0)
            extra["max_pool"] = k  # the engine's exact max-pool terms apply to it
        else:
            divisor = float(getattr(mod, "divisor_override", None) or k)
            fn = _PoolFn("avg", divisor)
            activation = Activation("identity")
            dense = DenseForm(np.full((1, k), 1.0 / divisor), np.zeros(1), activation)
        notes.append(f"one window of one channel: {window}")
        r_out = r_in  # pooling keeps its input range
    else:  # block / module / span: the sub-network itself
        if info_out is None or r_out is None:
            raise ValueError(
                f"layer {unit.name!r}: its output is not a tensor the probing pass saw; "
                "request a span that ends at a module producing one tensor."
            )
        check_finite_weights(unit.module_obj, unit.path)
        if unit.kind == "block":
            notes.append("residual block (its forward adds its input back)")
        elif unit.nodes and not (  # sigmoid/tanh ends keep their natural (paper's) range
            unit.out_node in d.acts and d.acts[unit.out_node].activation.natural_range
        ):  # a span/submodule: its own per-neuron bound over its input box
            bound = span_bounds(net, unit.nodes, unit.in_node, unit.out_node, _widen(r_in))
            if bound is not None:
                r_out = (max(r_out[0], bound[0]), min(r_out[1], bound[1]))
        rf = receptive_field_layer(
            unit.module_obj, info_in.shape, info_out.shape, _widen(r_in), name=unit.name,
            channels_last=_channels_last(unit.module_obj, info_in.shape),
        )
        if rf is not None:  # a feature map: one output position and its receptive field
            fn, in_shape, out_shape = rf.fn, rf.in_shape, rf.out_shape
            notes.append(rf.note)
            extra.update(rf.extra)
        else:  # vectors in and out: the sub-network whole
            fn = _ModuleFn(unit.module_obj)
            in_shape, out_shape = info_in.shape, info_out.shape
        if unit.out_node in d.acts:
            activation = d.acts[unit.out_node].activation
    if r_out is None:
        raise ValueError(f"layer {unit.name!r}: could not derive an output range.")
    kind = _out_range_kind(d, unit)
    if unit.out_node in d.observed and unit.kind not in ("pool",) and kind != "observed":
        notes.append("out_range observed on example_input (no interval rule for some op)")
    in_range = check_range(_widen(r_in), f"in_range of layer {unit.name!r}")
    out_range = check_range(_widen(r_out), f"out_range of layer {unit.name!r}")
    layer = Layer(
        name=unit.name,
        fn=fn,
        in_shape=tuple(int(s) for s in in_shape),
        out_shape=tuple(int(s) for s in out_shape),
        in_range=in_range,
        out_range=out_range,
        dense=dense,
        activation=activation,
        note="; ".join(notes),
        extra=extra,
    )
    layer.extra["out_range_kind"] = kind
    if kind == "observed":
        # a range seen on example_input inside the span is no bound on what the
        # intervention does: then nothing caps the probe's range
        sound = unit.kind not in ("block", "module", "span") or unit.out_node not in d.observed
        bound = layer.out_range if sound else (-math.inf, math.inf)
        observed = observe_out_range(layer, bound)
        if observed is None:  # no finite outputs on the probe: keep the range it had
            layer.extra["out_range_kind"] = "bound" if sound else "example"
        else:
            layer.extra["out_range_bound"] = layer.out_range if sound else None
            layer.out_range = observed
            layer.note = (layer.note + "; " if layer.note else "") + (
                f"out_range observed: the outputs' min/max over {PROBES} seeded "
                f"interventions (+{MARGIN:.0%} of the width each side), "
                + (f"inside the sound bound ({bound[0]:.4g}, {bound[1]:.4g})" if sound
                   else "with no sound bound to cap it (an op without an interval rule)")
            )
    elif dense is None and unit.kind in ("block", "module", "span", "transformer"):
        _note_range_use(layer)
    return layer


# the layers whose sound bound is attained only at corners the intervention never draws
_OBSERVED_KINDS = ("block", "module", "span", "transformer")


def _out_range_kind(d: _Discovery, unit: _Unit) -> str:
    """``"natural"`` (sigmoid/tanh end, pooling), ``"observed"`` or ``"bound"``."""
    if unit.kind == "pool" or (
        unit.out_node in d.acts and d.acts[unit.out_node].activation.natural_range
        and unit.kind != "transformer"
    ):
        return "natural"
    if d.span_ranges != "observed":
        return "bound"
    layer_norm = unit.kind == "norm" and isinstance(d.net.modules.get(unit.path), nn.LayerNorm)
    return "observed" if unit.kind in _OBSERVED_KINDS or layer_norm else "bound"


# a sound bound of a deep span can be far wider than what its outputs do under the
# intervention (a sum of many terms concentrates): then most outputs share one bin
_RANGE_PROBES = 256
_WIDE_RANGE = 8.0


def _note_range_use(layer: Layer) -> None:
    """Record (and, when small, say) how much of ``out_range`` the outputs really use."""
    gen = torch.Generator().manual_seed(0)
    lo, hi = layer.in_range
    x = lo + (hi - lo) * torch.rand((_RANGE_PROBES, layer.n_in), generator=gen)
    with torch.no_grad():
        y = layer.forward_flat(x.to(_device_of(layer.fn)))
    used = float(y.max() - y.min()) / (layer.out_range[1] - layer.out_range[0])
    layer.extra["out_range_used"] = used
    if used * _WIDE_RANGE < 1.0:
        layer.note += (
            f"; out_range is a sound bound, but {_RANGE_PROBES} interventions used only "
            f"{used:.1%} of it, so at {int(_WIDE_RANGE)} or fewer bins most outputs share one "
            "bin and the EI terms are near 0 (to bin tighter, measure it with "
            "measure_layer(layer, out_range=(lo, hi)))"
        )

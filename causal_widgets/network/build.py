"""Building layers: a discovered unit as a :class:`~causal_widgets.engine.layer.Layer`.

Each layer's ``fn`` is a private snapshot of the weights it runs (:class:`_DenseFn` for a
Linear/Conv plus activation, :class:`_PoolFn` for one pooling window, :class:`_ModuleFn`
for a block, submodule or span), so training the model further does not change it. Linear
and Conv layers with a monotone activation, and average pooling, carry their dense form
(built by :func:`causal_widgets.engine.layer.dense_form`), so the exact engine applies.
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
from causal_widgets.network.ranges import _Act

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
    elif unit.kind == "pool":
        mod = net.modules[unit.path]
        window, note = _pool_window(mod, info_in.shape)
        if note:
            notes.append(note)
        in_shape, out_shape = (1, *window), (1,)
        k = math.prod(window)
        if "Max" in type(mod).__name__:
            fn = _PoolFn("max", 1.0)
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
        fn = _ModuleFn(unit.module_obj)
        in_shape, out_shape = info_in.shape, info_out.shape
        if unit.out_node in d.acts:
            activation = d.acts[unit.out_node].activation
        if unit.kind == "block":
            notes.append("residual block measured whole (its forward adds its input back)")
    if r_out is None:
        raise ValueError(f"layer {unit.name!r}: could not derive an output range.")
    if unit.out_node in d.observed and unit.kind not in ("pool",):
        notes.append("out_range observed on example_input (no interval rule for some op)")
    in_range = check_range(_widen(r_in), f"in_range of layer {unit.name!r}")
    out_range = check_range(_widen(r_out), f"out_range of layer {unit.name!r}")
    return Layer(
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

"""Per-neuron interval bounds of a span: tighter output ranges for blocks and spans.

The graph-wide rules of :mod:`~causal_widgets.network.ranges` keep one scalar interval
per node, shared by every neuron of the tensor. Inside a residual block that loses a lot:
after a BatchNorm each channel has its own interval, and the next conv, summing
``|w| * width`` over the hull of all channels, compounds the loss (on a 16-channel
BasicBlock the scalar bound of the block's output is ~3.5x, on the next block ~10x the
per-neuron one).

:func:`span_bounds` runs the span's own graph nodes on **interval tensors** ``(lo, hi)``
(interval bound propagation), starting from the span's input box ``[lo, hi]^n`` -- the
same box the layer's intervention draws from, so the result bounds the layer's outputs
under its intervention, as an ``out_range`` must:

* Linear / Conv: ``W mid + b -+ |W| rad`` (``mid``, ``rad``: the box's centre and radius);
* eval BatchNorm: the per-channel affine map, each end mapped and ordered;
* monotone elementwise ops (relu, sigmoid, tanh, leaky relu), pooling (max and average
  pooling are monotone), dropout/identity and reshapes: applied to both ends;
* ``+`` / ``-`` of two intervals, or with a constant; ``*`` by a constant; ``cat``.

Any other op (GELU, attention, a data-dependent shape, ...) returns ``None``: the caller
keeps its scalar range. Both bounds are sound, so the caller takes their intersection.
"""

from __future__ import annotations

import operator

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from causal_widgets.engine.binning import Range
from causal_widgets.engine.layer import activation_of
from causal_widgets.network.norm_folding import batchnorm_affine
from causal_widgets.network.ranges import _POOL_MODULES, _TRANSPARENT_MODULES
from causal_widgets.network.tracing import _Net

__all__ = ["span_bounds"]

_Box = tuple[torch.Tensor, torch.Tensor]

_MONOTONE_FUNCS = {
    torch.relu, F.relu, torch.relu_, F.relu_, torch.sigmoid, F.sigmoid, torch.tanh, F.tanh,
    F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d, F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.dropout,
    torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.permute,
    torch.transpose, torch.clone, operator.getitem, F.leaky_relu,
}
_MONOTONE_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "view", "reshape", "flatten",
    "squeeze", "unsqueeze", "permute", "transpose", "contiguous", "clone", "detach",
    "__getitem__", "expand", "t",
}
_OUT_OF_PLACE = {torch.relu_: torch.relu, F.relu_: F.relu}


class _Unsupported(Exception):
    """An op with no interval rule here: the span keeps its scalar range."""


def _is_box(v) -> bool:
    return isinstance(v, tuple) and len(v) == 2 and all(isinstance(t, torch.Tensor) for t in v)


def _const(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _affine(lo, hi, weight, bias, op) -> _Box:
    mid, rad = (lo + hi) / 2, (hi - lo) / 2
    c = op(mid, weight, bias)
    r = op(rad, weight.abs(), None)
    return c - r, c + r


def _module_box(mod: nn.Module, box: _Box) -> _Box:
    lo, hi = box
    if isinstance(mod, nn.Linear):
        return _affine(lo, hi, mod.weight.double(), _d(mod.bias), F.linear)
    if isinstance(mod, (nn.Conv1d, nn.Conv2d)):
        conv = F.conv1d if isinstance(mod, nn.Conv1d) else F.conv2d
        if isinstance(mod.padding, str) or mod.padding_mode != "zeros":
            raise _Unsupported(f"{type(mod).__name__} padding")

        def op(x, w, b, _m=mod, _c=conv):
            return _c(x, w, b, _m.stride, _m.padding, _m.dilation, _m.groups)

        return _affine(lo, hi, mod.weight.double(), _d(mod.bias), op)
    if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)) and mod.running_var is not None:
        scale, shift = batchnorm_affine(mod)
        shape = (1, -1) + (1,) * (lo.dim() - 2)
        s, t = scale.reshape(shape), shift.reshape(shape)
        a, b = s * lo + t, s * hi + t
        return torch.minimum(a, b), torch.maximum(a, b)
    if isinstance(mod, _POOL_MODULES + _TRANSPARENT_MODULES):
        return mod(lo), mod(hi)  # monotone (eval dropout, identity, reshapes, pooling)
    act = activation_of(mod)
    if act is not None and act.monotone:
        return act(lo), act(hi)
    raise _Unsupported(type(mod).__name__)


def _d(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().double()


_ADD = {operator.add, operator.iadd, torch.add, "add", "add_", "__add__", "__iadd__",
        "__radd__"}
_SUB = {operator.sub, operator.isub, torch.sub, "sub", "sub_", "__sub__"}
_MUL = {operator.mul, operator.imul, torch.mul, "mul", "mul_", "__mul__", "__rmul__"}
_ARITH = _ADD | _SUB | _MUL


def _arith(target, a, b):
    add, sub, mul = target in _ADD, target in _SUB, target in _MUL
    if add or sub:
        if _is_box(a) and _const(b):
            b = (torch.as_tensor(float(b)),) * 2
        if _const(a) and _is_box(b):
            a = (torch.as_tensor(float(a)),) * 2
        if _is_box(a) and _is_box(b):
            if add:
                return a[0] + b[0], a[1] + b[1]
            return a[0] - b[1], a[1] - b[0]
    if mul:
        box, c = (a, b) if _is_box(a) else (b, a)
        if _is_box(box) and _const(c):
            x, y = box[0] * c, box[1] * c
            return torch.minimum(x, y), torch.maximum(x, y)
    raise _Unsupported(str(target))


def _apply(net: _Net, n: fx.Node, env: dict):
    def val(a):
        if isinstance(a, fx.Node):
            if a not in env:
                raise _Unsupported(f"{a.name} outside the span")
            return env[a]
        if isinstance(a, (list, tuple)):
            return type(a)(val(v) for v in a)
        return a

    args = [val(a) for a in n.args]
    kwargs = {k: val(v) for k, v in n.kwargs.items() if k != "inplace"}
    if n.op == "call_module":
        if not args or not _is_box(args[0]) or len(args) > 1 or kwargs:
            raise _Unsupported(n.name)
        return _module_box(net.modules[n.target], args[0])
    if n.op not in ("call_function", "call_method"):
        raise _Unsupported(n.op)
    target = _OUT_OF_PLACE.get(n.target, n.target) if n.op == "call_function" else n.target
    if target in _ARITH:
        if len(args) != 2 or kwargs:  # e.g. torch.add(a, b, alpha=2)
            raise _Unsupported(f"{target} with {len(args)} arguments")
        return _arith(target, args[0], args[1])
    if n.op == "call_function" and target is torch.cat:
        parts = args[0]
        if not all(_is_box(p) for p in parts):
            raise _Unsupported("cat of constants")
        rest = args[1:]
        return (torch.cat([p[0] for p in parts], *rest, **kwargs),
                torch.cat([p[1] for p in parts], *rest, **kwargs))
    monotone = (n.op == "call_function" and target in _MONOTONE_FUNCS) or (
        n.op == "call_method" and target in _MONOTONE_METHODS
    )
    if not monotone or not args or not _is_box(args[0]):
        raise _Unsupported(str(target))
    if any(_is_box(a) for a in args[1:]) or any(_is_box(v) for v in kwargs.values()):
        raise _Unsupported(f"{target} with two interval arguments")
    if n.op == "call_method":
        name = target.rstrip("_") if target.endswith("_") and target != "__getitem__" else target
        return tuple(getattr(t, name)(*args[1:], **kwargs) for t in args[0])
    return tuple(target(t, *args[1:], **kwargs) for t in args[0])


def span_bounds(
    net: _Net, nodes, in_node: fx.Node, out_node: fx.Node, in_range: Range
) -> Range | None:
    """Interval bound of ``out_node`` over ``in_node in [lo, hi]^n`` through ``nodes``.

    ``nodes``: the span's graph nodes (any order; run in graph order). ``None`` when an
    op has no interval rule here or a shape is unknown.
    """
    info = net.info.get(in_node)
    if info is None:
        return None
    lo, hi = (float(v) for v in in_range)
    shape = (1, *info.shape)
    env: dict = {in_node: (torch.full(shape, lo, dtype=torch.float64),
                           torch.full(shape, hi, dtype=torch.float64))}
    try:
        with torch.no_grad():
            for n in sorted(set(nodes) - {in_node}, key=net.pos.get):
                if n.op == "get_attr":
                    raise _Unsupported("a parameter used directly")
                env[n] = _apply(net, n, env)
    except (_Unsupported, RuntimeError, TypeError, ValueError, IndexError):
        return None
    out = env.get(out_node)
    if not _is_box(out):
        return None
    return float(out[0].min()), float(out[1].max())

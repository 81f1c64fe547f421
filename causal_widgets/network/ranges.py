"""Range propagation: the scalar interval ``(lo, hi)`` of every node of a traced network.

Ranges are shared by every neuron of a side. The network input's range is given; ranges
then flow through the graph node by node:

* ``Linear`` / ``Conv``: exact interval bound of ``W x + b`` for ``x in [lo, hi]^n``
  (:func:`causal_widgets.engine.layer.linear_bounds`):
  ``z_hi = max_j (sum_k max(w_jk lo, w_jk hi) + b_j)``, ``z_lo`` likewise with ``min``;
* ``nn.TransformerEncoder(Layer)`` -> its sublayers' bounds in turn
  (:mod:`~causal_widgets.network.transformer`);
* LayerNorm -> ``beta -+ |gamma| sqrt(d - 1)`` (:mod:`~causal_widgets.network.layer_norm`);
  softmax over the features of ``m`` values in ``[lo, hi]`` ->
  ``[1/(1 + (m-1) e^(hi-lo)), 1/(1 + (m-1) e^(lo-hi))]``;
* sigmoid -> ``(0, 1)`` and tanh -> ``(-1, 1)`` (the activation's natural range, which is
  the paper's intervention range), relu/leaky_relu/identity -> the activation applied to
  the bound, other activations -> their min/max over ``[lo, hi]`` on a fine grid;
* pooling, dropout, reshapes keep the range; ``add``/``sub``/``mul`` use interval
  arithmetic; BatchNorm in eval mode is a per-channel affine map (directly after a
  Linear/Conv: the exact bound of the folded layer, see
  :mod:`~causal_widgets.network.norm_folding`); ``mean`` keeps the range.

Where no rule applies, the range observed on the example batch is used, and the node is
marked as observed (so are the nodes computed from it).

This module also says what the graph's ops are: which module types are pooling or
transparent (keep their input's value set), and which nodes are elementwise activations
(:func:`_act_of`).
"""

from __future__ import annotations

import copy
import functools
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from causal_widgets.engine.binning import Range
from causal_widgets.engine.layer import Activation, activation_of, dense_weight, linear_bounds
from causal_widgets.network.grid_range import grid_range
from causal_widgets.network.layer_norm import layer_norm_bounds
from causal_widgets.network.norm_folding import (
    batchnorm_affine,
    fold_batchnorm,
    foldable_batchnorm,
)
from causal_widgets.network.tracing import _Net
from causal_widgets.network.transformer import TRANSFORMER_MODULES, encoder_bounds

_POOL_MODULES = (
    nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
)
_TRANSPARENT_MODULES = (
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.FeatureAlphaDropout, nn.Identity, nn.Flatten, nn.Unflatten,
)
# functions / tensor methods that keep a tensor's value set (shape changes, copies,
# dropout in eval mode, pooling): the range passes through from their first argument
_TRANSPARENT_FUNCS = {
    torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.permute,
    torch.transpose, torch.clone, F.dropout, F.dropout1d, F.dropout2d, F.alpha_dropout,
    F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d, F.adaptive_max_pool1d, F.adaptive_max_pool2d, operator.getitem,
    torch.detach, torch.mean,
}
_TRANSPARENT_METHODS = {
    "view", "reshape", "flatten", "squeeze", "unsqueeze", "permute", "transpose",
    "contiguous", "clone", "detach", "float", "double", "to", "__getitem__", "view_as",
    "reshape_as", "expand", "expand_as", "t",
    "mean",  # an average of values in [lo, hi] lies in [lo, hi]
}
# functional activations understood exactly (kind) or sampled ("other")
_ACT_FUNCS: dict[Callable, str] = {
    torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", torch.special.expit: "sigmoid",
    torch.tanh: "tanh", F.tanh: "tanh",
    torch.relu: "relu", F.relu: "relu", torch.relu_: "relu", F.relu_: "relu",
    F.leaky_relu: "leaky_relu",
    F.gelu: "other", F.silu: "other", F.elu: "other", F.selu: "other", F.celu: "other",
    F.softplus: "other", F.mish: "other", F.softsign: "other", F.relu6: "other",
    F.hardtanh: "other", F.hardsigmoid: "other", F.hardswish: "other",
    F.logsigmoid: "other", F.tanhshrink: "other",
}
_ACT_METHODS = {
    "sigmoid": "sigmoid", "sigmoid_": "sigmoid", "tanh": "tanh", "tanh_": "tanh",
    "relu": "relu", "relu_": "relu",
}


# --------------------------------------------------------------------------- activations


@dataclass
class _Act:
    """An elementwise activation found in the graph, with a callable that applies it."""

    activation: Activation
    apply: Callable[[torch.Tensor], torch.Tensor]
    desc: str
    # not elementwise (softmax over the features): a sound output interval from the input
    # interval, used instead of the elementwise grid search
    bounds: Callable[[float, float], Range] | None = None


def _softmax_bounds(m: int) -> Callable[[float, float], Range]:
    """Softmax over ``m`` features each in ``[lo, hi]``: ``y_j`` is smallest when ``z_j = lo``
    and every other ``z = hi``, largest in the opposite case."""

    def bounds(lo: float, hi: float) -> Range:
        w = hi - lo
        if not math.isfinite(w):
            return 0.0, 1.0
        # e^lo / (e^lo + (m-1) e^hi) = 1 / (1 + (m-1) e^w), and symmetrically
        small = 1.0 / (1.0 + (m - 1) * math.exp(min(w, 700.0)))
        big = 1.0 / (1.0 + (m - 1) * math.exp(-min(w, 700.0)))
        return max(0.0, small - 1e-12), min(1.0, big + 1e-12)

    return bounds


def _softmax_act(net: _Net, n: fx.Node, dim) -> _Act | None:
    """Softmax over the last (feature) dimension is a per-position activation; any other
    dimension mixes positions and is not."""
    info = net.info.get(n)
    if info is None or not isinstance(dim, int):
        return None
    rank = len(info.shape) + 1  # with the batch dimension
    if dim not in (-1, rank - 1):
        return None
    return _Act(
        Activation("other"), functools.partial(torch.softmax, dim=-1),
        f"{n.target if n.op == 'call_module' else 'softmax'} (softmax over the features)",
        _softmax_bounds(info.shape[-1]),
    )


def _const(a) -> bool:
    return not isinstance(a, fx.Node) and not (
        isinstance(a, (list, tuple)) and any(isinstance(v, fx.Node) for v in a)
    )


def _act_of(net: _Net, n: fx.Node) -> _Act | None:
    """The activation node ``n`` computes (on its first argument), or ``None``."""
    if n.op == "call_module":
        mod = net.modules.get(n.target)
        if mod is None or isinstance(mod, nn.Identity):
            return None
        if isinstance(mod, nn.Softmax):
            return _softmax_act(net, n, mod.dim)
        act = activation_of(mod)
        if act is None:
            return None
        mod_copy = copy.deepcopy(mod)
        if hasattr(mod_copy, "inplace"):
            mod_copy.inplace = False
        return _Act(act, mod_copy, f"{n.target} ({type(mod).__name__})")
    if n.op not in ("call_function", "call_method") or len(n.args) < 1:
        return None
    if not all(_const(a) for a in n.args[1:]) or not all(_const(v) for v in n.kwargs.values()):
        return None
    args = tuple(n.args[1:])
    kwargs = {k: v for k, v in n.kwargs.items() if k != "inplace"}
    is_softmax = (n.op == "call_function" and n.target in (torch.softmax, F.softmax)) or (
        n.op == "call_method" and n.target == "softmax"
    )
    if is_softmax:
        if set(kwargs) - {"dim"}:
            return None  # a dtype or _stacklevel argument: leave it to the observed range
        return _softmax_act(net, n, args[0] if args else kwargs.get("dim"))
    if n.op == "call_function":
        try:
            kind = _ACT_FUNCS.get(n.target)
        except TypeError:  # unhashable target
            kind = None
        if kind is None:
            return None
        target = n.target
        name = getattr(target, "__name__", str(target))
        if name.endswith("_"):  # in-place variant: apply the out-of-place one
            target = getattr(torch, name[:-1], target)
        if kind == "leaky_relu":
            slope = args[0] if args else kwargs.get("negative_slope", 0.01)
            act = Activation("leaky_relu", float(slope))
        else:
            act = Activation(kind)

        return _Act(act, functools.partial(_call, target, args, kwargs), f"{name} (functional)")
    kind = _ACT_METHODS.get(n.target)
    if kind is None:
        return None
    method = n.target.rstrip("_")
    return _Act(Activation(kind), functools.partial(_call_method, method), f".{method}()")


# module-level (not closures), so that a layer's function pickles (process executors)
def _call(fn: Callable, args: tuple, kwargs: dict, t: torch.Tensor) -> torch.Tensor:
    return fn(t, *args, **kwargs)


def _call_method(method: str, t: torch.Tensor) -> torch.Tensor:
    return getattr(t, method)()


def _act_range(a: _Act, lo: float, hi: float) -> Range:
    if a.bounds is not None:
        return a.bounds(lo, hi)
    natural = a.activation.natural_range
    if natural is not None:
        return natural
    if a.activation.kind in ("identity", "relu", "leaky_relu"):
        y = a.activation.apply_numpy(np.array([lo, hi]))
        return float(y[0]), float(y[1])
    # any other elementwise function: its min/max over [lo, hi] on a fine grid
    return grid_range(a.apply, lo, hi)


# --------------------------------------------------------------------------- range propagation


def _scalar_range(net: _Net, a, ranges) -> Range | None:
    if isinstance(a, fx.Node):
        return ranges.get(a)
    if isinstance(a, (int, float)) and not isinstance(a, bool):
        return float(a), float(a)
    return None


def _node_range(net: _Net, n: fx.Node, ranges: dict, acts: dict) -> Range | None:
    """Interval rule for one node; ``None`` when no rule applies (observed range used)."""
    if n.op == "get_attr":
        try:
            t = getattr_path(net.model, n.target)
        except AttributeError:  # a constant fx made while tracing: use what the probe saw
            return None
        if isinstance(t, torch.Tensor) and t.numel():
            return float(t.min()), float(t.max())
        return None
    if n.op not in ("call_module", "call_function", "call_method"):
        return None
    src = n.args[0] if n.args else None
    r0 = ranges.get(src) if isinstance(src, fx.Node) else None
    if n in acts:
        natural = acts[n].activation.natural_range
        if natural is not None:  # sigmoid / tanh: whatever comes in (even NaN upstream)
            return natural
        return _act_range(acts[n], *r0) if r0 is not None else None
    if n.op == "call_module":
        mod = net.modules.get(n.target)
        if r0 is None:
            return None
        if isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            return linear_bounds(dense_weight(mod), mod.bias, r0)
        if isinstance(mod, _POOL_MODULES + _TRANSPARENT_MODULES):
            return r0
        if isinstance(mod, nn.LayerNorm):
            return layer_norm_bounds(mod, r0)
        if isinstance(mod, TRANSFORMER_MODULES) and len(n.args) == 1 and not n.kwargs:
            return encoder_bounds(mod, r0)
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)) and mod.running_var is not None:
            folded = _folded_bounds(net, n, src, mod, ranges)
            if folded is not None:  # exact bound of the folded layer: tighter than below
                return folded
            s, c = batchnorm_affine(mod)
            lo = torch.minimum(s * r0[0], s * r0[1]) + c
            hi = torch.maximum(s * r0[0], s * r0[1]) + c
            return float(lo.min()), float(hi.max())
        return None
    target = n.target
    if (n.op == "call_function" and target in _TRANSPARENT_FUNCS) or (
        n.op == "call_method" and target in _TRANSPARENT_METHODS
    ):
        return r0
    if n.op == "call_function" and target in (torch.cat, torch.stack):
        parts = [ranges.get(a) for a in (n.args[0] if n.args else ())]
        if parts and all(p is not None for p in parts):
            return min(p[0] for p in parts), max(p[1] for p in parts)
        return None
    arith = target if n.op == "call_function" else {
        "add": operator.add, "add_": operator.add, "__add__": operator.add,
        "sub": operator.sub, "sub_": operator.sub, "__sub__": operator.sub,
        "mul": operator.mul, "mul_": operator.mul, "__mul__": operator.mul,
        "neg": operator.neg, "__neg__": operator.neg,
    }.get(target)
    if len(n.args) >= 2:
        a = _scalar_range(net, n.args[0], ranges)
        b = _scalar_range(net, n.args[1], ranges)
        if a is None or b is None or n.kwargs.get("alpha", 1) != 1:
            return None
        if arith in (operator.add, operator.iadd, torch.add):
            return a[0] + b[0], a[1] + b[1]
        if arith in (operator.sub, operator.isub, torch.sub):
            return a[0] - b[1], a[1] - b[0]
        if arith in (operator.mul, operator.imul, torch.mul):
            p = [a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1]]
            return min(p), max(p)
        if arith in (operator.truediv, torch.div) and b[0] == b[1] and b[0] != 0:
            p = [a[0] / b[0], a[1] / b[0]]
            return min(p), max(p)
    elif arith in (operator.neg, torch.neg) and r0 is not None:
        return -r0[1], -r0[0]
    return None


def _folded_bounds(net: _Net, n: fx.Node, src, bn: nn.Module, ranges: dict) -> Range | None:
    """Exact bound of ``bn(core(x))`` when ``bn`` folds into the Linear/Conv ``src``."""
    if not isinstance(src, fx.Node) or src.op != "call_module" or len(src.users) != 1:
        return None
    core = net.modules.get(src.target)
    x = src.args[0] if src.args else None
    if not isinstance(core, (nn.Linear, nn.Conv1d, nn.Conv2d)) or x not in ranges:
        return None
    info = net.info.get(src)
    if foldable_batchnorm(core, bn, info.shape if info else None) is not None:
        return None
    folded = fold_batchnorm(core, bn)
    return linear_bounds(dense_weight(folded), folded.bias, ranges[x])


def getattr_path(obj, target: str):
    """``obj.a.b.c`` for ``target == "a.b.c"``."""
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _propagate(
    net: _Net, in_range: Range, acts: dict, tighter: dict | None = None
) -> tuple[dict, set]:
    """Scalar interval at every node; the set of nodes whose range was only observed.

    ``tighter``: node -> a sound interval found another way (a residual block's
    per-neuron bound, :mod:`~causal_widgets.network.interval_bounds`); the node's range is
    the intersection of both, and everything downstream follows from it.
    """
    tighter = tighter or {}
    ranges: dict[fx.Node, Range] = {}
    observed: set[fx.Node] = set()
    for n in net.nodes:
        if n.op == "placeholder":
            if not ranges:  # the (single) network input
                ranges[n] = in_range
            continue
        r = _node_range(net, n, ranges, acts)
        if r is None and n in net.info:
            # no interval rule for this op: fall back to what example_input produced here
            i = net.info[n]
            r = (i.lo, i.hi)
            observed.add(n)
        elif r is not None and any(a in observed for a in n.all_input_nodes):
            observed.add(n)
        if n in tighter:
            t = tighter[n]
            r = t if r is None else (max(r[0], t[0]), min(r[1], t[1]))
        if r is not None and all(math.isfinite(v) for v in r):
            ranges[n] = (float(r[0]), float(r[1]))
    return ranges, observed

"""Whole networks: find a model's measurable layers, name them, infer their ranges, measure them.

:func:`find_layers` turns ``model`` + ``example_input`` into a list of
:class:`~causal_widgets.engine.layer.Layer` objects, one per measurable layer, named by module
path (``"fc2"``, ``"features.3"``); :func:`measure` measures each with
:func:`causal_widgets.engine.layer_measure.measure_layer` and returns one tidy table.

What counts as a layer
----------------------
* ``nn.Linear`` plus the elementwise activation that follows it (a module such as
  ``nn.Sigmoid`` or a functional call such as ``torch.sigmoid`` / ``F.relu``), named by the
  Linear's path. With a monotone activation (identity, sigmoid, tanh, relu, leaky_relu)
  the layer carries its :class:`~causal_widgets.engine.layer.DenseForm`, so the exact engine
  applies. A Linear applied to a ``(N, T, d)`` tensor is measured per position (d -> m).
* ``nn.Conv1d`` / ``nn.Conv2d`` plus activation, by receptive field: the inputs are one
  ``C_in x k (x k)`` patch, the outputs the ``C_out`` channels at one output position.
  Stride, padding and dilation do not change what a single interior position computes,
  so the dense form is ``weight.reshape(C_out, -1)`` (block-diagonal for ``groups > 1``).
* pooling (``Max/AvgPool1d/2d``, ``AdaptiveMax/AvgPool1d/2d``) by window: the ``k (x k)``
  inputs of one channel -> 1 output. Average pooling is linear, so it gets a dense form
  (weights ``1/k^2``) and the exact engine; max pooling is sampled only.
* a residual block -- a submodule whose forward adds its own input back (found with
  torch.fx: an ``add`` node inside the module that takes the module's input) -- is one
  layer (the whole block); its inner parts can be requested as a span.
* Flatten, Dropout, Identity and standalone activations are not layers: they are
  transparent, but they do shape the ranges that flow to the next layer.
* anything else (BatchNorm, LayerNorm, Embedding, recurrent layers, ...) is skipped with
  a warning when discovered automatically, and is an error naming the module when asked
  for (a span through it, ``layers=[("conv1", "relu1")]``, is measurable).

``layers=`` picks layers by name: a module path (a Linear/Conv/pool layer, or any
submodule measured whole), or a span ``("a", "b")``: from the input of ``a`` to the output
of ``b`` (after ``b``'s activation when ``b`` is a Linear/Conv layer). Spans run the
sub-network between the two ends, so they need torch.fx; for models torch.fx cannot
trace, ``find_layers`` falls back to forward hooks over leaf modules, which finds the
Linear/Conv/pool layers and spans over plain chains, but no residual blocks.

Ranges (all scalar intervals ``(lo, hi)`` shared by every neuron of a side)
--------------------------------------------------------------------------
The first layer's input range is ``in_range`` or, if not given, the data range of
``example_input`` (with a warning). Ranges then flow through the network node by node:

* ``Linear`` / ``Conv``: exact interval bound of ``W x + b`` for ``x in [lo, hi]^n``:
  ``z_hi = max_j (sum_k max(w_jk lo, w_jk hi) + b_j)``, ``z_lo`` likewise with ``min``;
* sigmoid -> ``(0, 1)`` and tanh -> ``(-1, 1)`` (the activation's natural range, which is
  the paper's intervention range), relu/leaky_relu/identity -> the activation applied to
  the bound, other activations -> their min/max over ``[lo, hi]`` on a fine grid;
* pooling, dropout, reshapes keep the range; ``add``/``sub``/``mul`` use interval
  arithmetic; BatchNorm in eval mode is a per-channel affine map.

Each layer is intervened on independently over its own input range, and its output
range is the bound of its output under that intervention, so layer k's ``out_range`` is
layer k+1's ``in_range`` when nothing sits between them. Where no rule applies, the range
observed on ``example_input`` is used and the layer's ``note`` says so.

State
-----
The model is traced and probed in eval mode under ``torch.no_grad``; its weights,
train/eval flags, ``.grad`` and the global RNG state are left exactly as they were, and
every hook is removed. The returned layers hold a *copy* of the weights (a snapshot):
after training further, call :func:`find_layers` again (and :func:`check_same_structure`
to check that the layers kept their shapes).
"""

from __future__ import annotations

import copy
import difflib
import math
import operator
import threading
import warnings
import weakref
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from causal_widgets.engine.binning import Range, check_range
from causal_widgets.engine.layer import (
    Activation,
    DenseForm,
    Layer,
    activation_of,
    check_finite_weights,
)

__all__ = [
    "find_layers",
    "measure",
    "measure_layers",
    "check_same_structure",
    "FRAME_COLUMNS",
]

#: The columns every tidy table from :func:`measure` has (docs/design.md, "Tidy table").
FRAME_COLUMNS = [
    "layer", "metric", "value", "ci_low", "ci_high", "method", "samples",
    "in_bins", "out_bins", "in_range", "out_range", "seed", "version",
]

LayerSpec = str | tuple[str, str] | Layer

_DENSE_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d)
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
    torch.detach,
}
_TRANSPARENT_METHODS = {
    "view", "reshape", "flatten", "squeeze", "unsqueeze", "permute", "transpose",
    "contiguous", "clone", "detach", "float", "double", "to", "__getitem__", "view_as",
    "reshape_as", "expand", "expand_as", "t",
}
_ADD_TARGETS = {operator.add, operator.iadd, torch.add}
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
# how many rows of example_input the probing forward pass uses (the data range for the
# first layer always uses all of it); keeps probing cheap for big example batches
_PROBE_ROWS = 256
_GRID = 4097


# --------------------------------------------------------------------------- state


@contextmanager
def _untouched(model: nn.Module):
    """Run the body in eval mode under no_grad; restore every train flag and the RNG.

    Eval mode makes dropout the identity and BatchNorm use (and not update) its running
    statistics, so probing changes no buffer; the RNG state is restored in case some
    module draws random numbers even in eval mode.
    """
    modes = [(m, m.training) for m in model.modules()]
    cpu_rng = torch.get_rng_state()
    cuda_rng = (
        torch.cuda.get_rng_state_all()
        if torch.cuda.is_available() and torch.cuda.is_initialized()
        else None
    )
    try:
        for m, _ in modes:
            m.training = False  # the flag only: an overridden .eval() could have side effects
        with torch.no_grad():
            yield
    finally:
        for m, flag in modes:
            m.training = flag
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


# --------------------------------------------------------------------------- the traced graph


@dataclass
class _Info:
    """What the probing pass saw at one graph node (one tensor; batch dim dropped)."""

    shape: tuple[int, ...]
    lo: float
    hi: float


@dataclass
class _Net:
    """A model as an fx graph (traced, or rebuilt from hook records) plus probe results."""

    model: nn.Module
    graph: fx.Graph
    nodes: list[fx.Node]
    pos: dict[fx.Node, int]
    info: dict[fx.Node, _Info]
    modules: dict[str, nn.Module]
    traced: bool  # True: torch.fx symbolic trace; False: rebuilt from forward hooks


def _unmatched_input(*args):  # pragma: no cover - placeholder op, never executed
    """Marks, in a graph rebuilt from hooks, a value computed by code the hooks did not see."""
    raise RuntimeError("this part of the model was not seen by the forward hooks")


def _tensor_info(t) -> _Info | None:
    if not isinstance(t, torch.Tensor) or t.dim() == 0 or t.numel() == 0:
        return None
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64, torch.uint8)):
        return None
    v = t.detach()
    return _Info(tuple(int(s) for s in v.shape[1:]), float(v.min()), float(v.max()))


# torch.fx's symbolic tracing patches nn.Module.__call__ / __getattr__ *process-wide* while it
# runs, so a trace in the dashboard's worker thread would break the training thread's own
# forward passes. Each model is therefore traced once (the monitor does it on the caller's
# thread) and its GraphModule reused: it holds the model's own submodules and parameters,
# so later weights (loaded in place) are seen without tracing again.
_FX_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_FX_LOCK = threading.Lock()


def _module_structure(model: nn.Module) -> tuple:
    return tuple((name, type(m)) for name, m in model.named_modules()) + tuple(
        (name, tuple(p.shape)) for name, p in model.named_parameters()
    )


def traced(model: nn.Module) -> fx.GraphModule:
    """``torch.fx.symbolic_trace(model)``, cached per model object and module structure."""
    structure = _module_structure(model)
    with _FX_LOCK:
        hit = _FX_CACHE.get(model)
        if hit is not None and hit[0] == structure:
            return hit[1]
        gm = fx.symbolic_trace(model)
        _FX_CACHE[model] = (structure, gm)
        return gm


def _trace_fx(model: nn.Module, x: torch.Tensor) -> _Net:
    gm = traced(model)
    info: dict[fx.Node, _Info] = {}

    class _Probe(fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            i = _tensor_info(out)
            if i is not None:
                info[n] = i
            return out

    _Probe(gm).run(x)
    nodes = list(gm.graph.nodes)
    return _Net(
        model, gm.graph, nodes, {n: k for k, n in enumerate(nodes)}, info,
        dict(model.named_modules()), True,
    )


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and torch.allclose(
        a, b, rtol=1e-6, atol=1e-7, equal_nan=True
    )


def _trace_hooks(model: nn.Module, x: torch.Tensor) -> _Net:
    """Rebuild a chain-shaped fx graph from forward hooks over the leaf modules.

    Each leaf call becomes a ``call_module`` node. Its input is matched by value against
    earlier values (the model input and earlier leaf outputs, most recent first): equal,
    a reshape of it, or sigmoid/tanh/relu of it (a functional activation between the
    modules, which becomes a ``call_function`` node). An input that matches nothing comes
    from code the hooks cannot see; it becomes an opaque node, and ranges behind it are
    the values observed on ``example_input``.
    """
    calls: list[tuple[str, torch.Tensor, torch.Tensor]] = []
    pending: dict[int, torch.Tensor] = {}
    handles = []

    def pre(path):
        def hook(mod, args):
            if args and isinstance(args[0], torch.Tensor):
                # clone now: an in-place module (ReLU(inplace=True)) overwrites its input
                pending[id(mod)] = args[0].detach().clone()
        return hook

    def post(path):
        def hook(mod, args, out):
            inp = pending.pop(id(mod), None)
            if inp is None or not isinstance(out, torch.Tensor):
                return
            out = out.detach().clone()
            calls.append((path, inp, out))
        return hook

    try:
        for path, m in model.named_modules():
            if not path or next(m.children(), None) is not None:
                continue  # leaves only: containers are rebuilt from their leaves' calls
            handles.append(m.register_forward_pre_hook(pre(path)))
            handles.append(m.register_forward_hook(post(path)))
        y = model(x)
    finally:
        for h in handles:  # always removed, whatever happened in forward
            h.remove()

    g = fx.Graph()
    xin = g.placeholder("x")
    values: list[tuple[fx.Node, torch.Tensor]] = [(xin, x.detach())]
    info: dict[fx.Node, _Info] = {}
    modules = dict(model.named_modules())

    def record(node, t):
        i = _tensor_info(t)
        if i is not None:
            info[node] = i

    record(xin, x)

    def match(t: torch.Tensor) -> fx.Node:
        candidates = values[::-1][:16]
        for node, v in candidates:
            if _same(v, t):
                return node
        for node, v in candidates:
            if v.shape[:1] == t.shape[:1] and v.numel() == t.numel() and v.dtype == t.dtype:
                if _same(v.reshape(t.shape), t):
                    r = g.call_method("reshape", (node, (-1, *t.shape[1:])))
                    record(r, t)
                    return r
        for node, v in candidates:
            if not v.is_floating_point():
                continue
            for fn in (torch.sigmoid, torch.tanh, torch.relu):
                a = fn(v)
                if a.numel() == t.numel() and _same(a.reshape(t.shape), t):
                    r = g.call_function(fn, (node,))
                    record(r, a)
                    if a.shape != t.shape:
                        r = g.call_method("reshape", (r, (-1, *t.shape[1:])))
                        record(r, t)
                    return r
        r = g.call_function(_unmatched_input, (values[-1][0],))
        record(r, t)
        return r

    for path, inp, out in calls:
        src = match(inp)
        node = g.call_module(path, (src,))
        node.meta["nn_module_stack"] = {path: (path, type(modules[path]))}
        record(node, out)
        values.append((node, out))
    g.output(match(y.detach()) if isinstance(y, torch.Tensor) else values[-1][0])
    nodes = list(g.nodes)
    return _Net(model, g, nodes, {n: k for k, n in enumerate(nodes)}, info, modules, False)


def _trace(model: nn.Module, x: torch.Tensor) -> _Net:
    try:
        return _trace_fx(model, x)
    except Exception as err:  # noqa: BLE001 - any tracing failure -> hook fallback
        fx_error = err
    try:
        net = _trace_hooks(model, x)
    except Exception as err:  # noqa: BLE001 - re-raised with both causes named
        raise TypeError(
            f"could not run the model on example_input of shape {tuple(x.shape)}: {err}. "
            "Pass an example batch the model accepts (batch dimension first). "
            f"(torch.fx tracing also failed: {fx_error})"
        ) from err
    net.fx_error = str(fx_error)
    return net


# --------------------------------------------------------------------------- activations


@dataclass
class _Act:
    """An elementwise activation found in the graph, with a callable that applies it."""

    activation: Activation
    apply: Callable[[torch.Tensor], torch.Tensor]
    desc: str


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

        def apply(t, _f=target, _a=args, _k=kwargs):
            return _f(t, *_a, **_k)

        return _Act(act, apply, f"{name} (functional)")
    kind = _ACT_METHODS.get(n.target)
    if kind is None:
        return None
    method = n.target.rstrip("_")
    return _Act(Activation(kind), lambda t, _m=method: getattr(t, _m)(), f".{method}()")


def _act_range(a: _Act, lo: float, hi: float) -> Range:
    natural = a.activation.natural_range
    if natural is not None:
        return natural
    if a.activation.kind in ("identity", "relu", "leaky_relu"):
        y = a.activation.apply_numpy(np.array([lo, hi]))
        return float(y[0]), float(y[1])
    # any other elementwise function: its min/max over [lo, hi] on a fine grid
    grid = torch.linspace(lo, hi, _GRID, dtype=torch.float64)
    with torch.no_grad():
        y = a.apply(grid).to(torch.float64)
    pad = 1e-9 * max(1.0, float(y.abs().max()))
    return float(y.min()) - pad, float(y.max()) + pad


# --------------------------------------------------------------------------- range propagation


def _dense_bounds(w: torch.Tensor, b: torch.Tensor | None, lo: float, hi: float) -> Range:
    """Interval bound of ``W x + b`` over ``x in [lo, hi]^n``: min/max over output rows."""
    w = w.detach().to("cpu", torch.float64).reshape(w.shape[0], -1).numpy()
    bias = b.detach().to("cpu", torch.float64).numpy() if b is not None else 0.0
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf weights: caught by callers
        z_hi = np.maximum(w * lo, w * hi).sum(axis=1) + bias
        z_lo = np.minimum(w * lo, w * hi).sum(axis=1) + bias
    return float(np.min(z_lo)), float(np.max(z_hi))


def _conv_dense_weight(mod: nn.Conv1d | nn.Conv2d) -> torch.Tensor:
    """The conv as a dense ``(C_out, C_in * prod(k))`` matrix over one receptive field.

    With ``groups = G`` output channel ``o`` sees only the input channels of its group,
    so the matrix is block-diagonal; columns are ordered like ``patch.reshape(-1)`` for a
    patch of shape ``(C_in, *k)``.
    """
    w = mod.weight.detach()
    c_out, c_in_g = w.shape[:2]
    k = math.prod(w.shape[2:])
    groups = mod.groups
    if groups == 1:
        return w.reshape(c_out, -1)
    dense = torch.zeros(c_out, c_in_g * groups, k, dtype=w.dtype, device=w.device)
    per = c_out // groups
    for gi in range(groups):
        rows = slice(gi * per, (gi + 1) * per)
        cols = slice(gi * c_in_g, (gi + 1) * c_in_g)
        dense[rows, cols] = w[rows].reshape(per, c_in_g, k)
    return dense.reshape(c_out, -1)


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
        if isinstance(mod, nn.Linear):
            return _dense_bounds(mod.weight, mod.bias, *r0)
        if isinstance(mod, (nn.Conv1d, nn.Conv2d)):
            return _dense_bounds(_conv_dense_weight(mod), mod.bias, *r0)
        if isinstance(mod, _POOL_MODULES + _TRANSPARENT_MODULES):
            return r0
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)) and mod.running_var is not None:
            scale = (mod.running_var + mod.eps).rsqrt()
            if mod.weight is not None:
                scale = scale * mod.weight
            shift = -mod.running_mean * scale
            if mod.bias is not None:
                shift = shift + mod.bias
            s = scale.detach().double()
            c = shift.detach().double()
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


def getattr_path(obj, target: str):
    """``obj.a.b.c`` for ``target == "a.b.c"``."""
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _propagate(net: _Net, in_range: Range, acts: dict) -> tuple[dict, set]:
    """Scalar interval at every node; the set of nodes whose range was only observed."""
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
        if r is not None and all(math.isfinite(v) for v in r):
            ranges[n] = (float(r[0]), float(r[1]))
    return ranges, observed


# --------------------------------------------------------------------------- units


@dataclass
class _Unit:
    """A candidate layer: from the value at ``in_node`` to the value at ``out_node``."""

    name: str
    kind: str  # linear | conv | pool | block | module | span
    in_node: fx.Node
    out_node: fx.Node
    core: fx.Node | None = None  # the call_module node of a linear/conv/pool layer
    path: str = ""
    act: _Act | None = None
    nodes: frozenset = frozenset()
    note: str = ""
    module_obj: nn.Module | None = None  # block / module / span: what runs as the layer


def _stack_paths(n: fx.Node) -> list[str]:
    stack = n.meta.get("nn_module_stack") or {}
    out = []
    for key, val in stack.items():
        path = val[0] if isinstance(val, tuple) and val and isinstance(val[0], str) else key
        out.append(path)
    return out


def _follow_act(net: _Net, n: fx.Node, acts: dict) -> tuple[fx.Node, _Act | None, list]:
    """From a Linear/Conv node, skip transparent single-use nodes to a following activation."""
    passed = []
    cur = n
    while True:
        users = list(cur.users)
        if len(users) != 1:
            return n, None, []
        u = users[0]
        if u.args[:1] != (cur,):
            return n, None, []
        if u in acts:
            return u, acts[u], passed + [u]
        transparent = (
            (u.op == "call_module" and isinstance(net.modules.get(u.target),
                                                   _TRANSPARENT_MODULES))
            or (u.op == "call_function" and u.target in (F.dropout, torch.clone))
            or (u.op == "call_method" and u.target in ("contiguous", "clone"))
        )
        if not transparent:
            return n, None, []
        passed.append(u)
        cur = u


def _module_units(net: _Net) -> dict[str, _Unit | str]:
    """Every non-leaf submodule as a whole-module unit (or why it cannot be one)."""
    members: dict[str, set] = {}
    for n in net.nodes:
        for p in _stack_paths(n):
            members.setdefault(p, set()).add(n)
    out: dict[str, _Unit | str] = {}
    for path, nodes in members.items():
        mod = net.modules.get(path)
        if mod is None or next(mod.children(), None) is None:
            continue
        ins = {
            a for n in nodes for a in n.all_input_nodes
            if a not in nodes and a.op != "get_attr"
        }
        outs = {n for n in nodes if any(u not in nodes for u in n.users)}
        if len(ins) != 1 or len(outs) != 1:
            out[path] = (
                f"module {path!r} ({type(mod).__name__}) has {len(ins)} tensor inputs and "
                f"{len(outs)} outputs in the traced graph (or is called more than once); "
                "a layer maps one tensor to one tensor: request a span of its parts instead"
            )
            continue
        (u,), (o,) = ins, outs
        out[path] = _Unit(path, "module", u, o, path=path, nodes=frozenset(nodes))
    return out


def _is_residual(unit: _Unit) -> bool:
    """Does the module's own forward add its input back (a skip connection)?

    True when an ``add`` written in this module's forward (not in a child's) sums two
    values that both come from the module's input: the input itself (possibly through
    reshapes / dropout) plus a branch, or two branches (a projection shortcut). A
    container whose *children* add their inputs back is not itself a block.
    """
    u = unit.in_node
    for n in unit.nodes:
        is_add = (n.op == "call_function" and n.target in _ADD_TARGETS) or (
            n.op == "call_method" and n.target in ("add", "add_", "__add__")
        )
        paths = _stack_paths(n)
        if not is_add or not paths or paths[-1] != unit.path:
            continue
        operands = [a for a in n.args[:2] if isinstance(a, fx.Node)]
        if len(operands) == 2 and all(_reaches(u, a) for a in operands):
            return True
    return False


def _reaches(src: fx.Node, dst: fx.Node) -> bool:
    """Is ``dst`` computed from ``src`` (or is it ``src``)?"""
    stack, seen = [dst], set()
    while stack:
        n = stack.pop()
        if n is src:
            return True
        if n in seen:
            continue
        seen.add(n)
        stack.extend(n.all_input_nodes)
    return False


@dataclass
class _Discovery:
    net: _Net
    acts: dict
    atomic: dict[str, _Unit]  # linear / conv / pool units by name
    order: list[_Unit]  # what auto-discovery measures, in graph order
    modules: dict[str, _Unit | str]  # whole-module units by path (fx only)
    leaf_names: dict[str, fx.Node]  # every call_module path -> its first call node
    skipped: list[tuple[str, str, str | None]]  # (name, type, layer before it)
    ranges: dict
    observed: set


def _discover(net: _Net, in_range: Range) -> _Discovery:
    acts = {n: a for n in net.nodes if (a := _act_of(net, n)) is not None}
    ranges, observed = _propagate(net, in_range, acts)
    atomic: dict[str, _Unit] = {}
    calls: dict[str, int] = {}
    leaf_names: dict[str, fx.Node] = {}
    absorbed: set[fx.Node] = set()
    skipped: list[tuple[str, str, str | None]] = []
    for n in net.nodes:
        if n.op != "call_module":
            continue
        path = n.target
        k = calls.get(path, 0)
        calls[path] = k + 1
        name = path if k == 0 else f"{path}#{k + 1}"  # a module called again (shared weights)
        leaf_names.setdefault(name, n)
        mod = net.modules[path]
        src = n.args[0] if n.args and isinstance(n.args[0], fx.Node) else None
        if src is None or n in absorbed:
            continue
        if isinstance(mod, _DENSE_MODULES):
            out, act, passed = _follow_act(net, n, acts)
            absorbed.update(passed)
            kind = "linear" if isinstance(mod, nn.Linear) else "conv"
            atomic[name] = _Unit(name, kind, src, out, core=n, path=path, act=act)
        elif isinstance(mod, _POOL_MODULES):
            atomic[name] = _Unit(name, "pool", src, n, core=n, path=path)
        elif (
            n not in acts
            and not isinstance(mod, _TRANSPARENT_MODULES)
            and next(mod.parameters(), None) is not None
        ):
            prev = next(reversed(atomic), None)  # the layer before it, to start a span at
            skipped.append((name, type(mod).__name__, prev))
    modules = _module_units(net) if net.traced else {}
    blocks: list[_Unit] = []
    for path in sorted((p for p, u in modules.items() if isinstance(u, _Unit)),
                       key=lambda p: p.count(".")):
        unit = modules[path]
        if any(path.startswith(b.path + ".") for b in blocks):
            continue  # inside an outer residual block, which is measured whole
        if _is_residual(unit):
            unit.kind = "block"
            blocks.append(unit)
    order: list[_Unit] = []
    emitted: set[str] = set()
    for n in net.nodes:
        block = next((b for b in blocks if n in b.nodes), None)
        if block is not None:
            if block.path not in emitted:
                emitted.add(block.path)
                order.append(block)
            continue
        if n.op == "call_module":
            for unit in atomic.values():
                if unit.core is n:
                    order.append(unit)
    skipped = [s for s in skipped if not any(s[0].startswith(b.path + ".") for b in blocks)]
    return _Discovery(net, acts, atomic, order, modules, leaf_names, skipped, ranges, observed)


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


def _weights_f64(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy().copy()


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
            w_dense = mod.weight
            fn = _DenseFn(mod.weight, mod.bias, unit.act)
        else:
            dims = 1 if isinstance(mod, nn.Conv1d) else 2
            in_shape = (mod.in_channels, *mod.kernel_size)
            out_shape = (mod.out_channels,)
            w_dense = _conv_dense_weight(mod)
            fn = _DenseFn(mod.weight, mod.bias, unit.act, conv_dims=dims, groups=mod.groups)
            notes.append(f"receptive field of one output position: {in_shape}")
        if activation.monotone:
            b = (_weights_f64(mod.bias) if mod.bias is not None
                 else np.zeros(w_dense.shape[0]))
            dense = DenseForm(_weights_f64(w_dense), b, activation)
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


# --------------------------------------------------------------------------- requests


def _close(name: str, d: _Discovery) -> str:
    pool = sorted(set(d.net.modules) - {""} | set(d.leaf_names))
    near = difflib.get_close_matches(name, pool, n=5, cutoff=0.5)
    if near:
        return f"close matches: {near}"
    return f"the model's modules are: {pool[:20]}{' ...' if len(pool) > 20 else ''}"


def _unknown(name: str, d: _Discovery) -> ValueError:
    return ValueError(
        f"the model has no module {name!r}; {_close(name, d)}. "
        "Names are module paths as in model.named_modules()."
    )


def _named_unit(d: _Discovery, name: str, role: str = "layer") -> _Unit:
    """The unit a requested name means: a Linear/Conv/pool layer, or a whole submodule."""
    if name in d.atomic:
        return d.atomic[name]
    mod_unit = d.modules.get(name)
    if isinstance(mod_unit, _Unit):
        return mod_unit
    if isinstance(mod_unit, str):
        raise ValueError(mod_unit)
    mod = d.net.modules.get(name)
    if mod is None or name == "":
        raise _unknown(name, d)
    if name not in d.leaf_names and next(mod.children(), None) is not None:
        if not d.net.traced:
            raise ValueError(
                f"module {name!r} ({type(mod).__name__}) cannot be measured whole: torch.fx "
                f"could not trace the model ({getattr(d.net, 'fx_error', '')}); request its "
                "Linear/Conv layers, or make the model traceable."
            )
        raise ValueError(f"module {name!r} ({type(mod).__name__}) is never called in forward.")
    if name not in d.leaf_names:
        raise ValueError(f"module {name!r} ({type(mod).__name__}) is never called in forward.")
    node = d.leaf_names[name]
    src = node.args[0] if node.args else None
    if role in ("start", "end") and not isinstance(src, fx.Node):
        raise ValueError(f"module {name!r} is not called on a tensor: it cannot end a span.")
    if role == "start":
        return _Unit(name, "leaf", src, node, core=node, path=name)
    kind = (
        "an activation" if node in d.acts
        else "transparent (it does not change values)" if isinstance(mod, _TRANSPARENT_MODULES)
        else "not a measurable layer type"
    )
    if role == "end":
        return _Unit(name, "leaf", src, node, core=node, path=name)
    owner = [u.name for u in d.atomic.values() if u.out_node is node]
    before = [u.name for u in d.atomic.values() if d.net.pos[u.core] < d.net.pos[node]]
    start = before[-1] if before else "<first module>"
    hint = (
        f"it is measured as part of layer {owner[0]!r}; request {owner[0]!r}"
        if owner else f"request a span that contains it, e.g. layers=[({start!r}, {name!r})]"
    )
    raise ValueError(
        f"module {name!r} ({type(mod).__name__}) is {kind}, so it is not a layer on its "
        f"own: {hint}."
    )


def _span_unit(d: _Discovery, start: str, end: str) -> _Unit:
    net = d.net
    a = _named_unit(d, start, role="start")
    b = _named_unit(d, end, role="end")
    # the first node of the start unit: its core call, or its first member for a module
    first = a.core if a.core is not None else min(a.nodes, key=net.pos.get)
    if net.pos[b.out_node] < net.pos[first]:
        raise ValueError(
            f"span ({start!r}, {end!r}): {end!r} comes before {start!r} in the forward pass; "
            f"swap them: ({end!r}, {start!r})."
        )
    src = a.in_node
    # nodes on a path from the span's input to its output
    down: set[fx.Node] = set()
    for n in net.nodes[net.pos[src] + 1:]:
        if any(x is src or x in down for x in n.all_input_nodes):
            down.add(n)
    up: set[fx.Node] = {b.out_node}
    for n in reversed(net.nodes):
        if n in up:
            up.update(n.all_input_nodes)
    inside = (down & up) | ({b.out_node} - {src})
    extra: set[fx.Node] = set()
    for n in sorted(inside, key=net.pos.get):
        for x in n.all_input_nodes:
            if x is src or x in inside:
                continue
            if x.op == "get_attr":
                extra.add(x)
                continue
            raise ValueError(
                f"span ({start!r}, {end!r}) is not a closed piece of the network: "
                f"{n.name!r} also takes {x.name!r}, computed outside the span (e.g. a skip "
                "connection); start the span earlier so that it contains that value."
            )
    bad = [n for n in inside if n.op == "call_function" and n.target is _unmatched_input]
    if bad:
        raise ValueError(
            f"span ({start!r}, {end!r}) runs through code torch.fx could not trace and the "
            f"forward hooks cannot see ({getattr(net, 'fx_error', '')}); request its "
            "Linear/Conv layers one by one instead."
        )
    g = fx.Graph()
    env = {src: g.placeholder("x")}
    for n in sorted(inside | extra, key=net.pos.get):
        env[n] = g.node_copy(n, lambda x: env[x])
    g.output(env[b.out_node])
    unit = _Unit(f"{start}..{end}", "span", src, b.out_node, path=start,
                 nodes=frozenset(inside))
    unit.module_obj = fx.GraphModule(net.model, g)
    unit.note = f"span from the input of {start!r} to the output of {end!r}"
    return unit


def _resolve(d: _Discovery, spec) -> _Unit:
    if isinstance(spec, str):
        unit = _named_unit(d, spec)
        if unit.kind in ("module", "block"):
            unit.module_obj = d.net.modules[unit.path]
        return unit
    if isinstance(spec, (tuple, list)) and len(spec) == 2 and all(
        isinstance(s, str) for s in spec
    ):
        return _span_unit(d, spec[0], spec[1])
    raise TypeError(
        f"a layer request must be a module path (str) or a span (start, end) of two "
        f"module paths; got {spec!r}."
    )


# --------------------------------------------------------------------------- public API


def _check_input(model, example_input) -> torch.Tensor:
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module; got {type(model).__name__}. For a single "
            "function use causal_widgets.measure_layer."
        )
    if not isinstance(example_input, torch.Tensor):
        raise TypeError(
            f"example_input must be one tensor (a batch, batch dimension first); got "
            f"{type(example_input).__name__}."
        )
    if example_input.dim() < 2 or example_input.shape[0] < 1:
        raise ValueError(
            f"example_input of shape {tuple(example_input.shape)} has no batch dimension: "
            "pass a batch, e.g. x.unsqueeze(0) for one sample."
        )
    if example_input.is_floating_point() and not torch.isfinite(example_input).all():
        raise ValueError("example_input contains NaN or inf values: pass finite data.")
    return example_input


def _data_range(x: torch.Tensor) -> Range:
    lo, hi = float(x.min()), float(x.max())
    if lo == hi:
        raise ValueError(
            f"example_input is constant ({lo}), so no input range can be inferred from it: "
            "pass in_range=(lo, hi)."
        )
    warnings.warn(
        f"in_range was not given: using the data range of example_input, ({lo:.6g}, "
        f"{hi:.6g}). Pass in_range=(lo, hi) to set the first layer's intervention range.",
        UserWarning,
        stacklevel=3,
    )
    return lo, hi


def find_layers(
    model: nn.Module,
    example_input: torch.Tensor,
    layers: Sequence[LayerSpec] | None = None,
    *,
    in_range: Sequence[float] | None = None,
) -> list[Layer]:
    """The measurable layers of ``model``, in forward order, with inferred ranges.

    Parameters
    ----------
    model:
        Any ``nn.Module``. It is left exactly as it was (weights, train/eval mode,
        ``.grad``, global RNG state).
    example_input:
        One batch the model accepts (batch dimension first). Used for shapes, for the
        data range when ``in_range`` is not given, and as a last resort for ranges no
        interval rule covers.
    layers:
        ``None``: every Linear/Conv/pool layer and residual block, in forward order
        (unmeasurable modules with weights are skipped with a warning). Otherwise a list
        of module paths (``"fc2"``, ``"block"``), spans ``("fc1", "fc3")`` (named
        ``"fc1..fc3"``), or ready :class:`Layer` objects (passed through).
    in_range:
        The network input's intervention range ``(lo, hi)``; default: the data range of
        ``example_input`` (with a warning).

    Returns
    -------
    list of :class:`~causal_widgets.engine.layer.Layer`; ``layer.note`` says how each was formed
    and where a range was only observed; ``layer.extra["kind"]`` is one of ``linear``,
    ``conv``, ``pool``, ``block``, ``module``, ``span``.

    Raises
    ------
    ValueError
        NaN/inf weights (naming the parameter), unknown module paths (with close
        matches), spans whose end comes before their start or that are not closed,
        requested modules that are not layers (saying what to request instead).
    TypeError
        a model that is not a module, an input that is not one tensor, a malformed request.
    """
    x = _check_input(model, example_input)
    if layers is not None and not isinstance(layers, (list, tuple)):
        raise TypeError(
            f"layers must be a list of module paths / spans; got {type(layers).__name__}. "
            "For one layer write layers=['fc1']."
        )
    if layers is not None and isinstance(layers, tuple) and len(layers) == 2 and all(
        isinstance(s, str) for s in layers
    ):
        raise TypeError(
            f"layers={layers!r} is ambiguous: write layers=[{layers!r}] for a span or "
            f"layers={list(layers)!r} for two layers."
        )
    if layers is not None and all(isinstance(s, Layer) for s in layers):
        return list(layers)
    if layers is None:
        # every layer is wanted: any NaN/inf weight is an error. With explicit requests only
        # the requested layers (and weights their ranges depend on) must be finite, so a
        # caller can still measure the healthy layers of a partly diverged model.
        check_finite_weights(model, "")
    r_in = check_range(in_range, "in_range") if in_range is not None else _data_range(x)
    with _untouched(model):
        net = _trace(model, x[:_PROBE_ROWS])
        d = _discover(net, r_in)
        if layers is None:
            units = list(d.order)
            for u in units:
                if u.kind == "block":
                    u.module_obj = net.modules[u.path]
            if d.skipped:
                name, _, prev = d.skipped[0]
                example = f"layers=[({prev!r}, {name!r})]" if prev else "layers=[(start, end)]"
                warnings.warn(
                    "find_layers skipped modules it cannot measure as layers: "
                    f"{', '.join(f'{n} ({t})' for n, t, _ in d.skipped)}. To include one, "
                    f"request a span through it, e.g. {example}.",
                    UserWarning,
                    stacklevel=2,
                )
        else:
            units = [s if isinstance(s, Layer) else _resolve(d, s) for s in layers]
        if not net.traced and layers is None:
            for u in units:
                u.note = (u.note + "; " if u.note else "") + (
                    "found with forward hooks (torch.fx could not trace the model), so "
                    "residual blocks are not detected"
                )
        return [u if isinstance(u, Layer) else _build_layer(d, u) for u in units]


def check_same_structure(old_layers: Sequence[Layer], new_layers: Sequence[Layer]) -> None:
    """Raise ``ValueError`` if two ``find_layers`` results differ in layers or shapes.

    A dashboard that measured ``old_layers`` can only put ``new_layers`` on the same
    axes if every layer kept its name, input shape and output shape.
    """
    old = {layer.name: layer for layer in old_layers}
    new = {layer.name: layer for layer in new_layers}
    gone = [n for n in old if n not in new]
    added = [n for n in new if n not in old]
    if gone or added:
        raise ValueError(
            f"the model's layers changed since find_layers: removed {gone}, added {added}. "
            "Start a new history (or dashboard) for the changed model."
        )
    for name, a in old.items():
        b = new[name]
        if a.in_shape != b.in_shape or a.out_shape != b.out_shape:
            raise ValueError(
                f"layer {name!r} changed shape since find_layers: input {a.in_shape} -> "
                f"{b.in_shape}, output {a.out_shape} -> {b.out_shape}. Start a new history "
                "(or dashboard) for the changed model."
            )
    if [layer.name for layer in old_layers] != [layer.name for layer in new_layers]:
        raise ValueError(
            "the model's layers changed order since find_layers: "
            f"{[x.name for x in old_layers]} -> {[x.name for x in new_layers]}."
        )


def measure_layers(
    model: nn.Module,
    example_input: torch.Tensor,
    layers: Sequence[LayerSpec] | None = None,
    *,
    in_range: Sequence[float] | None = None,
    bins: int = 8,
    in_bins: int | None = None,
    out_bins: int | None = None,
    metrics: Sequence[str] | None = None,
    method: str = "auto",
    samples: int | None = None,
    tol: float = 0.01,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
    **kw,
) -> dict:
    """Measure every layer :func:`find_layers` gives; ``{layer name: LayerResult}``.

    Every layer is measured by :func:`causal_widgets.engine.layer_measure.measure_layer` with the same
    settings and the same ``seed`` (so a layer's result equals measuring that layer
    alone); extra keywords go to ``measure_layer``. The results keep the per-layer
    matrices (``ei_parts_matrix``, ``sensitivity_matrix``) and node tables.
    """
    from causal_widgets.engine.layer_measure import measure_layer

    found = find_layers(model, example_input, layers, in_range=in_range)
    iterator = found
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(found, desc="layers", unit="layer")
    results = {}
    for layer in iterator:
        results[layer.name] = measure_layer(
            layer, bins=bins, in_bins=in_bins, out_bins=out_bins, metrics=metrics,
            method=method, samples=samples, tol=tol, seed=seed, device=device, **kw,
        )
    return results


def measure(
    model: nn.Module,
    example_input: torch.Tensor,
    layers: Sequence[LayerSpec] | None = None,
    *,
    in_range: Sequence[float] | None = None,
    bins: int = 8,
    in_bins: int | None = None,
    out_bins: int | None = None,
    metrics: Sequence[str] | None = None,
    method: str = "auto",
    samples: int | None = None,
    tol: float = 0.01,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
    **kw,
) -> pd.DataFrame:
    """Measure a whole network: a tidy table, one row per (layer, metric), bits.

    Columns (at least) ``layer, metric, value, ci_low, ci_high, method, samples,
    in_bins, out_bins, in_range, out_range, seed, version``; layers in forward order.
    ``value`` is bits of effective information (see ``docs/metrics.md``); ``ci_low`` /
    ``ci_high`` a 95 % interval. For the per-layer matrices use :func:`measure_layers`.

    >>> import torch, causal_widgets as cw
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Sigmoid(),
    ...                           torch.nn.Linear(5, 3), torch.nn.Sigmoid())
    >>> df = cw.measure(net, torch.rand(10, 4), in_range=(0, 1))   # doctest: +SKIP
    >>> df.pivot(index="layer", columns="metric", values="value")  # doctest: +SKIP
    """
    results = measure_layers(
        model, example_input, layers, in_range=in_range, bins=bins, in_bins=in_bins,
        out_bins=out_bins, metrics=metrics, method=method, samples=samples, tol=tol,
        seed=seed, device=device, progress=progress, **kw,
    )
    frames = []
    for name, result in results.items():
        frame = result.to_frame().copy()
        frame["layer"] = name  # the network's name for it, whatever measure_layer chose
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=FRAME_COLUMNS)
    df = pd.concat(frames, ignore_index=True)
    rest = [c for c in df.columns if c not in FRAME_COLUMNS]
    return df[[c for c in FRAME_COLUMNS if c in df.columns] + rest]

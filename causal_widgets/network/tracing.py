"""Tracing a network: the model as an fx graph, and what one probing pass saw at each node.

:func:`_trace` turns ``model`` + an example batch into a :class:`_Net`: the model's
``torch.fx`` graph (:func:`traced`, cached per model) run once by an interpreter that
records each node's shape and observed value range. For models torch.fx cannot trace it
falls back to forward hooks over the leaf modules (:func:`_trace_hooks`), which rebuild a
chain-shaped graph: Linear/Conv/pool layers and spans over plain chains are found from it,
residual blocks are not.

The caller runs all of this under :func:`causal_widgets.guards.untouched` (eval mode, no
grad); every hook registered here is removed whatever happens in ``forward``.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import torch
import torch.fx as fx
from torch import nn


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

    # encoder (layers) are hooked whole: in eval mode their fast path never calls their
    # submodules, and network.transformer splits them by structure instead
    whole = [p for p, m in model.named_modules()
             if p and isinstance(m, (nn.TransformerEncoder, nn.TransformerEncoderLayer))]
    whole = [p for p in whole if not any(p.startswith(q + ".") for q in whole)]
    try:
        for path, m in model.named_modules():
            if any(path.startswith(q + ".") for q in whole):
                continue  # inside an encoder hooked whole
            if not path or (next(m.children(), None) is not None and path not in whole):
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
    """The model as a :class:`_Net`: torch.fx if it can, else forward hooks.

    An example input the model itself does not run on is a ``TypeError`` that says so
    and carries the model's own exception (chained, and in the message) -- not an fx
    error, even when fx also failed.
    """
    try:
        return _trace_fx(model, x)
    except Exception as err:  # noqa: BLE001 - any tracing failure -> hook fallback
        fx_error = err
    try:
        net = _trace_hooks(model, x)
    except Exception as err:  # noqa: BLE001 - re-raised with both causes named
        raise TypeError(
            f"could not run the model on example_input of shape {tuple(x.shape)} "
            f"(dtype {x.dtype}): the model's forward raised {type(err).__name__}: {err}. "
            "Pass an example batch the model accepts (batch dimension first, e.g. "
            f"x[:8] of your data). (torch.fx: {type(fx_error).__name__}: {fx_error})"
        ) from err
    net.fx_error = str(fx_error)
    return net

"""Network discovery: find a model's measurable layers, name them, give them their ranges.

:func:`find_layers` turns ``model`` + ``example_input`` into a list of
:class:`~causal_widgets.engine.layer.Layer` objects, one per measurable layer, named by module
path (``"fc2"``, ``"features.3"``); :func:`causal_widgets.network.measure.measure` measures
each with :func:`causal_widgets.engine.layer_measure.measure_layer` and returns one tidy
table.

The way there: :mod:`~causal_widgets.network.tracing` runs the model once as an fx graph
(or through forward hooks), :mod:`~causal_widgets.network.ranges` gives every node its
interval, this module finds the candidate layers (units) and resolves requests, and
:mod:`~causal_widgets.network.build` turns each unit into a :class:`Layer`.

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
* an eval-mode ``BatchNorm1d``/``BatchNorm2d`` directly after a Linear/Conv (before its
  activation) is folded into that layer's weights and bias
  (:mod:`~causal_widgets.network.norm_folding`): the layer keeps its name, its dense form
  and the exact engine, and its ``note`` names the folded norm. Only running statistics
  are used, never batch statistics; a BatchNorm elsewhere is a layer of its own (one
  position's channels, a diagonal affine map, dense), one without running statistics is
  skipped.
* ``nn.LayerNorm``: a layer of its own over one position's normalised features, sampled,
  with the sound output range of :mod:`~causal_widgets.network.layer_norm`.
* ``nn.TransformerEncoder`` / ``nn.TransformerEncoderLayer`` (leaves for torch.fx, and
  run on PyTorch's fast path in eval mode): split by
  :mod:`~causal_widgets.network.transformer` into ``<layer>.self_attn`` (a span over the
  sequence), ``<layer>.linear1..<layer>.linear2`` (the MLP, per token) and
  ``<layer>.norm1`` / ``<layer>.norm2``.
* pooling (``Max/AvgPool1d/2d``, ``AdaptiveMax/AvgPool1d/2d``) by window: the ``k (x k)``
  inputs of one channel -> 1 output. Average pooling is linear, so it gets a dense form
  (weights ``1/k^2``) and the exact engine; max pooling gets the exact max-pool terms
  (``extra["max_pool"]``: the window size; ``engine.exact.exact_max_pool_mi`` / ``_ei``).
* a residual block -- a submodule whose forward adds its own input back (found with
  torch.fx: an ``add`` node inside the module that takes the module's input) -- is one
  layer, measured by receptive field like a conv layer
  (:mod:`~causal_widgets.network.receptive_field`): the channels at one output position,
  and as inputs exactly the input neurons they depend on, run on a crop; never the whole
  feature map as one vector. Its inner parts can be requested as a span.
* Flatten, Dropout, Identity and standalone activations are not layers: they are
  transparent, but they do shape the ranges that flow to the next layer.
* Linear + softmax over the features (``nn.Softmax(dim=-1)``, ``torch.softmax(z, -1)``)
  is a sampled layer like Linear + GELU/SiLU; its output range is the closed form of
  :func:`~causal_widgets.network.ranges._softmax_bounds`.
* anything else (Embedding, recurrent layers, ``nn.MultiheadAttention`` used directly,
  masked encoders, ...) is skipped with a warning when discovered automatically, and is
  an error naming the module and what is measurable when asked for (a span through it,
  ``layers=[("conv1", "relu1")]``, is measurable).

``layers=`` picks layers by name: a module path (a Linear/Conv/pool layer, or any
submodule), or a span ``("a", "b")``: from the input of ``a`` to the output
of ``b`` (after ``b``'s activation when ``b`` is a Linear/Conv layer). Spans run the
sub-network between the two ends; over feature maps or token sequences they are measured
by receptive field, over vectors whole. They need torch.fx; for models torch.fx cannot
trace, ``find_layers`` falls back to forward hooks over leaf modules, which finds the
Linear/Conv/pool layers and spans over plain chains, but no residual blocks.

Ranges (all scalar intervals ``(lo, hi)`` shared by every neuron of a side)
--------------------------------------------------------------------------
The first layer's input range is ``in_range`` or, if not given, the data range of
``example_input`` (with a warning). Ranges then flow through the network node by node,
by the interval rules listed in :mod:`causal_widgets.network.ranges` (exact bounds of
``W x + b``, activations' natural ranges, interval arithmetic, ...).

A residual block's output range is also bounded per neuron, through the block's own ops
from its input box (:mod:`~causal_widgets.network.interval_bounds`), and the tighter of
the two is used (and flows on); requested spans and submodules get the same.

Blocks, spans, submodules, transformer sublayers and LayerNorms reach that sound bound
only at corners their intervention practically never draws, so by default
(``span_ranges="observed"``) their ``out_range`` is the range their outputs take under
their own intervention, from a seeded probe, inside the bound
(:mod:`~causal_widgets.network.observed_ranges`; ``extra["out_range_kind"]`` and the
note say so). The discovered ones are observed in forward order and their ranges flow
on, whatever was requested (:func:`_chain_observed`).

Each layer is intervened on independently over its own input range, and its output
range is the range of its output under that intervention (its bound, or observed), so
layer k's ``out_range`` is layer k+1's ``in_range`` when nothing sits between them. Where
no interval rule applies, the range observed on ``example_input`` is used and the
layer's ``note`` says so.

State
-----
The model is traced and probed in eval mode under ``torch.no_grad``
(:func:`causal_widgets.guards.untouched`); its weights, train/eval flags and ``.grad`` are
left exactly as they were, and so is the global RNG state when called on the main thread
(restoring it from a background thread would rewind the training thread's draws); every
hook is removed. The returned layers hold a *copy* of the weights (a snapshot):
after training further, call :func:`find_layers` again (and :func:`check_same_structure`
to check that the layers kept their shapes).
"""

from __future__ import annotations

import difflib
import operator
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from causal_widgets.checks import check_choice
from causal_widgets.engine.binning import Range, check_range
from causal_widgets.engine.layer import Layer, check_finite_weights
from causal_widgets.guards import untouched
from causal_widgets.network.build import _build_layer, _widen
from causal_widgets.network.interval_bounds import span_bounds
from causal_widgets.network.norm_folding import foldable_batchnorm
from causal_widgets.network.observed_ranges import SPAN_RANGE_CHOICES, SPAN_RANGES
from causal_widgets.network.ranges import (
    _POOL_MODULES,
    _TRANSPARENT_MODULES,
    _Act,
    _act_of,
    _propagate,
)
from causal_widgets.network.tracing import _Net, _trace, _unmatched_input
from causal_widgets.network.transformer import (
    TRANSFORMER_MODULES,
    TransformerPart,
    encoder_parts,
    unsupported_reason,
)

__all__ = ["LayerSpec", "check_same_structure", "find_layers"]

LayerSpec = str | tuple[str, str] | Layer

_DENSE_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d)
_ADD_TARGETS = {operator.add, operator.iadd, torch.add}
# how many rows of example_input the probing forward pass uses (the data range for the
# first layer always uses all of it); keeps probing cheap for big example batches
_PROBE_ROWS = 256


# --------------------------------------------------------------------------- units


@dataclass
class _Unit:
    """A candidate layer: from the value at ``in_node`` to the value at ``out_node``."""

    name: str
    kind: str  # linear | conv | pool | norm | transformer | block | module | span
    in_node: fx.Node
    out_node: fx.Node
    core: fx.Node | None = None  # the call_module node of a linear/conv/pool layer
    path: str = ""
    act: _Act | None = None
    nodes: frozenset = frozenset()
    note: str = ""
    module_obj: nn.Module | None = None  # block / module / span: what runs as the layer
    norm_path: str = ""  # an eval-mode BatchNorm folded into this Linear/Conv (its path)
    part: TransformerPart | None = None  # a sublayer of a transformer encoder layer


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


def _folded_norm(net: _Net, n: fx.Node) -> fx.Node | None:
    """The eval-mode BatchNorm node directly after Linear/Conv node ``n``, if it folds."""
    users = list(n.users)
    if len(users) != 1:
        return None
    u = users[0]
    if u.op != "call_module" or u.args[:1] != (n,):
        return None
    info = net.info.get(n)
    why = foldable_batchnorm(
        net.modules[n.target], net.modules.get(u.target), info.shape if info else None
    )
    return u if why is None else None


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
    ranges: dict  # node -> the range layers use (observed ones chained in)
    observed: set
    # node -> sound range (interval rules and block bounds only, from the sound chain):
    # what an observed out_range must stay inside (a superset of the chained box's bound)
    sound_ranges: dict = None
    tighter: dict = None  # node -> the block bounds and observed ranges in `ranges`
    span_ranges: str = SPAN_RANGES
    built: dict = None  # id(unit) -> (unit, Layer) built while chaining observed ranges


def _discover(net: _Net, in_range: Range, span_ranges: str = SPAN_RANGES) -> _Discovery:
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
            norm = _folded_norm(net, n)
            out, act, passed = _follow_act(net, norm if norm is not None else n, acts)
            if norm is not None:
                absorbed.add(norm)
                if act is None:
                    out = norm
            absorbed.update(passed)
            kind = "linear" if isinstance(mod, nn.Linear) else "conv"
            atomic[name] = _Unit(name, kind, src, out, core=n, path=path, act=act,
                                 norm_path=norm.target if norm is not None else "")
        elif isinstance(mod, _POOL_MODULES):
            atomic[name] = _Unit(name, "pool", src, n, core=n, path=path)
        elif isinstance(mod, TRANSFORMER_MODULES):
            info = net.info.get(src)
            why = unsupported_reason(mod)
            if why is None and (len(n.args) > 1 or n.kwargs):
                why = ("it is called with a mask or other arguments besides its input; "
                       "only unmasked self-attention is split into layers")
            if why is None and (info is None or len(info.shape) != 2 or src not in ranges):
                why = "its input is not one (N, T, d) tensor with a known range"
            if why is not None:
                prev = next(reversed(atomic), None)
                skipped.append((name, f"{type(mod).__name__}: {why}", prev))
                continue
            parts, _ = encoder_parts(path, mod, ranges[src], info.shape[0])
            for part in parts:
                atomic[part.name] = _Unit(
                    part.name, "transformer", src, n, core=n,
                    path=part.name.split("..")[0], module_obj=part.module, note=part.note,
                    part=part,
                )
        elif isinstance(mod, nn.LayerNorm) or (
            isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)) and mod.running_var is not None
        ):
            # a norm that is not folded into a layer before it: a layer of its own, per
            # position (LayerNorm sampled; eval BatchNorm is a diagonal affine map, dense)
            atomic[name] = _Unit(name, "norm", src, n, core=n, path=path)
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
    # each block's output range: also its per-neuron interval bound over its input box,
    # block by block in forward order (a block's input range follows from the one before)
    # (not for a block ending in sigmoid/tanh: their natural range is the paper's range)
    tighter: dict = {}
    for block in sorted(blocks, key=lambda b: net.pos[b.out_node]):
        if block.out_node in acts and acts[block.out_node].activation.natural_range:
            continue
        r = ranges.get(block.in_node)
        bound = None if r is None else span_bounds(
            net, block.nodes, block.in_node, block.out_node, _widen(r)
        )
        if bound is not None:
            tighter[block.out_node] = bound
            ranges, observed = _propagate(net, in_range, acts, tighter)
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
    d = _Discovery(net, acts, atomic, order, modules, leaf_names, skipped, ranges, observed,
                   sound_ranges=ranges, tighter=dict(tighter), span_ranges=span_ranges,
                   built={})
    if span_ranges == "observed":
        _chain_observed(d, in_range)
    return d


def _repropagate(d: _Discovery, in_range: Range) -> None:
    d.ranges, d.observed = _propagate(d.net, in_range, d.acts, d.tighter)


def _chain_observed(d: _Discovery, in_range: Range) -> None:
    """Give discovered blocks, LayerNorms and transformer sublayers observed ranges, in order.

    Each one's ``out_range`` is what its outputs take under its own intervention
    (:mod:`~causal_widgets.network.observed_ranges`), and that range flows on as the
    input range of what follows it, so layer k's ``out_range`` stays layer k+1's
    ``in_range``. Done here, for every discovered unit whatever was requested, so that a
    layer's ranges never depend on which other layers were asked for. The layers built
    on the way are kept (``d.built``) and returned as they are.
    """
    net = d.net
    done_encoders: set[fx.Node] = set()
    for unit in list(d.order):
        if unit.kind == "block":
            unit.module_obj = net.modules[unit.path]
            r = d.ranges.get(unit.in_node)
            if r is None:
                continue
            # its per-neuron bound again, now from the chained (narrower) input box
            bound = span_bounds(net, unit.nodes, unit.in_node, unit.out_node, _widen(r))
            if bound is not None:
                old = d.tighter.get(unit.out_node)
                d.tighter[unit.out_node] = bound if old is None else (
                    max(old[0], bound[0]), min(old[1], bound[1]))
                _repropagate(d, in_range)
        elif unit.kind == "transformer":
            if unit.core in done_encoders:
                continue
            done_encoders.add(unit.core)
            _chain_encoder(d, unit, in_range)
            continue
        elif not (unit.kind == "norm" and isinstance(net.modules.get(unit.path), nn.LayerNorm)):
            continue
        if unit.in_node not in d.ranges or unit.out_node not in d.ranges:
            continue
        try:
            layer = _build_layer(d, unit)
        except ValueError:
            # e.g. NaN weights, or no per-position form: only an error if it is asked
            # for (built again then, with the same message); what follows keeps the bound
            continue
        d.built[id(unit)] = (unit, layer)
        if layer.extra.get("out_range_kind") == "observed":
            d.tighter[unit.out_node] = layer.out_range
            _repropagate(d, in_range)


def _chain_encoder(d: _Discovery, first: _Unit, in_range: Range) -> None:
    """Rebuild an encoder's sublayers from its chained input range, each observed in turn."""
    net, n, src = d.net, first.core, first.in_node
    info, r = net.info.get(src), d.ranges.get(src)
    if info is None or r is None:
        return
    new_units: dict[str, _Unit] = {}

    def observe(part: TransformerPart) -> Range:
        unit = _Unit(part.name, "transformer", src, n, core=n,
                     path=part.name.split("..")[0], module_obj=part.module, note=part.note,
                     part=part)
        layer = _build_layer(d, unit)
        d.built[id(unit)] = (unit, layer)
        new_units[part.name] = unit
        return layer.out_range

    try:
        _, r_out = encoder_parts(n.target, net.modules[n.target], r, info.shape[0], observe)
    except ValueError:  # e.g. NaN weights: its sublayers keep their sound ranges
        return
    for name, unit in new_units.items():
        d.atomic[name] = unit
    d.order = [new_units.get(u.name, u) if u.core is n else u for u in d.order]
    d.tighter[n] = r_out
    _repropagate(d, in_range)


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
    # an encoder layer inside an nn.TransformerEncoder: measured by its sublayers
    parts = [k for k, u in d.atomic.items()
             if u.kind == "transformer" and k.startswith(name + ".")]
    if role == "layer" and parts and name not in d.leaf_names:
        raise ValueError(
            f"module {name!r} ({type(mod).__name__}) is not measured whole; its measurable "
            f"layers are {parts}: request one of those."
        )
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
        else (
            "not a measurable layer type (measurable: Linear, Conv1d/2d, pooling, "
            "BatchNorm, LayerNorm, nn.TransformerEncoder(Layer), residual blocks, and "
            "spans (start, end) through anything that maps one tensor to one tensor)"
        )
    )
    if role == "end":
        return _Unit(name, "leaf", src, node, core=node, path=name)
    folded_into = [u.name for u in d.atomic.values() if u.norm_path and u.norm_path == name]
    if folded_into:
        raise ValueError(
            f"module {name!r} ({type(mod).__name__}) is folded into layer "
            f"{folded_into[0]!r} (eval mode, running statistics), so it is not a layer on "
            f"its own: request {folded_into[0]!r}."
        )
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
    if example_input.dim() < 2:
        raise ValueError(
            f"example_input of shape {tuple(example_input.shape)} has no batch dimension: "
            "pass a batch, e.g. x.unsqueeze(0) for one sample."
        )
    if example_input.shape[0] < 1:
        raise ValueError(
            f"example_input of shape {tuple(example_input.shape)} is an empty batch (0 "
            "samples): the layers are found by running it, so pass at least one sample, "
            "e.g. example_input=x_train[:64]."
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
    span_ranges: str = SPAN_RANGES,
) -> list[Layer]:
    """The measurable layers of ``model``, in forward order, with inferred ranges.

    Parameters
    ----------
    model:
        Any ``nn.Module``. It is left exactly as it was (weights, train/eval mode,
        ``.grad``, and on the main thread the global RNG state).
    example_input:
        One batch the model accepts (batch dimension first). Used for shapes, for the
        data range when ``in_range`` is not given, and as a last resort for ranges no
        interval rule covers.
    layers:
        ``None``: every Linear/Conv/pool/norm layer, transformer sublayer and residual
        block, in forward order
        (unmeasurable modules with weights are skipped with a warning). Otherwise a list
        of module paths (``"fc2"``, ``"block"``), spans ``("fc1", "fc3")`` (named
        ``"fc1..fc3"``), or ready :class:`Layer` objects (passed through).
    in_range:
        The network input's intervention range ``(lo, hi)``; default: the data range of
        ``example_input`` (with a warning).
    span_ranges:
        The ``out_range`` of residual blocks, spans, submodules, transformer sublayers
        and LayerNorms (layers whose sound bound is far wider than what their outputs
        do): ``"observed"`` (default), the range their outputs take under their own
        intervention, from a seeded probe, inside the sound bound and chained into the
        next layer's ``in_range`` (:mod:`~causal_widgets.network.observed_ranges`);
        ``"bound"``: the sound bound. ``layer.extra["out_range_kind"]`` says which
        (``"observed"``, ``"bound"`` or ``"natural"``; ``"example"`` where only
        ``example_input`` gave one), ``extra["out_range_bound"]`` the sound bound of an
        observed range (``None`` where no interval rule gave one). Linear/Conv layers
        always keep their exact bound.

    Returns
    -------
    list of :class:`~causal_widgets.engine.layer.Layer`; ``layer.note`` says how each was formed
    and where a range was only observed; ``layer.extra["kind"]`` is one of ``linear``,
    ``conv``, ``pool``, ``norm``, ``transformer``, ``block``, ``module``, ``span``.

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
    check_choice(span_ranges, "span_ranges", SPAN_RANGE_CHOICES)
    r_in = check_range(in_range, "in_range") if in_range is not None else _data_range(x)
    with untouched(model):
        net = _trace(model, x[:_PROBE_ROWS])
        d = _discover(net, r_in, span_ranges)
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
        found = [u if isinstance(u, Layer) else _built(d, u) for u in units]
        if not net.traced and layers is None:
            for layer in found:
                layer.note = (layer.note + "; " if layer.note else "") + (
                    "found with forward hooks (torch.fx could not trace the model), so "
                    "residual blocks are not detected"
                )
        return found


def _built(d: _Discovery, unit: _Unit) -> Layer:
    """The unit's layer: the one built while chaining observed ranges, else a new one."""
    hit = d.built.get(id(unit))
    if hit is not None and hit[0] is unit:
        return hit[1]
    return _build_layer(d, unit)


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

"""Transformer encoder layers: attention over the sequence, the MLP and the norms per token.

``torch.fx`` keeps ``nn.TransformerEncoder`` and ``nn.TransformerEncoderLayer`` as leaf
modules (everything in ``torch.nn`` is a leaf for the default tracer), and in eval mode
under ``no_grad`` their ``forward`` takes PyTorch's fast path
(``torch._transformer_encoder_layer_fwd``), which never calls the submodules, so neither
fx nor forward hooks see inside. This module therefore splits each encoder layer by its
documented structure and builds every sublayer from the layer's own submodules, run on
the slow (plain PyTorch) path, which computes the same function:

* ``<layer>.self_attn`` -- self-attention (``self_attn`` then ``dropout1``, no mask):
  it mixes tokens, so it is a span across the sequence: inputs the whole ``T x d``
  window, outputs one token's ``d`` features (found and checked by
  :mod:`~causal_widgets.network.receptive_field`); the sequence length is in the note.
* ``<layer>.linear1..<layer>.linear2`` -- the MLP sublayer (``linear1 -> activation ->
  dropout -> linear2 -> dropout2``), per token: ``d -> d``, sampled (two Linears with an
  activation between them have no single dense form).
* ``<layer>.norm1`` / ``<layer>.norm2`` -- the LayerNorms, per token
  (:mod:`~causal_widgets.network.layer_norm`).
* ``<encoder>.norm`` -- the encoder's final norm, if it has one.

The residual adds are not layers. ``norm_first`` (pre-norm) layers are measured in their
own order (norm1, self_attn, norm2, MLP). Each sublayer's input range is the sound
interval its input has when the encoder's input lies in its range:
attention outputs are convex combinations of the value vectors (so they stay inside the
values' interval, then ``out_proj``'s exact linear bound), the MLP gets the exact linear
bounds with the activation's range between, residual adds add intervals, LayerNorms use
``beta -+ |gamma| sqrt(d - 1)``. Only ``batch_first=True`` layers called without a mask
are split (a ``(T, N, d)`` layout has no batch dimension first); others are skipped with
the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from causal_widgets.engine.binning import Range
from causal_widgets.engine.layer import linear_bounds
from causal_widgets.network.grid_range import grid_range
from causal_widgets.network.layer_norm import layer_norm_bounds

__all__ = ["TransformerPart", "encoder_bounds", "encoder_parts", "unsupported_reason"]

TRANSFORMER_MODULES = (nn.TransformerEncoder, nn.TransformerEncoderLayer)


@dataclass
class TransformerPart:
    """One measurable sublayer of an encoder layer."""

    name: str
    module: nn.Module  # maps (N, T, d) -> (N, T, d) (attention) or (N, d) -> (N, d)
    in_range: Range
    out_range: Range
    per_token: bool
    note: str


# what encoder_parts calls, if given, for each sublayer: its out_range to use
Observe = Callable[[TransformerPart], Range]


class SelfAttention(nn.Module):
    """``dropout1(self_attn(x, x, x))`` of an encoder layer, without a mask (slow path)."""

    def __init__(self, layer: nn.TransformerEncoderLayer):
        super().__init__()
        self.self_attn = layer.self_attn
        self.dropout1 = layer.dropout1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout1(self.self_attn(x, x, x, need_weights=False)[0])


class FeedForward(nn.Module):
    """``dropout2(linear2(dropout(activation(linear1(x)))))`` of an encoder layer."""

    def __init__(self, layer: nn.TransformerEncoderLayer):
        super().__init__()
        self.linear1 = layer.linear1
        self.activation = layer.activation
        self.dropout = layer.dropout
        self.linear2 = layer.linear2
        self.dropout2 = layer.dropout2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))


def _add(a: Range, b: Range) -> Range:
    return a[0] + b[0], a[1] + b[1]


def _attention_bounds(mha: nn.MultiheadAttention, r: Range) -> Range:
    d = mha.embed_dim
    if mha._qkv_same_embed_dim:
        w_v = mha.in_proj_weight[2 * d:]
    else:
        w_v = mha.v_proj_weight
    b_v = mha.in_proj_bias[2 * d:] if mha.in_proj_bias is not None else None
    v_lo, v_hi = linear_bounds(w_v, b_v, r)
    if mha.bias_v is not None:  # appended value vectors
        v_lo = min(v_lo, float(mha.bias_v.min()))
        v_hi = max(v_hi, float(mha.bias_v.max()))
    if mha.add_zero_attn:
        v_lo, v_hi = min(v_lo, 0.0), max(v_hi, 0.0)
    # softmax weights are a convex combination: each head's output stays in [v_lo, v_hi]
    return linear_bounds(mha.out_proj.weight, mha.out_proj.bias, (v_lo, v_hi))


def _ff_bounds(layer: nn.TransformerEncoderLayer, r: Range) -> Range:
    z = linear_bounds(layer.linear1.weight, layer.linear1.bias, r)
    a = grid_range(layer.activation, *z, rel_pad=0.0)
    return linear_bounds(layer.linear2.weight, layer.linear2.bias, a)


def unsupported_reason(module: nn.Module) -> str | None:
    """Why an encoder (layer) cannot be split here, or ``None``."""
    layers = list(module.layers) if isinstance(module, nn.TransformerEncoder) else [module]
    for layer in layers:
        if not isinstance(layer, nn.TransformerEncoderLayer):
            return f"it holds a {type(layer).__name__}, not nn.TransformerEncoderLayer"
        if not layer.self_attn.batch_first:
            return (
                "it was built with batch_first=False ((T, N, d) inputs): build it with "
                "batch_first=True so that the batch dimension comes first"
            )
    return None


def _layer_parts(
    path: str, layer: nn.TransformerEncoderLayer, r_x: Range, seq_len: int,
    observe: Observe | None = None,
) -> tuple[list[TransformerPart], Range]:
    d = layer.linear1.in_features
    sa_note = (
        f"self-attention of {path!r} as a span across the sequence: inputs the whole "
        f"{seq_len} x {d} window (sequence length {seq_len}), outputs one token's {d} "
        "features"
    )
    mlp_note = (
        f"MLP sublayer of {path!r} (linear1 -> activation -> linear2), per token: {d} -> {d}"
    )
    parts: list[TransformerPart] = []

    def part(name: str, module: nn.Module, r_in: Range, bound: Range, per_token: bool,
             note: str = "") -> Range:
        """Add a sublayer; its out_range (the bound, or observed inside it) flows on."""
        p = TransformerPart(name, module, r_in, bound, per_token, note)
        if observe is not None:
            p.out_range = observe(p)
        parts.append(p)
        return p.out_range

    sa, mlp = f"{path}.self_attn", f"{path}.linear1..{path}.linear2"
    if layer.norm_first:
        r_n1 = part(f"{path}.norm1", layer.norm1, r_x, layer_norm_bounds(layer.norm1, r_x), True)
        r_sa = part(sa, SelfAttention(layer), r_n1, _attention_bounds(layer.self_attn, r_n1),
                    False, sa_note)
        r_x1 = _add(r_x, r_sa)
        r_n2 = part(f"{path}.norm2", layer.norm2, r_x1, layer_norm_bounds(layer.norm2, r_x1),
                    True)
        r_ff = part(mlp, FeedForward(layer), r_n2, _ff_bounds(layer, r_n2), True, mlp_note)
        r_out = _add(r_x1, r_ff)
    else:
        r_sa = part(sa, SelfAttention(layer), r_x, _attention_bounds(layer.self_attn, r_x),
                    False, sa_note)
        r_res1 = _add(r_x, r_sa)
        r_n1 = part(f"{path}.norm1", layer.norm1, r_res1,
                    layer_norm_bounds(layer.norm1, r_res1), True)
        r_ff = part(mlp, FeedForward(layer), r_n1, _ff_bounds(layer, r_n1), True, mlp_note)
        r_res2 = _add(r_n1, r_ff)
        r_out = part(f"{path}.norm2", layer.norm2, r_res2,
                     layer_norm_bounds(layer.norm2, r_res2), True)
    return parts, r_out


def encoder_parts(
    path: str, module: nn.Module, r_in: Range, seq_len: int, observe: Observe | None = None
) -> tuple[list[TransformerPart], Range]:
    """Every sublayer of an encoder (layer) at ``path``, in forward order; its output range.

    ``observe(part)``, if given, returns the range each sublayer's outputs take under its
    own intervention (inside ``part.out_range``, the sound bound); it replaces the bound
    and the ranges after it follow from it (see
    :mod:`~causal_widgets.network.observed_ranges`).
    """
    parts: list[TransformerPart] = []
    r = r_in
    if isinstance(module, nn.TransformerEncoderLayer):
        return _layer_parts(path, module, r, seq_len, observe)
    for k, layer in enumerate(module.layers):
        sub, r = _layer_parts(f"{path}.layers.{k}", layer, r, seq_len, observe)
        parts += sub
    if module.norm is not None:
        p = TransformerPart(f"{path}.norm", module.norm, r, layer_norm_bounds(module.norm, r),
                            True, "")
        if observe is not None:
            p.out_range = observe(p)
        parts.append(p)
        r = p.out_range
    return parts, r


def encoder_bounds(module: nn.Module, r_in: Range) -> Range | None:
    """A sound interval of an encoder (layer)'s output; ``None`` if it cannot be split."""
    if unsupported_reason(module) is not None:
        return None
    return encoder_parts("", module, r_in, 0)[1]

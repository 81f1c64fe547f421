"""BatchNorm folding: an eval-mode BatchNorm after a Linear/Conv becomes part of its weights.

In eval mode a ``BatchNorm1d``/``BatchNorm2d`` with running statistics computes, per
channel ``c``, ``y_c = (z_c - mean_c) / sqrt(var_c + eps) * gamma_c + beta_c``: an affine
map ``y_c = s_c z_c + t_c`` with ``s_c = gamma_c / sqrt(var_c + eps)`` and
``t_c = beta_c - s_c mean_c``. After ``z = W x + b`` it gives ``y = (s * W) x + (s b + t)``,
again a Linear/Conv with one weight row (one output channel) scaled by ``s_c``. Folding
is therefore exact: the folded layer computes the same function as ``conv -> bn`` (up to
float rounding), and it keeps its dense form, so the exact engine still applies.

Only the snapshot's running statistics are folded. A BatchNorm without running
statistics (``track_running_stats=False``) normalises with the statistics of whatever
batch it is given even in eval mode: that is not a fixed function of one sample, so it is
never folded (:func:`foldable_batchnorm` says why).

A BatchNorm is foldable into the module before it only when it normalises that module's
output channels: ``BatchNorm2d`` after ``Conv2d``, ``BatchNorm1d`` after ``Conv1d``, or
``BatchNorm1d`` after a ``Linear`` on ``(N, d)`` inputs (on ``(N, T, d)`` BatchNorm1d would
normalise dimension 1, the sequence, which is not the Linear's output).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["batchnorm_affine", "fold_batchnorm", "foldable_batchnorm"]

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def batchnorm_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """The eval-mode BatchNorm as ``(scale, shift)`` per channel, float64, detached."""
    if bn.running_var is None or bn.running_mean is None:
        raise ValueError(
            f"{type(bn).__name__} has no running statistics (track_running_stats=False): "
            "it normalises with batch statistics even in eval mode, which is not a fixed "
            "function of one sample, so it cannot be folded or measured."
        )
    var = bn.running_var.detach().double()
    mean = bn.running_mean.detach().double()
    scale = (var + bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight.detach().double()
    shift = -mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach().double()
    return scale, shift


def foldable_batchnorm(
    core: nn.Module, bn: nn.Module, core_out_shape: tuple[int, ...] | None
) -> str | None:
    """``None`` if ``bn`` folds into ``core`` (a Linear/Conv it directly follows); else why not.

    ``core_out_shape`` is one sample's output shape of ``core`` (batch dim dropped).
    """
    if not isinstance(bn, _BATCHNORMS):
        return f"{type(bn).__name__} is not BatchNorm1d/2d"
    if bn.running_var is None:
        return "it has no running statistics (track_running_stats=False)"
    if isinstance(core, nn.Conv2d):
        ok = isinstance(bn, nn.BatchNorm2d)
        channels = core.out_channels
    elif isinstance(core, nn.Conv1d):
        ok = isinstance(bn, nn.BatchNorm1d)
        channels = core.out_channels
    elif isinstance(core, nn.Linear):
        # BatchNorm1d on (N, d) normalises the Linear's features; on (N, T, d) it would
        # normalise dim 1 (the sequence), which is not a per-output-channel affine map
        ok = isinstance(bn, nn.BatchNorm1d) and core_out_shape is not None and len(
            core_out_shape
        ) == 1
        channels = core.out_features
    else:
        return f"{type(core).__name__} is not Linear/Conv1d/Conv2d"
    if not ok:
        return (
            f"{type(bn).__name__} does not normalise the output channels of "
            f"{type(core).__name__}"
        )
    if bn.num_features != channels:
        return f"it has {bn.num_features} features but the layer has {channels} outputs"
    return None


def fold_batchnorm(core: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    """A copy of ``core`` (Linear/Conv) whose weights and bias include the eval-mode ``bn``.

    The copy always has a bias (``s b + t``); ``core`` and ``bn`` are left untouched. The
    arithmetic is done in float64 and stored in ``core``'s dtype.
    """
    why = foldable_batchnorm(core, bn, (0,) if isinstance(core, nn.Linear) else None)
    if why is not None:
        raise ValueError(f"cannot fold {type(bn).__name__} into {type(core).__name__}: {why}.")
    scale, shift = batchnorm_affine(bn)
    w = core.weight.detach().double()
    b = core.bias.detach().double() if core.bias is not None else torch.zeros_like(scale)
    w_folded = w * scale.reshape(-1, *([1] * (w.dim() - 1)))
    b_folded = b * scale + shift
    folded = copy.deepcopy(core)
    dtype = core.weight.dtype
    folded.weight = nn.Parameter(w_folded.to(dtype), requires_grad=False)
    folded.bias = nn.Parameter(b_folded.to(dtype), requires_grad=False)
    return folded

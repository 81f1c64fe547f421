"""The measurable layer: a function from an input tensor to an output tensor, with ranges.

A :class:`Layer` is what every estimator measures. It carries

* ``fn``: maps a batch ``(N, *in_shape)`` to ``(N, *out_shape)`` (a module, a span of
  modules, a conv layer restricted to one receptive field, ...);
* ``in_range`` / ``out_range``: the intervention range of every input neuron and the
  binning range of every output neuron;
* ``dense``: when the layer is ``act(W x + b)`` with an elementwise monotone ``act``,
  its :class:`DenseForm`, which the exact (sampling-free) engine uses.

:class:`Activation` knows each supported elementwise activation's natural output range
and the preimage of output bin edges (the thresholds in pre-activation space), which
is what makes exact computation possible.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from causal_widgets.checks import check_materialized
from causal_widgets.engine.binning import Range, check_range

MONOTONE_KINDS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu")


@dataclass(frozen=True)
class Activation:
    """An elementwise activation the engine understands.

    ``kind`` is one of ``identity``, ``sigmoid``, ``tanh``, ``relu``, ``leaky_relu``
    (all monotone non-decreasing, so the exact engine applies) or ``other`` (sampled
    only). ``slope`` is leaky ReLU's negative slope.
    """

    kind: str = "identity"
    slope: float = 0.01

    @property
    def monotone(self) -> bool:
        return self.kind in MONOTONE_KINDS

    @property
    def natural_range(self) -> Range | None:
        """The activation's output range, or ``None`` when it is unbounded."""
        return {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}.get(self.kind)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        if self.kind == "identity":
            return z
        if self.kind == "sigmoid":
            return torch.sigmoid(z)
        if self.kind == "tanh":
            return torch.tanh(z)
        if self.kind == "relu":
            return torch.relu(z)
        if self.kind == "leaky_relu":
            return torch.nn.functional.leaky_relu(z, self.slope)
        raise ValueError(f"activation {self.kind!r} cannot be applied from its description")

    def apply_numpy(self, z: np.ndarray) -> np.ndarray:
        """The activation on float64 numpy values (used by exact reference computations)."""
        if self.kind == "identity":
            return z
        if self.kind == "sigmoid":
            return 1.0 / (1.0 + np.exp(-z))
        if self.kind == "tanh":
            return np.tanh(z)
        if self.kind == "relu":
            return np.maximum(z, 0.0)
        if self.kind == "leaky_relu":
            return np.where(z >= 0, z, self.slope * z)
        raise ValueError(f"activation {self.kind!r} has no numpy form")

    def preimage(self, edges: np.ndarray) -> np.ndarray:
        """Pre-activation thresholds ``t`` with ``act(z) >= e  <=>  z >= t`` for each edge ``e``.

        Edges below the activation's range map to ``-inf`` (always reached), edges above
        it to ``+inf`` (never reached).
        """
        e = np.asarray(edges, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.kind == "identity":
                t = e.copy()
            elif self.kind == "sigmoid":
                t = np.where(e <= 0, -np.inf, np.where(e >= 1, np.inf, np.log(e) - np.log1p(-e)))
            elif self.kind == "tanh":
                t = np.where(e <= -1, -np.inf, np.where(e >= 1, np.inf, np.arctanh(e)))
            elif self.kind == "relu":
                t = np.where(e <= 0, -np.inf, e)
            elif self.kind == "leaky_relu":
                t = np.where(e >= 0, e, e / self.slope)
            else:
                raise ValueError(
                    f"activation {self.kind!r} is not monotone: use method='sampled'."
                )
        return t


def activation_of(module: nn.Module | None) -> Activation | None:
    """The :class:`Activation` a module computes, ``None`` if it is not an activation."""
    if module is None or isinstance(module, nn.Identity):
        return Activation("identity")
    if isinstance(module, nn.Sigmoid):
        return Activation("sigmoid")
    if isinstance(module, nn.Tanh):
        return Activation("tanh")
    if isinstance(module, nn.ReLU):
        return Activation("relu")
    if isinstance(module, nn.LeakyReLU):
        return Activation("leaky_relu", float(module.negative_slope))
    if isinstance(
        module,
        (nn.GELU, nn.SiLU, nn.ELU, nn.Softplus, nn.Hardtanh, nn.ReLU6, nn.Mish, nn.Softsign),
    ):
        return Activation("other")
    return None


@dataclass
class DenseForm:
    """``y = act(weight @ x + bias)``: weight ``(m, n)``, bias ``(m,)``, float64 numpy."""

    weight: np.ndarray
    bias: np.ndarray
    activation: Activation

    @property
    def n_in(self) -> int:
        return int(self.weight.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.weight.shape[0])

    def interval_bounds(self, in_range: Range) -> Range:
        """Exact bounds of the layer's output over ``x in [lo, hi]^n`` (interval arithmetic)."""
        z_lo, z_hi = linear_bounds(self.weight, self.bias, in_range)
        y = self.activation.apply_numpy(np.array([z_lo, z_hi]))
        return float(y[0]), float(y[1])


# --------------------------------------------------------------------------- dense forms
# The one place that turns a Linear / Conv module into the W, b of act(W x + b): the layer
# model (dense_form_of, conv_dense_form), the network discovery (its layers' dense forms
# and the interval bounds it propagates) and the measure API all build them here.


def _f64(t: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().to("cpu", torch.float64).numpy()
    return np.asarray(t, dtype=np.float64)


def linear_bounds(
    weight: torch.Tensor | np.ndarray,
    bias: torch.Tensor | np.ndarray | None,
    in_range: Range,
) -> Range:
    """Exact interval bound of ``W x + b`` (before any activation) over ``x in [lo, hi]^n``.

    ``z_hi = max_j (sum_k max(w_jk lo, w_jk hi) + b_j)``, ``z_lo`` likewise with ``min``.
    ``weight`` is ``(m, ...)``, flattened to ``(m, n)`` (a conv's dense weight may come
    unflattened); tensors or arrays, computed in float64.
    """
    lo, hi = in_range
    w = _f64(weight)
    w = w.reshape(w.shape[0], -1)
    b = _f64(bias) if bias is not None else 0.0
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf weights: caught by callers
        z_hi = np.maximum(w * lo, w * hi).sum(axis=1) + b
        z_lo = np.minimum(w * lo, w * hi).sum(axis=1) + b
    return float(np.min(z_lo)), float(np.max(z_hi))


def dense_weight(module: nn.Linear | nn.Conv1d | nn.Conv2d) -> torch.Tensor:
    """The ``W`` of ``W x + b``: a Linear's weight, or a conv's over one receptive field.

    A conv is a dense ``(C_out, C_in * prod(k))`` matrix on one receptive field (stride,
    padding and dilation do not change what a single interior position computes). With
    ``groups = G`` output channel ``o`` sees only the input channels of its group, so the
    matrix is block-diagonal; columns are ordered like ``patch.reshape(-1)`` for a patch of
    shape ``(C_in, *k)``. Detached, in the weight's dtype and on its device.
    """
    w = module.weight.detach()
    if isinstance(module, nn.Linear):
        return w
    c_out, c_in_g = w.shape[:2]
    k = math.prod(w.shape[2:])
    groups = module.groups
    if groups == 1:
        return w.reshape(c_out, -1)
    dense = torch.zeros(c_out, c_in_g * groups, k, dtype=w.dtype, device=w.device)
    per = c_out // groups
    for gi in range(groups):
        rows = slice(gi * per, (gi + 1) * per)
        cols = slice(gi * c_in_g, (gi + 1) * c_in_g)
        dense[rows, cols] = w[rows].reshape(per, c_in_g, k)
    return dense.reshape(c_out, -1)


def dense_form(module: nn.Linear | nn.Conv1d | nn.Conv2d, activation: Activation) -> DenseForm:
    """``act(W x + b)`` of a Linear / Conv followed by ``activation``: a float64 snapshot.

    The caller checks that ``activation`` is monotone where the exact engine needs it.
    """
    w = _f64(dense_weight(module)).copy()
    b = _f64(module.bias).copy() if module.bias is not None else np.zeros(w.shape[0])
    return DenseForm(w, b, activation)


def check_finite_weights(module: nn.Module, name: str) -> None:
    """Raise ``ValueError`` naming the parameter if ``module`` holds NaN/inf weights."""
    for pname, p in module.named_parameters():
        if not torch.isfinite(p).all():
            where = f"{name}.{pname}" if name else pname
            raise ValueError(
                f"parameter {where!r} contains NaN or inf values: the model has diverged; "
                "lower the learning rate or restore a finite checkpoint before measuring."
            )


def check_layer_sizes(module: nn.Module, name: str) -> None:
    """Raise ``ValueError`` naming the submodule if a Linear / Conv in ``module`` has no
    inputs or no outputs (``nn.Linear(0, 3)``, ``nn.Linear(4, 0)``): such a layer carries
    no information, and every estimate of it would be a reduction over nothing."""
    for path, m in module.named_modules():
        if isinstance(m, nn.Linear):
            sizes = (("in_features", m.in_features), ("out_features", m.out_features))
        elif isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            sizes = (("in_channels", m.in_channels), ("out_channels", m.out_channels))
        else:
            continue
        for attr, size in sizes:
            if size == 0:
                where = f"{name}.{path}" if path else name
                side = "inputs" if attr.startswith("in") else "outputs"
                raise ValueError(
                    f"{where}: {type(m).__name__} with {attr}=0 has no {side}, so there is "
                    f"nothing to measure (information between no variables is not "
                    f"defined); give it at least one {side[:-1]} (e.g. nn.Linear(4, 3)), or "
                    "leave it out of the layers you measure."
                )


def _float_dtype(module: nn.Module) -> tuple[torch.dtype | None, torch.device | None]:
    """The dtype and device of ``module``'s first floating parameter or buffer."""
    for t in (*module.parameters(), *module.buffers()):
        if t.is_floating_point():
            return t.dtype, t.device
    return None, None


#: dtypes a module may hold that the estimators do not compute in: its batches are cast
_HALF_DTYPES = (torch.float16, torch.bfloat16)


class CastToModuleDtype(nn.Module):
    """``module`` run on the engine's float32 batches: inputs are cast to the module's
    ``dtype`` (float16 / bfloat16) and floating outputs back to float32, so the layer
    is measured as it computes (in its own precision), with float32 bins and tallies."""

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.module = module
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.module(x.to(self.dtype))
        if isinstance(y, torch.Tensor) and y.is_floating_point():
            return y.float()
        return y


@dataclass
class Layer:
    """A measurable layer: ``fn`` maps ``(N, *in_shape)`` to ``(N, *out_shape)``."""

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    in_range: Range
    out_range: Range | None
    dense: DenseForm | None = None
    activation: Activation | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def n_in(self) -> int:
        return math.prod(self.in_shape)

    @property
    def n_out(self) -> int:
        return math.prod(self.out_shape)

    def forward_flat(self, x_flat: torch.Tensor) -> torch.Tensor:
        """Run ``fn`` on a flat batch ``(N, n_in)`` and return a flat ``(N, n_out)`` output."""
        if self.dense is not None and self.extra.get("use_dense_forward", True):
            w = self.extra.get("_w_torch")
            if w is None or w.device != x_flat.device or w.dtype != x_flat.dtype:
                w = torch.as_tensor(self.dense.weight, dtype=x_flat.dtype, device=x_flat.device)
                b = torch.as_tensor(self.dense.bias, dtype=x_flat.dtype, device=x_flat.device)
                self.extra["_w_torch"], self.extra["_b_torch"] = w, b
            z = torch.addmm(self.extra["_b_torch"], x_flat, w.T)
            return self.dense.activation(z)
        y = self.fn(x_flat.reshape(x_flat.shape[0], *self.in_shape))
        if not isinstance(y, torch.Tensor):
            raise TypeError(
                f"layer {self.name!r} returned {type(y).__name__}, not a tensor: "
                "measure a module that maps one tensor to one tensor."
            )
        return y.reshape(y.shape[0], -1)


def dense_form_of(module: nn.Module) -> DenseForm | None:
    """The :class:`DenseForm` of ``Linear`` or ``Sequential(Linear, monotone activation)``."""
    modules = list(module) if isinstance(module, nn.Sequential) else [module]
    if not modules or not isinstance(modules[0], nn.Linear):
        return None
    if len(modules) > 2:
        return None
    act = activation_of(modules[1]) if len(modules) == 2 else Activation("identity")
    if act is None or not act.monotone:
        return None
    return dense_form(modules[0], act)


def conv_dense_form(module: nn.Module, in_shape: tuple[int, ...]) -> DenseForm | None:
    """Dense form of ``Conv2d`` (+ monotone activation) applied to one receptive field.

    When the input is exactly one receptive field ``(C_in, kh, kw)`` (no padding, stride
    and dilation irrelevant for a 1x1 output with dilation 1, one group), the conv is
    ``act(W.reshape(C_out, -1) @ x + b)`` in the flattening order of ``(C_in, kh, kw)``.
    The form is verified numerically against the module before it is trusted.
    """
    mods = list(module) if isinstance(module, nn.Sequential) else [module]
    if not mods or len(mods) > 2 or not isinstance(mods[0], nn.Conv2d):
        return None
    conv: nn.Conv2d = mods[0]
    act = activation_of(mods[1]) if len(mods) == 2 else Activation("identity")
    if act is None or not act.monotone:
        return None
    kh, kw = conv.kernel_size
    if isinstance(conv.padding, str):
        no_padding = conv.padding == "valid"
    else:
        no_padding = tuple(conv.padding) == (0, 0)
    if (
        not no_padding
        or conv.groups != 1
        or tuple(conv.dilation) != (1, 1)
        or tuple(in_shape) != (conv.in_channels, kh, kw)
    ):
        return None
    dense = dense_form(conv, act)
    w, b = torch.from_numpy(dense.weight), torch.from_numpy(dense.bias)
    # verify on a few fixed points (a private generator: the global RNG stays untouched),
    # run where the module lives (its first parameter is the conv's weight)
    gen = torch.Generator().manual_seed(12345)
    x = torch.rand((8, *in_shape), generator=gen, dtype=torch.float64)
    ref = module(x.to(device=conv.weight.device, dtype=conv.weight.dtype)).reshape(8, -1)
    mine = act(x.reshape(8, -1) @ w.T + b)
    if ref.shape != mine.shape or not torch.allclose(
        ref.to("cpu", torch.float64), mine, atol=1e-4, rtol=1e-4
    ):
        return None
    return dense


def last_activation(module: nn.Module) -> Activation | None:
    """The activation a module ends with (itself, or the last child of a Sequential)."""
    if isinstance(module, nn.Sequential) and len(module) > 0:
        return last_activation(module[-1])
    act = activation_of(module)
    if act is not None and not isinstance(module, nn.Identity):
        return act
    if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
        return Activation("identity")
    return None


def layer_from_module(
    module: nn.Module,
    *,
    name: str = "layer",
    in_shape: Sequence[int] | None = None,
    in_range: Sequence[float] | None = None,
    out_range: Sequence[float] | None = None,
) -> Layer:
    """Wrap a module as a :class:`Layer`, inferring shapes and ranges where it can.

    ``in_shape`` is needed unless the module starts with ``nn.Linear``. ``out_range``
    defaults to the natural range of the module's last activation (sigmoid, tanh); for
    a dense layer with an unbounded activation it is the exact interval bound.
    """
    if not isinstance(module, nn.Module):
        if not callable(module):
            raise TypeError(
                f"expected a torch.nn.Module or a callable mapping a tensor to a tensor; "
                f"got {type(module).__name__}."
            )
    else:
        check_materialized(module, name)
        check_finite_weights(module, name if name != "layer" else "")
        check_layer_sizes(module, name)
    in_range = check_range(in_range, "in_range")
    dense = dense_form_of(module) if isinstance(module, nn.Module) else None
    if in_shape is None:
        first = module[0] if isinstance(module, nn.Sequential) and len(module) else module
        if isinstance(first, nn.Linear):
            in_shape = (first.in_features,)
        else:
            raise ValueError(
                f"cannot infer the input shape of {type(module).__name__}: pass "
                "in_shape=(...) (one sample's shape, e.g. in_shape=(3, 5, 5) for a conv "
                "layer's receptive field)."
            )
    in_shape = tuple(int(s) for s in in_shape)
    fn = module
    dtype, device = _float_dtype(module) if isinstance(module, nn.Module) else (None, None)
    if dtype in _HALF_DTYPES and dense is None:
        # the estimators feed float32 batches (float64 for a float64 module): a float16 /
        # bfloat16 module is run in its own precision behind a cast (a dense layer is
        # measured from its float64 weight copy and never runs the module)
        fn = CastToModuleDtype(module, dtype)
    with torch.no_grad():
        try:
            # the probe only finds the output shape: in the module's dtype and device
            probe = module(torch.full((2, *in_shape), float(in_range[0]),
                                      dtype=dtype or torch.float32, device=device))
        except Exception as err:  # noqa: BLE001 - re-raised with the fix named
            if "dtype" in str(err) or "Half" in str(err) or "BFloat16" in str(err):
                raise TypeError(
                    f"{name}: the module failed on a {dtype or torch.float32} batch of "
                    f"shape (N, {in_shape}) with a dtype mismatch: {err}. Its parameters "
                    "mix dtypes; measurement runs in float32: pass a float32 copy, e.g. "
                    "copy.deepcopy(module).float()."
                ) from err
            raise TypeError(
                f"{name}: could not run the module on inputs of shape (N, {in_shape}): "
                f"{err}. Pass the right in_shape, or a module that maps a tensor to a tensor."
            ) from err
    if not isinstance(probe, torch.Tensor):
        raise TypeError(
            f"{name}: the module returned {type(probe).__name__}, not a tensor; "
            "measure a module that maps one tensor to one tensor."
        )
    out_shape = tuple(probe.shape[1:])
    act = dense.activation if dense is not None else (
        last_activation(module) if isinstance(module, nn.Module) else None
    )
    if out_range is None:
        natural = act.natural_range if act is not None else None
        if natural is not None:
            out_range = natural
        elif dense is not None:
            out_range = dense.interval_bounds(in_range)
            if out_range[0] == out_range[1]:
                out_range = (out_range[0] - 0.5, out_range[1] + 0.5)
        else:
            raise ValueError(
                f"{name}: the output is unbounded (activation: "
                f"{act.kind if act else 'unknown'}) and cannot be derived; pass "
                "out_range=(lo, hi)."
            )
    out_range = check_range(out_range, "out_range")
    return Layer(
        name=name,
        fn=fn,
        in_shape=in_shape,
        out_shape=out_shape,
        in_range=in_range,
        out_range=out_range,
        dense=dense,
        activation=act,
    )

"""Layers measure_layer cannot measure as given, each refused with the argument and the fix
(or, for a float16 module, measured correctly instead of refused with the wrong advice).

Reproduced first (issue 13): ``nn.Linear(0, 3)`` ended in numpy's "zero-size array to
reduction operation maximum", ``nn.Linear(4, 0)`` in "cannot reshape ... of 0 elements",
a float16 custom module in "mat1 and mat2 must have the same dtype ... Pass the right
in_shape", ``device="cuda"`` on a CPU-only torch in torch's linker message ("Cannot get
CUDA generator without ATen_cuda library"), and a model built under
``torch.device("meta")`` in "Tensor.item() cannot be called on meta tensors".
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from causal_widgets.engine.exact import exact_pair_mi
from causal_widgets.engine.layer import Activation, dense_form
from causal_widgets.engine.layer_measure import measure_layer
from causal_widgets.engine.settings import MeasureSettings


@pytest.mark.parametrize(
    "module, says",
    [
        (nn.Linear(0, 3), "Linear with in_features=0 has no inputs"),
        (nn.Linear(4, 0), "Linear with out_features=0 has no outputs"),
        (nn.Sequential(nn.Linear(4, 0), nn.Sigmoid()), "layer.0: Linear with out_features=0"),
    ],
)
def test_a_layer_without_inputs_or_outputs_is_refused(module: nn.Module, says: str) -> None:
    with pytest.raises(ValueError) as exc:
        measure_layer(module, in_range=(0.0, 1.0))
    msg = str(exc.value)
    assert says in msg and "nothing to measure" in msg and "e.g. nn.Linear(4, 3)" in msg


def test_a_conv_without_channels_is_refused() -> None:
    conv = nn.Conv2d(0, 3, 3)
    with pytest.raises(ValueError, match="Conv2d with in_channels=0 has no inputs"):
        measure_layer(conv, in_range=(0.0, 1.0), in_shape=(0, 3, 3), out_range=(-1.0, 1.0))


class TinyNet(nn.Module):
    """A custom module (no dense form: it is not a Linear), as users write them."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.act = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(x))


def _exact_ei_parts(module: TinyNet, bins: int) -> float:
    """EI_parts of sigmoid(W x + b) by the sampling-free engine (the closed form), from
    the module's own weights (so a float16 module's rounded weights are the truth)."""
    dense = dense_form(module.fc, Activation("sigmoid"))
    return float(exact_pair_mi(dense, (0.0, 1.0), bins, (0.0, 1.0), bins).sum())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_a_custom_module_in_another_dtype_is_measured_as_it_computes(dtype) -> None:
    torch.manual_seed(0)  # only to initialise the module's weights
    module = TinyNet()
    with torch.no_grad():
        module.fc.weight.mul_(4.0)  # a layer whose outputs spread over the bins
    low = copy.deepcopy(module).to(dtype)
    kw = dict(in_shape=(3,), in_range=(0.0, 1.0), out_range=(0.0, 1.0), bins=4,
              metrics=["ei_parts"], method="sampled", samples=2**17, seed=2)
    result = measure_layer(low, **kw)
    assert low.fc.weight.dtype == dtype  # the caller's module is left in its dtype
    truth = _exact_ei_parts(low.float(), bins=4)
    lo, hi = result.ci["ei_parts"]
    # the sampled 95 % CI, widened by half (~3 sd) and by 0.01 bits for the module's own
    # rounding: float16 / bfloat16 sigmoid outputs move by <= 2**-8 (bfloat16), which
    # shifts a fraction of that of the samples across a bin edge 1/4 wide
    slack = 0.5 * (hi - lo) + (0.0 if dtype == torch.float64 else 0.01)
    assert lo - slack <= truth <= hi + slack, (dtype, truth, result.ci["ei_parts"])


def test_a_module_that_mixes_dtypes_gets_the_right_advice() -> None:
    module = TinyNet()
    module.fc.bias.data = module.fc.bias.data.double()  # float32 weight, float64 bias
    with pytest.raises(TypeError) as exc:
        measure_layer(module, in_shape=(3,), in_range=(0.0, 1.0), out_range=(0.0, 1.0))
    msg = str(exc.value)
    assert "dtype mismatch" in msg and "copy.deepcopy(module).float()" in msg
    assert "Pass the right in_shape" not in msg  # the old, wrong advice


@pytest.mark.skipif(torch.cuda.is_available(), reason="this torch has a usable GPU")
def test_cuda_on_a_torch_without_it_is_refused_at_the_call() -> None:
    for call in (lambda: MeasureSettings(device="cuda"),
                 lambda: measure_layer(nn.Linear(2, 2), in_range=(0.0, 1.0), device="cuda:0")):
        with pytest.raises(ValueError) as exc:
            call()
        msg = str(exc.value)
        assert "asks for CUDA, but torch sees no GPU" in msg and "device='cpu'" in msg
        assert "ATen_cuda" not in msg
        if torch.version.cuda is None:
            assert "CPU-only build" in msg and "install a CUDA build of torch" in msg


def test_cuda_build_without_a_visible_gpu_is_told_apart(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    with pytest.raises(ValueError) as exc:
        MeasureSettings(device="cuda")
    msg = str(exc.value)
    assert "built with CUDA 12.4, but no GPU is visible" in msg and "device='cpu'" in msg


def test_a_meta_module_is_refused() -> None:
    with torch.device("meta"):
        module = nn.Sequential(nn.Linear(4, 3), nn.Sigmoid())
    with pytest.raises(ValueError, match=r"on the meta device \('0.weight' and 1 more\)"):
        measure_layer(module, in_range=(0.0, 1.0))

"""What Monitor (and CausalDashboard, which forwards to it) refuses at the call.

Reproduced first (issue 13): ``record(0, acc=torch.tensor([.5, .6]))`` raised torch's "a
Tensor with 2 elements cannot be converted to Scalar" without naming ``acc``; a generator
as ``example_input`` ended in "cannot pickle 'generator' object"; a model built under
``torch.device("meta")`` failed in the worker; ``device="cuda"`` on a CPU-only torch
did not say that torch itself lacks CUDA.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from causal_widgets.live.monitor import Monitor
from causal_widgets.widgets.dashboard import CausalDashboard

GEN = torch.Generator().manual_seed(0)
X = torch.rand(16, 4, generator=GEN)


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 3), nn.Sigmoid(), nn.Linear(3, 2), nn.Sigmoid())


def never(layer, **kwargs):  # the tests below never reach a measurement
    raise AssertionError("nothing should be measured here")


@pytest.fixture
def monitor():
    mon = Monitor(mlp(), X, in_range=(0.0, 1.0), every=1000, measure_fn=never)
    yield mon
    mon.close()


@pytest.mark.parametrize(
    "value, shape",
    [(torch.tensor([0.5, 0.6]), "(2,)"), (np.array([[1.0, 2.0, 3.0]]), "(1, 3)"),
     (torch.zeros(0), "(0,)")],
)
def test_a_batch_of_values_names_the_key(monitor: Monitor, value, shape: str) -> None:
    with pytest.raises(TypeError) as exc:
        monitor.record(1, loss=0.3, acc=value)
    msg = str(exc.value)
    assert "scalar 'acc' must be one number" in msg and f"shape {shape}" in msg
    assert "acc=acc.mean().item()" in msg  # what to pass instead
    # nothing of the refused call was kept (not even its good scalar)
    assert monitor.history.scalars().empty


def test_text_is_not_a_number(monitor: Monitor) -> None:
    with pytest.raises(TypeError, match="scalar 'loss' must be a number; got the text '0.5'"):
        monitor.record(1, loss="0.5")


def test_one_element_values_are_accepted(monitor: Monitor) -> None:
    monitor.record(1, loss=torch.tensor([0.25]), acc=np.float32(0.5), step=np.array(3))
    row = monitor.history.scalars().iloc[0]
    assert (row["loss"], row["acc"], row["step"]) == (0.25, 0.5, 3.0)


@pytest.mark.parametrize(
    "make, kind",
    [(lambda: (x for x in [X]), "generator"),
     (lambda: iter([X]), "list_iterator"),
     (lambda: DataLoader(TensorDataset(X), batch_size=4), "DataLoader")],
)
def test_a_stream_of_batches_is_refused_with_the_fix(make, kind: str) -> None:
    with pytest.raises(TypeError) as exc:
        Monitor(mlp(), make(), in_range=(0.0, 1.0), measure_fn=never)
    msg = str(exc.value)
    assert "example_input must be one batch" in msg and f"got a {kind}" in msg
    assert "next(iter(loader))[0]" in msg


def test_a_meta_model_is_refused_before_any_copy() -> None:
    with torch.device("meta"):
        model = mlp()
    with pytest.raises(ValueError) as exc:
        Monitor(model, X, in_range=(0.0, 1.0), measure_fn=never)
    msg = str(exc.value)
    assert "model has parameters on the meta device ('0.weight' and 3 more)" in msg
    assert "to_empty(device='cpu')" in msg


@pytest.mark.skipif(torch.cuda.is_available(), reason="this torch has a usable GPU")
def test_cuda_without_cuda_says_why_and_what_to_pass() -> None:
    with pytest.raises(ValueError) as exc:
        Monitor(mlp(), X, in_range=(0.0, 1.0), device="cuda", measure_fn=never)
    msg = str(exc.value)
    assert "device='cuda' asks for CUDA, but torch sees no GPU" in msg
    assert "device='cpu'" in msg
    if torch.version.cuda is None:
        assert "CPU-only build" in msg and "install a CUDA build of torch" in msg


def test_the_dashboard_refuses_a_generator_like_the_monitor() -> None:
    # (CausalDashboard.record converts scalars itself before forwarding: widgets/ is not
    # this change's to edit, so its record() message is left to the widgets' owner)
    with pytest.raises(TypeError, match=r"example_input must be one batch .*; got a generator"):
        CausalDashboard(mlp(), (x for x in [X]), in_range=(0.0, 1.0), measure_fn=never)


def test_a_meta_model_is_refused_for_every_executor():
    import pytest
    import torch
    from torch import nn

    from causal_widgets.live.monitor import Monitor

    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(4, 3), nn.Sigmoid())
    for executor in ("thread", "process"):
        with pytest.raises(ValueError, match="meta device"):
            Monitor(model, torch.rand(2, 4), in_range=(0.0, 1.0), executor=executor)

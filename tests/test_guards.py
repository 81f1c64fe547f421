"""causal_widgets.guards.untouched: what it restores, and on which thread."""

from __future__ import annotations

import threading

import torch
from torch import nn

from causal_widgets.guards import untouched


def _model() -> nn.Module:
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.Sigmoid())
    model.train()
    model[1].eval()  # a mixed state must come back exactly as it was
    return model


def test_main_thread_restores_flags_grad_and_rng():
    model = _model()
    flags = [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    with untouched(model):
        assert not torch.is_grad_enabled()
        assert not any(m.training for m in model.modules())
        torch.rand(3)  # a module drawing from the global RNG in forward
    assert torch.is_grad_enabled()
    assert [m.training for m in model.modules()] == flags
    assert torch.equal(torch.get_rng_state(), rng)


def test_plain_callable_and_exceptions():
    rng = torch.get_rng_state()
    try:
        with untouched(lambda x: x):
            torch.rand(3)
            raise KeyError("boom")
    except KeyError:
        pass
    assert torch.is_grad_enabled()
    assert torch.equal(torch.get_rng_state(), rng)


def test_worker_thread_does_not_rewind_the_main_threads_draws():
    """Restoring the RNG from a worker would make training repeat its random numbers."""
    model = _model()
    entered, leave = threading.Event(), threading.Event()

    def worker():
        with untouched(model):
            entered.set()
            leave.wait(10)

    t = threading.Thread(target=worker)
    t.start()
    assert entered.wait(10)
    torch.rand(5)  # the training thread draws while the worker is inside the guard
    after_draw = torch.get_rng_state()
    leave.set()
    t.join(10)
    assert torch.equal(torch.get_rng_state(), after_draw)


def test_overlapping_guards_on_one_module_restore_its_flags():
    """The first guard in saves the flags and the last one out restores them."""
    model = _model()
    flags = [m.training for m in model.modules()]
    entered, leave = threading.Event(), threading.Event()

    def worker():
        with untouched(model):
            entered.set()
            leave.wait(10)

    with untouched(model):
        t = threading.Thread(target=worker)
        t.start()
        assert entered.wait(10)
    # the main thread's guard is done, the worker's is not: still in eval mode
    assert not any(m.training for m in model.modules())
    leave.set()
    t.join(10)
    assert [m.training for m in model.modules()] == flags

"""One guard for running a caller's module without leaving a trace: :func:`untouched`.

Measuring a layer (``measure_layer``) and probing a network (``find_layers``) both run the
caller's own modules. Both must leave behind exactly what they found: the train/eval flag
of every submodule, the grad mode and the global RNG state. They used to have one guard
each, and the two had drifted apart: the network one restored the global RNG on every
thread, the layer one only on the main thread. This module keeps the stronger of each:

* **The global RNG is restored only on the main thread.** torch has one global generator
  per process (and one per CUDA device), shared by every thread. The dashboard measures
  and probes in a background worker while the training loop keeps drawing from that
  generator on the main thread (dropout masks, shuffling); restoring the worker's saved
  state would rewind the numbers training drew meanwhile, so training would repeat random
  numbers. The measurement never draws from the global RNG itself (every draw uses a
  private ``torch.Generator``); the save/restore on the main thread is there for modules
  that draw from it in ``forward`` even in eval mode.
* **Train flags are reference-counted across threads.** Two guards over the same module
  (two threads measuring one module, or a guard nested in another) would otherwise
  interleave: the second saves the ``False`` the first set, the first restores ``True``
  while the second still runs, and the second then leaves the module in eval mode. Here
  the first guard to enter saves each module's flag and the last to leave restores it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = ["untouched"]

# id(module) -> [guards holding it, its training flag before the first one entered]. Keyed
# by id, not by the module: a module class may define __eq__ and so be unhashable. An id
# cannot be reused while its entry exists, because the guard holding it keeps the module
# alive (its `held` list).
_HELD: dict[int, list] = {}
_HELD_LOCK = threading.Lock()


def _hold(modules: list[nn.Module], held: list[nn.Module]) -> None:
    """Count one more guard on each module (appending it to ``held``) and set eval mode."""
    with _HELD_LOCK:
        for m in modules:
            entry = _HELD.get(id(m))
            if entry is None:
                _HELD[id(m)] = [1, m.training]
            else:
                entry[0] += 1
            held.append(m)  # before the flag: released even if setting the flag fails
            m.training = False  # the flag only: an overridden .eval() could have side effects


def _release(held: list[nn.Module]) -> None:
    """One guard fewer on each module; the last one out restores the saved flag."""
    with _HELD_LOCK:
        for m in held:
            entry = _HELD[id(m)]
            entry[0] -= 1
            if entry[0] == 0:
                m.training = entry[1]
                del _HELD[id(m)]


def _is_cuda(device: Any) -> bool:
    try:
        return device is not None and torch.device(device).type == "cuda"
    except (TypeError, RuntimeError):  # not a device spec: nothing more to save
        return False


@contextmanager
def untouched(fn: Any, device: torch.device | str | None = None) -> Iterator[None]:
    """Run the body with grad off and ``fn``'s modules in eval mode; restore all after.

    Eval mode matters: dropout would add noise to the layer, and a training-mode BatchNorm
    would both change its output and overwrite its running statistics; in eval mode
    running the module changes no buffer. On exit the grad mode and every submodule's
    ``training`` flag are what they were; on the main thread the global CPU RNG state and,
    when CUDA is initialised, every CUDA device's RNG state are restored too (not on other
    threads: see the module docstring).

    ``fn`` is a module or any callable (a plain callable has no flags to keep). ``device``
    is where the body will run: when it is a CUDA device the CUDA RNG states are saved even
    if CUDA is not initialised yet, since the body's first CUDA call would initialise (and
    then draw from) generators no one saved.
    """
    main = threading.current_thread() is threading.main_thread()
    cpu_state = torch.get_rng_state() if main else None
    cuda_states = (
        torch.cuda.get_rng_state_all()
        if main
        and torch.cuda.is_available()
        and (torch.cuda.is_initialized() or _is_cuda(device))
        else None
    )
    modules = list(fn.modules()) if isinstance(fn, nn.Module) else []
    held: list[nn.Module] = []
    try:
        _hold(modules, held)
        with torch.no_grad():
            yield
    finally:
        _release(held)
        if cpu_state is not None:
            torch.set_rng_state(cpu_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)

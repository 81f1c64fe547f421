"""The paper's networks and their training loop.

Every network is an ``nn.Sequential`` of bias-free ``Linear`` layers, each followed by the
same elementwise activation (also after the last layer: the one-hot targets are compared
with the *activated* outputs, no softmax). Modules are named ``fc1, act1, fc2, act2, ...``
so the measured layers are called ``fc1, fc2, ...``.

Weights are drawn U(-1/sqrt(fan_in), 1/sqrt(fan_in)) from an explicit seeded
``torch.Generator`` (PyTorch's default ``Linear`` init has the same bound but uses the
global RNG, which is left untouched here). Training: ``MSELoss(reduction="sum")`` against
one-hot targets, plain SGD with lr 0.01, minibatches drawn by a seeded per-epoch shuffle;
losses are reported per example (the squared error summed over outputs, averaged over
examples).

Example
-------
>>> from causal_widgets.training.models import make_mlp
>>> make_mlp([4, 5, 5, 3], "sigmoid", seed=0)
Sequential(
  (fc1): Linear(in_features=4, out_features=5, bias=False)
  (act1): Sigmoid()
  (fc2): Linear(in_features=5, out_features=5, bias=False)
  (act2): Sigmoid()
  (fc3): Linear(in_features=5, out_features=3, bias=False)
  (act3): Sigmoid()
)
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from causal_widgets.checks import is_int

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
}


def parse_layers(spec: str | Sequence[int], name: str = "layers") -> list[int]:
    """Layer sizes, input to output, from ``"4,5,5,3"`` (or ``"4-5-5-3"``, or a sequence of
    ints); at least an input and an output size, every one a positive integer.

    The one parser of architectures: the command line's ``--layers``, a study's ``layers``
    and Python callers all come here, so they accept and refuse the same things. Strict on
    purpose: an empty entry (``"4,,3"``), a negative size (``"4,-5,3"``), zero, a fraction
    or text raise ``ValueError`` naming the entry, never a silently different network.
    ``-`` separates sizes only in a spec without commas (``"25-6-5"``), so in
    ``"4,-5,3"`` it is the sign of -5. ``name`` is what the message calls the argument.
    """
    example = "e.g. '4,5,5,3' (input, hidden..., output)"
    if isinstance(spec, str):
        sep = "," if "," in spec or "-" not in spec.strip().lstrip("-") else "-"
        parts = [p.strip() for p in spec.split(sep)]
        sizes = []
        for k, part in enumerate(parts, start=1):
            if not part:
                hint = (" (a doubled separator, or a negative size? sizes are positive)"
                        if sep == "-" else " (two commas in a row?)")
                raise ValueError(
                    f"{name}={spec!r}: layer sizes must be positive integers, but entry {k} "
                    f"is empty{hint}; write every size, {example}."
                )
            # digits only: int() would also take "5_0" (50) or "+5"
            if re.fullmatch(r"-?[0-9]+", part):
                sizes.append(int(part))
            else:
                raise ValueError(
                    f"{name}={spec!r}: layer sizes must be positive integers, but entry {k} "
                    f"is {part!r}, not an integer; write comma-separated integers, "
                    f"{example}."
                )
    elif isinstance(spec, Sequence) or (hasattr(spec, "__iter__") and hasattr(spec, "__len__")):
        sizes = []
        for k, value in enumerate(spec, start=1):
            if not is_int(value):
                raise ValueError(
                    f"{name}={spec!r}: layer sizes must be positive integers, but entry {k} "
                    f"is {value!r} ({type(value).__name__}); pass whole numbers, e.g. "
                    "[4, 5, 5, 3]."
                )
            sizes.append(int(value))
    else:
        raise ValueError(
            f"{name}={spec!r} ({type(spec).__name__}): layer sizes are a string or a "
            "list of ints: pass e.g. '4,5,5,3' or [4, 5, 5, 3]."
        )
    for k, size in enumerate(sizes, start=1):
        if size < 0:
            raise ValueError(
                f"{name}={spec!r}: layer sizes must be positive integers, but entry {k} is "
                f"{size}, a negative number; write every size as a positive integer, "
                f"{example}."
            )
        if size == 0:
            raise ValueError(
                f"{name}={spec!r}: layer sizes must be positive integers, but entry {k} is 0 "
                f"(a layer of no units); write {example}."
            )
    if len(sizes) < 2:
        raise ValueError(
            f"{name}={spec!r}: layer sizes need at least an input and an output size, "
            f"{example}."
        )
    return sizes


def make_mlp(
    sizes: Sequence[int], activation: str = "sigmoid", seed: int = 0, dropout: float = 0.0
) -> nn.Sequential:
    """The paper's network: bias-free ``Linear`` + ``activation`` per layer, seeded init.

    ``sizes`` lists the widths from input to output (e.g. ``[4, 5, 5, 3]``). Each weight
    matrix of fan-in ``n`` is drawn i.i.d. U(-1/sqrt(n), 1/sqrt(n)) from
    ``torch.Generator().manual_seed(seed)``, layer by layer in order, in float32.
    ``dropout > 0`` adds ``nn.Dropout(dropout)`` (named ``dropK``) after every hidden
    activation (not after the output); measurements run in eval mode, where it is the
    identity.
    """
    sizes = parse_layers(sizes)
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"activation {activation!r} is not one of {sorted(ACTIVATIONS)}: pick one of those."
        )
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout={dropout} must lie in [0, 1): the probability of "
                         "zeroing a hidden unit while training.")
    gen = torch.Generator().manual_seed(int(seed))
    modules: OrderedDict[str, nn.Module] = OrderedDict()
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        # skip_init: nn.Linear's own init would draw from (and advance) the global RNG
        lin = nn.utils.skip_init(nn.Linear, n_in, n_out, bias=False)
        bound = 1.0 / math.sqrt(n_in)
        with torch.no_grad():
            w = torch.rand(n_out, n_in, generator=gen, dtype=torch.float32)
            lin.weight.copy_(w.mul_(2 * bound).sub_(bound))
        modules[f"fc{k}"] = lin
        modules[f"act{k}"] = ACTIVATIONS[activation]()
        if dropout > 0 and k < len(sizes) - 1:
            modules[f"drop{k}"] = nn.Dropout(float(dropout))
    return nn.Sequential(modules)


def one_hot(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """float32 one-hot targets ``(N, n_classes)`` for int labels ``(N,)``."""
    return torch.nn.functional.one_hot(labels.long(), int(n_classes)).to(torch.float32)


def make_optimizer(model: nn.Module, lr: float = 0.01) -> torch.optim.SGD:
    """Plain SGD (no momentum, no weight decay), as in the paper."""
    return torch.optim.SGD(model.parameters(), lr=lr)


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    targets: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
) -> float:
    """One epoch of minibatch SGD on ``MSELoss(reduction="sum")``; returns the mean loss.

    The batch order is a fresh permutation from ``generator`` (so a run is reproducible
    and resumable from the generator's saved state). The returned value is the squared
    error summed over outputs and examples, divided by the number of examples, computed
    batch by batch *before* each batch's update (what a training log prints).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be a positive integer.")
    model.train()
    loss_fn = nn.MSELoss(reduction="sum")
    order = torch.randperm(len(x), generator=generator)
    total = 0.0
    for start in range(0, len(x), batch_size):
        idx = order[start : start + batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[idx]), targets[idx])
        loss.backward()
        optimizer.step()
        total += float(loss.detach())
    return total / len(x)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """``(loss per example, accuracy)`` of ``model`` on ``(x, labels)``.

    Loss: squared error between the activated outputs and one-hot targets, summed over
    outputs, averaged over examples. Accuracy: fraction whose largest output is the label.
    Evaluated in eval mode (dropout off); the model's mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        out = model(x)
    finally:
        model.train(was_training)
    target = one_hot(labels, out.shape[1])
    loss = float(((out - target) ** 2).sum()) / len(x)
    accuracy = float((out.argmax(dim=1) == labels).float().mean())
    return loss, accuracy

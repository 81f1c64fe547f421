"""Argument checks shared by every boundary: one owner for integers, numbers and choices.

Each check returns the value in its canonical type or raises ``ValueError`` with a message
that quotes what the caller passed and says what would work. Settings objects
(:mod:`causal_widgets.engine.settings`) call these once at the boundary; code inside trusts
the checked values.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

Range = tuple[float, float]


def is_int(value: Any) -> bool:
    """True for an integer (Python or numpy), never for a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """True for a real number (int, float, numpy scalar), never for a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as an ``int`` >= ``minimum``."""
    if not is_int(value):
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name}={value} is too small: pass an integer >= {minimum}.")
    return int(value)


def check_positive(value: Any, name: str, example: str = "") -> float:
    """``value`` as a finite ``float`` > 0."""
    if not is_number(value) or not math.isfinite(float(value)) or not value > 0:
        hint = f", e.g. {name}={example}" if example else ""
        raise ValueError(f"{name}={value!r} must be a positive number{hint}.")
    return float(value)


def suggest(name: str, options: Iterable[str]) -> str:
    """A " (did you mean 'x'?)" hint for a misspelt ``name``, or ``""``."""
    close = difflib.get_close_matches(str(name), list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_choice(value: Any, name: str, options: Iterable[str]) -> str:
    """``value`` if it is one of ``options``; otherwise an error listing them."""
    options = tuple(options)
    if value not in options:
        raise ValueError(
            f"{name}={value!r} is unknown{suggest(value, options)}: use one of "
            f"{', '.join(map(repr, options))}."
        )
    return value


def check_keywords(given: Iterable[str], known: Iterable[str], where: str) -> None:
    """Raise ``TypeError`` naming every keyword of ``given`` that ``where`` does not take."""
    known = tuple(known)
    unknown = [k for k in given if k not in known]
    if unknown:
        parts = [f"{k!r}{suggest(k, known)}" for k in unknown]
        raise TypeError(
            f"{where} got unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(parts)}; "
            f"it takes {', '.join(known)}."
        )


def check_range(value: Sequence[float] | None, name: str = "in_range") -> Range:
    """Validate a ``(lo, hi)`` range and return it as two floats.

    Raises ``ValueError`` naming the argument for a missing, non-finite, empty
    (``lo == hi``) or inverted (``lo > hi``) range.
    """
    if value is None:
        raise ValueError(f"{name} is required here: pass {name}=(lo, hi), e.g. {name}=(0.0, 1.0).")
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{name} must be a pair of numbers (lo, hi); got {value!r}."
        ) from err
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name}={value!r} is not finite: give finite bounds (lo, hi).")
    if lo == hi:
        raise ValueError(f"{name}={value!r} is empty (lo == hi): give a range with lo < hi.")
    if lo > hi:
        raise ValueError(f"{name}={value!r} is inverted (lo > hi): swap it to ({hi}, {lo}).")
    return lo, hi


def check_bins(value: int, name: str = "bins") -> int:
    """Validate a bin count: an integer >= 2."""
    if not is_int(value):
        raise ValueError(f"{name} must be an integer >= 2; got {value!r}.")
    if value < 2:
        raise ValueError(
            f"{name}={value} is too few: information needs at least 2 bins (the paper uses 8)."
        )
    return int(value)


def renamed(new_value: Any, old_value: Any, new: str, old: str) -> Any:
    """The value of a setting given by its name ``new`` or its old name ``old`` (not both)."""
    if old_value is None:
        return new_value
    if new_value is not None:
        raise TypeError(f"got both {new}= and {old}=: {old}= is the old name of {new}=; "
                        f"give only {new}=.")
    return old_value


def check_one_batch(value: Any, name: str = "example_input") -> Any:
    """``value`` unless it is a stream of batches (a generator, an iterator, a DataLoader).

    A monitor keeps a private copy of its example batch and runs it again at every
    snapshot; a generator can be neither copied nor rerun (it ends in "cannot pickle
    'generator' object"), a DataLoader yields many batches. Raises ``TypeError`` naming
    ``name`` and saying to pass one batch.
    """
    from collections.abc import Iterator

    kind = type(value).__name__
    loader = type(value).__module__.startswith("torch.utils.data")
    if isinstance(value, Iterator) or loader:
        raise TypeError(
            f"{name} must be one batch (a tensor, batch dimension first); got a {kind}, "
            f"which yields batches one by one and cannot be copied or replayed: pass one "
            f"batch instead, e.g. {name}=next(iter(loader))[0] or {name}=x_train[:64]."
        )
    return value


def check_materialized(module: Any, name: str = "model") -> None:
    """Raise ``ValueError`` if ``module`` holds meta tensors (shapes without values).

    A model built under ``torch.device("meta")`` (or ``init_empty_weights``) has no
    weights to measure; every measurement of it would end deep inside torch in
    "Tensor.item() cannot be called on meta tensors".
    """
    empty = [
        pname for pname, t in (*module.named_parameters(), *module.named_buffers())
        if getattr(t, "is_meta", False)
    ]
    if empty:
        more = f" and {len(empty) - 1} more" if len(empty) > 1 else ""
        raise ValueError(
            f"{name} has parameters on the meta device ({empty[0]!r}{more}): they have "
            "shapes but no values, so there is nothing to measure. Materialize it first, "
            f"e.g. {name}.to_empty(device='cpu') then {name}.load_state_dict(weights) (or "
            "build it outside torch.device('meta'))."
        )


def check_cuda(device: Any, name: str = "device") -> None:
    """Raise ``ValueError`` when ``device`` (a ``torch.device``) is CUDA and this torch
    cannot use CUDA, saying whether torch was built without CUDA or sees no GPU."""
    import torch

    if getattr(device, "type", None) != "cuda" or torch.cuda.is_available():
        return
    if torch.version.cuda is None:
        why = (f"this torch ({torch.__version__}) is a CPU-only build, without CUDA; pass "
               f"{name}='cpu', or install a CUDA build of torch "
               "(https://pytorch.org/get-started/locally/) to measure on a GPU.")
    else:
        why = (f"this torch is built with CUDA {torch.version.cuda}, but no GPU is visible "
               f"(check the driver and CUDA_VISIBLE_DEVICES); pass {name}='cpu' to measure "
               "on the CPU.")
    raise ValueError(f"{name}={str(device)!r} asks for CUDA, but torch sees no GPU: {why}")

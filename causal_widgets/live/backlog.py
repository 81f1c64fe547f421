"""Which waiting snapshot the monitor measures next, and what a snapshot weighs.

The order keeps the view live and sharpens the trajectory coarse-to-fine:

1. a snapshot newer than every epoch already measured (or being measured) goes first:
   the plane shows where training is *now*;
2. otherwise the waiting epoch farthest from every epoch measured or being measured
   (ties: the older one): with the newest epoch measured first, this is the oldest, then
   the middle of the range, then the quarters, ... (a bisection of the recorded range),
   so after ``k`` snapshots of a long backlog the largest gap between measured epochs is
   about ``range / k`` instead of the whole tail of an epoch-0-first crawl.

Pure functions over epoch numbers: no locks, no torch (except :func:`state_bytes`), so the
order is tested on its own (tests/live/test_backlog.py).
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Iterable, Mapping
from typing import Any


def next_epoch(waiting: Iterable[int], started: Collection[int]) -> int:
    """The epoch to measure next among ``waiting`` (non-empty), given the epochs
    ``started`` (measured, or handed to a worker). See the module docstring."""
    pending = sorted(set(int(e) for e in waiting))
    if not pending:
        raise ValueError("next_epoch needs at least one waiting epoch; got none.")
    anchors = sorted(set(int(e) for e in started))
    newest = pending[-1]
    if not anchors or newest > anchors[-1]:
        return newest
    best, best_gap = pending[0], -1
    for epoch in pending:
        i = bisect.bisect_left(anchors, epoch)
        below = epoch - anchors[i - 1] if i > 0 else None
        above = anchors[i] - epoch if i < len(anchors) else None
        # an epoch with no measured neighbour on one side counts only the other side's
        # distance (before the first measured epoch: the oldest is the farthest)
        gap = min(d for d in (below, above) if d is not None)
        if gap > best_gap:  # strict: on ties the older epoch (earlier in the loop) wins
            best, best_gap = epoch, gap
    return best


def state_bytes(state: Mapping[str, Any] | None) -> int:
    """The bytes a snapshot's tensors hold (the non-tensor extra state counts as 0)."""
    if not state:
        return 0
    total = 0
    for value in state.values():
        nbytes = getattr(value, "nbytes", None)
        if nbytes is None and hasattr(value, "element_size"):
            nbytes = value.element_size() * value.numel()
        total += int(nbytes or 0)
    return total


__all__ = ["next_epoch", "state_bytes"]

"""The monitor's measuring order (live.backlog): newest first, then coarse-to-fine.

The expected orders are the definitions worked out by hand: "newer than everything
started" goes first; otherwise the waiting epoch whose nearest started epoch is farthest
(ties: the older). The bisection property is checked as a bound on the largest gap.
"""

from __future__ import annotations

import math

import pytest
import torch

from causal_widgets.live.backlog import next_epoch, state_bytes


def drain(waiting: list[int], started: set[int]) -> list[int]:
    """The order in which next_epoch hands out every waiting epoch."""
    waiting, started, order = list(waiting), set(started), []
    while waiting:
        e = next_epoch(waiting, started)
        order.append(e)
        waiting.remove(e)
        started.add(e)
    return order


def test_the_newest_goes_first_when_nothing_newer_was_started():
    assert next_epoch([0, 1, 2], set()) == 2
    assert next_epoch([3, 7, 5], {0, 1}) == 7
    # 9 is started already: the waiting 8 is not newer, so it is not "the live one"
    assert next_epoch([2, 8], {0, 9}) in (2, 8)


def test_the_backlog_is_bisected_after_the_newest():
    # 40 epochs, 39 measured first (the newest): then 0 (39 away), then the middle of
    # 0..39, where 19 and 20 are both 19 from their nearest measured epoch: the older wins
    order = drain(list(range(39)), {39})
    assert order[:2] == [0, 19]
    assert sorted(order) == list(range(39))  # every epoch exactly once
    measured = [39]
    for k, e in enumerate(order, start=1):
        measured.append(e)
        # after k = 2^j picks (0 and 2^j - 1 interior bisection points) the widest gap
        # between measured epochs is <= ceil(39 / 2^j)
        # (down to gaps of 3: below that every waiting epoch is 1 from a measured one,
        # and the rest fill in oldest first)
        j = math.log2(k)
        if j == int(j) and k <= 16:
            pts = sorted(measured)
            widest = max(b - a for a, b in zip(pts, pts[1:], strict=False))
            assert widest <= math.ceil(39 / 2 ** int(j)), (k, pts)


def test_distance_counts_only_the_side_with_a_measured_epoch():
    # nothing measured below 10: epoch 0 is 10 away, epoch 14 is 4 from 10 and 6 from 20
    assert next_epoch([0, 14], {10, 20}) == 0
    assert next_epoch([12, 15], {10, 20}) == 15  # 15: min(5, 5) = 5 beats 12: min(2, 8)


def test_no_waiting_epoch_is_refused():
    with pytest.raises(ValueError, match="at least one waiting epoch"):
        next_epoch([], {1})


def test_state_bytes_counts_the_tensors():
    state = {"w": torch.zeros(3, 4), "b": torch.zeros(5, dtype=torch.float64), "extra": 7}
    assert state_bytes(state) == 3 * 4 * 4 + 5 * 8
    assert state_bytes(None) == 0

import math

import numpy as np
import pytest
import torch

from causal_widgets.engine.binning import bin_edges, bin_index, check_bins, check_range


def test_bins_left_closed_last_right_closed():
    idx, outside = bin_index(torch.tensor([0.0, 0.124, 0.125, 0.999, 1.0]), (0.0, 1.0), 8)
    assert idx.tolist() == [0, 0, 1, 7, 7]
    assert outside == 0


def test_float32_one_lands_in_last_bin():
    y = torch.sigmoid(torch.tensor([40.0], dtype=torch.float32))
    assert float(y) == 1.0
    idx, outside = bin_index(y, (0.0, 1.0), 8)
    assert idx.item() == 7 and outside == 0


def test_out_of_range_is_clipped_and_counted():
    idx, outside = bin_index(torch.tensor([-0.5, 0.5, 2.0]), (0.0, 1.0), 4)
    assert idx.tolist() == [0, 2, 3]
    assert outside == 2


def test_uniform_values_fill_bins_evenly():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(80_000, generator=g) * 2 - 1
    idx, _ = bin_index(x, (-1.0, 1.0), 8)
    counts = torch.bincount(idx, minlength=8).numpy()
    assert np.all(np.abs(counts / 80_000 - 1 / 8) < 0.005)


def test_nan_values_raise():
    with pytest.raises(ValueError, match="NaN"):
        bin_index(torch.tensor([0.1, math.nan]), (0.0, 1.0), 4)


def test_edges():
    assert np.allclose(bin_edges((-1.0, 1.0), 4), [-1, -0.5, 0, 0.5, 1])


@pytest.mark.parametrize(
    "value, message",
    [
        ((1.0, 0.0), "inverted"),
        ((0.5, 0.5), "empty"),
        ((0.0, math.inf), "not finite"),
        ((0.0, math.nan), "not finite"),
        (None, "required"),
        ("ab", "pair of numbers"),
    ],
)
def test_bad_ranges_name_the_problem(value, message):
    with pytest.raises(ValueError, match=message):
        check_range(value, "in_range")


@pytest.mark.parametrize("bins", [1, 0, -3, 2.5, True, "8"])
def test_bad_bins(bins):
    with pytest.raises(ValueError, match="bins"):
        check_bins(bins)


def test_good_values_pass():
    assert check_range([0, 1]) == (0.0, 1.0)
    assert check_bins(np.int64(8)) == 8

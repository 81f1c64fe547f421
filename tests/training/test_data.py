"""Data loaders: shapes, ranges, splits, seeded shuffles, the IDX parser and MNIST errors."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
from PIL import Image

from causal_widgets.training.data import (
    load_digits_data,
    load_iris_data,
    load_mnist_data,
    read_idx,
    shrink_images,
)


def _rows(x: torch.Tensor) -> set[tuple[float, ...]]:
    return {tuple(round(float(v), 6) for v in row) for row in x}


def test_iris_shapes_ranges_and_split() -> None:
    from sklearn.datasets import load_iris

    ds = load_iris_data(seed=0)
    assert ds.x_train.shape == (100, 4) and ds.x_test.shape == (50, 4)
    assert ds.y_train.shape == (100,) and ds.y_test.shape == (50,)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.n_classes == 3 and ds.n_features == 4
    x = torch.cat([ds.x_train, ds.x_test])
    # features / 8: every Iris measurement (0.1 .. 7.9 cm) lands strictly inside (0, 1)
    assert float(x.min()) > 0.0 and float(x.max()) < 1.0
    # the split is a permutation of the 150 rows of sklearn's data divided by 8
    raw = load_iris()
    expected = sorted(
        tuple(np.round(np.append(row / 8.0, lab), 6)) for row, lab in zip(raw.data, raw.target)
    )
    got = sorted(
        tuple(np.round(np.append(row.double().numpy(), lab), 6))
        for row, lab in zip(x, torch.cat([ds.y_train, ds.y_test]))
    )
    assert np.allclose(np.array(expected), np.array(got), atol=1e-6)


def test_iris_shuffle_is_seeded() -> None:
    a, b, c = load_iris_data(seed=3), load_iris_data(seed=3), load_iris_data(seed=4)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    # sklearn's file is sorted by class: an unshuffled first 100 would miss class 2
    assert set(a.y_train.tolist()) == {0, 1, 2}


def test_digits_shapes_ranges_classes() -> None:
    ds = load_digits_data(seed=0)
    assert ds.n_features == 25 and ds.n_classes == 5
    n = len(ds.x_train) + len(ds.x_test)
    assert n == 901  # sklearn's digits 0-4: 178 + 182 + 177 + 183 + 181
    assert len(ds.x_train) == round(0.75 * 901)
    x = torch.cat([ds.x_train, ds.x_test])
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert set(torch.cat([ds.y_train, ds.y_test]).tolist()) == {0, 1, 2, 3, 4}
    again = load_digits_data(seed=0)
    assert torch.equal(ds.x_train, again.x_train)
    assert not torch.equal(ds.x_train, load_digits_data(seed=1).x_train)


@pytest.mark.parametrize("side", [8, 28])
def test_shrink_matches_pillow_antialiased_bilinear(side: int) -> None:
    # Pillow's BILINEAR resize of a float image is the antialiased triangle filter that
    # torch's antialias=True mode reproduces: an independent implementation to compare with
    rng = np.random.default_rng(side)
    imgs = rng.random((3, side, side)).astype(np.float32)
    ours = shrink_images(imgs, 5).numpy().reshape(3, 5, 5)
    for k in range(3):
        ref = np.asarray(Image.fromarray(imgs[k], mode="F").resize((5, 5), Image.BILINEAR))
        assert np.abs(ours[k] - ref).max() < 1e-5


def test_shrink_keeps_constants_and_range() -> None:
    const = np.full((2, 28, 28), 0.375, dtype=np.float32)
    assert torch.allclose(shrink_images(const), torch.full((2, 25), 0.375), atol=1e-6)
    ones = np.ones((1, 8, 8), dtype=np.float32)
    out = shrink_images(ones)
    assert float(out.max()) <= 1.0 and float(out.min()) >= 1.0 - 1e-6
    with pytest.raises(ValueError, match="shape"):
        shrink_images(np.zeros((8, 8)))


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, compress: bool, write_idx) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(4, 28, 28), dtype=np.uint8)
    name = "imgs.idx3-ubyte" + (".gz" if compress else "")
    write_idx(tmp_path / name, images, compress)
    got = read_idx(tmp_path / name)
    assert got.shape == (4, 28, 28) and got.dtype == np.uint8
    assert np.array_equal(got, images)
    ints = np.array([[1, -2, 70000]], dtype=np.int32)
    write_idx(tmp_path / "ints.idx", ints)
    assert np.array_equal(read_idx(tmp_path / "ints.idx"), ints)


def test_read_idx_rejects_bad_files(tmp_path) -> None:
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x02ab")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    # header promises 10 bytes, body has 2
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"ab")
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "short")


def _fake_mnist(
    write_idx, folder, n: int = 40, compress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    suffix = ".gz" if compress else ""
    write_idx(folder / f"train-images-idx3-ubyte{suffix}", images, compress)
    write_idx(folder / f"train-labels-idx1-ubyte{suffix}", labels, compress)
    return images, labels


@pytest.mark.parametrize("compress", [False, True])
def test_load_mnist_from_idx(tmp_path, compress: bool, write_idx) -> None:
    images, labels = _fake_mnist(write_idx, tmp_path, 40, compress)
    ds = load_mnist_data(tmp_path, n_train=15)
    keep = labels < 5  # 20 of the 40 examples are digits 0-4, in file order
    assert len(ds.x_train) == 15 and len(ds.x_test) == 5
    assert ds.n_features == 25 and ds.n_classes == 5
    ref = shrink_images(images[keep].astype(np.float32) / 255.0, 5)
    assert torch.allclose(torch.cat([ds.x_train, ds.x_test]), ref)
    assert torch.cat([ds.y_train, ds.y_test]).tolist() == labels[keep].astype(int).tolist()
    x = torch.cat([ds.x_train, ds.x_test])
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_missing_mnist_is_a_clear_error(tmp_path, write_idx) -> None:
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_mnist_data(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist_data(tmp_path / "nowhere")
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(FileNotFoundError, match="train-labels-idx1-ubyte"):
        load_mnist_data(tmp_path)

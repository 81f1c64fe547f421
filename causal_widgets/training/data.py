"""The data sets of the paper's experiments, loaded offline and shaped as the paper did.

* :func:`load_iris_data`: scikit-learn's Iris, features divided by 8 (all lie in (0, 1)),
  shuffled with our seed (the original shuffle was unseeded), 100 train / 50 test.
* :func:`load_digits_data`: the embedded stand-in for MNIST: scikit-learn's 8x8 digits,
  classes 0-4, pixel values 0..16 divided by 16, shrunk to 5x5 with antialiased bilinear
  interpolation, 25 inputs in [0, 1].
* :func:`load_mnist_data`: real MNIST from local IDX files (no download), digits 0-4,
  28x28 shrunk to 5x5 the same way, the first 25 000 for training and the rest for test.

Every loader returns a :class:`Dataset` of float32 inputs in ``[0, 1]`` and int64 labels.

Example
-------
>>> from causal_widgets.training.data import load_iris_data
>>> ds = load_iris_data(seed=0)
>>> tuple(ds.x_train.shape), tuple(ds.x_test.shape), ds.n_classes
((100, 4), (50, 4), 3)
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from causal_widgets.extras import missing_extra

# IDX type codes (http://yann.lecun.com/exdb/mnist/): code -> (numpy dtype, big-endian)
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
}


@dataclass
class Dataset:
    """A classification data set: float32 inputs in ``[0, 1]``, int64 labels ``0..C-1``."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    description: str = ""

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def in_range(self) -> tuple[float, float]:
        """The intervention range of the first layer: every loader scales into (0, 1)."""
        return (0.0, 1.0)

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}: train {tuple(self.x_train.shape)}, "
            f"test {tuple(self.x_test.shape)}, {self.n_classes} classes)"
        )


def _split(
    x: np.ndarray, y: np.ndarray, n_train: int, seed: int | None, name: str, description: str
) -> Dataset:
    """Shuffle with ``numpy.random.default_rng(seed)`` (no shuffle when seed is None), split."""
    if not 0 < n_train < len(x):
        raise ValueError(
            f"n_train={n_train} must leave both a train and a test set: "
            f"choose 0 < n_train < {len(x)}."
        )
    if seed is not None:
        order = np.random.default_rng(seed).permutation(len(x))
        x, y = x[order], y[order]
    xt = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)
    yt = torch.as_tensor(np.ascontiguousarray(y), dtype=torch.int64)
    return Dataset(
        name=name,
        x_train=xt[:n_train],
        y_train=yt[:n_train],
        x_test=xt[n_train:],
        y_test=yt[n_train:],
        n_classes=int(yt.max()) + 1,
        description=description,
    )


def load_iris_data(seed: int = 0, n_train: int = 100) -> Dataset:
    """Iris as in the paper: features / 8 (all in (0, 1)), seeded shuffle, 100 train / 50 test.

    The largest Iris feature is 7.9 cm, so dividing by 8 maps every feature into (0, 1),
    the sigmoid input range the first layer is measured over.
    """
    try:  # scikit-learn is the paper extra's, not the core's
        from sklearn.datasets import load_iris
    except ImportError as err:
        raise missing_extra("the Iris data set", "paper", err) from err

    bunch = load_iris()
    x = bunch.data.astype(np.float64) / 8.0
    return _split(
        x, bunch.target.astype(np.int64), n_train, seed, "iris",
        "scikit-learn Iris, features / 8, seeded shuffle",
    )


def shrink_images(images: torch.Tensor | np.ndarray, size: int = 5) -> torch.Tensor:
    """Shrink ``(N, H, W)`` images with values in [0, 1] to ``(N, size * size)`` float32.

    Bilinear interpolation with antialiasing (``torch.nn.functional.interpolate(...,
    mode="bilinear", antialias=True)``), as the paper did for MNIST (28x28 -> 5x5). The
    antialiased filter is a non-negative kernel normalised to sum 1, so every output pixel
    is a convex combination of input pixels and stays in [0, 1]; the final clamp only
    removes float32 rounding at the ends.
    """
    t = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    if t.ndim != 3:
        raise ValueError(
            f"images must have shape (N, H, W); got {tuple(t.shape)}. Reshape them first."
        )
    if int(size) < 1:
        raise ValueError(f"size={size} must be a positive number of pixels, e.g. 5.")
    small = F.interpolate(
        t[:, None], size=(int(size), int(size)), mode="bilinear", antialias=True,
        align_corners=False,
    )
    return small.reshape(len(t), -1).clamp_(0.0, 1.0)


def _filter_classes(
    x: np.ndarray, y: np.ndarray, classes: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    classes = [int(c) for c in classes]
    if not classes:
        raise ValueError("classes is empty: pass the digits to keep, e.g. classes=range(5).")
    keep = np.isin(y, classes)
    # relabel to 0..C-1 in the order given, so one-hot targets have C columns
    lookup = {c: k for k, c in enumerate(classes)}
    return x[keep], np.array([lookup[int(v)] for v in y[keep]], dtype=np.int64)


def load_digits_data(
    seed: int = 0,
    size: int = 5,
    classes: Sequence[int] = range(5),
    train_fraction: float = 0.75,
) -> Dataset:
    """The embedded MNIST stand-in: scikit-learn's 8x8 digits, classes 0-4, shrunk to 5x5.

    Pixel values 0..16 are divided by 16 (so they lie in [0, 1]), each image is shrunk to
    ``size x size`` with :func:`shrink_images`, and the 901 images of digits 0-4 are
    shuffled with ``seed`` and split ``train_fraction`` / rest (676 / 225 by default; the
    paper's MNIST split, 25 000 of 30 596, is 82 % / 18 %).
    """
    try:  # scikit-learn is the paper extra's, not the core's
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise missing_extra("the digits data set", "paper", err) from err

    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction={train_fraction} must lie strictly between 0 and 1.")
    bunch = load_digits()
    images, labels = _filter_classes(bunch.images / 16.0, bunch.target, classes)
    x = shrink_images(images, size).numpy()
    return _split(
        x, labels, int(round(train_fraction * len(x))), seed, "digits",
        f"scikit-learn 8x8 digits {list(classes)}, /16, shrunk to {size}x{size}",
    )


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or not, into a numpy array.

    Format: two zero bytes, a type code byte (0x08 = uint8, ...), a byte giving the number
    of dimensions d, then d big-endian uint32 sizes, then the data in row-major order.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(
            f"{path} is not an IDX file (it must start with two zero bytes); "
            "pass the original MNIST files, e.g. train-images-idx3-ubyte.gz."
        )
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02x}.")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = _IDX_DTYPES[code]
    count = int(np.prod(dims)) if dims else 1
    body = raw[4 + 4 * ndim :]
    if len(body) != count * dtype.itemsize:
        raise ValueError(
            f"{path}: header says {dims} values of {dtype.itemsize} bytes but the file holds "
            f"{len(body)} bytes; the file is truncated or corrupt, download it again."
        )
    return np.frombuffer(body, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def _find_idx(data_dir: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
        if (data_dir / name).is_file():
            return data_dir / name
    return None


def load_mnist_data(
    data_dir: str | os.PathLike,
    size: int = 5,
    classes: Sequence[int] = range(5),
    n_train: int = 25_000,
) -> Dataset:
    """Real MNIST from local IDX files: digits 0-4, 28x28 -> 5x5, first 25 000 train, rest test.

    ``data_dir`` must hold ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte``
    (each optionally ``.gz``); nothing is downloaded. Following the paper, the examples of
    the kept digits in the MNIST training file (30 596 for digits 0-4) are split in file
    order: the first ``n_train`` for training, the rest for test. Pixels are divided by 255.
    """
    data_dir = Path(data_dir).expanduser()
    expected = ", ".join(f"{v}[.gz]" for v in MNIST_FILES.values())
    if not data_dir.is_dir():
        raise FileNotFoundError(
            f"MNIST directory {str(data_dir)!r} does not exist: pass --data-dir pointing at a "
            f"folder with {expected} (nothing is downloaded; or use the embedded 'digits')."
        )
    paths = {k: _find_idx(data_dir, v) for k, v in MNIST_FILES.items()}
    missing = [MNIST_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        raise FileNotFoundError(
            f"MNIST files missing in {str(data_dir)!r}: {', '.join(missing)} (optionally .gz). "
            f"The folder must hold {expected}; nothing is downloaded."
        )
    images = read_idx(paths["train_images"])
    labels = read_idx(paths["train_labels"]).astype(np.int64)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"MNIST files disagree: images {images.shape}, labels {labels.shape}; expected "
            "(N, 28, 28) images and (N,) labels from the same release."
        )
    images, labels = _filter_classes(images.astype(np.float32) / 255.0, labels, classes)
    x = shrink_images(images, size).numpy()
    return _split(
        x, labels, n_train, None, "mnist",
        f"MNIST digits {list(classes)}, /255, shrunk to {size}x{size}, first {n_train} train",
    )

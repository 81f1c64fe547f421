"""Fixtures that several test folders share (each kept as small as what its users need).

* ``repo_root``: the repository root, for tests that run or read files outside the package
  (benchmarks/, notebooks/); tests import ``benchmarks`` directly through pytest's
  ``pythonpath = ["."]`` (pyproject.toml), so no test patches ``sys.path``.
* ``one_torch_thread``: one intra-op torch thread for a test module, restored after.
* ``write_idx``: writes the IDX files MNIST ships as, for fake data sets.

The reference harness (measurements against the independent references) lives beside the
engine tests, in ``tests/engine/reference_harness.py``.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (the folder holding pyproject.toml)."""
    return Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread for the requesting module (restored after): its layers are
    small, and on a shared 2-core machine more threads only contend (5-10x slower under
    load). Module-scoped, so a module opts in once with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    """Write ``array`` (uint8 or int32) as an IDX file (big-endian), gzipped if asked."""
    codes = {np.uint8: 0x08, np.int32: 0x0C}
    code = codes[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    body = array.astype(array.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if compress else open
    with opener(path, "wb") as fh:
        fh.write(header + body)


@pytest.fixture
def write_idx() -> Callable[..., None]:
    """``write_idx(path, array, compress=False)``: an IDX file as MNIST ships them."""
    return _write_idx

"""Atomic file writes: a reader (or a rerun after a kill) sees the old file or the new one,
never half of one.

Each writer writes ``<name>.tmp`` beside the target and renames it over the target with
:func:`os.replace` (atomic on one file system). The training loop's checkpoints and
``config.json`` and a study folder's ``study.json`` / ``study.toml`` are written this way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def _tmp_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def _failed(err: OSError, path: Path, tmp: Path) -> OSError:
    """The error of a failed write, naming the file asked for (not its ``.tmp`` sibling),
    of the same class (a PermissionError stays one)."""
    if tmp.parent.is_dir():
        tmp.unlink(missing_ok=True)  # a half-written sibling is not left behind
    return type(err)(
        f"could not write {str(path)!r}: {err.strerror or err}. It is written through "
        f"{tmp.name!r} beside it, so {str(path.parent)!r} must be a folder you can write "
        "to; pass a path in one."
    )


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    path = Path(path)
    tmp = _tmp_path(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        raise _failed(err, path, tmp) from err


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save(obj, path)`` atomically (a checkpoint is never half written)."""
    # torch imported here: the text writer above must not cost a torch import
    import torch

    path = Path(path)
    tmp = _tmp_path(path)
    try:
        # opened here: torch.save on a path reports a failed open as a RuntimeError
        # without the path ("open file failed"); open() raises the OSError that names it
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
        os.replace(tmp, path)
    except OSError as err:
        raise _failed(err, path, tmp) from err

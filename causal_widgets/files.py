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


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    tmp = _tmp_path(path)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save(obj, path)`` atomically (a checkpoint is never half written)."""
    # torch imported here: the text writer above must not cost a torch import
    import torch

    tmp = _tmp_path(path)
    torch.save(obj, tmp)
    os.replace(tmp, path)

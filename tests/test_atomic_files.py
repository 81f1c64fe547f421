"""Atomic writes name the file asked for when the write fails, never its ``.tmp`` sibling
(the same fault History.save had: issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from causal_widgets.files import atomic_torch_save, atomic_write_text


@pytest.mark.parametrize(
    "write", [lambda p: atomic_write_text(p, "{}"), lambda p: atomic_torch_save({"a": 1}, p)]
)
def test_a_failed_write_names_the_target_and_leaves_nothing(tmp_path: Path, write) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    target = blocker / "config.json"  # its folder is a file: cannot be written
    with pytest.raises(OSError) as exc:
        write(target)
    msg = str(exc.value)
    assert msg.startswith(f"could not write {str(target)!r}") and "folder you can write" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_writes_still_replace_atomically(tmp_path: Path) -> None:
    path = tmp_path / "ck.pt"
    atomic_torch_save({"w": torch.arange(3)}, path)
    atomic_torch_save({"w": torch.arange(4)}, path)
    assert torch.equal(torch.load(path)["w"], torch.arange(4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]

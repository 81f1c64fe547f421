"""Every notebook runs top to bottom (nbclient, kernel python3) at CW_QUICK=1."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NAMES = ["quickstart", "iris", "digits", "toy_layers", "study"]


def test_every_notebook_is_tested(repo_root: Path) -> None:
    notebooks = repo_root / "notebooks"
    assert sorted(p.stem for p in notebooks.glob("*.ipynb")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo_root: Path
) -> None:
    nb = nbformat.read(repo_root / "notebooks" / f"{name}.ipynb", as_version=4)
    # the kernel inherits this environment: small sizes, and no finished run to load
    monkeypatch.setenv("CW_QUICK", "1")
    monkeypatch.delenv("CW_RESULTS", raising=False)
    client = NotebookClient(nb, timeout=240, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the failing cell
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    # the dashboard was shown (a widget view) and the notebook ends with static figures
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {})
               for o in outputs), "no dashboard displayed"
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure drawn"

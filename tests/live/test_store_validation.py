"""History.load checks what it reads (one place: check_history_files), and save names the
path it was asked for.

Reproduced first (issue 13): a results.parquet without ``epoch`` raised pandas'
``KeyError``; a matrices.parquet without ``shape`` "'Pandas' object has no attribute
'shape'"; a ``value`` column of strings loaded as strings; a file with rows missing
loaded without a word; ``save("/proc/run")`` named ``/proc/.cw-tmp-run-...``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from causal_widgets.live.store import HISTORY_FILES, History


class Result:
    """LayerResult stand-in: two metric rows and one (n_in, n_out) EI_parts matrix."""

    def __init__(self, n_in: int, n_out: int, value: float) -> None:
        self.ei_parts_matrix = np.full((n_in, n_out), value)
        self.sensitivity_matrix = None
        self.nodes = pd.DataFrame({"side": ["input"] * n_in, "node": range(n_in),
                                   "ei": np.full(n_in, value)})
        self.value = value

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"layer": ["x", "x"], "metric": ["ei", "ei_parts"],
                             "value": [self.value, 2 * self.value],
                             "ci_low": [self.value, self.value],
                             "ci_high": [3 * self.value, 3 * self.value]})


def saved(tmp_path: Path) -> Path:
    """A history of 2 epochs x 2 layers (epoch 1 recorded but not measured), saved."""
    h = History(settings={"bins": 8})
    for epoch in (0, 2):
        h.add_result(epoch, "fc1", Result(4, 5, 0.5 + epoch), {"loss": 1.0 / (epoch + 1)})
        h.add_result(epoch, "fc2", Result(5, 3, 0.25 + epoch))
    h.add_scalars(1, loss=0.75)
    return h.save(tmp_path / "hist")


def edited(path: Path, name: str, change: Callable[[pd.DataFrame], pd.DataFrame]) -> Path:
    """``path`` with file ``name`` rewritten by ``change`` (a user's edit, or damage)."""
    df = change(pd.read_parquet(path / name))
    df.to_parquet(path / name, index=False)
    return path


def test_save_records_row_counts_and_checksums(tmp_path: Path) -> None:
    path = saved(tmp_path)
    files = json.loads((path / "meta.json").read_text())["files"]
    # by construction: 4 (epoch, layer) pairs x 2 rows; epochs 0, 1, 2; 4 matrices;
    # 4 pairs x n_in nodes (4 + 5 per epoch)
    assert {k: v["rows"] for k, v in files.items()} == {
        "results.parquet": 8, "scalars.parquet": 3, "matrices.parquet": 4,
        "nodes.parquet": 18,
    }
    for name in HISTORY_FILES:
        assert files[name]["sha256"] == hashlib.sha256((path / name).read_bytes()).hexdigest()
    loaded = History.load(path)
    assert len(loaded) == 4 and loaded.matrix(2, "fc2")["ei_parts"].shape == (5, 3)


def test_old_histories_without_counts_still_load(tmp_path: Path) -> None:
    path = saved(tmp_path)
    meta = json.loads((path / "meta.json").read_text())
    del meta["files"]
    (path / "meta.json").write_text(json.dumps(meta))
    loaded = History.load(path)
    assert loaded.epochs() == [0, 2]
    assert loaded.frame()["value"].tolist() == History.load(saved(tmp_path / "b")).frame()[
        "value"].tolist()


@pytest.mark.parametrize(
    "name, change, says",
    [
        ("results.parquet", lambda df: df.drop(columns=["epoch"]), "column 'epoch' missing"),
        ("results.parquet", lambda df: df.drop(columns=["metric", "layer"]),
         "columns 'layer', 'metric' missing"),
        ("matrices.parquet", lambda df: df.drop(columns=["shape"]), "column 'shape' missing"),
        ("results.parquet", lambda df: df.assign(value=df["value"].astype(str)),
         "column 'value' must hold numbers but holds string values"),
        ("scalars.parquet", lambda df: df.assign(loss=df["loss"].astype(str)),
         "column 'loss' must hold numbers"),
        ("results.parquet", lambda df: df.assign(epoch=df["epoch"].astype(float)),
         "column 'epoch' must hold integers"),
        ("nodes.parquet", lambda df: df.assign(layer=None), "column 'layer' must hold text"),
    ],
)
def test_schema_problems_name_file_column_and_fix(
    tmp_path: Path, name: str, change: Callable, says: str
) -> None:
    path = edited(saved(tmp_path), name, change)
    with pytest.raises(ValueError) as exc:
        History.load(path)
    msg = str(exc.value)
    assert str(path / name) in msg and says in msg and "re-save the history" in msg


@pytest.mark.parametrize("name", HISTORY_FILES)
def test_missing_rows_are_refused(tmp_path: Path, name: str) -> None:
    path = edited(saved(tmp_path), name, lambda df: df.iloc[:-1])
    n = len(pd.read_parquet(path / name))
    with pytest.raises(ValueError, match=rf"has {n} rows but meta.json records {n + 1}: "
                                         "rows are missing"):
        History.load(path)


def test_changed_values_fail_the_checksum_and_the_way_out_is_said(tmp_path: Path) -> None:
    path = edited(saved(tmp_path), "results.parquet",
                  lambda df: df.assign(value=df["value"] + 1.0))  # same rows, same dtypes
    with pytest.raises(ValueError, match="does not match the SHA-256") as exc:
        History.load(path)
    assert 'delete its entry under "files"' in str(exc.value)
    meta = json.loads((path / "meta.json").read_text())
    del meta["files"]["results.parquet"]
    (path / "meta.json").write_text(json.dumps(meta))
    values = History.load(path).frame().sort_values(["epoch", "layer", "metric"])["value"]
    # what saved() put in (ei = v, ei_parts = 2 v per pair), plus the edit's 1
    expected = [x + 1.0 for v in (0.5, 0.25, 2.5, 2.25) for x in (v, 2 * v)]
    assert values.tolist() == expected


def test_matrix_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    path = saved(tmp_path)
    meta = json.loads((path / "meta.json").read_text())
    del meta["files"]  # an old history: only the schema checks remain
    (path / "meta.json").write_text(json.dumps(meta))
    edited(path, "matrices.parquet",
           lambda df: df.assign(values=[v[:-1] for v in df["values"]]))
    with pytest.raises(ValueError, match=r"has 19 values but shape \(4, 5\) needs 20"):
        History.load(path)


def test_loaded_numbers_are_floats(tmp_path: Path) -> None:
    """An int value column (legal: numbers) loads as float64, like a fresh history."""
    path = saved(tmp_path)
    meta = json.loads((path / "meta.json").read_text())
    del meta["files"]
    (path / "meta.json").write_text(json.dumps(meta))
    edited(path, "results.parquet", lambda df: df.assign(value=np.arange(len(df))))
    frame = History.load(path).frame()
    assert frame["value"].dtype == np.float64


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux /proc")
def test_save_into_an_unwritable_place_names_the_path_asked_for() -> None:
    with pytest.raises(OSError) as exc:
        History().save("/proc/run")
    msg = str(exc.value)
    assert "could not save the history to '/proc/run'" in msg
    assert ".cw-tmp" not in msg and "folder you can write to" in msg


def test_save_below_a_file_names_the_path_and_leaves_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    target = blocker / "run"
    with pytest.raises(OSError) as exc:
        History().save(target)
    assert f"could not save the history to {str(target)!r}" in str(exc.value)
    assert sorted(os.listdir(tmp_path)) == ["file"] and blocker.read_text() == "x"


def test_a_kept_copy_of_an_intact_history_still_loads(tmp_path: Path) -> None:
    """Copying the folder (cp -r, a backup) keeps it loadable: nothing path-bound is checked."""
    copy = tmp_path / "copy"
    shutil.copytree(saved(tmp_path), copy)
    assert History.load(copy).epochs() == [0, 2]

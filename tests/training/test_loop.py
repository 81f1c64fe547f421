"""The training loop's parts outside a run: column order, Parquet preparation, atomic
writes, the old import paths, and the message for a missing ``paper`` extra."""

from __future__ import annotations

import importlib
import sys

import pandas as pd
import pytest
import torch

from causal_widgets.files import atomic_torch_save, atomic_write_text
from causal_widgets.training import loop


class _FakeHistory:
    """What :func:`loop.collect` reads of a History: its results and scalars frames."""

    def __init__(self, results: pd.DataFrame, scalars: pd.DataFrame) -> None:
        self._results, self._scalars = results, scalars

    def frame(self) -> pd.DataFrame:
        return self._results

    def scalars(self) -> pd.DataFrame:
        return self._scalars


def test_results_front_is_the_reproductions_order() -> None:
    assert loop.RESULTS_FRONT == [
        "run", "epoch", "layer", "metric", "value", "ci_low", "ci_high", "status", "loss",
        "accuracy",
        "test_loss", "test_accuracy",
    ]  # fmt: skip


def test_collect_puts_run_first_and_keeps_every_column() -> None:
    res = pd.DataFrame({"epoch": [0], "layer": ["fc1"], "metric": ["ei"], "value": [0.5],
                        "ci_low": [0.4], "ci_high": [0.6], "method": ["exact"],
                        "loss": [1.0], "extra": [7]})
    sca = pd.DataFrame({"epoch": [0, 1], "loss": [1.0, 0.9]})
    results, scalars = loop.collect([_FakeHistory(res, sca), _FakeHistory(res, sca)])
    assert list(results.columns) == ["run", "epoch", "layer", "metric", "value", "ci_low",
                                     "ci_high", "loss", "method", "extra"]
    assert list(results.run) == [0, 1]
    assert list(scalars.columns) == ["run", "epoch", "loss"]
    assert list(scalars.run) == [0, 0, 1, 1]


def test_parquet_ready_makes_tuples_lists_on_a_copy() -> None:
    df = pd.DataFrame({"in_range": [(0.0, 1.0), (0.0, 2.0)], "value": [1.0, 2.0]})
    out = loop.parquet_ready(df)
    assert list(out.in_range) == [[0.0, 1.0], [0.0, 2.0]]
    assert df.in_range[0] == (0.0, 1.0)


def test_atomic_writes_leave_no_temporary_file(tmp_path) -> None:
    atomic_write_text(tmp_path / "a.json", "{}")
    atomic_write_text(tmp_path / "a.json", '{"x": 1}')  # replaces
    assert (tmp_path / "a.json").read_text(encoding="utf-8") == '{"x": 1}'
    atomic_torch_save({"w": torch.ones(2)}, tmp_path / "c.pt")
    assert torch.equal(torch.load(tmp_path / "c.pt")["w"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "c.pt"]


def test_the_papers_old_import_paths_still_work() -> None:
    from causal_widgets.paper import reproduce as rp

    for name in ("Config", "collect", "engine_settings", "load_dataset", "train_run"):
        assert getattr(rp, name) is getattr(loop, name), name


def test_derive_seed_is_stable_and_63_bits() -> None:
    s = loop.derive_seed(0, 1, 2)
    assert s == loop.derive_seed(0, 1, 2) and s != loop.derive_seed(0, 1, 3)
    assert 0 <= s < 2**63


def test_missing_scikit_learn_names_the_paper_extra(monkeypatch) -> None:
    from causal_widgets.training.data import load_iris_data

    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import now fails
    with pytest.raises(ImportError, match=r"pip install causal_widgets\[paper\]"):
        load_iris_data()


def test_missing_matplotlib_names_the_paper_extra(monkeypatch) -> None:
    import causal_widgets.paper as paper

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.delitem(sys.modules, "causal_widgets.paper.figures", raising=False)
    # the package attribute would otherwise keep pointing at a module imported here
    monkeypatch.delattr(paper, "figures", raising=False)
    with pytest.raises(ImportError, match=r"pip install causal_widgets\[paper\]"):
        importlib.import_module("causal_widgets.paper.figures")

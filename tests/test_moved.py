"""The flat module paths of version 0.1 still import, with a warning naming the new path."""

from __future__ import annotations

import importlib
import sys

import pytest

import causal_widgets as cw

# old module -> names users imported from it in 0.1 (from that version's modules)
OLD_NAMES = {
    "binning": ["check_range", "check_bins", "bin_edges", "bin_index"],
    "data": ["Dataset", "load_iris_data", "load_digits_data"],
    "estimators": ["Estimate", "PairwiseResult", "WholeResult", "entropy_bits"],
    "exact": ["mi_from_joint", "exact_pair_tables", "exact_pair_mi"],
    "executors": ["WorkerLost", "Executor", "SerialExecutor", "ThreadExecutor"],
    "figures": ["layer_order", "plane_coords"],
    "graph": ["traced", "getattr_path", "find_layers", "check_same_structure", "measure"],
    "layer": ["Activation", "activation_of", "DenseForm", "check_finite_weights"],
    "models": ["parse_layers", "make_mlp", "one_hot", "make_optimizer"],
    "monitor": ["plan_snapshot", "measure_snapshot_task", "Monitor"],
    "reproduce": ["Config", "engine_settings", "make_config", "load_dataset", "train_run"],
    "store": ["History"],
    "study": ["StudyError", "Study", "resolve_point", "run_id"],
    "study_widgets": ["curves_payload", "StudyDashboard"],
    "sweeps": ["StudyData", "group_plane_means", "plane_summary"],
}


@pytest.fixture
def fresh_alias():
    """Drop the alias entries afterwards so each test sees the first import again."""
    yield
    for old in OLD_NAMES:
        sys.modules.pop(f"causal_widgets.{old}", None)


@pytest.mark.parametrize("old", sorted(OLD_NAMES))
def test_old_module_path_imports_with_a_warning(old, fresh_alias):
    sys.modules.pop(f"causal_widgets.{old}", None)
    with pytest.warns(DeprecationWarning, match=rf"causal_widgets\.{old} moved to"):
        module = importlib.import_module(f"causal_widgets.{old}")
    for name in OLD_NAMES[old]:
        assert getattr(module, name) is not None, (old, name)


def test_old_names_are_the_new_objects(fresh_alias):
    with pytest.warns(DeprecationWarning):
        from causal_widgets.graph import measure
        from causal_widgets.store import History
    from causal_widgets.live.store import History as NewHistory

    assert History is NewHistory
    assert measure is cw.measure


def test_old_widgets_module_names_resolve_from_the_package():
    from causal_widgets.widgets import CausalDashboard, attach, heatmap_payload, plane_payload
    from causal_widgets.widgets.dashboard import CausalDashboard as New

    assert CausalDashboard is New and callable(attach)
    assert callable(plane_payload) and callable(heatmap_payload)
    with pytest.raises(ImportError, match="'nope'"):
        from causal_widgets.widgets import nope  # noqa: F401


def test_measure_stays_the_function_and_its_old_module_says_where_it_went():
    with pytest.raises(ModuleNotFoundError, match="engine.layer_measure"):
        importlib.import_module("causal_widgets.measure")
    assert callable(cw.measure) and cw.measure.__module__ == "causal_widgets.network.measure"
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("causal_widgets.no_such_module")

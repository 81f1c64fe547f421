"""causal_widgets: the causal structure of a PyTorch network, measured and shown while it trains.

Public API (each name lives in one module, see docs/design.md):

>>> import torch, causal_widgets as cw
>>> layer = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Sigmoid())
>>> r = cw.measure_layer(layer, in_range=(0.0, 1.0), bins=8)   # doctest: +SKIP
>>> r.ei_parts, r.sensitivity                                   # doctest: +SKIP
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

from ._moved import install as _install_moved_paths
from .engine.layer import Activation, Layer, layer_from_module
from .engine.layer_measure import LayerResult, ei, ei_parts, measure_layer, sensitivity
from .network.discovery import find_layers
from .network.measure import measure

_install_moved_paths()  # the module paths of 0.1 (causal_widgets.store, ...) still import

# The live parts are imported on first use, so `import causal_widgets` stays light
# (anywidget and the worker thread machinery load only when a dashboard is made).
_LAZY = {
    "Monitor": "live.monitor",
    "analyze_checkpoints": "live.checkpoints",
    "History": "live.store",
    "CausalDashboard": "widgets.dashboard",
    "attach": "widgets.hooks",
    "CausalDashboardCallback": "widgets.hooks",
    "StudyDashboard": "widgets.study_dashboard",
    "Executor": "live.executors",
    "ProcessExecutor": "live.executors",
    "RayExecutor": "live.executors",
    "Study": "studies.spec",
    "preset": "studies.spec",
    "sweep": "studies.sweeps",
    "load_study": "studies.sweeps",
}

__all__ = [
    "Activation",
    "CausalDashboard",
    "CausalDashboardCallback",
    "Executor",
    "History",
    "Layer",
    "LayerResult",
    "Monitor",
    "ProcessExecutor",
    "RayExecutor",
    "Study",
    "StudyDashboard",
    "__version__",
    "analyze_checkpoints",
    "attach",
    "ei",
    "ei_parts",
    "find_layers",
    "layer_from_module",
    "load_study",
    "measure",
    "measure_layer",
    "preset",
    "sensitivity",
    "sweep",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'causal_widgets' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__

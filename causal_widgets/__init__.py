"""causal_widgets: the causal structure of a PyTorch network, measured and shown while it trains.

Public API (the names below are the contract; each lives in one module, see docs/design.md):

>>> import torch, causal_widgets as cw
>>> layer = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Sigmoid())
>>> r = cw.measure_layer(layer, in_range=(0.0, 1.0), bins=8)   # doctest: +SKIP
>>> r.ei_parts, r.sensitivity                                   # doctest: +SKIP
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> module that defines it; imported on first use so `import causal_widgets` stays
# light (the widgets pull in anywidget/bqplot only when a dashboard is made).
_EXPORTS = {
    "measure_layer": "measure",
    "LayerResult": "measure",
    "ei": "measure",
    "ei_parts": "measure",
    "sensitivity": "measure",
    "measure": "graph",
    "find_layers": "graph",
    "Layer": "layer",
    "Activation": "layer",
    "layer_from_module": "layer",
    "Monitor": "monitor",
    "History": "store",
    "CausalDashboard": "widgets",
    "attach": "widgets",
    "CausalDashboardCallback": "widgets",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'causal_widgets' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__

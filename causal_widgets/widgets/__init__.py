"""The UI package: anywidget models over the front-end in js/ (the training dashboard and the
study dashboard).
"""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    # `causal_widgets.widgets` was one module before the redesign: its names still resolve
    if name.startswith("_"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from causal_widgets._moved import OLD_WIDGETS, find_attribute

    modules = [importlib.import_module(f"causal_widgets.{m}") for m in OLD_WIDGETS]
    return find_attribute(modules, name, __name__)

"""The module paths of version 0.1's flat layout, still importable after the redesign.

``from causal_widgets.store import History`` keeps working: the old path is an alias of
the module that now owns the names (``causal_widgets.live.store``), with a
``DeprecationWarning`` naming the new path. Modules whose names were split over several new
ones (``graph``, ``widgets``) are served from all of them. ``causal_widgets.measure`` is not
aliased: that name is the function ``cw.measure`` (binding a module to it would shadow the
function), so importing it says where its contents went.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from typing import Any

#: old module (under causal_widgets) -> the module(s) that hold its names now
MOVED: dict[str, tuple[str, ...]] = {
    "binning": ("engine.binning",),
    "data": ("training.data",),
    "estimators": ("engine.estimators",),
    "exact": ("engine.exact",),
    "executors": ("live.executors",),
    "figures": ("paper.figures",),
    "graph": ("network.tracing", "network.ranges", "network.discovery", "network.build",
              "network.measure"),
    "layer": ("engine.layer",),
    "models": ("training.models",),
    "monitor": ("live.monitor",),
    "reproduce": ("paper.reproduce",),
    "store": ("live.store",),
    "study": ("studies.spec",),
    "study_widgets": ("widgets.study_dashboard",),
    "sweeps": ("studies.sweeps",),
}
#: names of the old ``causal_widgets.widgets`` module, now a package (served by its
#: ``__getattr__``)
OLD_WIDGETS = ("widgets.dashboard", "widgets.hooks", "widgets.payloads", "widgets.frontend")
_NOT_ALIASED = {
    "measure": "causal_widgets.measure is the function cw.measure; the old module's names "
               "are in causal_widgets.engine.layer_measure (measure_layer, LayerResult) and "
               "causal_widgets.network.measure (measure, measure_layers)",
}
_PACKAGE = __name__.rpartition(".")[0]


def _merged(name: str, targets: tuple[str, ...]) -> types.ModuleType:
    """One module object whose attributes come from each of ``targets`` in turn."""
    modules = [importlib.import_module(f"{_PACKAGE}.{t}") for t in targets]
    merged = types.ModuleType(name, f"Alias of {', '.join(m.__name__ for m in modules)}.")

    def __getattr__(attr: str) -> Any:
        return find_attribute(modules, attr, name)

    merged.__getattr__ = __getattr__  # type: ignore[method-assign]
    return merged


def find_attribute(modules: list[types.ModuleType], attr: str, where: str) -> Any:
    for module in modules:
        if hasattr(module, attr):
            return getattr(module, attr)
    raise AttributeError(
        f"module {where!r} has no attribute {attr!r}: it is not in "
        f"{', '.join(m.__name__ for m in modules)} either")


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``causal_widgets.<old>`` and loads it as the module that holds it now."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        package, _, old = fullname.rpartition(".")
        if package != _PACKAGE:
            return None
        if old in _NOT_ALIASED:
            raise ModuleNotFoundError(f"No module named {fullname!r}: {_NOT_ALIASED[old]}.",
                                      name=fullname)
        if old not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # the default module; exec_module swaps in the real one

    def exec_module(self, module: types.ModuleType) -> None:
        fullname = module.__name__
        targets = MOVED[fullname.rpartition(".")[2]]
        new = " and ".join(f"{_PACKAGE}.{t}" for t in targets)
        warnings.warn(f"{fullname} moved to {new}; import it from there.",
                      DeprecationWarning, stacklevel=2)
        real = (importlib.import_module(f"{_PACKAGE}.{targets[0]}") if len(targets) == 1
                else _merged(fullname, targets))
        # the import system returns whatever sys.modules holds under the name afterwards
        sys.modules[fullname] = real


def install() -> None:
    """Put the finder last on ``sys.meta_path`` (once): real modules always win."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())

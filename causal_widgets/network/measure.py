"""Measuring a whole network: every layer :func:`find_layers` gives, in one tidy table.

:func:`measure_layers` measures each layer with
:func:`causal_widgets.engine.layer_measure.measure_layer` (same settings, same seed) and
returns ``{layer name: LayerResult}``; :func:`measure` stacks their tables into one frame
with the columns :data:`FRAME_COLUMNS`, layers in forward order.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

# the columns every tidy table from measure() has: the schema's one owner is engine.tidy
from causal_widgets.checks import check_materialized
from causal_widgets.engine.layer import check_layer_sizes
from causal_widgets.engine.settings import LAYER_KEYWORDS, check_measure_keywords
from causal_widgets.engine.tidy import TIDY_COLUMNS as FRAME_COLUMNS
from causal_widgets.network.discovery import LayerSpec, find_layers
from causal_widgets.network.observed_ranges import SPAN_RANGES

__all__ = ["FRAME_COLUMNS", "measure", "measure_layers"]


def measure_layers(
    model: nn.Module,
    example_input: torch.Tensor,
    layers: Sequence[LayerSpec] | None = None,
    *,
    in_range: Sequence[float] | None = None,
    span_ranges: str = SPAN_RANGES,
    progress: bool | None = None,
    **settings: Any,
) -> dict:
    """Measure every layer :func:`find_layers` gives; ``{layer name: LayerResult}``.

    Every layer is measured by :func:`causal_widgets.engine.layer_measure.measure_layer`
    with the same settings and the same ``seed`` (so a layer's result equals measuring
    that layer alone). ``settings`` are :func:`~causal_widgets.measure_layer`'s (``bins``,
    ``metrics``, ``method``, ``tol``, ``seed``, ``device``, ... or ``settings=`` a
    :class:`~causal_widgets.engine.settings.MeasureSettings`), checked here once, before
    the model is traced. The results keep the per-layer matrices (``ei_parts_matrix``,
    ``sensitivity_matrix``) and node tables. ``span_ranges``: :func:`find_layers`'s
    (``"observed"``: blocks, spans, transformer sublayers and LayerNorms bin their
    outputs over the range observed under their intervention; ``"bound"``: over the
    sound bound). ``progress``: a tqdm bar over the layers; ``None`` shows one when
    there are several layers and someone is watching (a terminal, or a notebook).
    """
    from causal_widgets.engine.layer_measure import measure_layer

    layer_kw = {k: settings.pop(k) for k in list(settings) if k in LAYER_KEYWORDS}
    checked = check_measure_keywords(settings, where="measure()")
    if isinstance(model, nn.Module):
        check_materialized(model, "model")  # meta tensors: shapes, no values to measure
        check_layer_sizes(model, "model")  # Linear(0, 3): named here, not deep in tracing
    found = find_layers(model, example_input, layers, in_range=in_range,
                        span_ranges=span_ranges)
    if not found:
        _warn_nothing_measured(model, layers)
    iterator = found
    if progress is None:
        watched = sys.stderr is not None and (
            "ipykernel" in sys.modules or getattr(sys.stderr, "isatty", lambda: False)())
        progress = len(found) > 1 and watched
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(found, desc="layers", unit="layer")
    results = {}
    for layer in iterator:
        results[layer.name] = measure_layer(layer, settings=checked, **layer_kw)
    return results


def _warn_nothing_measured(model: nn.Module, layers: Sequence[LayerSpec] | None) -> None:
    """Legal but almost never meant: a table with no rows. Say what the model holds."""
    types = sorted({type(m).__name__ for m in model.modules()})
    paths = [n for n, _ in model.named_modules() if n][:6]
    asked = "" if layers is None else f" among layers={list(layers)!r}"
    warnings.warn(
        f"measure(): nothing to measure{asked} in {type(model).__name__} (its modules: "
        f"{', '.join(types)}), so the table is empty. Measurable layers are Linear / Conv "
        "(with the activation after them), pools and residual blocks; to measure other "
        "modules name them with layers=[path, ...] or spans layers=[(first, last)]"
        + (f", e.g. layers=[{paths[0]!r}] (module paths: {', '.join(paths)})" if paths else "")
        + ".",
        UserWarning,
        stacklevel=_user_stacklevel(),
    )


def _user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside this package
    (measure() and measure_layers() both reach the warning, at different depths)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame, level = sys._getframe(1), 1  # level 1: the function calling warnings.warn
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def measure(
    model: nn.Module,
    example_input: torch.Tensor,
    layers: Sequence[LayerSpec] | None = None,
    *,
    in_range: Sequence[float] | None = None,
    span_ranges: str = SPAN_RANGES,
    progress: bool | None = None,
    **settings: Any,
) -> pd.DataFrame:
    """Measure a whole network: a tidy table, one row per (layer, metric), bits.

    Columns (at least) ``layer, metric, value, ci_low, ci_high, status, method, samples,
    in_bins, out_bins, in_range, out_range, seed, version``; layers in forward order.
    ``value`` is bits of effective information (see ``docs/metrics.md``); ``ci_low`` /
    ``ci_high`` its interval and ``status`` what the interval means (``"exact"``,
    ``"estimate"``: 95 %, ``"bounds"``: it brackets the truth). For the per-layer
    matrices use :func:`measure_layers`; ``settings`` as there (those of
    :func:`~causal_widgets.measure_layer`).

    >>> import torch, causal_widgets as cw
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Sigmoid(),
    ...                           torch.nn.Linear(5, 3), torch.nn.Sigmoid())
    >>> df = cw.measure(net, torch.rand(10, 4), in_range=(0, 1))   # doctest: +SKIP
    >>> df.pivot(index="layer", columns="metric", values="value")  # doctest: +SKIP
    """
    results = measure_layers(
        model, example_input, layers, in_range=in_range, span_ranges=span_ranges,
        progress=progress, **settings
    )
    frames = []
    for name, result in results.items():
        frame = result.to_frame().copy()
        frame["layer"] = name  # the network's name for it, whatever measure_layer chose
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=FRAME_COLUMNS)
    df = pd.concat(frames, ignore_index=True)
    rest = [c for c in df.columns if c not in FRAME_COLUMNS]
    return df[[c for c in FRAME_COLUMNS if c in df.columns] + rest]


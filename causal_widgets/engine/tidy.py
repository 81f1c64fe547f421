"""The tidy results schema: one row per (layer, metric), values in bits.

This module owns the column names and their order (docs/design.md, "Tidy table"); the
network table of :func:`causal_widgets.measure` (``FRAME_COLUMNS``), a
:class:`~causal_widgets.live.store.History` frame (``TIDY_COLUMNS``) and the training
loop's results (:func:`causal_widgets.training.loop.collect`) all import it from here, so
the three cannot drift apart.

Columns, in order: the row's key (``layer, metric``), its value with its interval and the
interval's meaning (``value, ci_low, ci_high, status``) and how it was measured
(``method, samples, in_bins, out_bins, in_range, out_range, seed, version``). Tables add
``epoch``, ``run`` and the recorded scalars (``loss``, ``accuracy``, ...) where they have
them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for the annotations: this module needs no pandas to be imported
    import pandas as pd

#: what a row is about
TIDY_KEYS = ("layer", "metric")
#: the measured value (bits), its interval, and what the interval means: "exact" (no
#: sampling), "estimate" (95 % confidence) or "bounds" (brackets the truth; the value is a
#: best guess inside it), see causal_widgets.engine.bounds
TIDY_VALUES = ("value", "ci_low", "ci_high", "status")
#: how the value was measured
TIDY_PROVENANCE = (
    "method", "samples", "in_bins", "out_bins", "in_range", "out_range", "seed", "version",
)
#: every tidy column, in order; a list (not a tuple) because importers and their tests
#: build on it with ``["epoch"] + TIDY_COLUMNS`` -- never mutate it
TIDY_COLUMNS: list[str] = [*TIDY_KEYS, *TIDY_VALUES, *TIDY_PROVENANCE]


def status_from_method(method: object) -> str:
    """The status of a row written before statuses existed (version 0.1 histories): exact
    values were exact, everything else was reported as an estimate."""
    return "exact" if method == "exact" else "estimate"


def order_columns(df: pd.DataFrame, first: Sequence[str]) -> pd.DataFrame:
    """``df`` with the columns of ``first`` that it has leading, in that order, then the
    rest in their current order (a column of ``first`` that ``df`` lacks is skipped)."""
    lead = [c for c in first if c in df.columns]
    return df[lead + [c for c in df.columns if c not in lead]]

"""How a layer is measured: one frozen, validated settings object built at the boundary.

Every entry point that measures (``measure_layer``, ``measure``, ``Monitor``,
``CausalDashboard``, a study's runs) turns the user's keywords into one
:class:`MeasureSettings` *at the call*, in the user's thread: an unknown or misspelt
keyword raises ``TypeError`` with a "did you mean", an invalid value ``ValueError`` naming
it. The object is then passed (and pickled to workers) as it is, and the code inside
trusts it.

Names say one thing: ``interventions`` are the sampled EI_parts interventions (the old
keyword ``samples``), ``sensitivity_interventions`` those per input for sensitivity (old:
``sensitivity_samples``); ``max_samples`` caps forward evaluations per metric. The old
keywords still work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from causal_widgets.checks import (
    check_bins,
    check_choice,
    check_cuda,
    check_int,
    check_keywords,
    check_positive,
)
from causal_widgets.engine.memory import DEFAULT_MEMORY_BUDGET

#: Metric names ``measure_layer(metrics=...)`` understands.
METRICS = ("ei", "ei_parts", "sensitivity", "degeneracy", "integration", "nodes")
# what a requested metric needs computed; nodes' ``ei`` column comes from the whole-EI run
NEEDS = {
    "degeneracy": ("sensitivity", "ei"),
    "integration": ("ei", "ei_parts"),
    "nodes": ("ei",),
}
METHODS = ("auto", "exact", "sampled")
#: Enumerate every input cell for whole EI when ``in_bins ** n_in`` is at most this.
CELL_LIMIT = 2**14
#: Default cap on forward evaluations per metric when adapting the sample size. Wide
#: layers reach it before ``tol`` (their interval is then wider, and says so). 2**17 is
#: also the paper reproduction's whole-EI budget; with it a checkpoint of the PyTorch
#: tutorial CIFAR-10 net costs less CPU than one training epoch on 10,000 images
#: (benchmarks/real_models.py). Raise it for tighter intervals.
MAX_SAMPLES = 2**17

#: old keyword -> the setting it now is (accepted everywhere settings are)
ALIASES = {"samples": "interventions", "sensitivity_samples": "sensitivity_interventions"}


def parse_metrics(metrics: str | Iterable[str] | None) -> tuple[str, ...]:
    """The requested metric names, checked, in :data:`METRICS` order (``None``: all)."""
    if metrics is None:
        return METRICS
    if isinstance(metrics, str):
        metrics = [metrics]
    requested = set()
    for m in metrics:
        if m not in METRICS:
            raise ValueError(
                f"unknown metric {m!r}: choose from {', '.join(METRICS)} "
                "(or metrics=None for all)."
            )
        requested.add(m)
    if not requested:
        raise ValueError(f"metrics is empty: name at least one of {', '.join(METRICS)}.")
    return tuple(m for m in METRICS if m in requested)


#: fewest sampled draws per cell of an I(X_i; Y_j) table for a valid interval: measured
#: on a 4 -> 5 sigmoid layer against the exact engine over 40 seeds, EI_parts' 95 %
#: interval covered the truth in 0 % of runs at 64 interventions (8 bins: 1 per cell),
#: 65 % at 256, 90 % at 1024 and 97.5 % at 2048 (32 per cell). Sensitivity's tables are
#: near-deterministic maps of one input (the others held at 0) and need fewer.
MIN_PER_CELL = {"interventions": 32, "sensitivity_interventions": 16}


def check_pairwise_budget(name: str, value: int, in_bins: int, out_bins: int,
                          given_as: str | None = None) -> None:
    """Refuse a sampled pairwise budget too small for its interval to be valid."""
    need = MIN_PER_CELL[name] * in_bins * out_bins
    if value < need:
        raise ValueError(
            f"{given_as or f'{name}={value}'} is too few for a valid interval on "
            f"{in_bins} x {out_bins}-bin tables: at least {MIN_PER_CELL[name]} per table "
            f"cell, {need}, are needed. Pass {name}>={need} (or leave it None to grow until "
            "tol is met), or use fewer bins."
        )


@dataclass(frozen=True)
class MeasureSettings:
    """Validated settings of a measurement (see :func:`~causal_widgets.measure_layer`).

    Build it with keywords (``MeasureSettings(bins=8, tol=0.02)``) or from a mapping of
    user keywords with :meth:`from_kwargs`, which also takes the old names. ``in_bins`` /
    ``out_bins`` default to ``bins``; ``max_samples`` to :data:`MAX_SAMPLES`.
    """

    bins: int = 8
    in_bins: int | None = None
    out_bins: int | None = None
    metrics: tuple[str, ...] | None = None
    method: str = "auto"
    interventions: int | None = None
    sensitivity_interventions: int | None = None
    cells: int | str | None = None
    points_per_cell: int | None = None
    tol: float = 0.01
    max_samples: int | None = None
    seed: int = 0
    device: Any = None
    chunk_size: int | None = None
    cell_limit: int = CELL_LIMIT
    memory_budget: int | None = None
    # what ``metrics`` needs computed as well (derived, not a keyword)
    computed: tuple[str, ...] = field(default=(), init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        put = object.__setattr__  # frozen: the canonical values are set once, here
        put(self, "bins", check_bins(self.bins, "bins"))
        put(self, "in_bins", check_bins(self.bins if self.in_bins is None else self.in_bins,
                                        "in_bins"))
        put(self, "out_bins", check_bins(self.bins if self.out_bins is None else self.out_bins,
                                         "out_bins"))
        metrics = parse_metrics(self.metrics)
        put(self, "metrics", metrics)
        computed = set(metrics)
        for m in metrics:
            computed.update(NEEDS.get(m, ()))
        put(self, "computed", tuple(m for m in METRICS if m in computed))
        check_choice(self.method, "method", METHODS)
        for name, low in (("interventions", 1), ("sensitivity_interventions", 1),
                          ("points_per_cell", 2), ("chunk_size", 1)):
            value = getattr(self, name)
            if value is not None:
                put(self, name, check_int(value, name, low))
        for name in MIN_PER_CELL:
            value = getattr(self, name)
            if value is not None:
                check_pairwise_budget(name, value, self.in_bins, self.out_bins)
        if self.cells is not None and self.cells != "all":
            put(self, "cells", check_int(self.cells, "cells"))
        put(self, "max_samples", MAX_SAMPLES if self.max_samples is None
            else check_int(self.max_samples, "max_samples"))
        put(self, "tol", check_positive(self.tol, "tol", "0.01 (bits)"))
        put(self, "seed", check_int(self.seed, "seed", 0))
        put(self, "cell_limit", check_int(self.cell_limit, "cell_limit"))
        put(self, "memory_budget", DEFAULT_MEMORY_BUDGET if self.memory_budget is None
            else check_int(self.memory_budget, "memory_budget", 2**20))
        if self.device is not None:
            try:
                put(self, "device", torch.device(self.device))
            except (TypeError, RuntimeError) as err:
                raise ValueError(
                    f"device={self.device!r} is not a torch device: pass e.g. 'cpu' or 'cuda'."
                ) from err
            # refused here, not deep in the first torch.Generator(device="cuda")
            check_cuda(self.device, "device")

    @classmethod
    def keywords(cls) -> tuple[str, ...]:
        """Every keyword a settings object takes (the old names not included)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.init)

    @classmethod
    def from_kwargs(
        cls, kwargs: Mapping[str, Any] | None = None, *, where: str = "measure_layer()"
    ) -> MeasureSettings:
        """Settings from user keywords; unknown ones raise ``TypeError`` naming them."""
        kwargs = dict(kwargs or {})
        if isinstance(kwargs.get("settings"), MeasureSettings):
            base = kwargs.pop("settings")
            return base.replace(**kwargs) if kwargs else base
        return _with_old_names(kwargs, lambda: cls(**normalise(kwargs, where)))

    def replace(self, **changes: Any) -> MeasureSettings:
        """A copy with ``changes`` (old names accepted), validated again."""
        given = changes
        changes = normalise(changes, "MeasureSettings.replace()")
        current = {k: getattr(self, k) for k in self.keywords()}
        # in/out bins followed ``bins`` unless set: keep following when only bins changes
        if "bins" in changes:
            for side in ("in_bins", "out_bins"):
                if side not in changes and current[side] == self.bins:
                    current[side] = None
        return _with_old_names(given, lambda: MeasureSettings(**{**current, **changes}))

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain values (recorded with every result)."""
        out = {k: getattr(self, k) for k in self.keywords()}
        out["metrics"] = list(self.metrics)
        out["device"] = None if self.device is None else str(self.device)
        return out


def normalise(kwargs: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Old names mapped to new, unknown keywords refused (with a "did you mean")."""
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        new = ALIASES.get(key, key)
        if new in out and key != new:
            raise TypeError(f"{where} got both {key!r} and {new!r}: they are one setting; "
                            f"pass {new}= only.")
        out[new] = value
    check_keywords(out, MeasureSettings.keywords(), where)
    return out


def _with_old_names(given: Mapping[str, Any], build: Any) -> MeasureSettings:
    """Build; an error about a setting passed by its old name says both names."""
    try:
        return build()
    except ValueError as err:
        old = [(k, ALIASES[k]) for k in given if k in ALIASES and ALIASES[k] in str(err)]
        if not old:
            raise
        names = "; ".join(f"{k}= is the old name of {new}=" for k, new in old)
        raise ValueError(f"{err} ({names})") from None


#: keywords of ``measure_layer`` that describe the layer, not how it is measured
LAYER_KEYWORDS = ("in_range", "out_range", "name", "in_shape", "group", "groups")


def check_measure_keywords(kwargs: Mapping[str, Any], where: str) -> MeasureSettings:
    """Validate the keywords a caller will pass to ``measure_layer`` for every layer (the
    layer-describing ones aside); raises at the boundary, naming the bad setting."""
    known = MeasureSettings.keywords() + tuple(ALIASES) + LAYER_KEYWORDS + ("settings",)
    check_keywords(kwargs, known, where)
    return MeasureSettings.from_kwargs(
        {k: v for k, v in kwargs.items() if k not in LAYER_KEYWORDS}, where=where
    )

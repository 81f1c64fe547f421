"""The paper's experiments, rerun: train, measure every few epochs, save, draw, resume.

``python -m causal_widgets reproduce {iris,digits,mnist,toy} --out DIR`` (see
``__main__.py``) calls :func:`run_experiment` (iris, digits, mnist) or :func:`run_toy`.

A training experiment trains ``runs`` networks (Mattsson, Michaud & Hoel 2020, settings in
``docs/metrics.md``) and, *before* the updates of every ``every``-th epoch,
measures each layer at ``bins`` bins (EI, EI_parts, sensitivity, degeneracy, integration,
in bits) with :func:`causal_widgets.engine.layer_measure.measure_layer`. Output in ``DIR``::

    config.json          the settings (a rerun with other settings into DIR is refused)
    results.parquet      tidy: run, epoch, layer, metric, value, ci_low, ci_high, loss,
                         accuracy, test_loss, test_accuracy + the engine's columns
    scalars.parquet      run, epoch, loss, accuracy, test_loss, test_accuracy (every epoch)
    run_K/history/       the run's History (reopen with CausalDashboard.load)
    run_K/checkpoint.pt  model + optimizer + batch-order RNG state at the last measured epoch
    figures/*.png|svg    causal planes (EI and EI_parts), time series, heatmaps

Each run is trained, measured and resumed by the training loop the studies share,
:func:`causal_widgets.training.loop.train_run` (its docstring says how a killed run
resumes); this module holds the paper's side: the schedules (``PRESETS``), the command
line's :func:`make_config`, the toy layers and the notebooks.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from causal_widgets.checks import renamed
from causal_widgets.extras import missing_extra

# The training loop lives in causal_widgets.training.loop (the studies use it too); its
# public names stay importable from here for the notebooks, benchmarks and user code that
# read them from the paper (e.g. ``from causal_widgets.paper.reproduce import
# engine_settings``).
from causal_widgets.training.loop import (
    Config,
    check_config,
    collect,
    engine_settings,
    load_dataset,
    parquet_ready,
    train_run,
)
from causal_widgets.training.models import parse_layers

__all__ = [
    "EXPERIMENTS",
    "PRESETS",
    "QUICK",
    "TRAINING_EXPERIMENTS",
    "VARIANT_EVERY",
    "edge_ei",
    "execute_notebook",
    "make_config",
    "notebook_path",
    "run_experiment",
    "run_toy",
    "toy_results",
    # re-exported from causal_widgets.training.loop
    "Config",
    "collect",
    "engine_settings",
    "load_dataset",
    "train_run",
]

TRAINING_EXPERIMENTS = ("iris", "digits", "mnist")
EXPERIMENTS = (*TRAINING_EXPERIMENTS, "toy")

#: The paper's schedule per experiment (``docs/metrics.md``) and our quick look.
PRESETS: dict[str, dict[str, Any]] = {
    "iris": dict(sizes=[4, 5, 5, 3], batch_size=10, epochs=4000, every=50, runs=3),
    # sklearn's 901 digits give 14 batches per epoch where MNIST gave 500: the paper's 500
    # epochs would be 7000 updates, before the loss has left its plateau (~10 000), so the
    # digits default trains for 2000 epochs (28 000 updates) at the paper's every-10 cadence
    "digits": dict(sizes=[25, 6, 6, 6, 5], batch_size=50, epochs=2000, every=10, runs=3),
    "mnist": dict(sizes=[25, 6, 6, 6, 5], batch_size=50, epochs=500, every=10, runs=3),
}
QUICK: dict[str, dict[str, Any]] = {
    "iris": dict(epochs=1500, every=100, runs=1),
    "digits": dict(epochs=1000, every=100, runs=1),
    "mnist": dict(epochs=20, every=5, runs=1),
}
#: the paper measured its tanh and ReLU variants every 20 epochs
VARIANT_EVERY = {"tanh": 20, "relu": 20}


def make_config(
    experiment: str,
    *,
    epochs: int | None = None,
    runs: int | None = None,
    every: int | None = None,
    bins: int = 8,
    ei_samples: int | None = None,
    activation: str = "sigmoid",
    layers: str | Sequence[int] | None = None,
    seed: int = 0,
    quick: bool = False,
    data_dir: str | None = None,
    batch_size: int | None = None,
    measure: dict[str, Any] | None = None,
    samples: int | None = None,
) -> Config:
    """The paper's settings for ``experiment``, overridden by whatever is given.

    ``ei_samples``: forward evaluations per layer for whole EI (``samples`` is its old name).
    """
    ei_samples = renamed(ei_samples, samples, "ei_samples", "samples")
    if experiment not in TRAINING_EXPERIMENTS:
        raise ValueError(
            f"experiment {experiment!r} is not a training experiment: choose one of "
            f"{', '.join(TRAINING_EXPERIMENTS)} (or use run_toy for 'toy')."
        )
    base = dict(PRESETS[experiment])
    if activation in VARIANT_EVERY and experiment != "iris":
        base["every"] = VARIANT_EVERY[activation]
    if quick:
        base.update(QUICK[experiment])
    sizes = parse_layers(layers) if layers is not None else base["sizes"]
    for name, value in (("epochs", epochs), ("runs", runs), ("every", every),
                        ("batch_size", batch_size)):
        if value is not None:
            if int(value) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer; "
                                 f"got {value}.")
            base[name] = int(value)
    if experiment == "mnist" and data_dir is None:
        raise ValueError(
            "the mnist experiment reads real MNIST from local IDX files: pass --data-dir "
            "PATH (a folder with train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte"
            "[.gz]), or run the embedded 'digits' experiment instead."
        )
    if ei_samples is not None and int(ei_samples) < 1:
        raise ValueError(f"--ei-samples must be a positive integer; got {ei_samples}.")
    return Config(
        experiment=experiment,
        sizes=list(sizes),
        activation=activation,
        epochs=base["epochs"],
        every=base["every"],
        runs=base["runs"],
        batch_size=base["batch_size"],
        bins=int(bins),
        seed=int(seed),
        ei_samples=None if ei_samples is None else int(ei_samples),
        quick=bool(quick),
        data_dir=None if data_dir is None else str(data_dir),
        measure=dict(measure or {}),
    )


def run_experiment(
    cfg: Config,
    out: str | os.PathLike,
    *,
    progress: bool | None = None,
    figures: bool = True,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Run (or resume) every run of ``cfg`` into ``out``; write results and figures.

    Returns the tidy results frame (also written to ``out/results.parquet``).
    """
    out = Path(out)
    check_config(out, cfg)
    ds = load_dataset(cfg)
    t0 = time.perf_counter()
    histories = [
        train_run(cfg, run, ds, out / f"run_{run}", progress=progress, log=log)
        for run in range(cfg.runs)
    ]
    results, scalars = collect(histories)
    parquet_ready(results).to_parquet(out / "results.parquet", index=False)
    scalars.to_parquet(out / "scalars.parquet", index=False)
    if figures:
        from causal_widgets.paper.figures import experiment_figures

        paths = experiment_figures(results, scalars, histories, out / "figures",
                                   title=_title(cfg))
        log(f"wrote {len(paths)} figure files to {out / 'figures'}")
    log(f"{cfg.experiment}: {cfg.runs} run(s) done in {time.perf_counter() - t0:.1f} s; "
        f"results in {out / 'results.parquet'}")
    return results


def _title(cfg: Config) -> str:
    sizes = "-".join(map(str, cfg.sizes))
    return f"{cfg.experiment} {sizes} {cfg.activation}"


# --------------------------------------------------------------------------- toy layers


def edge_ei(weight: float, activation: str, bins: int) -> float:
    """Exact EI (bits) of a single edge ``y = act(w x)``, ``x ~ U(0, 1)``, ``bins`` bins each.

    Output ranges: sigmoid (0, 1), tanh (-1, 1) and, as in the paper, (0, 1) for ReLU
    (values above 1 fall into the top bin here; the original dropped them). For a 1->1
    layer whole EI, EI_parts and sensitivity coincide: I(X; Y) of one pair table.
    """
    from causal_widgets.engine.exact import exact_pair_mi
    from causal_widgets.engine.layer import Activation, DenseForm

    dense = DenseForm(np.array([[float(weight)]]), np.zeros(1), Activation(activation))
    out_range = (-1.0, 1.0) if activation == "tanh" else (0.0, 1.0)
    return float(exact_pair_mi(dense, (0.0, 1.0), bins, out_range, bins)[0, 0])


def toy_results(
    *,
    quick: bool = False,
    bins: int = 8,
    seed: int = 0,
    ei_samples: int | None = None,
    weights: Sequence[float] | None = None,
    grid: Sequence[float] | None = None,
    samples: int | None = None,
) -> pd.DataFrame:
    """The toy layers' numbers (bits): EI of one edge vs its weight, 2->1 sigmoid surfaces.

    Edge panel: ``y = act(w x)`` for sigmoid, tanh, ReLU at 8/16/32/64 bins, exact, over
    ``weights`` (default 401 points in [-10, 10]; 81 with ``quick``). Surface panel: a
    bias-free 2->1 sigmoid layer over ``grid`` x ``grid`` (default 33 points in [-8, 8];
    9 with ``quick``), whole EI (cell-conditional over all ``bins**2`` cells, ``ei_samples``
    points in all (``samples`` is its old name): default 2**15, 2**13 with ``quick``),
    exact EI_parts and sensitivity, degeneracy and integration at ``bins`` bins.

    Columns: ``panel`` ("edge" | "surface"), ``activation, bins, w1, w2, metric, value,
    ci_low, ci_high, method``.
    """
    from causal_widgets.engine.layer_measure import measure_layer

    ei_samples = renamed(ei_samples, samples, "ei_samples", "samples")
    rows: list[dict[str, Any]] = []
    weights = np.linspace(-10.0, 10.0, 81 if quick else 401) if weights is None else weights
    for act in ("sigmoid", "tanh", "relu"):
        for b in (8, 16, 32, 64):
            for w in weights:
                v = edge_ei(w, act, b)
                rows.append(dict(panel="edge", activation=act, bins=b, w1=float(w),
                                 w2=math.nan, metric="ei", value=v, ci_low=v, ci_high=v,
                                 method="exact"))
    grid = np.linspace(-8.0, 8.0, 9 if quick else 33) if grid is None else grid
    # a 2->1 layer has only bins**2 input cells: enumerate them all, `ei_samples` in all
    if ei_samples is None:
        ei_samples = 2**13 if quick else 2**15
    kw = dict(bins=bins, seed=seed, cells="all",
              points_per_cell=max(2, ei_samples // bins**2))
    layer = torch.nn.Sequential(torch.nn.Linear(2, 1, bias=False), torch.nn.Sigmoid())
    for w1 in grid:
        for w2 in grid:
            with torch.no_grad():
                layer[0].weight.copy_(torch.tensor([[w1, w2]], dtype=torch.float32))
            r = measure_layer(layer, in_range=(0.0, 1.0),
                              metrics=["ei", "ei_parts", "sensitivity", "degeneracy",
                                       "integration"], **kw)
            for metric, value in r.metrics().items():
                lo, hi = r.ci.get(metric, (math.nan, math.nan))
                rows.append(dict(panel="surface", activation="sigmoid", bins=bins,
                                 w1=float(w1), w2=float(w2), metric=metric, value=value,
                                 ci_low=lo, ci_high=hi, method=r.method.get(metric, "")))
    return pd.DataFrame(rows)


def run_toy(
    out: str | os.PathLike,
    *,
    quick: bool = False,
    bins: int = 8,
    seed: int = 0,
    ei_samples: int | None = None,
    figures: bool = True,
    log: Callable[[str], None] = print,
    samples: int | None = None,
) -> pd.DataFrame:
    """Compute :func:`toy_results` into ``out/results.parquet`` and draw its figures."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = toy_results(quick=quick, bins=bins, seed=seed,
                          ei_samples=renamed(ei_samples, samples, "ei_samples", "samples"))
    results.to_parquet(out / "results.parquet", index=False)
    if figures:
        from causal_widgets.paper.figures import toy_figures

        paths = toy_figures(results, out / "figures")
        log(f"wrote {len(paths)} figure files to {out / 'figures'}")
    log(f"toy: done in {time.perf_counter() - t0:.1f} s; results in {out / 'results.parquet'}")
    return results


# --------------------------------------------------------------------------- notebooks


def execute_notebook(
    notebook: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    env: dict[str, str] | None = None,
    timeout: int = 1800,
) -> Path:
    """Execute ``notebook`` headless (nbclient, kernel ``python3``) and write it to ``dest``.

    ``env`` entries are set in the kernel's environment (e.g. ``CW_RESULTS`` pointing the
    notebook at a finished run, ``CW_QUICK=1``). Cell errors raise
    ``nbclient.exceptions.CellExecutionError`` naming the cell.
    """
    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError as err:  # the notebook extra's, not the core's
        raise missing_extra("headless notebooks", "notebook", err) from err

    notebook, dest = Path(notebook), Path(dest)
    if not notebook.is_file():
        raise FileNotFoundError(
            f"notebook {str(notebook)!r} not found: run from the repository root (where "
            "notebooks/ lives) or pass the notebook's path."
        )
    nb = nbformat.read(notebook, as_version=4)
    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})  # the kernel inherits this process's environment
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(notebook.parent)}})
        client.execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest)
    return dest


def notebook_path(name: str) -> Path:
    """``notebooks/<name>.ipynb`` of the source checkout (next to the package)."""
    # this file is causal_widgets/paper/reproduce.py: the checkout is three levels up
    return Path(__file__).resolve().parents[2] / "notebooks" / f"{name}.ipynb"

"""The paper's experiments, rerun: train, measure every few epochs, save, draw, resume.

``python -m causal_widgets reproduce {iris,digits,mnist,toy} --out DIR`` (see
``__main__.py``) calls :func:`run_experiment` (iris, digits, mnist) or :func:`run_toy`.

A training experiment trains ``runs`` networks (Mattsson, Michaud & Hoel 2020, settings in
``../shared/docs/metrics.md``) and, *before* the updates of every ``every``-th epoch,
measures each layer at ``bins`` bins (EI, EI_parts, sensitivity, degeneracy, integration,
in bits) with :func:`causal_widgets.engine.layer_measure.measure_layer`. Output in ``DIR``::

    config.json          the settings (a rerun with other settings into DIR is refused)
    results.parquet      tidy: run, epoch, layer, metric, value, ci_low, ci_high, loss,
                         accuracy, test_loss, test_accuracy + the engine's columns
    scalars.parquet      run, epoch, loss, accuracy, test_loss, test_accuracy (every epoch)
    run_K/history/       the run's History (reopen with CausalDashboard.load)
    run_K/checkpoint.pt  model + optimizer + batch-order RNG state at the last measured epoch
    figures/*.png|svg    causal planes (EI and EI_parts), time series, heatmaps

Resuming: at each measured epoch the checkpoint is written *before* measuring and the
history *after*; a rerun loads both, skips the (epoch, layer) pairs already in the history
and continues training from the checkpoint. Training is deterministic given the saved
state, so the resumed run is the run that would have happened without the interruption,
and :meth:`History.add_result` replaces rather than duplicates a pair.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from causal_widgets.training.data import Dataset, load_digits_data, load_iris_data, load_mnist_data
from causal_widgets.training.models import (
    evaluate,
    make_mlp,
    make_optimizer,
    one_hot,
    parse_layers,
    train_epoch,
)

TRAINING_EXPERIMENTS = ("iris", "digits", "mnist")
EXPERIMENTS = (*TRAINING_EXPERIMENTS, "toy")

#: The paper's schedule per experiment (``../shared/docs/metrics.md``) and our quick look.
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


@dataclass
class Config:
    """Settings of one training experiment (everything that decides its numbers)."""

    experiment: str
    sizes: list[int]
    activation: str = "sigmoid"
    epochs: int = 4000
    every: int = 50
    runs: int = 3
    batch_size: int = 10
    lr: float = 0.01
    bins: int = 8
    seed: int = 0
    samples: int | None = None
    quick: bool = False
    data_dir: str | None = None
    measure: dict[str, Any] = field(default_factory=dict)
    label_noise: float = 0.0  # fraction of training labels replaced by random ones
    dropout: float = 0.0  # nn.Dropout after each hidden activation while training

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def measured_epochs(self) -> list[int]:
        """Epochs measured (before that epoch's updates): 0, every, 2 every, ... < epochs."""
        return list(range(0, self.epochs, self.every))

    def measure_kwargs(self) -> dict[str, Any]:
        """Keywords for :func:`~causal_widgets.engine.layer_measure.measure_layer` (bar seed and ranges)."""
        kw: dict[str, Any] = {"bins": self.bins, **engine_settings(self.quick, self.samples)}
        kw.update(self.measure)
        return kw


def engine_settings(quick: bool, samples: int | None) -> dict[str, Any]:
    """Per-measurement engine settings that keep a full Iris run within minutes.

    EI_parts and sensitivity of the paper's dense layers are exact (no samples). Whole EI
    is the cell-conditional estimate EI = H(Y) - mean_cell H(Y | cell) from ``samples``
    forward evaluations: ``samples / 32`` random input cells with 32 points inside each,
    one pass, no adaptive doubling (default 2**17 samples; 2**14 with ``quick``). The
    paper used 10^7 samples for a plug-in estimate; the cell-conditional estimator does
    not saturate at log2(N), and at 2**17 its 95 % CI is about +-0.03..0.05 bits on the
    Iris layers (reported with every value).
    """
    if samples is None:
        samples = 2**14 if quick else 2**17
    ppc = 32
    return {"cells": max(1, int(samples) // ppc), "points_per_cell": ppc}


def make_config(
    experiment: str,
    *,
    epochs: int | None = None,
    runs: int | None = None,
    every: int | None = None,
    bins: int = 8,
    samples: int | None = None,
    activation: str = "sigmoid",
    layers: str | Sequence[int] | None = None,
    seed: int = 0,
    quick: bool = False,
    data_dir: str | None = None,
    batch_size: int | None = None,
    measure: dict[str, Any] | None = None,
) -> Config:
    """The paper's settings for ``experiment``, overridden by whatever is given."""
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
    if samples is not None and int(samples) < 1:
        raise ValueError(f"--samples must be a positive integer; got {samples}.")
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
        samples=None if samples is None else int(samples),
        quick=bool(quick),
        data_dir=None if data_dir is None else str(data_dir),
        measure=dict(measure or {}),
    )


def load_dataset(cfg: Config) -> Dataset:
    """The experiment's data set (the split's shuffle uses ``cfg.seed``)."""
    if cfg.experiment == "iris":
        ds = load_iris_data(seed=cfg.seed)
    elif cfg.experiment == "digits":
        ds = load_digits_data(seed=cfg.seed)
    else:
        ds = load_mnist_data(cfg.data_dir)
    if cfg.label_noise > 0:
        ds = randomize_labels(ds, cfg.label_noise, seed=_seed(cfg.seed, 4))
    if ds.n_features != cfg.sizes[0] or ds.n_classes != cfg.sizes[-1]:
        raise ValueError(
            f"--layers {','.join(map(str, cfg.sizes))} does not fit the {cfg.experiment} "
            f"data: it needs {ds.n_features} inputs and {ds.n_classes} outputs, e.g. "
            f"--layers {ds.n_features},{','.join(map(str, cfg.sizes[1:-1]))},{ds.n_classes}."
        )
    return ds


def randomize_labels(ds: Dataset, fraction: float, seed: int) -> Dataset:
    """``ds`` with ``round(fraction * n_train)`` training labels replaced by uniformly random
    classes (the memorisation experiment); the test labels stay true.

    Which examples and their new labels come from ``numpy.random.default_rng(seed)``; a new
    label may equal the true one by chance (1 / n_classes of them do).
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"label_noise={fraction} must lie in [0, 1]: the fraction of "
                         "training labels replaced by random ones.")
    rng = np.random.default_rng(seed)
    y = ds.y_train.clone()
    n = int(round(fraction * len(y)))
    idx = rng.choice(len(y), size=n, replace=False)
    y[torch.as_tensor(idx, dtype=torch.int64)] = torch.as_tensor(
        rng.integers(0, ds.n_classes, size=n), dtype=torch.int64)
    return Dataset(ds.name, ds.x_train, y, ds.x_test, ds.y_test, ds.n_classes,
                   f"{ds.description}; {fraction:g} of training labels random")


def _seed(*parts: int) -> int:
    """An independent 63-bit seed for a (seed, run, purpose, ...) tuple."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0]
               >> np.uint64(1))


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class _Progress:
    """A tqdm bar on a terminal; otherwise a line every ~10 % of the epochs (for logs)."""

    def __init__(self, total: int, initial: int, desc: str, enabled: bool | None) -> None:
        self.tty = sys.stdout.isatty() if enabled is None else enabled
        self.silent = enabled is False  # e.g. runs inside a sweep's workers
        self.total, self.desc, self.bar = total, desc, None
        self.step = max(1, total // 10)
        if self.tty:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="epoch",
                            dynamic_ncols=True)
        elif enabled is None:
            print(f"{desc}: from epoch {initial} of {total}", flush=True)

    def update(self, epoch: int, **postfix: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if postfix:
                self.bar.set_postfix({k: f"{v:.3f}" for k, v in postfix.items()}, refresh=False)
        elif not self.silent and ((epoch + 1) % self.step == 0 or epoch + 1 == self.total):
            text = " ".join(f"{k}={v:.4f}" for k, v in postfix.items())
            print(f"{self.desc}: epoch {epoch + 1}/{self.total} {text}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _describe_layers(found: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {
            "name": lay.name,
            "n_in": int(lay.n_in),
            "n_out": int(lay.n_out),
            "kind": "dense" if lay.dense is not None else "other",
            "activation": lay.activation.kind if lay.activation is not None else None,
            "in_range": list(lay.in_range),
            "out_range": list(lay.out_range) if lay.out_range is not None else None,
        }
        for lay in found
    ]


def measure_model(
    model: torch.nn.Module,
    example: torch.Tensor,
    cfg: Config,
    seed: int,
    skip: Callable[[str], bool] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Measure every layer of ``model`` (first layer's input range (0, 1)); ``(layers, results)``.

    ``skip(name)`` says which layers are already done (resume). The results are
    :class:`~causal_widgets.engine.layer_measure.LayerResult` objects keyed by layer name.
    """
    from causal_widgets.engine.layer_measure import measure_layer
    from causal_widgets.network.graph import find_layers

    found = find_layers(model, example, in_range=(0.0, 1.0))
    results = {}
    for lay in found:
        if skip is not None and skip(lay.name):
            continue
        results[lay.name] = measure_layer(lay, seed=seed, **cfg.measure_kwargs())
    return _describe_layers(found), results


def _check_config(out: Path, cfg: Config) -> None:
    """Write ``config.json``, or refuse to mix settings with an earlier run in ``out``."""
    path = out / "config.json"
    new = cfg.to_dict()
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        # 'runs' may grow on a rerun (more runs of the same experiment); all else must match
        defaults = Config("", []).to_dict()  # keys added since `old` was written
        diff = {
            k: (old.get(k, defaults[k]), v) for k, v in new.items()
            if k != "runs" and json.dumps(old.get(k, defaults[k])) != json.dumps(v)
        }
        if diff:
            described = "; ".join(f"{k}: {a!r} before, {b!r} now" for k, (a, b) in diff.items())
            raise ValueError(
                f"{out} holds a run with other settings ({described}): resume it with the "
                "same flags, or pass a new --out directory."
            )
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(path, json.dumps(new, indent=1))


def train_run(
    cfg: Config,
    run: int,
    ds: Dataset,
    run_dir: Path,
    *,
    progress: bool | None = None,
    log: Callable[[str], None] = print,
):
    """Train and measure run ``run`` into ``run_dir``, resuming from its checkpoint if any.

    Returns the run's :class:`~causal_widgets.live.store.History`.
    """
    from causal_widgets.live.store import History

    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, hist_path = run_dir / "checkpoint.pt", run_dir / "history"
    model = make_mlp(cfg.sizes, cfg.activation, seed=_seed(cfg.seed, run, 1),
                     dropout=cfg.dropout)
    optimizer = make_optimizer(model, cfg.lr)
    batches = torch.Generator().manual_seed(_seed(cfg.seed, run, 2))
    history = History.open(hist_path, settings={**cfg.to_dict(), "run": run})
    start = 0
    pending: dict[int, dict[str, float]] = {}  # scalars not yet in a saved history
    if ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        batches.set_state(state["batches"])
        start = int(state["epoch"])
        # scalars recorded after the history's last save travel in the checkpoint
        pending = {int(e): dict(sc) for e, sc in state.get("pending", {}).items()}
        for e, sc in pending.items():
            history.add_scalars(e, **sc)
        if state.get("finished"):
            return history
        log(f"run {run}: resuming at epoch {start} "
            f"({len(history.epochs())} measured epochs kept)")
    targets = one_hot(ds.y_train, ds.n_classes)
    bar = _Progress(cfg.epochs, start, f"{cfg.experiment} run {run}", progress)
    try:
        for epoch in range(start, cfg.epochs + 1):
            loss, acc = evaluate(model, ds.x_train, ds.y_train)
            test_loss, test_acc = evaluate(model, ds.x_test, ds.y_test)
            scalars = dict(loss=loss, accuracy=acc, test_loss=test_loss,
                           test_accuracy=test_acc)
            history.add_scalars(epoch, **scalars)
            pending[epoch] = scalars
            finished = epoch == cfg.epochs
            if epoch % cfg.every == 0 or finished:
                # checkpoint first: the state *before* this epoch's updates, with the
                # scalars since the last history save (a kill before the next save
                # must not lose them: training resumes from here, after those epochs)
                _atomic_torch_save(
                    {"epoch": epoch, "model": model.state_dict(),
                     "optimizer": optimizer.state_dict(), "batches": batches.get_state(),
                     "finished": False, "config": cfg.to_dict(), "pending": pending},
                    ckpt_path,
                )
            if epoch % cfg.every == 0 and not finished:
                done = history.done()
                model.eval()  # dropout off while measuring (train_epoch turns it back on)
                layers, results = measure_model(
                    model, ds.x_train, cfg, seed=_seed(cfg.seed, run, 3, epoch),
                    skip=lambda name, e=epoch, d=done: (e, name) in d,
                )
                if not history.layers():
                    history.set_layers(layers)
                for name, res in results.items():
                    history.add_result(epoch, name, res, scalars)
                history.save(hist_path)
                pending = {}
            if finished:
                break
            # dropout draws from torch's global generator (nn.Dropout takes no generator):
            # seed it per epoch inside fork_rng, so a run is the same in any process and
            # after a resume, and the caller's global RNG state is left as it was
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_seed(cfg.seed, run, 5, epoch))
                train_epoch(model, optimizer, ds.x_train, targets, cfg.batch_size, batches)
            bar.update(epoch, loss=loss, accuracy=acc)
        history.save(hist_path)
        _atomic_torch_save(
            {"epoch": cfg.epochs, "model": model.state_dict(),
             "optimizer": optimizer.state_dict(), "batches": batches.get_state(),
             "finished": True, "config": cfg.to_dict()},
            ckpt_path,
        )
    finally:
        bar.close()
    return history


FRONT = ["run", "epoch", "layer", "metric", "value", "ci_low", "ci_high",
         "loss", "accuracy", "test_loss", "test_accuracy"]


def collect(histories: Sequence[Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(results, scalars)`` of all runs: the tidy frames with a ``run`` column first."""
    res, sca = [], []
    for run, h in enumerate(histories):
        res.append(h.frame().assign(run=run))
        sca.append(h.scalars().assign(run=run))
    results = pd.concat(res, ignore_index=True)
    scalars = pd.concat(sca, ignore_index=True)
    results = results[[c for c in FRONT if c in results.columns]
                      + [c for c in results.columns if c not in FRONT]]
    scalars = scalars[["run"] + [c for c in scalars.columns if c != "run"]]
    return results, scalars


def _parquet_ready(df: pd.DataFrame) -> pd.DataFrame:
    """Tuple columns (ranges) as lists of floats, so Parquet stores them natively."""
    df = df.copy()
    for col in df.columns:
        if df[col].dtype == object and df[col].map(lambda v: isinstance(v, tuple)).any():
            df[col] = df[col].map(lambda v: list(v) if isinstance(v, tuple) else v)
    return df


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
    _check_config(out, cfg)
    ds = load_dataset(cfg)
    t0 = time.perf_counter()
    histories = [
        train_run(cfg, run, ds, out / f"run_{run}", progress=progress, log=log)
        for run in range(cfg.runs)
    ]
    results, scalars = collect(histories)
    _parquet_ready(results).to_parquet(out / "results.parquet", index=False)
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
    samples: int | None = None,
    weights: Sequence[float] | None = None,
    grid: Sequence[float] | None = None,
) -> pd.DataFrame:
    """The toy layers' numbers (bits): EI of one edge vs its weight, 2->1 sigmoid surfaces.

    Edge panel: ``y = act(w x)`` for sigmoid, tanh, ReLU at 8/16/32/64 bins, exact, over
    ``weights`` (default 401 points in [-10, 10]; 81 with ``quick``). Surface panel: a
    bias-free 2->1 sigmoid layer over ``grid`` x ``grid`` (default 33 points in [-8, 8];
    9 with ``quick``), whole EI (cell-conditional over all ``bins**2`` cells, ``samples``
    points in all: default 2**15, 2**13 with ``quick``), exact EI_parts and sensitivity,
    degeneracy and integration at ``bins`` bins.

    Columns: ``panel`` ("edge" | "surface"), ``activation, bins, w1, w2, metric, value,
    ci_low, ci_high, method``.
    """
    from causal_widgets.engine.layer_measure import measure_layer

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
    # a 2->1 layer has only bins**2 input cells: enumerate them all, `samples` points in all
    if samples is None:
        samples = 2**13 if quick else 2**15
    kw = dict(bins=bins, seed=seed, cells="all", points_per_cell=max(2, samples // bins**2))
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
    samples: int | None = None,
    figures: bool = True,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Compute :func:`toy_results` into ``out/results.parquet`` and draw its figures."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = toy_results(quick=quick, bins=bins, seed=seed, samples=samples)
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
    import nbformat
    from nbclient import NotebookClient

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
    return Path(__file__).resolve().parent.parent / "notebooks" / f"{name}.ipynb"

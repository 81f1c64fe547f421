"""The training loop the paper's experiments and the studies share: train a network, measure
every layer every few epochs, save, resume.

:class:`Config` holds everything that decides a run's numbers; :func:`train_run` trains and
measures one run into its folder; :func:`collect` gathers the runs' tidy frames. The
paper's schedules per experiment (``PRESETS``) and the command line's :func:`make_config`
stay in :mod:`causal_widgets.paper.reproduce`; a study builds its :class:`Config` from its
grid point (:func:`causal_widgets.studies.sweeps.run_point`).

A run's folder::

    history/       the run's History (reopen with CausalDashboard.load)
    checkpoint.pt  model + optimizer + batch-order RNG state at the last measured epoch

Resuming: at each measured epoch the checkpoint is written *before* measuring and the
history *after*; a rerun loads both, skips the (epoch, layer) pairs already in the history
and continues training from the checkpoint. Training is deterministic given the saved
state, so the resumed run is the run that would have happened without the interruption,
and :meth:`History.add_result` replaces rather than duplicates a pair.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from causal_widgets.engine.tidy import TIDY_KEYS, TIDY_VALUES, order_columns
from causal_widgets.files import atomic_torch_save, atomic_write_text
from causal_widgets.training.data import Dataset, load_digits_data, load_iris_data, load_mnist_data
from causal_widgets.training.models import (
    evaluate,
    make_mlp,
    make_optimizer,
    one_hot,
    train_epoch,
)

if TYPE_CHECKING:  # the store is imported when a run starts, not with this module
    from causal_widgets.live.store import History

#: the scalars :func:`train_run` records at every epoch (on the training and the test split)
TRAINING_SCALARS = ("loss", "accuracy", "test_loss", "test_accuracy")
#: the leading columns of :func:`collect`'s results: the run, the epoch, the tidy key and
#: value, then the run's scalars (the engine's columns follow)
RESULTS_FRONT = ["run", "epoch", *TIDY_KEYS, *TIDY_VALUES, *TRAINING_SCALARS]


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
    ei_samples: int | None = None  # forward evaluations per layer for whole EI
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
        """Keywords for :func:`~causal_widgets.engine.layer_measure.measure_layer` (bar seed
        and ranges)."""
        kw: dict[str, Any] = {"bins": self.bins, **engine_settings(self.quick, self.ei_samples)}
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

def load_dataset(cfg: Config) -> Dataset:
    """The experiment's data set (the split's shuffle uses ``cfg.seed``)."""
    if cfg.experiment == "iris":
        ds = load_iris_data(seed=cfg.seed)
    elif cfg.experiment == "digits":
        ds = load_digits_data(seed=cfg.seed)
    else:
        ds = load_mnist_data(cfg.data_dir)
    if cfg.label_noise > 0:
        ds = randomize_labels(ds, cfg.label_noise, seed=derive_seed(cfg.seed, 4))
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


def derive_seed(*parts: int) -> int:
    """An independent 63-bit seed for a (seed, run, purpose, ...) tuple."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0]
               >> np.uint64(1))


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
    from causal_widgets.network.discovery import find_layers

    found = find_layers(model, example, in_range=(0.0, 1.0))
    results = {}
    for lay in found:
        if skip is not None and skip(lay.name):
            continue
        results[lay.name] = measure_layer(lay, seed=seed, **cfg.measure_kwargs())
    return _describe_layers(found), results


def check_config(out: Path, cfg: Config) -> None:
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
    atomic_write_text(path, json.dumps(new, indent=1))


def train_run(
    cfg: Config,
    run: int,
    ds: Dataset,
    run_dir: Path,
    *,
    progress: bool | None = None,
    log: Callable[[str], None] = print,
) -> History:
    """Train and measure run ``run`` into ``run_dir``, resuming from its checkpoint if any.

    Returns the run's :class:`~causal_widgets.live.store.History`.
    """
    from causal_widgets.live.store import History

    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, hist_path = run_dir / "checkpoint.pt", run_dir / "history"
    model = make_mlp(cfg.sizes, cfg.activation, seed=derive_seed(cfg.seed, run, 1),
                     dropout=cfg.dropout)
    optimizer = make_optimizer(model, cfg.lr)
    batches = torch.Generator().manual_seed(derive_seed(cfg.seed, run, 2))
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
                atomic_torch_save(
                    {"epoch": epoch, "model": model.state_dict(),
                     "optimizer": optimizer.state_dict(), "batches": batches.get_state(),
                     "finished": False, "config": cfg.to_dict(), "pending": pending},
                    ckpt_path,
                )
            if epoch % cfg.every == 0 and not finished:
                done = history.done()
                model.eval()  # dropout off while measuring (train_epoch turns it back on)
                layers, results = measure_model(
                    model, ds.x_train, cfg, seed=derive_seed(cfg.seed, run, 3, epoch),
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
                torch.manual_seed(derive_seed(cfg.seed, run, 5, epoch))
                train_epoch(model, optimizer, ds.x_train, targets, cfg.batch_size, batches)
            bar.update(epoch, loss=loss, accuracy=acc)
        history.save(hist_path)
        atomic_torch_save(
            {"epoch": cfg.epochs, "model": model.state_dict(),
             "optimizer": optimizer.state_dict(), "batches": batches.get_state(),
             "finished": True, "config": cfg.to_dict()},
            ckpt_path,
        )
    finally:
        bar.close()
    return history


def collect(histories: Sequence[Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(results, scalars)`` of all runs: the tidy frames with a ``run`` column first.

    The results lead with :data:`RESULTS_FRONT` (run, epoch, layer, metric, value, ci_low,
    ci_high, loss, accuracy, test_loss, test_accuracy), the engine's columns after.
    """
    res, sca = [], []
    for run, h in enumerate(histories):
        res.append(h.frame().assign(run=run))
        sca.append(h.scalars().assign(run=run))
    results = pd.concat(res, ignore_index=True)
    scalars = pd.concat(sca, ignore_index=True)
    results = order_columns(results, RESULTS_FRONT)
    scalars = scalars[["run"] + [c for c in scalars.columns if c != "run"]]
    return results, scalars


def parquet_ready(df: pd.DataFrame) -> pd.DataFrame:
    """Tuple columns (ranges) as lists of floats, so Parquet stores them natively."""
    df = df.copy()
    for col in df.columns:
        if df[col].dtype == object and df[col].map(lambda v: isinstance(v, tuple)).any():
            df[col] = df[col].map(lambda v: list(v) if isinstance(v, tuple) else v)
    return df



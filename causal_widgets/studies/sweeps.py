"""Run a study: every grid point trained and measured, on local processes or a Ray cluster.

>>> import causal_widgets as cw                                           # doctest: +SKIP
>>> data = cw.sweep(cw.preset("memorization", quick=True), "runs/mem")    # doctest: +SKIP
>>> data.results.groupby(["group", "layer", "metric"]).value.mean()       # doctest: +SKIP

Command line: ``python -m causal_widgets sweep study.toml --out DIR [--ray auto|ADDRESS]``
or ``--preset memorization|dropout|depth [--quick]``.

What lands in ``DIR``::

    study.toml, study.json   the study (a rerun with a different study into DIR is refused)
    results/run_id=<id>/part-0.parquet   the dataset: tidy measurements of one run
    scalars/run_id=<id>/part-0.parquet   its loss/accuracy at every epoch
    work/<id>/               checkpoint + dashboard history of a run (resume state)
    sweep_log.jsonl          one line per event: submitted, finished, failed, retried
    figures/                 the study's causal planes (mean +- spread over seeds)

Both datasets are hive-partitioned Parquet: ``pyarrow.dataset.dataset(DIR / "results",
partitioning="hive")`` or :func:`load_study` read them. Every row carries the run's
settings (``group``, ``dataset``, ``label_noise``, ...), so the dataset describes itself.

Guarantees
----------
* **Exactly once.** A run's partition appears only when the run is finished: it is written
  to a hidden folder and renamed into place (atomic). A second attempt that finishes the
  same run (a task the driver thought lost) finds the partition there and discards its
  copy.
* **Retries.** A run whose task raised or whose worker died (killed, out of memory, node
  lost) is resubmitted up to ``max_retries`` times; it resumes from its checkpoint.
* **Resume.** Rerunning the same study skips finished runs and resumes unfinished ones
  from their last checkpoint (training is deterministic given the checkpoint).
* **Ctrl-C** stops submitting, cancels what has not started and keeps everything finished.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from causal_widgets.engine.plane import plane_coords
from causal_widgets.live.executors import (
    Executor,
    ProcessExecutor,
    WorkerLost,
    get_executor,
    ray_lost,
)
from causal_widgets.studies.spec import Study, StudyError, preset

RESULTS, SCALARS, WORK = "results", "scalars", "work"


@dataclass
class StudyData:
    """A study's dataset in memory: ``points`` (one row per run, ``status`` "complete" or
    "missing"), ``results`` (tidy measurements) and ``scalars`` (loss/accuracy per epoch),
    each with ``run_id`` and ``group``; ``study`` the :class:`Study`; ``path`` the folder."""

    study: Study
    points: pd.DataFrame
    results: pd.DataFrame
    scalars: pd.DataFrame
    path: Path

    @property
    def complete(self) -> bool:
        return bool((self.points["status"] == "complete").all())

    def plane(self, metric: str = "ei") -> pd.DataFrame:
        """Causal-plane trajectories averaged over seeds: see :func:`plane_summary`."""
        return plane_summary(self.results, metric)

    def summary(self, epoch: int | None = None) -> pd.DataFrame:
        """Per (group, layer): mean and sd over the group's runs of every metric (bits) and
        of ``loss``/``test_accuracy`` at ``epoch`` (default: each run's last measured
        epoch). Columns ``group, layer, n, <metric>, <metric>_sd, ...``."""
        res = self.results
        if res.empty:
            return pd.DataFrame(columns=["group", "layer", "n"])
        if epoch is None:
            last = res.groupby("run_id")["epoch"].transform("max")
            res = res[res["epoch"] == last]
        else:
            res = res[res["epoch"] == int(epoch)]
        wide = res.pivot_table(index=["group", "run_id", "layer"], columns="metric",
                               values="value", aggfunc="first")
        extra = res.drop_duplicates(["run_id", "layer"]).set_index(
            ["group", "run_id", "layer"])[["loss", "test_accuracy"]]
        wide = wide.join(extra).reset_index()
        cols = [c for c in wide.columns if c not in ("group", "run_id", "layer")]
        g = wide.groupby(["group", "layer"], sort=False)
        out = g[cols].mean()
        sd = g[cols].std().fillna(0.0).add_suffix("_sd")
        out = out.join(sd)
        out.insert(0, "n", g["run_id"].nunique())
        order = [c for pair in zip(cols, [f"{c}_sd" for c in cols]) for c in pair]
        return out[["n", *order]].reset_index()

    def __repr__(self) -> str:
        done = int((self.points["status"] == "complete").sum())
        return (f"StudyData({self.study.name!r}: {done}/{len(self.points)} runs complete, "
                f"{len(self.results)} result rows, groups {sorted(self.points.group.unique())})")


def run_plane_coords(results: pd.DataFrame, metric: str = "ei") -> pd.DataFrame:
    """``run_id, group, layer, epoch, x, y``: every run's causal-plane points (bits).

    ``x = M / sqrt(2)``, ``y = (2 S - M) / sqrt(2)`` (M = EI or EI_parts, S = sensitivity),
    computed by :func:`causal_widgets.engine.plane.plane_coords` with the run id as the run.
    Points where either value is missing or not finite are left out; empty when the
    results lack ``metric`` or sensitivity. Sorted by group, run, layer, epoch.
    """
    cols = ["run_id", "group", "layer", "epoch", "x", "y"]
    need = {"run_id", "group", "layer", "epoch", "metric", "value"}
    if results is None or results.empty or not need <= set(results.columns):
        return pd.DataFrame(columns=cols)
    rows = results.loc[results["metric"].isin([metric, "sensitivity"])]
    if not {metric, "sensitivity"} <= set(rows["metric"]):
        return pd.DataFrame(columns=cols)
    # one row per (run, layer, epoch, metric): a re-measured point keeps its latest value
    rows = rows.drop_duplicates(["run_id", "layer", "epoch", "metric"], keep="last")
    coords = plane_coords(rows.assign(run=rows["run_id"].astype(str)), metric)
    first = rows.drop_duplicates("run_id")
    group_of = pd.Series(first["group"].astype(str).to_numpy(),
                         index=first["run_id"].astype(str).to_numpy())
    out = pd.DataFrame({
        "run_id": coords["run"].astype(str).to_numpy(),
        "group": coords["run"].astype(str).map(group_of).to_numpy(),
        "layer": coords["layer"].astype(str).to_numpy(),
        "epoch": coords["epoch"].astype(np.int64).to_numpy(),
        "x": coords["x"].to_numpy(dtype=np.float64),
        "y": coords["y"].to_numpy(dtype=np.float64),
    })
    out = out[np.isfinite(out["x"]) & np.isfinite(out["y"])]
    return out.sort_values(["group", "run_id", "layer", "epoch"], kind="stable").reset_index(
        drop=True)


def group_plane_means(coords: pd.DataFrame) -> pd.DataFrame:
    """Per (group, layer, epoch) of :func:`run_plane_coords`: ``n`` runs, mean ``x``/``y``,
    sample standard deviations ``x_sd``/``y_sd`` over the runs (0 for a single run)."""
    cols = ["group", "layer", "epoch", "n", "x", "y", "x_sd", "y_sd"]
    if coords.empty:
        return pd.DataFrame(columns=cols)
    g = coords.groupby(["group", "layer", "epoch"], sort=False)
    out = g.agg(n=("run_id", "nunique"), x=("x", "mean"), y=("y", "mean"),
                x_sd=("x", "std"), y_sd=("y", "std")).reset_index()
    out[["x_sd", "y_sd"]] = out[["x_sd", "y_sd"]].fillna(0.0)
    return out.sort_values(["group", "layer", "epoch"], kind="stable").reset_index(drop=True)


def plane_summary(results: pd.DataFrame, metric: str = "ei") -> pd.DataFrame:
    """Per (group, layer, epoch): the causal-plane point averaged over the group's runs.

    :func:`group_plane_means` of :func:`run_plane_coords` (columns ``group, layer, epoch,
    n, x, y, x_sd, y_sd``; bits), plus the means over the same runs of ``loss`` and
    ``test_accuracy`` at that epoch where present.
    """
    means = group_plane_means(run_plane_coords(results, metric))
    if means.empty:
        return means
    scal = (results.drop_duplicates(["run_id", "epoch"])
            .reindex(columns=["group", "epoch", "loss", "test_accuracy"])
            .groupby(["group", "epoch"])[["loss", "test_accuracy"]].mean())
    return means.join(scal, on=["group", "epoch"])


def _coerce_study(study: Study | str | os.PathLike, quick: bool | None) -> Study:
    if isinstance(study, Study):
        if quick is not None and quick != study.quick:
            study = Study(study.name, study.grid, study.settings, study.description,
                          quick=quick, source=study.source).validate()
        return study
    if isinstance(study, (str, os.PathLike)):
        return Study.from_toml(study, quick=bool(quick))
    raise TypeError(f"study must be a causal_widgets.Study or a path to a study TOML file; "
                    f"got {type(study).__name__}.")


def _check_study_dir(out: Path, study: Study) -> None:
    """Write ``study.json``/``study.toml``, or refuse a different study in ``out``."""
    path = out / "study.json"
    new = study.to_dict()
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        if json.dumps(old, sort_keys=True) != json.dumps(new, sort_keys=True):
            diff = [k for k in new if json.dumps(old.get(k), sort_keys=True)
                    != json.dumps(new[k], sort_keys=True)]
            raise StudyError(
                f"{out} holds another study (differs in: {', '.join(diff)}): rerun the same "
                "study to resume it, or pass a new --out directory."
            )
    from causal_widgets.files import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "study.json", json.dumps(new, indent=1))
    atomic_write_text(out / "study.toml", study.source or study.to_toml())


def _partition(out: Path, dataset: str, rid: str) -> Path:
    return out / dataset / f"run_id={rid}"


def finished_runs(out: str | os.PathLike) -> set[str]:
    """Run ids whose results partition exists (a finished run, see "Exactly once")."""
    root = Path(out) / RESULTS
    if not root.is_dir():
        return set()
    return {p.name.split("=", 1)[1] for p in root.iterdir()
            if p.is_dir() and p.name.startswith("run_id=")}


def _publish(out: Path, dataset: str, rid: str, frame: pd.DataFrame) -> bool:
    """Write ``frame`` as the run's partition atomically; False if it was already there."""
    final = _partition(out, dataset, rid)
    tmp = out / dataset / f".tmp-{rid}-{os.getpid()}-{time.monotonic_ns()}"
    tmp.mkdir(parents=True)
    frame.to_parquet(tmp / "part-0.parquet", index=False)
    try:
        os.rename(tmp, final)  # atomic; fails if another attempt published first
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    return True


def _point_columns(point: Mapping[str, Any]) -> dict[str, Any]:
    """The run's settings as flat columns (architecture as "4-5-5-3")."""
    cols = {k: v for k, v in point.items() if k != "run_id"}
    cols["layers"] = "-".join(map(str, point["layers"]))
    cols["ei_samples"] = -1 if point.get("ei_samples") is None else int(point["ei_samples"])
    cols.pop("data_dir", None)
    return cols


def run_point(point: Mapping[str, Any], out: str | os.PathLike, threads: int = 1
              ) -> dict[str, Any]:
    """Train and measure one grid point into ``out`` (runs inside a worker).

    Resumes from ``out/work/<run_id>/`` if an earlier attempt left a checkpoint; publishes
    the run's partitions when done. Returns a summary (``run_id, published, seconds, pid,
    rows``).
    """
    import torch

    from causal_widgets.training.loop import (
        Config,
        collect,
        load_dataset,
        parquet_ready,
        train_run,
    )

    torch.set_num_threads(int(threads))
    out = Path(out)
    rid = str(point["run_id"])
    if rid in finished_runs(out):
        return {"run_id": rid, "published": False, "seconds": 0.0, "pid": os.getpid(),
                "rows": 0, "skipped": True}
    work = out / WORK / rid
    work.mkdir(parents=True, exist_ok=True)
    (work / "worker.pid").write_text(f"{os.getpid()}\n", encoding="utf-8")
    t0 = time.perf_counter()
    cfg = Config(
        experiment=point["dataset"], sizes=list(point["layers"]),
        activation=point["activation"], epochs=int(point["epochs"]),
        every=int(point["every"]), runs=1, batch_size=int(point["batch_size"]),
        lr=float(point["lr"]), bins=int(point["bins"]), seed=int(point["seed"]),
        ei_samples=point.get("ei_samples"), quick=bool(point.get("quick", False)),
        data_dir=point.get("data_dir"), label_noise=float(point["label_noise"]),
        dropout=float(point["dropout"]),
    )
    ds = load_dataset(cfg)
    history = train_run(cfg, 0, ds, work, progress=False, log=lambda msg: None)
    results, scalars = collect([history])
    cols = _point_columns(point)
    results = parquet_ready(results.drop(columns=["run"]).assign(**cols))
    scalars = scalars.drop(columns=["run"]).assign(**cols)
    # scalars first: the results partition is the "finished" mark
    if _partition(out, SCALARS, rid).exists():
        shutil.rmtree(_partition(out, SCALARS, rid), ignore_errors=True)
    _publish(out, SCALARS, rid, scalars)
    published = _publish(out, RESULTS, rid, results)
    return {"run_id": rid, "published": published, "seconds": time.perf_counter() - t0,
            "pid": os.getpid(), "rows": len(results), "skipped": False}


class _Log:
    """Appends one JSON line per event to ``DIR/sweep_log.jsonl`` and prints a summary."""

    def __init__(self, path: Path, echo: Callable[[str], None]) -> None:
        self.path, self.echo = path, echo

    def __call__(self, event: str, message: str | None = None, **fields: Any) -> None:
        rec = {"time": time.time(), "event": event, **fields}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec, default=str) + "\n")
        if message:
            self.echo(message)


def _default_executor(spec: Any, workers: int | None, n_runs: int) -> tuple[Executor, bool]:
    if isinstance(spec, Executor):
        return spec, False
    if spec in ("local", "process", None):
        n = workers or max(1, min(os.cpu_count() or 1, n_runs))
        return ProcessExecutor(n), True
    return get_executor(spec, workers=workers), True


def sweep(
    study: Study | str | os.PathLike,
    out: str | os.PathLike,
    *,
    executor: Any = "local",
    workers: int | None = None,
    quick: bool | None = None,
    max_retries: int = 2,
    figures: bool = True,
    log: Callable[[str], None] = print,
) -> StudyData:
    """Train and measure every point of ``study`` into ``out``; returns the :class:`StudyData`.

    Parameters
    ----------
    study:
        a :class:`~causal_widgets.studies.spec.Study` (e.g. ``cw.preset("dropout")``) or the path of
        a study TOML file (see :mod:`causal_widgets.studies.spec`).
    out:
        the study's folder (see the module docstring for what lands there).
    executor:
        ``"local"`` (default: a pool of ``workers`` local processes, one torch thread each),
        ``"serial"`` (one after another in this process), ``"ray"`` or a
        :class:`~causal_widgets.live.executors.RayExecutor` (``address="auto"`` for a running
        cluster), or any :class:`~causal_widgets.live.executors.Executor`.
    workers:
        local processes (default: one per CPU, at most one per run).
    quick:
        use the quick schedule of each dataset (fewer epochs, sparser measurements).
    max_retries:
        how often a run that failed or whose worker died is resubmitted.

    Raises ``RuntimeError`` naming the runs that still failed after their retries (all
    others are finished and kept).

    The local pool starts its workers with ``spawn`` (safe with torch): from a notebook or
    the CLI nothing is needed; a *script* that calls ``sweep`` must do so under
    ``if __name__ == "__main__":``, as with any Python process pool.
    """
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries must be an int >= 0; got {max_retries!r}.")
    study = _coerce_study(study, quick)
    points = study.points()
    out = Path(out)
    _check_study_dir(out, study)
    record = _Log(out / "sweep_log.jsonl", log)
    done = finished_runs(out)
    todo = [p for p in points if p["run_id"] not in done]
    t0 = time.perf_counter()
    record("start", f"study {study.name!r}: {len(points)} runs, {len(points) - len(todo)} "
           f"already finished, {len(todo)} to run", runs=len(points), todo=len(todo))
    failures: dict[str, str] = {}
    if todo:
        ex, owned = _default_executor(executor, workers, len(todo))
        record("executor", f"running on {ex.describe()}", **ex.describe())
        interrupted = False
        try:
            failures = _Scheduler(ex, todo, out, max_retries, record).run()
        except KeyboardInterrupt:
            interrupted = True
            n = len(finished_runs(out) & {p["run_id"] for p in points})
            record("interrupted", f"interrupted: {n} of {len(points)} runs finished and kept; "
                   "rerun the same command to resume the others", finished=n)
            raise
        finally:
            if owned:
                ex.shutdown(wait=not interrupted, cancel=interrupted)
    record("end", f"study {study.name!r}: {len(points) - len(failures)} of {len(points)} runs "
           f"finished in {time.perf_counter() - t0:.1f} s", seconds=time.perf_counter() - t0,
           failed=sorted(failures))
    data = load_study(out)
    if figures and not data.results.empty:
        from causal_widgets.paper.figures import study_figures

        paths = study_figures(data, out / "figures")
        log(f"wrote {len(paths)} figure files to {out / 'figures'}")
    if failures:
        listed = "; ".join(f"{rid}: {err}" for rid, err in sorted(failures.items()))
        raise RuntimeError(
            f"{len(failures)} run(s) failed after {max_retries} retries ({listed}). The "
            f"finished runs are kept in {out}; fix the cause and rerun to finish the rest."
        )
    return data


class _Scheduler:
    """Keeps ``ex.workers`` runs in flight, retries failed or lost ones, stops on Ctrl-C."""

    def __init__(self, ex: Executor, todo: list[dict[str, Any]], out: Path,
                 max_retries: int, record: _Log) -> None:
        self.ex, self.out, self.max_retries, self.record = ex, out, max_retries, record
        self.waiting = list(todo)
        self.attempts: dict[str, int] = {}
        self.in_flight: dict[Any, dict[str, Any]] = {}
        self.failures: dict[str, str] = {}  # run_id -> last error, after all retries
        self.threads = getattr(ex, "threads_per_worker", 1)

    def run(self) -> dict[str, str]:
        import concurrent.futures as cf

        try:
            while self.waiting or self.in_flight:
                self._submit_more()
                done, _ = cf.wait(list(self.in_flight), return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    self._collect(fut, self.in_flight.pop(fut))
        except KeyboardInterrupt:
            # stop the running runs now (they resume from their checkpoints on a rerun)
            self.ex.abort(list(self.in_flight))
            raise
        return self.failures

    def _submit_more(self) -> None:
        while self.waiting and len(self.in_flight) < max(1, self.ex.workers):
            point = self.waiting.pop(0)
            rid = point["run_id"]
            self.attempts[rid] = self.attempts.get(rid, 0) + 1
            fut = self.ex.submit(run_point, point, str(self.out), self.threads)
            self.in_flight[fut] = point
            self.record("submitted", None, run_id=rid, attempt=self.attempts[rid])

    def _collect(self, fut: Any, point: dict[str, Any]) -> None:
        rid, attempt = point["run_id"], self.attempts[point["run_id"]]
        try:
            info = fut.result()
        except Exception as err:  # noqa: BLE001 - retried or reported
            lost = isinstance(err, WorkerLost) or ray_lost(err)
            why = f"{'worker lost' if lost else 'failed'}: {type(err).__name__}: {err}"
            if attempt <= self.max_retries:
                self.record("retry", f"run {rid} ({point['group']}, seed {point['seed']}) "
                            f"{why}; retrying (attempt {attempt + 1})",
                            run_id=rid, attempt=attempt, error=why, lost=lost)
                self.waiting.insert(0, point)
            else:
                self.failures[rid] = why
                self.record("failed", f"run {rid} {why}; giving up after {attempt} attempts",
                            run_id=rid, attempt=attempt, error=why)
            return
        self.record("finished", f"run {rid} ({point['group']}, seed {point['seed']}) done in "
                    f"{info['seconds']:.1f} s", attempt=attempt, **info)


def load_study(out: str | os.PathLike) -> StudyData:
    """Read a study folder written by :func:`sweep` (finished runs; missing ones listed)."""
    out = Path(out)
    if not (out / "study.json").is_file():
        raise FileNotFoundError(
            f"{str(out)!r} is not a study folder (no study.json): pass the --out folder of "
            "a `python -m causal_widgets sweep` run."
        )
    study = Study.from_dict(json.loads((out / "study.json").read_text(encoding="utf-8")))
    finished = finished_runs(out)
    rows = []
    for p in study.points(validate=False):
        row = _point_columns(p)
        row["run_id"] = p["run_id"]
        row["status"] = "complete" if p["run_id"] in finished else "missing"
        rows.append(row)
    points = pd.DataFrame(rows)
    front = ["run_id", "group", "seed", "status"]
    points = points[front + [c for c in points.columns if c not in front]]

    def read(dataset: str) -> pd.DataFrame:
        frames = []
        for rid in sorted(finished):
            part = _partition(out, dataset, rid)
            files = sorted(part.glob("*.parquet")) if part.is_dir() else []
            for f in files:
                frames.append(pd.read_parquet(f).assign(run_id=rid))
        if not frames:
            return pd.DataFrame(columns=["run_id", "group", "epoch"])
        df = pd.concat(frames, ignore_index=True)
        return df[["run_id"] + [c for c in df.columns if c != "run_id"]]

    return StudyData(study, points, read(RESULTS), read(SCALARS), out)


def study_from_args(study_file: str | None, preset_name: str | None, quick: bool) -> Study:
    """The CLI's study: a TOML file or a preset (exactly one)."""
    if (study_file is None) == (preset_name is None):
        raise StudyError("give a study file (study.toml) or --preset NAME, not both or neither.")
    if preset_name is not None:
        return preset(preset_name, quick=quick)
    return Study.from_toml(study_file, quick=quick)


__all__ = [
    "StudyData",
    "finished_runs",
    "group_plane_means",
    "load_study",
    "plane_summary",
    "run_plane_coords",
    "run_point",
    "sweep",
]

"""The measurement history of a training run, in memory and on disk (Parquet + JSON).

A :class:`History` collects, per measured ``(epoch, layer)``, the tidy rows of a
:class:`~causal_widgets.engine.layer_measure.LayerResult` (values in **bits**, with their 95 % CIs),
the layer's edge matrices (``EI_parts`` terms ``E[i, j] = I(X_i; Y_j)`` and sensitivity
terms ``S[i, j]``, bits, shape ``(n_in, n_out)``) and node contributions, plus the
scalars recorded at every epoch (loss, accuracy, ...; measured or not), errors, and the
epochs whose snapshots were dropped as stale, and the epochs still pending (recorded, not
measured yet; with the file of a snapshot spilled to disk).

Every method takes one lock, so the background :class:`~causal_widgets.live.monitor.Monitor`
worker can add results while the notebook (or the dashboard) reads them. Readers get
copies, never views of the internal state.

On disk a history is a directory::

    results.parquet    the tidy frame (one row per epoch, layer, metric) + recorded scalars
    scalars.parquet    epoch + scalars for every recorded epoch
    matrices.parquet   epoch, layer, kind ("ei_parts" | "sensitivity"), shape, values (flat,
                       row-major float64): one row per matrix, so a history with many
                       layers stays one file and loads column-wise
    nodes.parquet      epoch, layer + the LayerResult's node table (side, node, ei, ...)
    meta.json          format version, package version, settings, layers, errors, dropped,
                       pending (epoch + spilled snapshot file or null)

:meth:`History.save` writes into a temporary sibling directory and swaps it into place
with two renames, so a kill during a save leaves either the old or the new history (and
:meth:`History.load` recovers the old one from its backup name if the kill fell between
the renames). Finished measurements are therefore never lost by a save. For a resumable
run, :meth:`History.done` says which ``(epoch, layer)`` pairs are finished, and
:meth:`History.add_result` replaces an existing ``(epoch, layer)`` instead of duplicating
it, so rerunning an epoch after a resume is harmless.

Example
-------
>>> h = History()
>>> h.add_scalars(0, loss=1.25)
>>> h.scalars()["loss"].tolist()
[1.25]
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from causal_widgets.checks import is_int

# the columns of the tidy frame, in order: the schema's one owner is engine.tidy
from causal_widgets.engine.tidy import TIDY_COLUMNS, status_from_method
from causal_widgets.jsonable import to_jsonable

FORMAT_VERSION = 1

MATRIX_KINDS = ("ei_parts", "sensitivity")
_BACKUP_SUFFIX = ".cw-old"
_TMP_PREFIX = ".cw-tmp-"


def _package_version() -> str:
    from causal_widgets import __version__

    return __version__


# what the writer before to_jsonable put in meta.json for non-finite floats (str(float))
_OLD_NON_FINITE = frozenset({"nan", "inf", "-inf"})


def _read_old_settings(value: Any) -> Any:
    """Saved settings as :func:`to_jsonable` writes them now: files written before it hold
    a non-finite float as the string ``"nan"``/``"inf"``/``"-inf"``, read as ``None`` like
    a NaN saved today. Only the settings are read this way, the one free-form numeric
    part of ``meta.json`` (layer names and error messages are text and stay as written).
    """
    if isinstance(value, str):
        return None if value in _OLD_NON_FINITE else value
    if isinstance(value, dict):
        return {k: _read_old_settings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_read_old_settings(v) for v in value]
    return value


def _check_epoch(epoch: Any) -> int:
    if not is_int(epoch):
        raise TypeError(f"epoch must be an int (the training epoch or step); got {epoch!r}.")
    return int(epoch)


def _check_scalars(scalars: Mapping[str, Any]) -> dict[str, float]:
    """Scalars as floats; a tensor/array of one element is accepted (``loss.item()`` done here)."""
    out: dict[str, float] = {}
    for key, value in scalars.items():
        if key == "epoch" or key in TIDY_COLUMNS:
            raise ValueError(
                f"scalar name {key!r} clashes with a column of the results table: "
                f"rename it (e.g. {key + '_'!r})."
            )
        out[str(key)] = _scalar(key, value)
    return out


def _scalar(key: str, value: Any) -> float:
    """One recorded scalar as a float, or a ``TypeError`` naming ``key`` and the fix."""
    if isinstance(value, (str, bytes)):
        raise TypeError(
            f"scalar {key!r} must be a number; got the text {value!r}: pass the number "
            f"itself (e.g. {key}={key}.item() for a one-element tensor)."
        )
    shape = getattr(value, "shape", None)
    if shape is not None and math.prod(tuple(shape)) != 1:
        # a batch of values (per-class accuracy, per-sample loss): one number per name
        raise TypeError(
            f"scalar {key!r} must be one number; got a {type(value).__name__} of shape "
            f"{tuple(shape)} ({math.prod(tuple(shape))} elements): reduce it first, e.g. "
            f"{key}={key}.mean().item(), or record each element under its own name "
            f"({key}_0=..., {key}_1=...)."
        )
    try:
        if hasattr(value, "item"):
            value = value.item()
        return float(value)
    except (TypeError, ValueError, RuntimeError, NotImplementedError) as err:
        raise TypeError(
            f"scalar {key!r} must be a number (e.g. {key}={key}.item()); got {value!r} "
            f"({type(err).__name__}: {err})."
        ) from err


def _is_seq(v: Any) -> bool:
    return isinstance(v, (tuple, list, np.ndarray))


class History:
    """Thread-safe store of everything a monitored training run measured.

    Parameters
    ----------
    settings:
        free-form measurement settings (bins, method, every, ...) saved in ``meta.json``.
    """

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        self._lock = threading.RLock()
        self._results: dict[tuple[int, str], pd.DataFrame] = {}
        # epochs with at least one result (results are only ever added or replaced); kept
        # so record() -> add_scalars need not scan every result on long runs
        self._measured_epochs: set[int] = set()
        self._matrices: dict[tuple[int, str], dict[str, Any]] = {}
        self._scalars: dict[int, dict[str, float]] = {}
        self._layers: list[dict[str, Any]] = []
        self._errors: list[dict[str, Any]] = []
        self._dropped: list[int] = []
        # recorded epochs whose snapshot is not measured yet: epoch -> the file the snapshot
        # was spilled to (a path string) or None (it is in memory, or was lost at a close)
        self._pending: dict[int, str | None] = {}
        self.settings: dict[str, Any] = dict(settings or {})
        self._revision = 0
        # results_revision moves only when results, errors, drops or layers change (not on
        # every epoch's loss), so readers can skip rebuilding result-derived views
        self._results_revision = 0
        self._results_cache: tuple[int, pd.DataFrame] | None = None
        self._tuple_columns: set[str] = set()

    # ------------------------------------------------------------------ mutation
    def _touch(self, results: bool = True) -> None:
        self._revision += 1
        if results:
            self._results_revision += 1

    def add_result(
        self,
        epoch: int,
        layer_name: str,
        result: Any,
        scalars: Mapping[str, Any] | None = None,
    ) -> None:
        """Record one layer's measurement at ``epoch`` (replacing an earlier one for the pair).

        ``result`` is a :class:`~causal_widgets.engine.layer_measure.LayerResult` (anything with
        ``to_frame()``, and optionally ``ei_parts_matrix``, ``sensitivity_matrix`` and
        ``nodes``). Its rows get ``layer = layer_name``; ``scalars`` (loss, ...) are
        recorded for the epoch as by :meth:`add_scalars`.
        """
        epoch = _check_epoch(epoch)
        layer_name = str(layer_name)
        if not hasattr(result, "to_frame"):
            raise TypeError(
                f"result must be a LayerResult (with to_frame()); got {type(result).__name__}: "
                "pass what causal_widgets.measure_layer returned."
            )
        rows = pd.DataFrame(result.to_frame()).copy()
        for col in TIDY_COLUMNS:
            if col not in rows.columns:
                rows[col] = None
        rows["layer"] = layer_name
        rows = rows.drop(columns=[c for c in ("epoch",) if c in rows.columns])
        mats: dict[str, Any] = {}
        for kind in MATRIX_KINDS:
            m = getattr(result, f"{kind}_matrix", None)
            mats[kind] = None if m is None else np.array(m, dtype=np.float64, copy=True)
        nodes = getattr(result, "nodes", None)
        mats["nodes"] = None if nodes is None else pd.DataFrame(nodes).reset_index(drop=True)
        clean = _check_scalars(scalars or {})
        with self._lock:
            self._results[(epoch, layer_name)] = rows
            self._measured_epochs.add(epoch)
            self._matrices[(epoch, layer_name)] = mats
            self._scalars.setdefault(epoch, {}).update(clean)
            self._touch()

    def add_scalars(self, epoch: int, **scalars: Any) -> None:
        """Record scalars (``loss=0.3, accuracy=0.9``) for ``epoch``; later values win per name.

        An epoch recorded with no scalars still appears in :meth:`scalars`.
        """
        epoch = _check_epoch(epoch)
        clean = _check_scalars(scalars)
        with self._lock:
            self._scalars.setdefault(epoch, {}).update(clean)
            # the tidy frame carries scalars only on measured epochs
            self._touch(results=epoch in self._measured_epochs)

    def add_error(self, epoch: int | None, layer: str | None, message: str) -> None:
        """Record that measuring ``layer`` at ``epoch`` failed (``layer=None``: the whole model)."""
        entry = {
            "epoch": None if epoch is None else _check_epoch(epoch),
            "layer": None if layer is None else str(layer),
            "message": str(message),
        }
        with self._lock:
            self._errors.append(entry)
            self._touch()

    def add_dropped(self, epoch: int) -> None:
        """Record that the snapshot of ``epoch`` was dropped unmeasured (it went stale)."""
        epoch = _check_epoch(epoch)
        with self._lock:
            self._dropped.append(epoch)
            self._touch()

    def add_pending(self, epoch: int, spilled: str | os.PathLike | None = None) -> None:
        """Record that the snapshot of ``epoch`` waits to be measured (``spilled``: the file
        it was saved to, when it is not kept in memory)."""
        epoch = _check_epoch(epoch)
        with self._lock:
            self._pending[epoch] = None if spilled is None else str(spilled)
            # not a result: the dashboard's status line moves, its plane does not
            self._touch(results=False)

    def remove_pending(self, epoch: int) -> None:
        """The snapshot of ``epoch`` is no longer waiting (measured, failed or dropped)."""
        with self._lock:
            if self._pending.pop(int(epoch), False) is not False:
                self._touch(results=False)

    def set_layers(self, layers: Iterable[Mapping[str, Any]]) -> None:
        """Set the measured layers: dicts with at least ``name, n_in, n_out, kind``."""
        clean = []
        for d in layers:
            missing = {"name", "n_in", "n_out", "kind"} - set(d)
            if missing:
                raise ValueError(
                    f"layer description {dict(d)!r} lacks {sorted(missing)}: give dicts "
                    "with name, n_in, n_out and kind."
                )
            clean.append(to_jsonable(dict(d)))
        with self._lock:
            self._layers = clean
            self._touch()

    # ------------------------------------------------------------------ reading
    @property
    def revision(self) -> int:
        """A counter that grows with every change (cheap "did anything land?" check)."""
        with self._lock:
            return self._revision

    @property
    def results_revision(self) -> int:
        """Like :attr:`revision`, but only results, errors, drops and layers move it."""
        with self._lock:
            return self._results_revision

    def frame(self) -> pd.DataFrame:
        """The tidy results: one row per (epoch, layer, metric) + the epoch's recorded scalars.

        Columns: ``epoch`` then ``layer, metric, value, ci_low, ci_high, status, method,
        samples, in_bins, out_bins, in_range, out_range, seed, version`` (rows of histories
        written before ``status`` existed get it from ``method``; any further columns
        the results carry), then one column per recorded scalar. Sorted by epoch, then in
        the order the layers were measured.
        """
        with self._lock:
            cache = self._results_cache
            if cache is not None and cache[0] == self._results_revision:
                parts = None
            else:
                keys = sorted(self._results, key=lambda k: k[0])  # stable: keeps layer order
                parts = [self._results[k].assign(epoch=k[0]) for k in keys]
            revision = self._results_revision
            scalars = self._scalars_frame_locked()
        if parts is None:
            # concatenating thousands of small frames dominates on long runs: reuse it
            df = cache[1].copy()
        elif parts:
            df = pd.concat(parts, ignore_index=True)
            with self._lock:
                self._results_cache = (revision, df.copy())
        else:
            df = pd.DataFrame({c: pd.Series(dtype=object) for c in TIDY_COLUMNS})
            df["epoch"] = pd.Series(dtype="int64")
        for col in TIDY_COLUMNS:  # rows of earlier versions lack the newer columns
            if col not in df.columns:
                df[col] = None
        df["status"] = df["status"].astype(object)  # as method: plain str, however read
        unknown = df["status"].isna()
        if unknown.any():  # written before statuses existed: exact or estimate
            df.loc[unknown, "status"] = df.loc[unknown, "method"].map(status_from_method)
        cols = ["epoch"] + TIDY_COLUMNS + [c for c in df.columns if c not in TIDY_COLUMNS
                                          and c != "epoch"]
        df = df[cols]
        if len(scalars.columns) > 1:
            df = df.merge(scalars, on="epoch", how="left")
        return df.reset_index(drop=True)

    def _scalars_frame_locked(self) -> pd.DataFrame:
        epochs = sorted(self._scalars)
        names: list[str] = []
        for e in epochs:
            names += [k for k in self._scalars[e] if k not in names]
        data: dict[str, Any] = {"epoch": pd.Series(epochs, dtype="int64")}
        for name in names:
            data[name] = pd.Series(
                [self._scalars[e].get(name, np.nan) for e in epochs], dtype="float64"
            )
        return pd.DataFrame(data)

    def scalars(self) -> pd.DataFrame:
        """``epoch`` + one float column per scalar, for every recorded epoch (sorted)."""
        with self._lock:
            return self._scalars_frame_locked()

    def matrix(self, epoch: int, layer: str) -> dict[str, Any] | None:
        """The layer's matrices at ``epoch``: ``ei_parts``, ``sensitivity`` ((n_in, n_out) bits
        or ``None``) and ``nodes`` (DataFrame or ``None``); ``None`` if not measured."""
        with self._lock:
            m = self._matrices.get((int(epoch), str(layer)))
            if m is None:
                return None
            return {
                k: (None if v is None else v.copy()) for k, v in m.items()
            }

    def layers(self) -> list[dict[str, Any]]:
        """The measured layers (``name, n_in, n_out, kind`` + extras), in network order."""
        with self._lock:
            return [dict(d) for d in self._layers]

    def errors(self) -> list[dict[str, Any]]:
        """Every error so far: dicts ``epoch, layer, message`` in the order they happened."""
        with self._lock:
            return [dict(d) for d in self._errors]

    def dropped(self) -> list[int]:
        """Epochs whose snapshots were dropped unmeasured (stale), in the order dropped."""
        with self._lock:
            return list(self._dropped)

    def pending(self) -> list[int]:
        """Sorted epochs recorded for measurement whose snapshot is not measured yet."""
        with self._lock:
            return sorted(self._pending)

    def spilled(self) -> dict[int, str]:
        """``epoch -> file`` of the pending snapshots saved to disk (a backlog that a new
        Monitor with ``history=History.load(path)`` can finish)."""
        with self._lock:
            return {e: p for e, p in sorted(self._pending.items()) if p is not None}

    def epochs(self) -> list[int]:
        """Sorted epochs with at least one measured layer."""
        with self._lock:
            return sorted(self._measured_epochs)

    def done(self) -> set[tuple[int, str]]:
        """The finished ``(epoch, layer)`` pairs (what a resumed run can skip)."""
        with self._lock:
            return set(self._results)

    def is_done(self, epoch: int, layers: Iterable[str] | None = None) -> bool:
        """Whether every layer in ``layers`` (default: :meth:`layers`) is measured at ``epoch``."""
        with self._lock:
            names = [d["name"] for d in self._layers] if layers is None else list(layers)
            return bool(names) and all((int(epoch), str(n)) in self._results for n in names)

    def __len__(self) -> int:
        with self._lock:
            return len(self._results)

    def __repr__(self) -> str:
        with self._lock:
            return (
                f"History({len(self._layers)} layers, {len(self.epochs())} measured epochs, "
                f"{len(self._scalars)} recorded, {len(self._errors)} errors, "
                f"{len(self._dropped)} dropped, {len(self._pending)} pending)"
            )

    # ------------------------------------------------------------------ disk
    def save(self, path: str | os.PathLike) -> Path:
        """Write the history to directory ``path`` (created or replaced atomically-ish).

        Returns the path. See the module docstring for the layout.
        """
        path = Path(path)
        with self._lock:
            frame = self.frame()
            scalars = self._scalars_frame_locked()
            mats = [(k, dict(v)) for k, v in sorted(self._matrices.items(), key=lambda kv:
                                                    kv[0][0])]
            meta = {
                "format": "causal_widgets.History",
                "format_version": FORMAT_VERSION,
                "version": _package_version(),
                "settings": to_jsonable(self.settings),
                "layers": to_jsonable(self._layers),
                "errors": to_jsonable(self._errors),
                "dropped": list(self._dropped),
                "pending": [{"epoch": e, "spilled": p} for e, p in sorted(self._pending.items())],
                "layer_order": [k[1] for k in self._results],
            }
        parent = path.parent
        tmp: Path | None = None
        try:
            parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX + path.name + "-", dir=parent))
            frame, tuple_cols = _encode_sequences(frame)
            meta["tuple_columns"] = tuple_cols
            frame.to_parquet(tmp / "results.parquet", index=False)
            scalars.to_parquet(tmp / "scalars.parquet", index=False)
            matrices = _matrices_table(mats)
            pq.write_table(matrices, tmp / "matrices.parquet")
            nodes = _nodes_frame(mats)
            nodes.to_parquet(tmp / "nodes.parquet", index=False)
            # what load() checks the files against: a truncated or swapped file is refused
            # instead of loading as a shorter history
            rows = {"results.parquet": len(frame), "scalars.parquet": len(scalars),
                    "matrices.parquet": matrices.num_rows, "nodes.parquet": len(nodes)}
            meta["files"] = {name: {"rows": int(n), "sha256": _sha256(tmp / name)}
                             for name, n in rows.items()}
            with open(tmp / "meta.json", "w", encoding="utf-8") as fh:
                json.dump(meta, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            _swap_into_place(tmp, path)
        except OSError as err:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            # the error names the temporary sibling (or the parent); the caller asked for
            # ``path``: say that, keeping the class (PermissionError stays PermissionError)
            raise type(err)(
                f"could not save the history to {str(path)!r}: "
                f"{err.strerror or err}. History.save writes a temporary folder next to "
                f"it first, so {str(parent)!r} must be a folder you can write to; pass a "
                "path there (e.g. runs/history)."
            ) from err
        except BaseException:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> History:
        """Read a history written by :meth:`save`.

        Raises ``FileNotFoundError`` naming the path when there is no history there and
        ``ValueError`` when the directory is not a history (missing/unreadable files).
        """
        path = Path(path)
        if not path.exists():
            backup = path.with_name(path.name + _BACKUP_SUFFIX)
            if (backup / "meta.json").exists():
                # a kill between save()'s two renames: the previous complete history survives
                warnings.warn(
                    f"{path} is missing but its backup {backup} exists (a save was "
                    "interrupted); loading the backup.",
                    stacklevel=2,
                )
                path = backup
            else:
                raise FileNotFoundError(
                    f"no saved history at {str(path)!r}: pass the directory that "
                    "History.save() / CausalDashboard.save() wrote (it holds meta.json)."
                )
        if not path.is_dir() or not (path / "meta.json").exists():
            raise ValueError(
                f"{str(path)!r} is not a saved history (no meta.json inside): pass the "
                "directory that History.save() wrote."
            )
        try:
            with open(path / "meta.json", encoding="utf-8") as fh:
                meta = json.load(fh)
            if meta.get("format") != "causal_widgets.History":
                raise ValueError("meta.json is not a causal_widgets history")
            if int(meta.get("format_version", 0)) > FORMAT_VERSION:
                raise ValueError(
                    f"format version {meta.get('format_version')} is newer than this "
                    f"causal_widgets understands ({FORMAT_VERSION}): upgrade causal_widgets"
                )
            tables = {name: pd.read_parquet(path / name) for name in HISTORY_FILES}
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as err:
            raise ValueError(
                f"could not read the history at {str(path)!r}: {err}. The directory is "
                "damaged or not written by History.save()."
            ) from err
        # one place checks what was read: columns, dtypes, row counts, checksums
        tables = check_history_files(path, meta, tables)
        results, scalars = tables["results.parquet"], tables["scalars.parquet"]
        matrices, nodes = tables["matrices.parquet"], tables["nodes.parquet"]

        h = cls(settings=_read_old_settings(meta.get("settings") or {}))
        h._layers = list(meta.get("layers") or [])
        h._errors = list(meta.get("errors") or [])
        h._dropped = [int(e) for e in meta.get("dropped") or []]
        # histories saved before pending epochs were kept have none
        h._pending = {int(d["epoch"]): (None if d.get("spilled") is None else str(d["spilled"]))
                      for d in meta.get("pending") or []}
        results = _decode_sequences(results, meta.get("tuple_columns") or [])
        scalar_names = [c for c in scalars.columns if c != "epoch"]
        for row in scalars.itertuples(index=False):
            d = row._asdict()
            h._scalars[int(d["epoch"])] = {
                k: float(d[k]) for k in scalar_names if not pd.isna(d[k])
            }
        # results.parquet carries the scalars joined in; the per-pair rows do not
        drop = [c for c in scalar_names if c in results.columns]
        order = meta.get("layer_order") or []
        rank = {name: i for i, name in enumerate(dict.fromkeys(order))}
        # drop columns once, then slice rows per pair (dropping per group is 10x slower)
        body = results.drop(columns=["epoch"] + drop)
        groups = {
            (int(e), str(lay)): body.iloc[idx].reset_index(drop=True)
            for (e, lay), idx in results.groupby(["epoch", "layer"], sort=False).indices.items()
        }
        for key in sorted(groups, key=lambda k: (k[0], rank.get(k[1], len(rank)))):
            h._results[key] = groups[key]
            h._measured_epochs.add(key[0])
            h._matrices[key] = {"ei_parts": None, "sensitivity": None, "nodes": None}
        for row in matrices.itertuples(index=False):
            key = (int(row.epoch), str(row.layer))
            shape = tuple(int(s) for s in row.shape)
            arr = np.asarray(row.values, dtype=np.float64).reshape(shape)
            h._matrices.setdefault(key, {"ei_parts": None, "sensitivity": None, "nodes": None})
            h._matrices[key][str(row.kind)] = arr
        if len(nodes):
            node_body = nodes.drop(columns=["epoch", "layer"])
            for (e, lay), idx in nodes.groupby(["epoch", "layer"], sort=False).indices.items():
                key = (int(e), str(lay))
                h._matrices.setdefault(
                    key, {"ei_parts": None, "sensitivity": None, "nodes": None}
                )
                h._matrices[key]["nodes"] = node_body.iloc[idx].reset_index(drop=True)
        return h

    @classmethod
    def open(cls, path: str | os.PathLike, settings: Mapping[str, Any] | None = None) -> History:
        """Load the history at ``path`` if one is there, else a new empty one (for resuming)."""
        p = Path(path)
        if p.exists() or p.with_name(p.name + _BACKUP_SUFFIX).exists():
            return cls.load(p)
        return cls(settings=settings)


# ---------------------------------------------------------------------- checking a load
#: the files of a saved history (besides meta.json), in the order save() writes them
HISTORY_FILES = ("results.parquet", "scalars.parquet", "matrices.parquet", "nodes.parquet")

#: per file, the columns a history needs and what each holds: "int" (no missing values),
#: "text", "number" (missing allowed: NaN / None), "list" (a list per row). Columns not
#: named here are free (a result's extra columns, node metrics), except that every
#: scalar column (in scalars.parquet, and joined into results.parquet) is a "number".
HISTORY_SCHEMA: dict[str, dict[str, str]] = {
    "results.parquet": {"epoch": "int", "layer": "text", "metric": "text", "value": "number"},
    "scalars.parquet": {"epoch": "int"},
    "matrices.parquet": {"epoch": "int", "layer": "text", "kind": "text", "shape": "list",
                         "values": "list"},
    "nodes.parquet": {"epoch": "int", "layer": "text"},
}
# typed when present (histories of every version have them, but only these are read)
_OPTIONAL_NUMBERS = ("ci_low", "ci_high")

_KIND_WORDS = {"int": "integers", "text": "text", "number": "numbers",
               "list": "a list per row"}


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _column_problem(col: pd.Series, kind: str) -> str | None:
    """What is wrong with ``col`` for ``kind`` (see HISTORY_SCHEMA), or None."""
    if len(col) == 0:
        return None  # an empty table's columns carry no values to be wrong
    inferred = pd.api.types.infer_dtype(col, skipna=True)
    if kind == "int":
        if col.isna().any():
            return f"{int(col.isna().sum())} missing value(s)"
        ok = pd.api.types.is_integer_dtype(col) and not pd.api.types.is_bool_dtype(col)
        return None if ok else f"{inferred} values (dtype {col.dtype})"
    if kind == "text":
        if col.isna().any():
            return f"{int(col.isna().sum())} missing value(s)"
        return None if inferred == "string" else f"{inferred} values (dtype {col.dtype})"
    if kind == "number":
        if pd.api.types.is_bool_dtype(col):
            return f"booleans (dtype {col.dtype})"
        if pd.api.types.is_numeric_dtype(col) or inferred == "empty":
            return None
        ok = inferred in ("floating", "integer", "mixed-integer-float", "decimal")
        return None if ok else f"{inferred} values (dtype {col.dtype})"
    bad = [v for v in col if not isinstance(v, (list, tuple, np.ndarray))]
    return None if not bad else f"{type(bad[0]).__name__} values such as {bad[0]!r}"


def check_history_files(
    path: Path, meta: Mapping[str, Any], tables: Mapping[str, pd.DataFrame]
) -> dict[str, pd.DataFrame]:
    """The one check of a loaded history: every file's columns and their dtypes
    (:data:`HISTORY_SCHEMA`), each matrix's size against its shape, and, where meta.json
    records them (histories saved since they were added), each file's row count and
    SHA-256. Raises ``ValueError`` naming the file, the column or row, what is wrong and
    what to do; returns the tables with numeric columns as float64.
    """
    redo = ("re-save the history from its run (History.save / CausalDashboard.save) or "
            "load an intact copy")
    scalar_names = [c for c in tables["scalars.parquet"].columns if c != "epoch"]
    out: dict[str, pd.DataFrame] = {}
    for name in HISTORY_FILES:
        df = tables[name]
        where = str(path / name)
        schema = dict(HISTORY_SCHEMA[name])
        if name in ("results.parquet", "scalars.parquet"):
            schema.update({c: "number" for c in scalar_names if c in df.columns})
        if name == "results.parquet":
            schema.update({c: "number" for c in _OPTIONAL_NUMBERS if c in df.columns})
        missing = [c for c in HISTORY_SCHEMA[name] if c not in df.columns]
        if missing and not (name == "nodes.parquet" and len(df) == 0):
            raise ValueError(
                f"{where}: column{'s' if len(missing) > 1 else ''} "
                f"{', '.join(map(repr, missing))} missing (it has "
                f"{', '.join(map(repr, df.columns)) or 'no columns'}): the file was not "
                f"written by History.save() or was changed since; {redo}."
            )
        for col, kind in schema.items():
            if col not in df.columns:
                continue
            problem = _column_problem(df[col], kind)
            if problem is not None:
                raise ValueError(
                    f"{where}: column {col!r} must hold {_KIND_WORDS[kind]} but holds "
                    f"{problem}: the file was changed after saving or not written by "
                    f"History.save(); {redo}."
                )
        recorded = (meta.get("files") or {}).get(name)
        if recorded is not None:
            if int(recorded.get("rows", len(df))) != len(df):
                rows = int(recorded["rows"])
                what = "rows are missing" if len(df) < rows else "rows were added"
                raise ValueError(
                    f"{where} has {len(df)} rows but meta.json records {rows}: {what} "
                    f"(the file was truncated or replaced after History.save wrote it); "
                    f"{redo}."
                )
            digest = recorded.get("sha256")
            if digest is not None and _sha256(path / name) != digest:
                raise ValueError(
                    f"{where} does not match the SHA-256 meta.json records for it: the "
                    f"file changed after History.save wrote it; {redo}. If you edited it "
                    "on purpose, delete its entry under \"files\" in meta.json to load it "
                    "unchecked."
                )
        df = df.copy()
        for col, kind in schema.items():
            if kind == "number" and col in df.columns:
                df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
        out[name] = df
    for row in out["matrices.parquet"].itertuples(index=False):
        at = f"{path / 'matrices.parquet'} (epoch {row.epoch}, layer {row.layer!r})"
        if row.kind not in MATRIX_KINDS:
            raise ValueError(
                f"{at}: kind {row.kind!r} is not one of {', '.join(map(repr, MATRIX_KINDS))}; "
                f"{redo}."
            )
        shape = [int(s) for s in row.shape]
        if math.prod(shape) != len(row.values):
            raise ValueError(
                f"{at}: the {row.kind} matrix has {len(row.values)} values but shape "
                f"{tuple(shape)} needs {math.prod(shape)}; {redo}."
            )
    return out


# ---------------------------------------------------------------------- helpers
def _swap_into_place(tmp: Path, path: Path) -> None:
    """Replace directory ``path`` by ``tmp`` with renames (old kept as a backup until done)."""
    backup = path.with_name(path.name + _BACKUP_SUFFIX)
    if backup.exists():
        if path.exists():
            shutil.rmtree(backup)  # leftover of an earlier interrupted save; path is newer
        else:
            # path missing, backup present: the backup is the latest complete history; it is
            # superseded now that tmp holds a complete one
            shutil.rmtree(backup)
    if path.exists():
        if not path.is_dir():
            raise ValueError(
                f"{str(path)!r} exists and is not a directory: choose another path for the "
                "history (it is saved as a directory)."
            )
        if any(path.iterdir()) and not (path / "meta.json").exists():
            # never delete a directory we did not write
            raise ValueError(
                f"{str(path)!r} is a non-empty directory that is not a saved history: "
                "choose a new or empty path."
            )
        os.replace(path, backup)
        os.replace(tmp, path)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        os.replace(tmp, path)


def _encode_sequences(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Object columns of tuples (ranges) -> lists of floats, so Parquet stores them natively."""
    df = df.copy()
    cols = []
    for col in df.columns:
        if df[col].dtype != object:
            continue
        vals = df[col].tolist()
        present = [v for v in vals if v is not None and not (isinstance(v, float) and
                                                             math.isnan(v))]
        if present and all(_is_seq(v) for v in present):
            try:
                df[col] = [None if not _is_seq(v) else [float(x) for x in v] for v in vals]
                cols.append(col)
                continue
            except (TypeError, ValueError):
                pass
        if present and not all(isinstance(v, (str, int, float, bool, np.number))
                               for v in present):
            df[col] = [None if v is None else str(v) for v in vals]
        elif present and len({type(v) for v in present}) > 1:
            # mixed numbers and strings: Parquet needs one type per column
            df[col] = [None if v is None else str(v) for v in vals]
    return df, cols


def _decode_sequences(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    for col in cols:
        if col in df.columns:
            df[col] = [None if v is None else tuple(float(x) for x in v) for v in df[col]]
    return df


def _matrices_table(mats: list[tuple[tuple[int, str], dict[str, Any]]]) -> pa.Table:
    rows: dict[str, list] = {"epoch": [], "layer": [], "kind": [], "shape": [], "values": []}
    for (epoch, layer), m in mats:
        for kind in MATRIX_KINDS:
            arr = m.get(kind)
            if arr is None:
                continue
            rows["epoch"].append(epoch)
            rows["layer"].append(layer)
            rows["kind"].append(kind)
            rows["shape"].append([int(s) for s in arr.shape])
            rows["values"].append(np.ascontiguousarray(arr, dtype=np.float64).ravel())
    return pa.table(
        {
            "epoch": pa.array(rows["epoch"], type=pa.int64()),
            "layer": pa.array(rows["layer"], type=pa.string()),
            "kind": pa.array(rows["kind"], type=pa.string()),
            "shape": pa.array(rows["shape"], type=pa.list_(pa.int64())),
            "values": pa.array(rows["values"], type=pa.list_(pa.float64())),
        }
    )


def _nodes_frame(mats: list[tuple[tuple[int, str], dict[str, Any]]]) -> pd.DataFrame:
    parts = []
    for (epoch, layer), m in mats:
        nodes = m.get("nodes")
        if nodes is None or len(nodes) == 0:
            continue
        parts.append(nodes.assign(epoch=epoch, layer=layer))
    if not parts:
        return pd.DataFrame(
            {"epoch": pd.Series(dtype="int64"), "layer": pd.Series(dtype=object)}
        )
    df = pd.concat(parts, ignore_index=True)
    front = ["epoch", "layer"]
    df = df[front + [c for c in df.columns if c not in front]]
    df, _ = _encode_sequences(df)
    return df

"""Measure a folder of saved ``state_dict`` checkpoints after training (post-hoc analysis).

The field's usual pattern (and the paper's own ``run.py``): save checkpoints while
training, measure them afterwards. :func:`analyze_checkpoints` (and the CLI,
``python -m causal_widgets analyze CHECKPOINTS --model module:factory --example-input
SHAPE_OR_FILE --out DIR``) loads each checkpoint into the model the factory builds,
measures its layers exactly as the live :class:`~causal_widgets.live.monitor.Monitor` does
(:func:`~causal_widgets.live.monitor.measure_snapshot_task`, the same code path) and writes
the results into the :class:`~causal_widgets.live.store.History` at ``out``: the same
history ``CausalDashboard.load(out)`` opens and scrubs.

* **Epochs** come from the file names: by default the last integer in the name
  (``epoch_012.pt`` -> 12); ``pattern="ckpt-{epoch}.pth"`` (``*`` matches anything,
  ``{epoch}`` the epoch's digits) picks the files and where the epoch is.
* **Resumable**: the history is saved (atomically) after every checkpoint; a rerun after a
  kill skips the epochs whose every layer is measured and redoes the one cut short, so no
  row is missing or duplicated (a result replaces its ``(epoch, layer)``). A rerun with
  other measurement settings is refused instead of mixing them.
* **Checkpoints** are ``torch.save``'d state_dicts, or dicts holding one under
  ``state_dict`` / ``model_state_dict`` / ``model`` (Lightning-style); read with
  ``weights_only=True`` (tensors only, no code from the file runs).
"""

from __future__ import annotations

import concurrent.futures as cf
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from causal_widgets.jsonable import to_jsonable
from causal_widgets.live.executors import get_executor
from causal_widgets.live.store import History

#: file endings taken as checkpoints when no pattern is given
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
#: keys under which a checkpoint dict may hold the model's state_dict
_STATE_KEYS = ("state_dict", "model_state_dict", "model")


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    if pattern.count("{epoch}") != 1:
        raise ValueError(
            f"pattern={pattern!r} must contain {{epoch}} once, where the epoch's digits are "
            "in the file name, e.g. pattern='epoch_{epoch}.pt' or 'ckpt-*-{epoch}.pth'."
        )
    parts = [re.escape(p).replace(r"\*", ".*") for p in pattern.split("{epoch}")]
    return re.compile(parts[0] + r"(\d+)" + parts[1] + r"\Z")


def find_checkpoints(folder: str | Path, pattern: str | None = None) -> dict[int, Path]:
    """``epoch -> file`` of the checkpoints in ``folder`` (sorted by epoch).

    Raises ``FileNotFoundError`` when ``folder`` is missing, and ``ValueError`` when no
    file matches or two files give the same epoch, naming the files and what to pass.
    """
    root = Path(folder).expanduser()
    if not root.exists():
        raise FileNotFoundError(
            f"no checkpoint folder at {str(root)!r}: pass the folder your training saved "
            "its state_dicts into (torch.save(model.state_dict(), 'ckpts/epoch_3.pt'))."
        )
    files = sorted(p for p in root.iterdir() if p.is_file()) if root.is_dir() else [root]
    regex = None if pattern is None else _pattern_regex(pattern)
    found: dict[int, Path] = {}
    for file in files:
        if regex is None:
            digits = re.findall(r"\d+", file.stem)
            if file.suffix.lower() not in CHECKPOINT_SUFFIXES or not digits:
                continue
            epoch = int(digits[-1])
        else:
            match = regex.match(file.name)
            if match is None:
                continue
            epoch = int(match.group(1))
        if epoch in found:
            raise ValueError(
                f"{found[epoch].name!r} and {file.name!r} both give epoch {epoch}: pass a "
                "pattern that tells them apart, e.g. pattern='epoch_{epoch}.pt'."
            )
        found[epoch] = file
    if not found:
        seen = ", ".join(repr(p.name) for p in files[:5]) + (" ..." if len(files) > 5 else "")
        what = (f"no file matches pattern={pattern!r}" if pattern is not None else
                f"no file ends in {'/'.join(CHECKPOINT_SUFFIXES)} with an epoch number in "
                "its name")
        raise ValueError(
            f"{what} in {str(root)!r} (it holds {seen or 'no files'}): pass the folder of "
            "saved state_dicts, and a pattern with {epoch} where the epoch is in the file "
            "names, e.g. pattern='epoch_{epoch}.pt'."
        )
    return dict(sorted(found.items()))


def load_checkpoint(file: Path, model: nn.Module) -> dict[str, Any]:
    """The state_dict in ``file``, checked against ``model`` (a ``ValueError`` naming the
    file and the keys or shapes that differ when it does not fit)."""
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - named, with the fix
        raise ValueError(
            f"could not read the checkpoint {str(file)!r}: {type(err).__name__}: {err}. "
            "Pass files written by torch.save(model.state_dict(), path)."
        ) from err
    if isinstance(obj, Mapping):
        for key in _STATE_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise ValueError(
            f"the checkpoint {str(file)!r} holds a {type(obj).__name__}, not a state_dict: "
            "save model.state_dict() (not the model or an optimizer's state)."
        )
    want = model.state_dict()
    missing = [k for k in want if k not in obj]
    unexpected = [k for k in obj if k not in want]
    shapes = [f"{k}: {tuple(obj[k].shape)} in the file, {tuple(want[k].shape)} in the model"
              for k in want if k in obj and isinstance(obj[k], torch.Tensor)
              and isinstance(want[k], torch.Tensor) and obj[k].shape != want[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(map(repr, missing[:5]))}")
        if unexpected:
            parts.append(f"unexpected {', '.join(map(repr, unexpected[:5]))}")
        if shapes:
            parts.append("different shapes: " + "; ".join(shapes[:3]))
        raise ValueError(
            f"the checkpoint {str(file)!r} does not match the model "
            f"({type(model).__name__}): {'; '.join(parts)}. Pass the model factory that "
            "built the network these checkpoints were saved from."
        )
    return dict(obj)


def analyze_checkpoints(
    checkpoints: str | Path,
    model: nn.Module | Callable[[], nn.Module],
    example_input: Any,
    out: str | Path,
    *,
    pattern: str | None = None,
    layers: Sequence[Any] | None = None,
    progress: bool | None = None,
    executor: Any = "serial",
    workers: int | None = None,
    measure_fn: Callable[..., Any] | None = None,
    **measure_kwargs: Any,
) -> History:
    """Measure every checkpoint in ``checkpoints`` into the history at ``out``; returns it.

    ``model``: the network (or a factory building it) the checkpoints load into.
    ``example_input``: one batch it accepts (finds the layers; without ``in_range`` its
    min/max is the input range, with a warning). ``measure_kwargs`` go to
    ``measure_layer`` (``bins``, ``in_range``, ``samples``, ...), checked here. Rerunning
    after an interruption resumes (see the module docstring). ``executor``: where the
    checkpoints are measured, as for ``sweep``: ``"serial"`` (here, the default),
    ``"local"`` (``workers`` processes), ``"ray"`` or an
    :class:`~causal_widgets.live.executors.Executor`; results are saved as each finishes.
    """
    from causal_widgets.engine.settings import LAYER_KEYWORDS, check_measure_keywords
    from causal_widgets.live.monitor import _measurement_settings, measure_snapshot_task
    from causal_widgets.training.loop import _Progress

    net = model() if (callable(model) and not isinstance(model, nn.Module)) else model
    if not isinstance(net, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module or a function returning one; got "
            f"{type(net).__name__}."
        )
    files = find_checkpoints(checkpoints, pattern)
    # the monitor's one reading of measurement settings (in_range split off, or taken
    # from example_input with a warning pointing at the caller)
    in_range, kwargs = _measurement_settings(example_input, dict(measure_kwargs))
    call_kwargs = dict(kwargs)
    if measure_fn is None:
        settings = check_measure_keywords(kwargs, where="analyze_checkpoints()")
        call_kwargs = {k: v for k, v in kwargs.items() if k in LAYER_KEYWORDS} | {
            "settings": settings}
    recorded = to_jsonable({"source": "checkpoints", "layers": None if layers is None
                            else list(layers), "in_range": in_range, **kwargs})
    out = Path(out)
    history = History.open(out, settings=recorded)
    if history.settings.get("source") == "checkpoints" and history.settings != recorded:
        raise ValueError(
            f"the history at {str(out)!r} was measured with other settings "
            f"({history.settings}) than now ({recorded}): rerun with the same settings to "
            "resume, or pass another --out."
        )
    history.settings.update(recorded)
    template = net.to("cpu").eval()
    todo = [e for e in files if not history.is_done(e)]
    for epoch in todo:  # every file checked before any work: a mismatch is refused now
        load_checkpoint(files[epoch], template)
    pool = get_executor(executor, workers=workers)
    owned = pool is not executor
    put = getattr(pool, "put", None)
    shipped = put(template) if put is not None else template
    bar = _Progress(len(files), len(files) - len(todo), "analyze", progress)
    finished = len(files) - len(todo)
    waiting = list(todo)
    in_flight: dict[cf.Future, int] = {}
    try:
        while waiting or in_flight:
            # one at a time until the first result fixes the reference layers
            room = max(1, pool.workers) if history.layers() else 1
            while waiting and len(in_flight) < room:
                epoch = waiting.pop(0)
                state = load_checkpoint(files[epoch], template)
                in_flight[pool.submit(measure_snapshot_task, shipped, state, example_input,
                                      layers, in_range, history.layers() or None,
                                      call_kwargs, measure_fn, "cpu")] = epoch
            done, _ = cf.wait(list(in_flight), return_when=cf.FIRST_COMPLETED)
            for fut in done:
                epoch = in_flight.pop(fut)
                _collect(history, epoch, fut)
                # saved after every checkpoint: a kill loses at most those being measured
                history.save(out)
                bar.update(finished)
                finished += 1
    except BaseException:
        pool.abort(list(in_flight))
        raise
    finally:
        bar.close()
        if owned:
            pool.shutdown(wait=False, cancel=True)
    if not todo:
        history.save(out)  # a first run over finished results still writes the history
    return history


def _collect(history: History, epoch: int, future: cf.Future) -> None:
    """One checkpoint's task into the history: its layers' results, or why not."""
    try:
        out = future.result()
    except Exception as err:  # noqa: BLE001 - a lost task is an error entry; rerun redoes it
        history.add_error(epoch, None, f"measuring the checkpoint of epoch {epoch} failed: "
                          f"{type(err).__name__}: {err}")
        return
    if out["error"] is not None:
        history.add_error(epoch, None, out["error"])
    if not history.layers() and out["layers"] is not None:
        history.set_layers(out["layers"])
    for name, result, problem in out["entries"]:
        if problem is not None:
            history.add_error(epoch, name, problem)
        else:
            history.add_result(epoch, name, result)
    history.add_scalars(epoch)


__all__ = ["CHECKPOINT_SUFFIXES", "analyze_checkpoints", "find_checkpoints", "load_checkpoint"]

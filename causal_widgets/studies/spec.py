"""A study: a grid of training runs, each trained and measured as in the reproduction.

A study file (TOML) names the grid's axes in ``[grid]`` (each a list: the study is their
product) and single values for every run in ``[settings]``::

    name = "memorization"
    description = "Do networks that memorise move differently in the causal plane?"

    [grid]
    label_noise = [0.0, 0.5, 1.0]   # fraction of training labels made random
    seed = [0, 1, 2]

    [settings]
    dataset = "iris"
    epochs = 4000
    every = 50

Keys (any may be an axis in ``[grid]`` or a single value in ``[settings]``); defaults are
the paper's settings for the dataset (``causal_widgets.paper.reproduce.PRESETS``):

=============  ===========================================================
``dataset``    ``"iris"`` | ``"digits"`` | ``"mnist"`` (needs ``data_dir``)
``layers``     architecture, ``"4,5,5,3"`` (in ``[grid]``: a list of them)
``activation`` ``"sigmoid"`` | ``"tanh"`` | ``"relu"``
``label_noise`` fraction of training labels replaced by random ones, in [0, 1]
``dropout``    dropout probability after each hidden activation, in [0, 1)
``lr``         SGD learning rate, > 0
``seed``       integer >= 0 (init, batch order, data split, label noise)
``epochs``, ``every``, ``batch_size``  training length, measurement cadence, batch
``bins``       bins per neuron, >= 2
``ei_samples`` forward evaluations per layer for whole EI (>= 32; ``samples`` is its
               old name and still works)
``data_dir``   folder with MNIST IDX files
=============  ===========================================================

Every problem in a file (unknown key, impossible value, empty axis, a grid of zero
points, an architecture that does not fit its dataset) is reported at once, each with its
line. :func:`preset` gives the studies for the paper's open questions.

>>> s = preset("memorization", quick=True)
>>> len(s.points()), s.axes
(6, ['label_noise', 'seed'])
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from causal_widgets.checks import is_int, is_number, suggest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: inputs and classes of each dataset (what an architecture must start and end with)
DATASET_SHAPES = {"iris": (4, 3), "digits": (25, 5), "mnist": (25, 5)}
ACTIVATION_NAMES = ("sigmoid", "tanh", "relu")
TOP_LEVEL = {"name", "description", "grid", "settings"}


class StudyError(ValueError):
    """A study file or study definition that cannot run; the message lists every problem."""


def _check_layers(v: Any) -> str | None:
    from causal_widgets.training.models import parse_layers

    if isinstance(v, str) or (isinstance(v, list) and all(is_int(x) for x in v)):
        try:
            parse_layers(v)
        except ValueError as err:
            return str(err)
        return None
    return f"must be an architecture such as \"4,5,5,3\"; got {v!r}"


def _one_of(options: tuple[str, ...]):
    def check(v: Any) -> str | None:
        return None if v in options else f"must be one of {', '.join(map(repr, options))}; " \
                                         f"got {v!r}"
    return check


def _int_at_least(lo: int):
    def check(v: Any) -> str | None:
        return None if is_int(v) and v >= lo else f"must be an integer >= {lo}; got {v!r}"
    return check


def _fraction(closed_top: bool):
    def check(v: Any) -> str | None:
        ok = is_number(v) and 0 <= v and (v <= 1 if closed_top else v < 1)
        return None if ok else (
            f"must be a number in [0, {'1]' if closed_top else '1)'}; got {v!r}")
    return check


def _positive_number(v: Any) -> str | None:
    return None if is_number(v) and v > 0 else f"must be a number > 0; got {v!r}"


def _path(v: Any) -> str | None:
    return None if isinstance(v, str) and v else f"must be a folder path (a string); got {v!r}"


#: every key a run accepts, with its check (returns None or what is wrong)
KEYS = {
    "dataset": _one_of(tuple(DATASET_SHAPES)),
    "layers": _check_layers,
    "activation": _one_of(ACTIVATION_NAMES),
    "label_noise": _fraction(closed_top=True),
    "dropout": _fraction(closed_top=False),
    "lr": _positive_number,
    "seed": _int_at_least(0),
    "epochs": _int_at_least(1),
    "every": _int_at_least(1),
    "batch_size": _int_at_least(1),
    "bins": _int_at_least(2),
    "ei_samples": _int_at_least(32),
    "data_dir": _path,
}
#: keys of earlier versions, still accepted: old name -> key
OLD_KEYS = {"samples": "ei_samples"}


def _key_lines(text: str) -> dict[tuple[str, str], int]:
    """``(table, key) -> line`` for simple TOML (``[table]`` headers, ``key = value``)."""
    lines: dict[tuple[str, str], int] = {}
    table = ""
    for no, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        head = re.fullmatch(r"\[\s*([A-Za-z0-9_.-]+)\s*\]", line)
        if head:
            table = head.group(1)
            lines.setdefault(("", table), no)
            continue
        m = re.match(r"([A-Za-z0-9_-]+|\"[^\"]*\")\s*=", line)
        if m:
            lines.setdefault((table, m.group(1).strip('"')), no)
    return lines


@dataclass
class Study:
    """A grid of runs. ``grid``: axis -> list of values; ``settings``: key -> value.

    Build one with :meth:`from_toml`, :func:`preset`, or directly (it is validated the
    same way: ``Study(name, grid={...}, settings={...}).validate()``).
    """

    name: str
    grid: dict[str, list[Any]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    quick: bool = False
    source: str | None = None  # the TOML text it came from, if any

    # ------------------------------------------------------------------ building
    @classmethod
    def from_toml(cls, path: str | Path, *, quick: bool = False) -> Study:
        """Read and validate a study file; :class:`StudyError` lists every problem by line."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise FileNotFoundError(f"study file {str(path)!r} not found.") from None
        return cls.from_text(text, name=path.stem, where=str(path), quick=quick)

    @classmethod
    def from_text(cls, text: str, *, name: str = "study", where: str = "<study>",
                  quick: bool = False) -> Study:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise StudyError(f"{where}: not valid TOML: {err}") from None
        lines = _key_lines(text)

        def at(table: str, key: str) -> str:
            no = lines.get((table, key))
            return f"{where}:{no}" if no else where

        problems: list[str] = []
        for key in data:
            if key not in TOP_LEVEL:
                problems.append(
                    f"{at('', key)}: unknown key {key!r} at the top level; allowed: "
                    f"name, description, [grid], [settings]")
        grid = data.get("grid", {})
        settings = data.get("settings", {})
        for table, value in (("grid", grid), ("settings", settings)):
            if not isinstance(value, dict):
                problems.append(f"{at('', table)}: {table} must be a table ([{table}])")
        if not isinstance(grid, dict) or not isinstance(settings, dict):
            raise StudyError("\n".join(problems))
        study = cls(
            name=str(data.get("name", name)), grid=dict(grid), settings=dict(settings),
            description=str(data.get("description", "")), quick=quick, source=text,
        )
        try:
            study.validate(where=at)
        except StudyError as err:
            problems.append(str(err))
        if problems:
            raise StudyError("\n".join(problems))
        return study

    # ------------------------------------------------------------------ checking
    def validate(self, where: Any = None) -> Study:
        """Check every key and value; raise :class:`StudyError` listing all problems."""
        def at(table: str, key: str) -> str:
            return where(table, key) if where is not None else f"[{table}] {key}"

        problems: list[str] = []
        given = {*self.grid, *self.settings}
        for old, new in OLD_KEYS.items():
            if old in given and new in given:
                table = "grid" if old in self.grid else "settings"
                problems.append(f"{at(table, old)}: {old!r} is the old name of {new!r}; "
                                "give one of them")
        for table, entries in (("grid", self.grid), ("settings", self.settings)):
            for key, value in entries.items():
                name = OLD_KEYS.get(key, key)  # the checks go by the current name
                if name not in KEYS:
                    problems.append(
                        f"{at(table, key)}: unknown key {key!r} in [{table}]"
                        f"{suggest(key, KEYS)}; known keys: {', '.join(KEYS)}")
                    continue
                if table == "grid":
                    if not isinstance(value, list):
                        problems.append(
                            f"{at(table, key)}: [grid] {key} must be a list of values (an "
                            f"axis); put a single value under [settings]")
                        continue
                    if not value:
                        problems.append(
                            f"{at(table, key)}: [grid] {key} is an empty list, so the grid "
                            "has zero points; give at least one value")
                        continue
                    if name == "layers" and all(is_int(v) for v in value):
                        problems.append(
                            f"{at(table, key)}: [grid] layers lists architectures: write "
                            f"layers = [\"{','.join(map(str, value))}\"]")
                        continue
                    for v in value:
                        bad = KEYS[name](v)
                        if bad:
                            problems.append(f"{at(table, key)}: {key} {bad}")
                    if len({json.dumps(v) for v in value}) < len(value):
                        problems.append(f"{at(table, key)}: [grid] {key} repeats a value")
                else:
                    bad = KEYS[name](value)
                    if bad:
                        problems.append(f"{at(table, key)}: {key} {bad}")
        both = {OLD_KEYS.get(k, k) for k in self.grid} & {
            OLD_KEYS.get(k, k) for k in self.settings}
        for key in sorted(both):
            problems.append(f"{at('settings', key)}: {key} is both an axis in [grid] and a "
                            "single value in [settings]; keep one")
        if not problems:
            problems += self._check_points(at)
        if problems:
            raise StudyError("\n".join(problems))
        return self

    def _check_points(self, at: Any) -> list[str]:
        problems = []  # one entry per distinct problem, however many points share it
        for point in self.points(validate=False):
            ds = point["dataset"]
            n_in, n_out = DATASET_SHAPES[ds]
            sizes = point["layers"]
            if sizes[0] != n_in or sizes[-1] != n_out:
                table = "grid" if "layers" in self.grid else "settings"
                problems.append(
                    f"{at(table, 'layers')}: architecture {','.join(map(str, sizes))} does "
                    f"not fit {ds} ({n_in} inputs, {n_out} classes)")
            if ds == "mnist" and not point.get("data_dir"):
                problems.append(
                    f"{at('settings', 'dataset')}: dataset 'mnist' needs data_dir = \"...\"")
            if point["every"] > point["epochs"]:
                table = "grid" if "every" in self.grid else "settings"
                problems.append(
                    f"{at(table, 'every')}: every={point['every']} is more than "
                    f"epochs={point['epochs']}, so only epoch 0 would be measured")
        return list(dict.fromkeys(problems))

    # ------------------------------------------------------------------ expanding
    @property
    def axes(self) -> list[str]:
        """The grid's axes with more than one value (what tells runs apart)."""
        return [k for k, v in self.grid.items() if len(v) > 1]

    def points(self, validate: bool = True) -> list[dict[str, Any]]:
        """Every run of the study: full settings (defaults filled in) + ``run_id``, ``group``.

        ``run_id`` is a hash of the run's settings, stable across reruns and grid order;
        ``group`` names its configuration without the seed (seeds of one group are
        averaged in the study dashboard).
        """
        if validate:
            self.validate()
        keys = list(self.grid)
        out = []
        for values in itertools.product(*(self.grid[k] for k in keys)):
            given = {**self.settings, **dict(zip(keys, values))}
            point = resolve_point(given, quick=self.quick)
            point["run_id"] = run_id(point)
            point["group"] = group_label(point, [a for a in self.axes if a != "seed"])
            out.append(point)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "grid": self.grid,
                "settings": self.settings, "quick": self.quick}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Study:
        return cls(name=d["name"], grid=dict(d.get("grid", {})),
                   settings=dict(d.get("settings", {})), description=d.get("description", ""),
                   quick=bool(d.get("quick", False)))

    def to_toml(self) -> str:
        """The study as a TOML file (what ``sweep`` writes to ``DIR/study.toml``)."""
        def val(v: Any) -> str:
            return json.dumps(v)

        lines = [f"name = {val(self.name)}"]
        if self.description:
            lines.append(f"description = {val(self.description)}")
        lines += ["", "[grid]"] + [f"{k} = {val(v)}" for k, v in self.grid.items()]
        lines += ["", "[settings]"] + [f"{k} = {val(v)}" for k, v in self.settings.items()]
        return "\n".join(lines) + "\n"


def resolve_point(given: Mapping[str, Any], *, quick: bool = False) -> dict[str, Any]:
    """One run's full settings: ``given`` over the dataset's paper defaults (and ``quick``)."""
    # a study's defaults are the paper's schedules (its questions are asked at the paper's
    # settings), so they are read from the paper, not copied; the loop itself is training's
    from causal_widgets.paper.reproduce import PRESETS, QUICK
    from causal_widgets.training.models import parse_layers

    dataset = given.get("dataset", "iris")
    base = dict(PRESETS[dataset])
    if quick:
        base.update(QUICK[dataset])
    point = {
        "dataset": dataset,
        "layers": parse_layers(given.get("layers", base["sizes"])),
        "activation": given.get("activation", "sigmoid"),
        "label_noise": float(given.get("label_noise", 0.0)),
        "dropout": float(given.get("dropout", 0.0)),
        "lr": float(given.get("lr", 0.01)),
        "seed": int(given.get("seed", 0)),
        "epochs": int(given.get("epochs", base["epochs"])),
        "every": int(given.get("every", base["every"])),
        "batch_size": int(given.get("batch_size", base["batch_size"])),
        "bins": int(given.get("bins", 8)),
        "ei_samples": _optional_int(given.get("ei_samples", given.get("samples"))),
        "quick": bool(quick),
    }
    if given.get("data_dir"):
        point["data_dir"] = str(given["data_dir"])
    return point


def _optional_int(v: Any) -> int | None:
    return None if v is None else int(v)


def run_id(point: Mapping[str, Any]) -> str:
    """A 12-hex-digit id from the run's settings (not from its place in the grid)."""
    # hashed under the keys' first names, so a study started before a rename still resumes
    first_name = {new: old for old, new in OLD_KEYS.items()}
    settings = {first_name.get(k, k): v for k, v in point.items()
                if k not in ("run_id", "group")}
    blob = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def group_label(point: Mapping[str, Any], axes: list[str]) -> str:
    """``"label_noise=0.5, dropout=0.2"``: the point's values on ``axes`` (``"all"`` if none)."""
    def fmt(v: Any) -> str:
        if isinstance(v, list):
            return "-".join(map(str, v))
        return f"{v:g}" if isinstance(v, float) else str(v)

    return ", ".join(f"{a}={fmt(point[a])}" for a in axes) or "all"


#: the open questions of Mattsson, Michaud & Hoel (2020), as studies on Iris
PRESET_STUDIES: dict[str, dict[str, Any]] = {
    "memorization": dict(
        description="Does a network that memorises (random labels) move differently in "
                    "the causal plane than one that generalises?",
        grid={"label_noise": [0.0, 0.5, 1.0]},
    ),
    "dropout": dict(
        description="What does dropout do to the causal structure?",
        grid={"dropout": [0.0, 0.2, 0.5]},
    ),
    "depth": dict(
        description="How does depth change where layers go in the causal plane?",
        grid={"layers": ["4,5,3", "4,5,5,3", "4,5,5,5,5,3"]},
    ),
}


def preset(name: str, *, quick: bool = False, seeds: int | None = None) -> Study:
    """A study for one of the paper's open questions (``memorization``, ``dropout``,
    ``depth``) on Iris at the paper's settings: 3 seeds, 4000 epochs, measured every 50.
    ``quick``: 2 seeds at the quick Iris schedule (1500 epochs, every 100, fewer samples),
    minutes on a laptop."""
    if name not in PRESET_STUDIES:
        raise StudyError(f"unknown preset {name!r}: choose one of "
                         f"{', '.join(PRESET_STUDIES)}.")
    spec = PRESET_STUDIES[name]
    n_seeds = seeds if seeds is not None else (2 if quick else 3)
    grid = {**spec["grid"], "seed": list(range(n_seeds))}
    return Study(name=name, description=spec["description"], grid=grid,
                 settings={"dataset": "iris"}, quick=quick).validate()


__all__ = ["KEYS", "PRESET_STUDIES", "Study", "StudyError", "preset", "resolve_point",
           "run_id"]

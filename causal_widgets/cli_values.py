"""The command line's value parsers: one place that turns an option's text into its value.

Every subcommand (``reproduce``, ``sweep``, and any later one) builds its options from
these, so one option means one thing everywhere and a bad value is refused while the
command line is parsed, before anything trains or writes. Each parser is made for one
option (``positive_int("--epochs")``) and its message names that option, says what was
wrong and what to pass instead; argparse prints it as ``error: argument --epochs: ...``
and exits with status 2.

Layer lists go through :func:`causal_widgets.training.models.parse_layers`, the parser
the study files and Python callers use as well.

Example
-------
>>> import argparse
>>> p = argparse.ArgumentParser()
>>> _ = p.add_argument("--seed", type=non_negative_int("--seed"))
>>> p.parse_args(["--seed", "3"]).seed
3
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["bins", "example_input", "layers", "model_factory", "non_negative_int",
           "output_dir", "positive_int", "value_range"]


def _integer(text: str, option: str, example: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an integer: pass a whole number, e.g. {option} {example}."
        ) from None


def positive_int(option: str, example: str = "10") -> Callable[[str], int]:
    """A parser for an option that takes an integer >= 1 (epochs, runs, workers, ...)."""

    def parse(text: str) -> int:
        value = _integer(text, option, example)
        if value < 1:
            raise argparse.ArgumentTypeError(
                f"{value} is not a positive integer: {option} counts something, pass an "
                f"integer >= 1, e.g. {option} {example}."
            )
        return value

    parse.__name__ = option  # argparse names the type in some messages
    return parse


def non_negative_int(option: str, example: str = "0") -> Callable[[str], int]:
    """A parser for an option that takes an integer >= 0 (a seed, a retry count)."""

    def parse(text: str) -> int:
        value = _integer(text, option, example)
        if value < 0:
            raise argparse.ArgumentTypeError(
                f"{value} is negative: {option} must be >= 0; pass e.g. {option} {example}."
            )
        return value

    parse.__name__ = option
    return parse


def bins(option: str = "--bins") -> Callable[[str], int]:
    """A parser for a bin count: an integer >= 2 (information needs two bins)."""

    def parse(text: str) -> int:
        value = _integer(text, option, "8")
        if value < 2:
            raise argparse.ArgumentTypeError(
                f"{value} bins are too few: information needs at least 2 bins; pass e.g. "
                f"{option} 8 (the paper's)."
            )
        return value

    parse.__name__ = option
    return parse


def layers(option: str = "--layers") -> Callable[[str], list[int]]:
    """A parser for an architecture (``4,5,5,3``): :func:`~causal_widgets.training.models.
    parse_layers`, strict (every entry a positive integer)."""

    def parse(text: str) -> list[int]:
        from causal_widgets.training.models import parse_layers

        try:
            return parse_layers(text, name=option)
        except ValueError as err:
            # argparse already says "argument --layers:"; keep the value, not the name twice
            message = str(err).removeprefix(f"{option}=")
            raise argparse.ArgumentTypeError(message) from None

    parse.__name__ = option
    return parse


def output_dir(option: str = "--out") -> Callable[[str], Path]:
    """A parser for an output folder: a path that is a directory or can become one.

    Refused here, before any work: a path that is an existing file, or that lies under one
    (``file.txt/run``), which would otherwise end in ``FileExistsError`` /
    ``NotADirectoryError`` once training is done or a study is started.
    """

    def parse(text: str) -> Path:
        if not text.strip():
            raise argparse.ArgumentTypeError(
                f"the path is empty: pass a folder to write into, e.g. {option} runs/first."
            )
        path = Path(text).expanduser()
        for here in (path, *path.parents):
            if here.exists() and not here.is_dir():
                what = "is" if here == path else f"lies inside {str(here)!r}, which is"
                raise argparse.ArgumentTypeError(
                    f"{text!r} {what} an existing file, not a folder: {option} is the "
                    f"folder the results go into; pass a new or existing directory, e.g. "
                    f"{option} runs/first."
                )
            if here.exists():
                break  # an existing directory: everything below it can be created
        return path

    parse.__name__ = option
    return parse


def model_factory(option: str = "--model") -> Callable[[str], Callable[[], Any]]:
    """A parser for ``module:factory`` (or ``path/to/file.py:factory``): the function that
    builds the network, imported (not called) while parsing."""

    def parse(text: str) -> Callable[[], Any]:
        import importlib
        import importlib.util

        module_name, sep, attr = text.rpartition(":")
        if not sep or not module_name or not attr:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not module:factory: pass the module and the function that "
                f"builds your network, e.g. {option} mypkg.models:make_net or "
                f"{option} train.py:make_net."
            )
        try:
            if module_name.endswith(".py"):
                path = Path(module_name).expanduser()
                spec = importlib.util.spec_from_file_location(path.stem, path)
                if spec is None or spec.loader is None or not path.is_file():
                    raise FileNotFoundError(f"no file {str(path)!r}")
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
            else:
                module = importlib.import_module(module_name)
        except (ImportError, FileNotFoundError) as err:
            raise argparse.ArgumentTypeError(
                f"cannot import {module_name!r} ({type(err).__name__}: {err}): pass an "
                f"importable module (on PYTHONPATH) or a .py file, e.g. {option} "
                "train.py:make_net."
            ) from None
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise argparse.ArgumentTypeError(
                f"{module_name!r} has no function {attr!r}: pass the name of the function "
                "(with no required arguments) that returns your nn.Module, e.g. "
                f"{option} {module_name}:make_net."
            )
        return factory

    parse.__name__ = option
    return parse


def example_input(option: str = "--example-input", batch: int = 16,
                  seed: int = 0) -> Callable[[str], Any]:
    """A parser for an example batch: a file (``.pt`` tensor or ``.npy`` array, the batch
    itself) or one sample's shape (``4``, ``3,32,32``): then ``batch`` uniform [0, 1)
    samples from a generator seeded with ``seed``."""

    def parse(text: str) -> Any:
        import torch

        path = Path(text).expanduser()
        if path.suffix in (".pt", ".pth", ".npy") or path.exists():
            if not path.is_file():
                raise argparse.ArgumentTypeError(
                    f"no file {text!r}: pass a saved batch (.pt tensor or .npy array) or "
                    f"one sample's shape, e.g. {option} 3,32,32."
                )
            try:
                if path.suffix == ".npy":
                    import numpy as np

                    return torch.from_numpy(np.load(path))
                value = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as err:  # noqa: BLE001 - named, with the fix
                raise argparse.ArgumentTypeError(
                    f"could not read {text!r}: {type(err).__name__}: {err}; pass a tensor "
                    "saved with torch.save(batch, path) or an array saved with numpy.save."
                ) from None
            if not isinstance(value, torch.Tensor):
                raise argparse.ArgumentTypeError(
                    f"{text!r} holds a {type(value).__name__}, not a tensor: save the batch "
                    "itself (torch.save(x_batch, path))."
                )
            return value
        shape = []
        for i, part in enumerate(text.replace("x", ",").split(","), start=1):
            part = part.strip()
            if not part.isdigit() or int(part) < 1:
                raise argparse.ArgumentTypeError(
                    f"{text!r} is neither a file nor a shape (entry {i} is {part!r}): pass "
                    f"one sample's shape as positive integers, e.g. {option} 4 or "
                    f"{option} 3,32,32, or a saved batch (.pt / .npy)."
                )
            shape.append(int(part))
        g = torch.Generator().manual_seed(seed)
        return torch.rand((batch, *shape), generator=g)

    parse.__name__ = option
    return parse


def value_range(option: str = "--in-range") -> Callable[[str], tuple[float, float]]:
    """A parser for ``LO,HI`` (a value range, ``LO < HI``)."""

    def parse(text: str) -> tuple[float, float]:
        parts = text.split(",")
        try:
            lo, hi = (float(p) for p in parts)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not LO,HI: pass two numbers, e.g. {option} 0,1."
            ) from None
        if not lo < hi:
            raise argparse.ArgumentTypeError(
                f"{text!r}: LO must be below HI; pass e.g. {option} 0,1."
            )
        return (lo, hi)

    parse.__name__ = option
    return parse

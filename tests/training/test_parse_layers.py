"""parse_layers, the one architecture parser: strict, and the same answer for every caller.

Reproduced first (issue 13): ``"4,-5,3"`` parsed as ``[4, 5, 3]`` ("-" read as a
separator) and ``"4,,3"`` as ``[4, 3]`` (the hidden layer dropped). The command line, a
study file and Python callers all go through ``parse_layers`` now, so they refuse the
same specs with the same words.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from causal_widgets import cli_values
from causal_widgets.studies.spec import Study, StudyError
from causal_widgets.training.models import make_mlp, parse_layers


@pytest.mark.parametrize(
    "spec, sizes",
    [
        ("4,5,5,3", [4, 5, 5, 3]),
        (" 4, 5 ,3 ", [4, 5, 3]),  # spaces around entries are fine
        ("25-6-5", [25, 6, 5]),  # the dash form the docs write
        ([4, 5, 3], [4, 5, 3]),
        ((4, np.int64(5), 3), [4, 5, 3]),  # numpy integers are integers
        (np.array([2, 3]), [2, 3]),
    ],
)
def test_good_specs(spec, sizes) -> None:
    got = parse_layers(spec)
    assert got == sizes and all(type(s) is int for s in got)


@pytest.mark.parametrize(
    "spec, says",
    [
        ("4,-5,3", "entry 2 is -5, a negative number"),  # was [4, 5, 3]
        ("4,,3", "entry 2 is empty"),  # was [4, 3]
        ("4,3,", "entry 3 is empty"),
        ("-4-5-3", "entry 1 is empty"),
        ("4--5-3", "entry 2 is empty"),
        ("4,0,3", "entry 2 is 0"),
        ("4,x", "entry 2 is 'x', not an integer"),
        ("4,+5", "entry 2 is '+5'"),
        ("4", "at least an input and an output"),
        ("", "entry 1 is empty"),
        ([4, -5, 3], "entry 2 is -5, a negative number"),
        ([4, 5.5, 3], "entry 2 is 5.5 (float)"),
        ([4.0, 3], "entry 1 is 4.0 (float)"),  # int(4.9) would quietly be 4: none taken
        ([4, True], "entry 2 is True (bool)"),
        (["4", "3"], "entry 1 is '4' (str)"),
        (5, "(int): layer sizes are a string or a list of ints"),
    ],
)
def test_bad_specs_name_the_entry_and_the_fix(spec, says) -> None:
    with pytest.raises(ValueError) as exc:
        parse_layers(spec)
    msg = str(exc.value)
    assert says in msg and "layer sizes" in msg
    assert "e.g." in msg  # what to pass instead
    assert msg.startswith(f"layers={spec!r}")  # the argument and what was passed


def test_make_mlp_refuses_what_parse_layers_refuses() -> None:
    with pytest.raises(ValueError, match="entry 2 is -5"):
        make_mlp([4, -5, 3])
    with pytest.raises(ValueError, match=r"entry 2 is 5.5 \(float\)"):
        make_mlp([4, 5.5, 3])


@pytest.mark.parametrize("spec", ["4,-5,3", "4,,3", "4,0,3", "4,x,3"])
def test_cli_study_and_python_agree(spec: str) -> None:
    """One parser: the same reason from ``--layers``, a study's ``layers`` and Python."""
    with pytest.raises(ValueError) as py:
        parse_layers(spec)
    reason = str(py.value).split(": ", 1)[1]  # after "layers='...': "
    with pytest.raises(argparse.ArgumentTypeError) as cli:
        cli_values.layers("--layers")(spec)
    assert reason in str(cli.value)
    with pytest.raises(StudyError) as study:
        Study.from_text(f'[settings]\nlayers = "{spec}"\n', where="s.toml")
    assert "s.toml:2:" in str(study.value) and reason in str(study.value)
    with pytest.raises(StudyError) as grid:
        Study.from_text(f'[grid]\nlayers = ["4,5,3", "{spec}"]\n', where="g.toml")
    assert reason in str(grid.value)

"""Bad command-line values: refused while parsing, naming the option, before any work.

Every case was reproduced first (issue 13): ``--layers 4,-5,3`` trained a 4-5-3 network,
``--layers 4,,3`` dropped the hidden layer, ``--seed -1`` said "expected non-negative
integer" without naming ``--seed``, and an ``--out`` that is a file ended in a
``FileExistsError`` traceback from ``reproduce`` and ``sweep``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from causal_widgets import cli_values
from causal_widgets.__main__ import build_parser, main


def refused(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    """The error argparse printed for ``argv`` (exit status 2), or fail."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "layers, says",
    [
        ("4,-5,3", ["entry 2 is -5", "negative"]),
        ("4,,3", ["entry 2 is empty"]),
        ("4,0,3", ["entry 2 is 0"]),
        ("4,5.5,3", ["entry 2 is '5.5'", "not an integer"]),
        ("4,5_0,3", ["entry 2 is '5_0'"]),  # int() alone would read 50
        ("4", ["at least an input and an output"]),
    ],
)
def test_bad_layers_are_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture, layers: str, says: list[str]
) -> None:
    out = tmp_path / "run"
    err = refused(capsys, ["reproduce", "iris", "--out", str(out), "--layers", layers])
    assert "argument --layers" in err and repr(layers) in err
    for part in says:
        assert part in err
    assert "e.g. '4,5,5,3'" in err  # what to pass instead
    assert not out.exists()  # nothing was trained or written


def test_dash_separated_layers_still_parse() -> None:
    args = build_parser().parse_args(["reproduce", "digits", "--out", "x",
                                      "--layers", "25-6-6-5"])
    assert args.layers == [25, 6, 6, 5]


def test_negative_seed_names_the_option(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    err = refused(capsys, ["reproduce", "iris", "--out", str(tmp_path / "r"), "--seed", "-1"])
    assert "argument --seed: -1 is negative: --seed must be >= 0; pass e.g. --seed 0" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["reproduce", "iris"],
        ["reproduce", "toy"],
        ["sweep", "--preset", "depth", "--quick", "--serial"],
    ],
)
def test_out_that_is_a_file_is_refused_by_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str]
) -> None:
    existing = tmp_path / "notes.txt"
    existing.write_text("keep me")
    err = refused(capsys, [*argv, "--out", str(existing)])
    assert "argument --out" in err and "existing file, not a folder" in err
    assert "Traceback" not in err and "FileExistsError" not in err
    assert existing.read_text() == "keep me"  # untouched
    # a path below a file cannot become a folder either
    err = refused(capsys, [*argv, "--out", str(existing / "run")])
    assert "argument --out" in err and f"lies inside {str(existing)!r}" in err


@pytest.mark.parametrize(
    "argv, option, says",
    [
        (["sweep", "--preset", "depth", "--max-retries", "-1"], "--max-retries", "negative"),
        (["sweep", "--preset", "depth", "--workers", "0"], "--workers", "not a positive"),
        (["reproduce", "iris", "--runs", "three"], "--runs", "not an integer"),
        (["reproduce", "iris", "--ei-samples", "0"], "--ei-samples", "not a positive"),
        (["reproduce", "iris", "--bins", "1"], "--bins", "at least 2"),
    ],
)
def test_every_number_option_names_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str], option: str, says: str
) -> None:
    err = refused(capsys, [*argv, "--out", str(tmp_path / "o")])
    assert f"argument {option}" in err and says in err and "e.g." in err


def test_commands_share_one_parser_per_kind_of_value(tmp_path: Path) -> None:
    """reproduce and sweep give the same answer for the same bad --out (one parser)."""
    existing = tmp_path / "f"
    existing.write_text("")
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    messages = []
    for command in ("reproduce", "sweep"):
        out = next(a for a in sub.choices[command]._actions if a.dest == "out")
        with pytest.raises(argparse.ArgumentTypeError) as exc:
            out.type(str(existing))
        messages.append(str(exc.value))
    assert messages[0] == messages[1]
    assert messages[0] == str(pytest.raises(argparse.ArgumentTypeError,
                                            cli_values.output_dir("--out"), str(existing)).value)


def test_good_values_pass_through(tmp_path: Path) -> None:
    assert cli_values.positive_int("--epochs")("12") == 12
    assert cli_values.non_negative_int("--seed")("0") == 0
    assert cli_values.bins()("8") == 8
    assert cli_values.layers()("4,5,5,3") == [4, 5, 5, 3]
    # an existing folder and a new one below it are both fine as --out
    assert cli_values.output_dir()(str(tmp_path)) == tmp_path
    assert cli_values.output_dir()(str(tmp_path / "a" / "b")) == tmp_path / "a" / "b"


# --------------------------------------------------------------------------- analyze
def _analyze_argv(tmp_path: Path, **over: str) -> list[str]:
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir(exist_ok=True)
    net = tmp_path / "net.py"
    net.write_text("import torch\n\ndef make_net():\n    return torch.nn.Sequential("
                   "torch.nn.Linear(4, 3), torch.nn.Sigmoid())\n")
    opts = {"--model": f"{net}:make_net", "--example-input": "4", "--in-range": "0,1",
            "--out": str(tmp_path / "o"), **over}
    return ["analyze", str(ckpts), *[t for kv in opts.items() for t in kv]]


@pytest.mark.parametrize(
    "option, value, says",
    [
        ("--model", "no_colon_here", "is not module:factory"),
        ("--model", "causal_widgets_no_such_module:f", "cannot import"),
        ("--model", "causal_widgets.cli_values:no_such_function", "has no function"),
        ("--example-input", "3,-2", "entry 2 is '-2'"),
        ("--example-input", "missing_batch.pt", "no file"),
        ("--in-range", "1,0", "LO must be below HI"),
    ],
)
def test_analyze_options_name_themselves(tmp_path: Path, capsys: pytest.CaptureFixture,
                                         option: str, value: str, says: str) -> None:
    err = refused(capsys, _analyze_argv(tmp_path, **{option: value}))
    assert f"argument {option}" in err and says in err and "e.g." in err
    assert not (tmp_path / "o").exists()


def test_analyze_without_matching_checkpoints_says_so(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    argv = _analyze_argv(tmp_path, **{"--pattern": "ckpt_{epoch}.pt"})
    (tmp_path / "ckpts" / "epoch_3.pt").write_bytes(b"")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no file matches pattern='ckpt_{epoch}.pt'" in err and "'epoch_3.pt'" in err


def test_analyze_refuses_a_checkpoint_of_another_model(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    import torch

    argv = _analyze_argv(tmp_path)
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 7)).state_dict(),
               tmp_path / "ckpts" / "epoch_0.pt")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "epoch_0.pt' does not match the model" in err and "different shapes" in err

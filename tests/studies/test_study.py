"""Study files and presets: the grid, defaults, stable run ids, errors that name the line."""

from __future__ import annotations

import pytest

from causal_widgets.studies.spec import PRESET_STUDIES, Study, StudyError, preset, run_id

GOOD = """\
name = "noise"
description = "random labels"

[grid]
label_noise = [0.0, 0.5, 1.0]
seed = [0, 1]

[settings]
dataset = "iris"
epochs = 200
every = 20
"""


def _errors(text: str) -> str:
    with pytest.raises(StudyError) as info:
        Study.from_text(text, where="s.toml")
    return str(info.value)


def test_grid_is_the_product_of_its_axes_with_paper_defaults(tmp_path):
    path = tmp_path / "noise.toml"
    path.write_text(GOOD)
    study = Study.from_toml(path)
    points = study.points()
    assert len(points) == 3 * 2
    assert study.axes == ["label_noise", "seed"]
    assert {(p["label_noise"], p["seed"]) for p in points} == {
        (a, b) for a in (0.0, 0.5, 1.0) for b in (0, 1)}
    p = points[0]
    # the paper's Iris settings fill in what the file does not say
    assert p["layers"] == [4, 5, 5, 3] and p["batch_size"] == 10 and p["lr"] == 0.01
    assert p["activation"] == "sigmoid" and p["bins"] == 8 and p["dropout"] == 0.0
    assert (p["epochs"], p["every"]) == (200, 20)
    # seeds of one configuration share a group; configurations do not
    groups = {}
    for q in points:
        groups.setdefault(q["group"], set()).add(q["seed"])
    assert groups == {"label_noise=0": {0, 1}, "label_noise=0.5": {0, 1},
                      "label_noise=1": {0, 1}}
    assert len({q["run_id"] for q in points}) == 6


def test_run_ids_depend_on_settings_not_grid_order():
    a = Study("a", grid={"seed": [0, 1], "dropout": [0.0, 0.2]}).points()
    b = Study("b", grid={"dropout": [0.2, 0.0], "seed": [1, 0]}).points()
    assert {p["run_id"] for p in a} == {p["run_id"] for p in b}
    one = dict(a[0])
    assert run_id(one) == one["run_id"]
    one["lr"] = 0.02
    assert run_id(one) != a[0]["run_id"]
    quick = Study("a", grid={"seed": [0, 1], "dropout": [0.0, 0.2]}, quick=True).points()
    assert not {p["run_id"] for p in quick} & {p["run_id"] for p in a}


def test_every_problem_is_reported_with_its_line():
    text = (
        'name = "x"\n'            # 1
        'colour = "red"\n'        # 2 unknown top-level key
        "[grid]\n"                # 3
        "seed = []\n"             # 4 zero points
        'layrs = ["4,5,3"]\n'     # 5 unknown key (typo)
        "dropout = [0.0, 1.0]\n"  # 6 impossible value (p = 1)
        "[settings]\n"            # 7
        "lr = -1\n"               # 8 impossible value
        "bins = 1\n"              # 9 bins < 2
    )
    msg = _errors(text)
    for line, words in [(2, "unknown key 'colour'"), (4, "zero points"),
                        (5, "did you mean 'layers'"), (6, "dropout must be a number in [0, 1)"),
                        (8, "lr must be a number > 0"), (9, "bins must be an integer >= 2")]:
        assert f"s.toml:{line}: " in msg and words in msg, (line, words, msg)


def test_architecture_must_fit_the_dataset_and_grid_layers_must_be_a_list_of_them():
    msg = _errors('[grid]\nlayers = ["4,5,3", "4,5,2"]\n[settings]\ndataset = "iris"\n')
    assert "s.toml:2:" in msg and "4,5,2 does not fit iris (4 inputs, 3 classes)" in msg
    msg = _errors("[grid]\nlayers = [4, 5, 3]\n")
    assert 'write layers = ["4,5,3"]' in msg
    msg = _errors('[settings]\ndataset = "mnist"\nlayers = "25,6,5"\n')
    assert "needs data_dir" in msg


def test_other_impossible_studies():
    assert "not valid TOML" in _errors("[grid\nseed = [0]\n")
    assert "must be a list of values" in _errors("[grid]\nseed = 3\n")
    assert "both an axis" in _errors("[grid]\nseed = [0, 1]\n[settings]\nseed = 2\n")
    assert "repeats a value" in _errors("[grid]\nseed = [0, 0]\n")
    assert "only epoch 0 would be measured" in _errors(
        "[settings]\nepochs = 10\nevery = 20\n")
    assert "must be one of 'sigmoid'" in _errors('[settings]\nactivation = "gelu"\n')
    assert "label_noise must be a number in [0, 1]" in _errors(
        "[grid]\nlabel_noise = [1.5]\n")
    with pytest.raises(FileNotFoundError, match="not found"):
        Study.from_toml("/nonexistent/study.toml")


@pytest.mark.parametrize("name", sorted(PRESET_STUDIES))
def test_presets_answer_their_question_at_both_sizes(name):
    full, quick = preset(name), preset(name, quick=True)
    axis = next(iter(PRESET_STUDIES[name]["grid"]))
    assert full.axes == [axis, "seed"] and quick.axes == [axis, "seed"]
    assert len(full.points()) == 3 * 3 and len(quick.points()) == 3 * 2
    f, q = full.points()[0], quick.points()[0]
    assert (f["epochs"], f["every"]) == (4000, 50)  # the paper's Iris schedule
    assert q["epochs"] < f["epochs"] and q["quick"]
    with pytest.raises(StudyError, match="unknown preset"):
        preset("width")


def test_toml_round_trip():
    study = preset("depth", quick=True)
    again = Study.from_text(study.to_toml(), quick=True)
    assert [p["run_id"] for p in again.points()] == [p["run_id"] for p in study.points()]


def test_ei_samples_and_its_old_name_samples_are_one_key():
    new = Study("n", grid={"seed": [0]}, settings={"ei_samples": 1024}).points()[0]
    old = Study("o", grid={"seed": [0]}, settings={"samples": 1024}).points()[0]
    assert new["ei_samples"] == old["ei_samples"] == 1024 and "samples" not in new
    assert new["run_id"] == old["run_id"]
    # the id hashes the first key name, so studies started before the rename resume
    import hashlib
    import json

    first = {("samples" if k == "ei_samples" else k): v for k, v in new.items()
             if k not in ("run_id", "group")}
    blob = json.dumps(first, sort_keys=True, separators=(",", ":")).encode()
    assert new["run_id"] == hashlib.sha1(blob).hexdigest()[:12]
    msg = _errors(GOOD + "ei_samples = 512\nsamples = 512\n")
    assert "'samples' is the old name of 'ei_samples'" in msg
    assert "did you mean 'ei_samples'" in _errors(GOOD + "ei_sample = 512\n")

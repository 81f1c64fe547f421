"""MeasureSettings: validated once at the boundary; unknown, misspelt or invalid settings
raise at the call, naming them; the old keyword names still work."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
import torch
from torch import nn

import causal_widgets as cw
from causal_widgets.engine.settings import MAX_SAMPLES, MeasureSettings


def _layer(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 2), nn.Sigmoid())


def test_defaults_are_filled_once():
    s = MeasureSettings(bins=6)
    assert (s.in_bins, s.out_bins, s.max_samples) == (6, 6, MAX_SAMPLES)
    assert s.metrics == cw.engine.settings.METRICS
    assert "ei" in MeasureSettings(metrics="degeneracy").computed


def test_frozen_and_picklable():
    s = MeasureSettings(bins=4, tol=0.05)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.bins = 5  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(s)) == s


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"bns": 8}, TypeError, r"'bns' \(did you mean 'bins'\?\)"),
        ({"tolerance": 0.1}, TypeError, r"unknown setting 'tolerance'"),
        ({"metod": "exact"}, TypeError, r"did you mean 'method'"),
        ({"method": "exakt"}, ValueError, r"method='exakt' is unknown \(did you mean 'exact'\?\)"),
        ({"bins": 1}, ValueError, r"bins=1 is too few"),
        ({"tol": -1}, ValueError, r"tol=-1 must be a positive number"),
        ({"samples": 0}, ValueError, r"samples= is the old name of interventions="),
        ({"metrics": ["ei", "entropy"]}, ValueError, r"unknown metric 'entropy'"),
    ],
)
def test_bad_settings_raise_at_the_call_naming_them(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        MeasureSettings.from_kwargs(kwargs)
    with pytest.raises(exc, match=match):  # the same at the public entry point, before any work
        cw.measure_layer(_layer(), in_range=(0, 1), **kwargs)


def test_old_names_give_the_same_measurement():
    common = dict(in_range=(0, 1), bins=4, method="sampled", metrics=["ei_parts", "sensitivity"])
    new = cw.measure_layer(_layer(), interventions=4096, sensitivity_interventions=1024, **common)
    old = cw.measure_layer(_layer(), samples=4096, sensitivity_samples=1024, **common)
    assert new.ei_parts == old.ei_parts and new.sensitivity == old.sensitivity
    assert new.samples == old.samples
    assert (new.samples["ei_parts"], new.samples["sensitivity"]) == (4096, 1024)


def test_both_names_of_one_setting_is_an_error():
    with pytest.raises(TypeError, match="'samples' and 'interventions'"):
        MeasureSettings.from_kwargs({"interventions": 10, "samples": 10})


def test_settings_object_equals_keywords_and_keywords_override_it():
    s = MeasureSettings(bins=4, metrics=("ei_parts",), seed=3)
    a = cw.measure_layer(_layer(), in_range=(0, 1), settings=s)
    b = cw.measure_layer(_layer(), in_range=(0, 1), bins=4, metrics=["ei_parts"], seed=3)
    assert a.ei_parts == b.ei_parts and a.settings["in_bins"] == 4
    c = cw.measure_layer(_layer(), in_range=(0, 1), settings=s, bins=6)
    assert c.settings["in_bins"] == c.settings["out_bins"] == 6  # in/out follow bins


def test_group_and_its_old_name_groups_agree():
    kw = dict(in_range=(0, 1), bins=4, metrics=["ei"], cells="all", points_per_cell=32)
    a = cw.measure_layer(_layer(), group=([0, 1], [0]), **kw)
    b = cw.measure_layer(_layer(), groups=([0, 1], [0]), **kw)
    assert a.group_ei is not None and a.group_ei == b.group_ei
    with pytest.raises(TypeError, match="both 'groups' and 'group'"):
        cw.measure_layer(_layer(), group=([0], [0]), groups=([0], [0]), **kw)


def test_settings_must_be_a_settings_object():
    with pytest.raises(TypeError, match="settings must be a MeasureSettings"):
        cw.measure_layer(_layer(), in_range=(0, 1), settings={"bins": 4})


@pytest.mark.parametrize("make", ["Monitor", "CausalDashboard"])
def test_live_entry_points_refuse_a_misspelt_setting_at_the_call(make):
    model = nn.Sequential(nn.Linear(3, 2), nn.Sigmoid())
    with pytest.raises(TypeError, match=r"'bnis' \(did you mean 'bins'\?\)"):
        getattr(cw, make)(model, torch.rand(4, 3), in_range=(0, 1), bnis=8)
    with pytest.raises(ValueError, match=r"tol=0 must be a positive number"):
        getattr(cw, make)(model, torch.rand(4, 3), in_range=(0, 1), tol=0)


def test_measure_refuses_a_misspelt_setting_before_tracing():
    model = nn.Sequential(nn.Linear(3, 2), nn.Sigmoid())
    with pytest.raises(TypeError, match=r"measure\(\) got unknown setting 'metric' \(did you "
                                        r"mean 'metrics'\?\)"):
        cw.measure(model, torch.rand(4, 3), in_range=(0, 1), metric=["ei_parts"])
    df = cw.measure(model, torch.rand(4, 3), in_range=(0, 1), metrics=["ei_parts"], bins=4)
    assert set(df["metric"]) == {"ei_parts"} and set(df["in_bins"]) == {4}

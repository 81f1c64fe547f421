"""History: in-memory bookkeeping, thread safety, and the on-disk round trip."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from causal_widgets.live.store import TIDY_COLUMNS, History


class FakeResult:
    """A stand-in with the LayerResult attributes History reads (to_frame, matrices, nodes)."""

    def __init__(self, rng: np.random.Generator, n_in: int, n_out: int, name: str = "x"):
        self.ei_parts_matrix = rng.normal(size=(n_in, n_out))
        self.sensitivity_matrix = rng.normal(size=(n_in, n_out))
        self.name = name
        sides = ["input"] * n_in + ["output"] * n_out
        nodes = list(range(n_in)) + list(range(n_out))
        self.nodes = pd.DataFrame(
            {
                "side": sides,
                "node": nodes,
                "ei": rng.normal(size=n_in + n_out),
                "ei_parts": rng.normal(size=n_in + n_out),
                "sensitivity": rng.normal(size=n_in + n_out),
            }
        )
        self.values = {
            m: float(rng.normal()) for m in ("ei", "ei_parts", "sensitivity", "degeneracy")
        }
        # a negative estimate and a NaN CI bound must survive the round trip unchanged
        self.values["integration"] = -0.125

    def to_frame(self) -> pd.DataFrame:
        rows = []
        for metric, v in self.values.items():
            rows.append(
                dict(
                    layer=self.name,
                    metric=metric,
                    value=v,
                    ci_low=v - 0.1 if metric != "degeneracy" else float("nan"),
                    ci_high=v + 0.1,
                    method="exact" if metric != "ei" else "sampled",
                    samples=0 if metric != "ei" else 65536,
                    in_bins=8,
                    out_bins=8,
                    in_range=(0.0, 1.0),
                    out_range=(-1.0, 1.0),
                    seed=0,
                    version="0.1.0",
                )
            )
        return pd.DataFrame(rows)


def _filled(rng: np.random.Generator) -> tuple[History, dict]:
    h = History(settings={"bins": 8, "every": 2, "in_range": (0.0, 1.0)})
    shapes = {"fc1": (4, 5), "fc2": (5, 5), "fc3": (5, 3)}
    h.set_layers(
        [dict(name=n, n_in=a, n_out=b, kind="dense-sigmoid") for n, (a, b) in shapes.items()]
    )
    results = {}
    for epoch in (0, 2, 4):
        h.add_scalars(epoch + 1, loss=1.0 / (epoch + 2))  # an unmeasured epoch with a scalar
        for name, (a, b) in shapes.items():
            r = FakeResult(rng, a, b, name="whatever")
            results[(epoch, name)] = r
            h.add_result(epoch, name, r, {"loss": 1.0 / (epoch + 1), "accuracy": 0.5})
    h.add_scalars(6)  # recorded with no scalars at all
    h.add_error(4, "fc2", "parameter 'fc2.weight' contains NaN")
    h.add_error(None, None, "model-level failure")
    h.add_dropped(3)
    h.add_dropped(5)
    return h, results


def test_frame_has_tidy_columns_epoch_and_scalars():
    h, results = _filled(np.random.default_rng(0))
    df = h.frame()
    assert list(df.columns[: 1 + len(TIDY_COLUMNS)]) == ["epoch"] + TIDY_COLUMNS
    assert {"loss", "accuracy"} <= set(df.columns)
    assert len(df) == 3 * 3 * 5
    # layer column is the name passed to add_result, not what the result called itself
    assert set(df["layer"]) == {"fc1", "fc2", "fc3"}
    row = df[(df.epoch == 2) & (df.layer == "fc2") & (df.metric == "ei")].iloc[0]
    assert row["value"] == results[(2, "fc2")].values["ei"]
    assert row["loss"] == pytest.approx(1 / 3)
    assert h.epochs() == [0, 2, 4]
    sc = h.scalars()
    assert sc["epoch"].tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert sc.loc[sc.epoch == 1, "loss"].item() == pytest.approx(0.5)
    assert np.isnan(sc.loc[sc.epoch == 6, "loss"].item())
    assert np.isnan(sc.loc[sc.epoch == 1, "accuracy"].item())


def test_add_result_replaces_same_epoch_and_layer():
    rng = np.random.default_rng(1)
    h = History()
    h.add_result(0, "fc1", FakeResult(rng, 2, 2))
    second = FakeResult(rng, 2, 2)
    h.add_result(0, "fc1", second)
    df = h.frame()
    assert len(df) == 5
    assert df.loc[df.metric == "ei", "value"].item() == second.values["ei"]
    np.testing.assert_array_equal(h.matrix(0, "fc1")["ei_parts"], second.ei_parts_matrix)
    assert h.done() == {(0, "fc1")}


def test_matrix_returns_copies_and_none_when_missing():
    rng = np.random.default_rng(2)
    h = History()
    r = FakeResult(rng, 3, 2)
    h.add_result(0, "a", r)
    m = h.matrix(0, "a")
    assert m["ei_parts"].shape == (3, 2)
    m["ei_parts"][:] = 99.0
    m["nodes"].loc[0, "ei"] = 99.0
    again = h.matrix(0, "a")
    np.testing.assert_array_equal(again["ei_parts"], r.ei_parts_matrix)
    assert again["nodes"].loc[0, "ei"] == r.nodes.loc[0, "ei"]
    assert h.matrix(1, "a") is None
    assert h.matrix(0, "b") is None


def test_round_trip_everything(tmp_path: Path):
    h, _ = _filled(np.random.default_rng(3))
    out = h.save(tmp_path / "hist")
    assert sorted(p.name for p in out.iterdir()) == [
        "matrices.parquet",
        "meta.json",
        "nodes.parquet",
        "results.parquet",
        "scalars.parquet",
    ]
    g = History.load(out)
    pd.testing.assert_frame_equal(g.frame(), h.frame())
    pd.testing.assert_frame_equal(g.scalars(), h.scalars())
    assert g.frame()["in_range"].iloc[0] == (0.0, 1.0)
    assert g.epochs() == h.epochs()
    assert g.layers() == h.layers()
    assert g.errors() == h.errors()
    assert g.dropped() == [3, 5]
    assert g.done() == h.done()
    assert g.settings == {"bins": 8, "every": 2, "in_range": [0.0, 1.0]}
    for epoch, layer in h.done():
        a, b = h.matrix(epoch, layer), g.matrix(epoch, layer)
        for kind in ("ei_parts", "sensitivity"):
            assert b[kind].dtype == np.float64
            np.testing.assert_array_equal(a[kind], b[kind])  # bit-exact
        pd.testing.assert_frame_equal(a["nodes"], b["nodes"])
    meta = json.loads((out / "meta.json").read_text())
    assert meta["version"] == "0.1.0"
    assert meta["errors"][1] == {"epoch": None, "layer": None, "message": "model-level failure"}
    # a loaded history keeps accepting results, and saves again
    g.add_result(6, "fc1", FakeResult(np.random.default_rng(4), 4, 5))
    g.save(out)
    assert History.load(out).epochs() == [0, 2, 4, 6]


def test_round_trip_of_results_without_matrices_or_nodes(tmp_path: Path):
    class Bare(FakeResult):
        pass

    r = Bare(np.random.default_rng(5), 2, 3)
    r.sensitivity_matrix = None
    r.nodes = None
    h = History()
    h.add_result(0, "only", r)
    g = History.load(h.save(tmp_path / "h"))
    m = g.matrix(0, "only")
    assert m["sensitivity"] is None and m["nodes"] is None
    np.testing.assert_array_equal(m["ei_parts"], r.ei_parts_matrix)


def test_empty_history_round_trip(tmp_path: Path):
    h = History()
    assert list(h.frame().columns) == ["epoch"] + TIDY_COLUMNS
    assert h.epochs() == [] and len(h.scalars()) == 0
    g = History.load(h.save(tmp_path / "empty"))
    assert len(g.frame()) == 0 and g.errors() == [] and g.layers() == []


def test_non_finite_settings_are_null_and_old_nan_strings_still_read(tmp_path: Path):
    """One NaN policy (causal_widgets.jsonable): NaN/inf are written as JSON null. Files
    written before it hold them as the strings "nan"/"inf"; those still load, as None."""
    h = History(settings={"tol": float("nan"), "range": (0.0, np.inf), "bins": np.int64(8),
                          "method": "exact"})
    out = h.save(tmp_path / "h")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["settings"] == {"tol": None, "range": [0.0, None], "bins": 8, "method": "exact"}
    assert History.load(out).settings == meta["settings"]
    # the same history as the old writer left it
    meta["settings"] = {"tol": "nan", "range": [0.0, "inf"], "low": "-inf", "bins": 8,
                        "method": "exact"}
    (out / "meta.json").write_text(json.dumps(meta))
    assert History.load(out).settings == {"tol": None, "range": [0.0, None], "low": None,
                                          "bins": 8, "method": "exact"}


def test_save_replaces_and_leaves_no_temporaries(tmp_path: Path):
    rng = np.random.default_rng(6)
    h = History()
    h.add_result(0, "a", FakeResult(rng, 2, 2))
    h.save(tmp_path / "h")
    h.add_result(1, "a", FakeResult(rng, 2, 2))
    h.save(tmp_path / "h")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h"]
    assert History.load(tmp_path / "h").epochs() == [0, 1]


def test_interrupted_save_recovers_previous_history(tmp_path: Path):
    """A kill between save()'s two renames leaves only the backup: load() must find it."""
    rng = np.random.default_rng(7)
    h = History()
    h.add_result(0, "a", FakeResult(rng, 2, 2))
    h.save(tmp_path / "h")
    (tmp_path / "h").rename(tmp_path / "h.cw-old")  # the state right after the first rename
    with pytest.warns(UserWarning, match="interrupted"):
        g = History.load(tmp_path / "h")
    assert g.epochs() == [0]
    with pytest.warns(UserWarning, match="interrupted"):
        assert History.open(tmp_path / "h").epochs() == [0]
    g.add_result(1, "a", FakeResult(rng, 2, 2))
    g.save(tmp_path / "h")  # a later save supersedes the backup
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h"]


def test_load_errors_name_the_path(tmp_path: Path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="no saved history at .*nope"):
        History.load(missing)
    (tmp_path / "notahistory").mkdir()
    with pytest.raises(ValueError, match="not a saved history"):
        History.load(tmp_path / "notahistory")
    broken = tmp_path / "broken"
    History().save(broken)
    (broken / "results.parquet").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="could not read the history"):
        History.load(broken)
    assert len(History.open(tmp_path / "fresh").frame()) == 0


def test_save_refuses_to_overwrite_foreign_directory(tmp_path: Path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "precious.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a saved history"):
        History().save(d)
    assert (d / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_input_validation():
    h = History()
    with pytest.raises(TypeError, match="epoch must be an int"):
        h.add_scalars(1.5, loss=1.0)
    with pytest.raises(TypeError, match="loss=loss.item"):
        h.add_scalars(0, loss="high")
    with pytest.raises(ValueError, match="clashes"):
        h.add_scalars(0, value=1.0)
    with pytest.raises(TypeError, match="LayerResult"):
        h.add_result(0, "a", {"ei": 1.0})
    with pytest.raises(ValueError, match="lacks"):
        h.set_layers([{"name": "a"}])
    # tensors and numpy scalars are accepted as scalars
    import torch

    h.add_scalars(0, loss=torch.tensor(0.5), accuracy=np.float32(0.25))
    assert h.scalars().iloc[0].tolist() == [0, 0.5, 0.25]


def test_is_done_and_revision():
    rng = np.random.default_rng(8)
    h = History()
    h.set_layers([dict(name="a", n_in=2, n_out=2, kind="k"), dict(name="b", n_in=2, n_out=2,
                                                                  kind="k")])
    r0 = h.revision
    h.add_result(0, "a", FakeResult(rng, 2, 2))
    assert h.revision > r0
    assert not h.is_done(0)
    h.add_result(0, "b", FakeResult(rng, 2, 2))
    assert h.is_done(0) and not h.is_done(1)
    assert h.is_done(1, layers=[]) is False


def test_thread_safety_smoke(tmp_path: Path):
    """Writers in several threads, a reader and a saver at the same time: nothing lost."""
    h = History()
    n_threads, per_thread = 4, 25
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(t: int) -> None:
        rng = np.random.default_rng(100 + t)
        try:
            for k in range(per_thread):
                epoch = t * per_thread + k
                h.add_scalars(epoch, loss=float(k))
                h.add_result(epoch, f"layer{t}", FakeResult(rng, 2, 3))
                if k % 5 == 0:
                    h.add_error(epoch, f"layer{t}", "boom")
                    h.add_dropped(epoch)
        except BaseException as err:  # noqa: BLE001 - surfaced by the assert below
            errors.append(err)

    def reader() -> None:
        try:
            while not stop.is_set():
                df = h.frame()
                # every row set is complete: rows come in whole results of 5 metrics
                assert len(df) % 5 == 0
                h.scalars()
                h.save(tmp_path / "live")
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(n_threads)]
    rt = threading.Thread(target=reader)
    rt.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    rt.join()
    assert errors == []
    total = n_threads * per_thread
    assert len(h.frame()) == total * 5
    assert len(h.scalars()) == total
    assert len(h.errors()) == n_threads * 5 and len(h.dropped()) == n_threads * 5
    h.save(tmp_path / "final")
    assert len(History.load(tmp_path / "final").frame()) == total * 5


def test_results_revision_ignores_loss_of_unmeasured_epochs_and_frame_cache_stays_current():
    rng = np.random.default_rng(9)
    h = History()
    h.add_result(0, "a", FakeResult(rng, 2, 2), {"loss": 1.0})
    first = h.frame()
    rr = h.results_revision
    h.add_scalars(1, loss=0.5)  # an unmeasured epoch: the results view is unchanged
    assert h.results_revision == rr and h.revision > 0
    pd.testing.assert_frame_equal(h.frame(), first)
    h.add_scalars(0, loss=0.25)  # a measured epoch: its rows carry the new loss
    assert h.results_revision > rr
    assert set(h.frame()["loss"]) == {0.25}
    h.add_result(1, "a", FakeResult(rng, 2, 2))
    assert sorted(set(h.frame()["epoch"])) == [0, 1]
    # the cached frame is not shared with callers
    f = h.frame()
    f.loc[:, "value"] = 99.0
    assert (h.frame()["value"] != 99.0).any()


def test_rows_written_before_statuses_existed_get_one_from_their_method(tmp_path):
    import pandas as pd

    from causal_widgets.live.store import History

    h = History()
    h.add_scalars(0, loss=1.0)
    h.save(tmp_path / "h")
    res = tmp_path / "h" / "results.parquet"
    old = pd.DataFrame({
        "epoch": [0, 0], "layer": ["fc1", "fc1"], "metric": ["ei_parts", "ei"],
        "value": [1.0, 2.0], "ci_low": [1.0, 1.9], "ci_high": [1.0, 2.1],
        "method": ["exact", "sampled"], "samples": [0, 100], "in_bins": [8, 8],
        "out_bins": [8, 8], "in_range": [(0.0, 1.0)] * 2, "out_range": [(0.0, 1.0)] * 2,
        "seed": [0, 0], "version": ["0.1.0", "0.1.0"],
    })  # a version-0.1 results table: no status column
    old.to_parquet(res, index=False)
    import json

    meta_path = tmp_path / "h" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta.pop("files", None)  # as written by 0.1, before row counts were recorded
    meta_path.write_text(json.dumps(meta))
    frame = History.load(tmp_path / "h").frame().set_index("metric")
    assert frame.loc["ei_parts", "status"] == "exact"
    assert frame.loc["ei", "status"] == "estimate"

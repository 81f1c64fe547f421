"""History's pending epochs (recorded, not measured yet) and spilled snapshot files:
kept, saved in meta.json, loaded back; histories saved before they existed have none."""

from __future__ import annotations

import json

from causal_widgets.live.store import History


def test_pending_epochs_are_kept_and_removed():
    h = History()
    h.add_pending(4)
    h.add_pending(1, spilled="/tmp/x/epoch_1.pt")
    h.add_pending(9)
    assert h.pending() == [1, 4, 9]
    assert h.spilled() == {1: "/tmp/x/epoch_1.pt"}
    before = h.results_revision
    h.remove_pending(4)
    h.remove_pending(4)  # twice: harmless
    assert h.pending() == [1, 9]
    # a pending change is not a result: views built from results need not rebuild
    assert h.results_revision == before
    assert "2 pending" in repr(h)


def test_pending_epochs_survive_save_and_load(tmp_path):
    h = History()
    h.add_scalars(0, loss=1.0)
    h.add_pending(0)
    h.add_pending(3, spilled=tmp_path / "epoch_3.pt")
    h.save(tmp_path / "h")
    g = History.load(tmp_path / "h")
    assert g.pending() == [0, 3]
    assert g.spilled() == {3: str(tmp_path / "epoch_3.pt")}


def test_a_history_saved_before_pending_existed_has_none(tmp_path):
    h = History()
    h.add_scalars(0, loss=1.0)
    h.add_pending(0)
    path = h.save(tmp_path / "h")
    meta = json.loads((path / "meta.json").read_text())
    del meta["pending"]  # as written by earlier versions
    (path / "meta.json").write_text(json.dumps(meta))
    assert History.load(path).pending() == []

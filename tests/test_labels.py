"""Labels: validated names, bulk set/undo, CSV round trip, all-or-nothing import, concurrent tabs."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from facelab.cli import main as cli
from facelab.data import labels as lb
from facelab.store import workspace as ws_mod

from builders import add_faces, blob_crops


def make(n: int = 20, name: str = "w") -> ws_mod.Workspace:
    w = ws_mod.create(name)
    add_faces(w, blob_crops(n // 2)[0])
    return w


@pytest.mark.parametrize(
    "bad, why",
    [("", "empty"), ("   ", "empty"), ("x" * 33, "too long"), ("?!. -", "letter or digit"), ("a\x00b", "control")],
)
def test_bad_label_names_are_refused(bad: str, why: str) -> None:
    with pytest.raises(lb.LabelError, match=why):
        lb.validate_label_name(bad)


def test_names_are_normalised() -> None:
    assert lb.validate_label_name("  Big   Smile ") == "big smile"
    assert lb.validate_label_name("x" * 32) == "x" * 32
    assert lb.validate_label_name("ça va") == "ça va"


def test_defaults_once_and_user_names(home: Path) -> None:
    w = make()
    assert lb.label_names(w) == list(lb.DEFAULT_LABELS)
    assert lb.add_label_name(w, " Wink ") == "wink"
    lb.add_label_name(w, "wink")
    assert lb.label_names(w) == [*lb.DEFAULT_LABELS, "wink"]
    lb.remove_label_name(w, "angry")
    lb.ensure_default_labels(w)
    assert "angry" not in lb.label_names(w), "a default the user removed stays removed"
    assert lb.counts(w) == {"smile": 0, "neutral": 0, "surprise": 0, "sad": 0, "wink": 0}


def test_set_toggle_undo_and_survive_reopening(home: Path) -> None:
    w = make()
    r1 = lb.set_labels(w, [1, 2, 3], "smile")
    assert r1.face_ids == (1, 2, 3) and r1.on
    r2 = lb.set_labels(w, [2, 3, 4, 5], "Smile")
    assert r2.face_ids == (4, 5), "only the rows that changed are recorded"
    lb.set_labels(w, [2], "sad")
    t = lb.toggle(w, 2, "smile")
    assert not t.on and t.face_ids == (2,)
    assert lb.labels_of(w) == {1: {"smile"}, 2: {"sad"}, 3: {"smile"}, 4: {"smile"}, 5: {"smile"}}
    redo = lb.undo(w, t)
    assert lb.labels_of(w)[2] == {"sad", "smile"}
    lb.undo(w, redo)
    lb.undo(w, r2)
    assert lb.labels_of(w) == {1: {"smile"}, 2: {"sad"}, 3: {"smile"}}
    assert not lb.set_labels(w, [1], "smile"), "nothing changed, nothing to undo"

    again = ws_mod.open_workspace("w")  # a new connection, as after a restart
    assert lb.labels_of(again) == {1: {"smile"}, 2: {"sad"}, 3: {"smile"}}
    assert lb.counts(again)["smile"] == 2
    assert list(lb.faces_with(again, "smile")) == [1, 3]


def test_unknown_faces_are_refused_and_nothing_changes(home: Path) -> None:
    w = make()
    with pytest.raises(lb.LabelError, match="no such face id"):
        lb.set_labels(w, [1, 999], "smile")
    assert lb.labels_of(w) == {}
    assert lb.set_labels(w, [], "smile").face_ids == ()


def test_deleted_faces_do_not_count(home: Path) -> None:
    w = make()
    lb.set_labels(w, [0, 1], "smile")
    with w.connect(write=True) as c:
        c.execute("UPDATE faces SET deleted = 1 WHERE id = 0")
    assert lb.counts(w)["smile"] == 1


def test_labels_version_changes_with_every_change_a_probe_would_see(home: Path) -> None:
    """Caches of probes and judges key on it: a swap that keeps every count the same (the old
    key, a hash of the counts, missed it) and a deleted face must each give a new version."""
    from facelab.data.dataset import delete_faces

    w = make()
    seen = [lb.version(w)]

    def changed() -> bool:
        seen.append(lb.version(w))
        return seen[-1] != seen[-2]

    record = lb.set_labels(w, [0], "smile")
    assert changed()
    lb.undo(w, record)
    lb.set_labels(w, [1], "smile")  # same counts as after the first set
    assert changed() and lb.counts(w)["smile"] == 1
    lb.set_labels(w, [1], "smile")  # already there: nothing changes
    assert not changed()
    lb.add_label_name(w, "wink")
    lb.set_labels(w, [2], "wink")
    assert changed()
    lb.remove_label_name(w, "wink")
    assert changed()
    delete_faces(w, [1])
    assert changed()
    assert len(set(seen)) == len(seen) - 1  # never back to an earlier version


def test_csv_round_trip(home: Path) -> None:
    w = make()
    lb.set_labels(w, [0, 4], "smile")
    lb.set_labels(w, [4], "big laugh")
    text = lb.export_csv(w)
    lines = text.splitlines()
    assert lines[0] == "face_id,label,t_seconds,source"
    assert lines[1:] == ["0,smile,0.000,clip.mp4", "4,big laugh,0.500,clip.mp4", "4,smile,0.500,clip.mp4"]

    other = make(name="other")
    assert lb.import_csv(other, text) == 3
    assert lb.labels_of(other) == lb.labels_of(w)
    assert lb.import_csv(other, text) == 0, "importing twice adds nothing"
    assert lb.import_csv(other, "\ufeffFace_ID,Label\n7,Wink\n\n") == 1
    assert lb.labels_of(other)[7] == {"wink"}


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "line 1: the file is empty"),
        ("id,name\n1,smile\n", "line 1: expected a header"),
        ("face_id,label\n1,smile\n999,smile\n", "line 3: no face with id 999"),
        ("face_id,label\n1,smile\n2,???\n", "line 3: label '???' needs at least one letter"),
        ("face_id,label\n1,smile\nx,smile\n", "line 3: face id 'x' is not a whole number"),
        ("face_id,label\n1\n", "line 2: expected face_id,label"),
    ],
)
def test_bad_csv_changes_nothing(home: Path, text: str, message: str) -> None:
    w = make()
    lb.set_labels(w, [3], "sad")
    names = lb.label_names(w)
    with pytest.raises(lb.LabelError) as e:
        lb.import_csv(w, text)
    assert message in str(e.value)
    assert lb.labels_of(w) == {3: {"sad"}} and lb.label_names(w) == names


def _label_many(home: str, label: str, ids: list[int]) -> None:
    w = ws_mod.open_workspace("w", home)
    for i in ids:  # one short transaction per click, as a page does
        lb.set_labels(w, [i], label)


def test_two_tabs_labelling_at_once_keep_both(home: Path) -> None:
    w = make(40)
    ids = list(range(40))
    # Two other processes (as two tabs' servers would be) and two threads label at once.
    script = ("import sys; from facelab.data import labels; from facelab.store import workspace; "
              "w = workspace.open_workspace('w', sys.argv[1]); "
              "[labels.set_labels(w, [int(i)], sys.argv[2]) for i in sys.argv[3].split(',')]")
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(home), label, ",".join(map(str, order))])
        for label, order in (("smile", ids), ("sad", ids[::-1]))
    ]
    threads = [threading.Thread(target=_label_many, args=(str(home), "surprise", ids[i::2])) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        assert p.wait(120) == 0
    assert lb.labels_of(w) == {i: {"smile", "sad", "surprise"} for i in ids}


def test_cli_export_import(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    w = make()
    lb.set_labels(w, [1, 2], "smile")
    out = tmp_path / "labels.csv"
    assert cli(["labels", "export", "--workspace", "w", "--out", str(out)]) == 0
    assert out.read_text().startswith("face_id,label")
    make(name="w2")
    assert cli(["labels", "import", "--workspace", "w2", str(out)]) == 0
    assert "2 labels added" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text("face_id,label\n1,smile\n500,sad\n")
    assert cli(["labels", "import", "--workspace", "w2", str(bad)]) == 2
    assert "line 3: no face with id 500" in capsys.readouterr().err
    assert cli(["labels", "counts", "--workspace", "w2"]) == 0
    assert "smile" in capsys.readouterr().out


def test_grid_events_apply_once_in_order_per_mount(home: Path) -> None:
    """The Label grid's browser half resends every change not yet acknowledged: each is applied
    once, in order, per mount (a tab's grid); a page turn is clamped; Undo gets the last action."""
    from facelab.ui.grid import APPLIED, LAST_LABEL, apply_events, last_label

    w = make()
    session: dict = {}
    events = {"mount": "a", "list": [{"seq": 1, "label": "smile", "ids": [1, 2], "on": True},
                                     {"seq": 2, "label": "smile", "ids": [2], "on": False}]}
    out = apply_events(w, session, events, pages=3, page_key="p")
    assert list(lb.faces_with(w, "smile")) == [1] and session[APPLIED] == {"a": 2}
    assert session["fl_undo"] == lb.UndoRecord("smile", (2,), False) and len(out.records) == 2
    lb.set_labels(w, [1], "smile", on=False)  # e.g. Undo, or another tab
    events["list"].append({"seq": 3, "page": 9})
    out = apply_events(w, session, events, pages=3, page_key="p")  # 1 and 2 again: not reapplied
    assert list(lb.faces_with(w, "smile")) == [] and out.page == 2 and session["p"] == 2
    assert not apply_events(w, session, events, pages=3, page_key="p")
    other = {"mount": "b", "list": [{"seq": 1, "label": "sad", "ids": [3], "on": True}]}
    apply_events(w, session, other, pages=3, page_key="p")  # another mount counts from 1 again
    assert list(lb.faces_with(w, "sad")) == [3] and session[APPLIED] == {"a": 3, "b": 1}
    assert session[LAST_LABEL] == "sad" and last_label(w, {}) == "sad"  # remembered in the workspace


def test_grid_events_never_add_labels_or_touch_unknown_frames(home: Path) -> None:
    from facelab.ui.grid import apply_events

    w = make()
    session: dict = {}
    bad = {"mount": "a", "list": [{"seq": 1, "label": "new one", "ids": [1], "on": True},
                                  {"seq": 2, "label": "smile", "ids": [999], "on": True},
                                  {"seq": 3, "label": "smile", "ids": ["1"], "on": True},
                                  {"seq": "4", "label": "smile", "ids": [1], "on": True}]}
    out = apply_events(w, session, bad, pages=1, page_key="p")
    assert "new one" not in lb.label_names(w) and lb.counts(w)["smile"] == 0
    assert out.errors == ["no such face id(s): 999"] and not out
    assert apply_events(w, session, None, pages=1, page_key="p").records == []

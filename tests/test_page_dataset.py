"""AppTest checks of the app shell (workspace picker) and the Dataset page."""

from __future__ import annotations

import shutil
from pathlib import Path

from streamlit.testing.v1 import AppTest

from facelab.data import dataset
from facelab.store import workspace as ws
from facelab.ui import state

from conftest import REPO
from media import media_file

TIMEOUT = 60


def dataset_page(name: str | None) -> AppTest:
    at = AppTest.from_file(str(REPO / "pages" / "dataset.py"), default_timeout=TIMEOUT)
    if name:
        at.session_state[state.WORKSPACE] = name
    return at.run()


def picker_app() -> None:
    from facelab.ui.sidebar import workspace_picker

    workspace_picker()


def test_app_shell_starts(home: Path) -> None:
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert at.sidebar.text_input(key="fl_ws_new_name")


def test_sidebar_creates_switches_and_deletes_workspaces(home: Path) -> None:
    # The picker runs alone: AppTest does not rerun an st.navigation app's main script.
    at = AppTest.from_function(picker_app, default_timeout=TIMEOUT).run()
    at.text_input(key="fl_ws_new_name").input("alice")
    at.button(key="FormSubmitter:fl_ws_create-Create").click().run()
    assert ws.list_workspaces() == ["alice"]
    assert at.session_state[state.WORKSPACE] == "alice"
    at.text_input(key="fl_ws_new_name").input("../bad")
    at.button(key="FormSubmitter:fl_ws_create-Create").click().run()
    assert any("invalid workspace name" in e.value for e in at.error)
    at.text_input(key="fl_ws_new_name").input("bob")
    at.button(key="FormSubmitter:fl_ws_create-Create").click().run()
    assert at.session_state[state.WORKSPACE] == "bob"
    at.selectbox(key=state.WORKSPACE).select("alice").run()
    assert at.session_state[state.WORKSPACE] == "alice"
    assert at.button(key="fl_ws_delete_btn").disabled, "delete needs the confirmation tick"
    at.checkbox(key="fl_ws_delete_sure").check().run()
    at.button(key="fl_ws_delete_btn").click().run()
    assert ws.list_workspaces() == ["bob"]
    assert not (home / "workspaces" / "alice").exists()


def test_page_asks_for_a_workspace(home: Path) -> None:
    at = dataset_page(None)
    assert any("Choose or create a workspace" in i.value for i in at.info)


def test_empty_workspace_invites_an_upload(home: Path) -> None:
    ws.create("empty")
    at = dataset_page("empty")
    assert not at.exception
    assert any("No faces yet" in i.value for i in at.info)
    build = next(b for b in at.button if b.label == "Build dataset")
    assert build.disabled


def test_counts_contact_sheet_and_delete(home: Path) -> None:
    w = ws.create("bob")
    report = dataset.build(w, media_file("single_face.mp4"), dataset.BuildSettings())
    assert report.kept > 3
    at = dataset_page("bob")
    assert not at.exception
    kept = next(m for m in at.metric if m.label == "Faces kept")
    assert int(kept.value) == report.kept
    ticks = [c for c in at.checkbox if c.key and c.key.startswith("fl_reject_")]
    assert len(ticks) == min(report.kept, 48)
    ticks[0].check()
    ticks[1].check()
    at.run()
    next(b for b in at.button if b.label.startswith("Delete 2")).click().run()
    assert not at.exception
    assert int(next(m for m in at.metric if m.label == "Faces kept").value) == report.kept - 2
    assert len(dataset.faces_table(w)) == report.kept - 2
    deleted = [i for i in range(w.face_count()) if i not in {f["id"] for f in dataset.faces_table(w)}]
    assert len(deleted) == 2 and not w.faces()[deleted].any(), "deleted pixels must be erased"


def test_workspace_deleted_from_outside(home: Path) -> None:
    w = ws.create("gone")
    at = AppTest.from_file(str(REPO / "pages" / "dataset.py"), default_timeout=TIMEOUT)
    at.session_state[state.WORKSPACE] = "gone"
    at.run()  # the page is open on it
    assert not at.exception and not at.warning
    shutil.rmtree(w.path)  # e.g. `rm -r` in a terminal
    at.run()
    assert not at.exception
    assert any("no longer exists" in x.value for x in at.warning)
    assert any("Choose or create a workspace" in x.value for x in at.info)

"""The workspace picker: create, switch, rename and delete workspaces.

The selectbox is bound to `state.WORKSPACE` itself, and every change goes through a callback
(which runs before the script), so there is one source of truth for the open workspace.
"""

from __future__ import annotations

import streamlit as st

from facelab.store import workspace as ws
from facelab.ui import archive as ui_archive
from facelab.ui import state
from facelab.ui.text import md

ERROR = "fl_ws_error"  # a picker error to show on the next run


def _open(name: str | None) -> None:
    st.session_state[state.WORKSPACE] = name
    st.session_state.pop(state.RUN, None)


def _create() -> None:
    name = st.session_state.get("fl_ws_new_name", "")
    try:
        created = ws.create(name).name
    except ws.WorkspaceError as e:
        st.session_state[ERROR] = str(e)
        return
    _open(created)
    state.flash(f"Created the workspace {created}. Next: upload a video of your face on the Dataset page.")


def _rename(old: str) -> None:
    try:
        _open(ws.rename(old, st.session_state.get("fl_ws_rename", "")).name)
    except (ws.WorkspaceError, OSError) as e:
        st.session_state[ERROR] = str(e)


def _delete(name: str) -> None:
    try:
        ws.delete(name)
    except (ws.WorkspaceError, OSError) as e:
        st.session_state[ERROR] = str(e)
        return
    _open(None)
    st.session_state["fl_ws_delete_sure"] = False
    state.flash(f"Deleted workspace {name} and all its files.")


def workspace_picker() -> None:
    names = ws.list_workspaces()
    if st.session_state.get(state.WORKSPACE) not in names:
        _open(names[0] if names else None)
    with st.sidebar:
        st.subheader("Workspace")
        if names:
            st.selectbox("Workspace", names, key=state.WORKSPACE, label_visibility="collapsed",
                         on_change=lambda: st.session_state.pop(state.RUN, None))
        else:
            st.caption("No workspace yet: create one to hold your face dataset.")
        error = st.session_state.pop(ERROR, None)
        if error:
            st.error(md(error))
        with st.expander("New workspace", expanded=not names):
            with st.form("fl_ws_create", clear_on_submit=True, border=False):
                st.text_input("Name", placeholder="e.g. alice", key="fl_ws_new_name")
                st.form_submit_button("Create", on_click=_create)
        current = st.session_state.get(state.WORKSPACE)
        if current:
            with st.expander("Rename or delete"):
                st.text_input("New name", value=current, key="fl_ws_rename")
                st.button("Rename", key="fl_ws_rename_btn", on_click=_rename, args=(current,))
                sure = st.checkbox(f"Yes, delete every file of **{md(current)}**", key="fl_ws_delete_sure")
                st.button("Delete workspace", type="primary", disabled=not sure, key="fl_ws_delete_btn",
                          on_click=_delete, args=(current,))
            ui_archive.export_button(ws.open_workspace(current))
        with st.expander("Import a workspace (.zip)"):
            ui_archive.import_form()

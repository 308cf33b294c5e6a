"""The workspace picker: create, switch, rename and delete workspaces."""

from __future__ import annotations

import streamlit as st

from facelab import workspace as ws
from facelab.ui import state


def workspace_picker() -> None:
    names = ws.list_workspaces()
    current = st.session_state.get(state.WORKSPACE)
    if current not in names:
        current = names[0] if names else None
        st.session_state[state.WORKSPACE] = current
    with st.sidebar:
        st.subheader("Workspace")
        if names:
            choice = st.selectbox(
                "Workspace", names, index=names.index(current), key="fl_ws_select",
                label_visibility="collapsed",
            )
            if choice != current:
                st.session_state[state.WORKSPACE] = choice
                st.session_state.pop(state.RUN, None)
                st.rerun()
        else:
            st.caption("No workspace yet: create one to hold your face dataset.")
        with st.expander("New workspace", expanded=not names):
            with st.form("fl_ws_create", clear_on_submit=True, border=False):
                name = st.text_input("Name", placeholder="e.g. alice", key="fl_ws_new_name")
                if st.form_submit_button("Create"):
                    try:
                        ws.create(name)
                    except ws.WorkspaceError as e:
                        st.error(str(e))
                    else:
                        st.session_state[state.WORKSPACE] = name.strip()
                        st.session_state.pop(state.RUN, None)
                        st.rerun()
        if current:
            _manage(current)


def _manage(name: str) -> None:
    with st.expander("Rename or delete"):
        new = st.text_input("New name", value=name, key="fl_ws_rename")
        if st.button("Rename", key="fl_ws_rename_btn") and new != name:
            try:
                ws.rename(name, new)
            except (ws.WorkspaceError, OSError) as e:
                st.error(str(e))
            else:
                st.session_state[state.WORKSPACE] = new
                st.rerun()
        sure = st.checkbox(f"Yes, delete every file of **{name}**", key="fl_ws_delete_sure")
        if st.button("Delete workspace", type="primary", disabled=not sure, key="fl_ws_delete_btn"):
            try:
                ws.delete(name)
            except (ws.WorkspaceError, OSError) as e:
                st.error(str(e))
            else:
                st.session_state.pop(state.WORKSPACE, None)
                st.session_state.pop(state.RUN, None)
                state.flash(f"Deleted workspace {name} and all its files.")
                st.rerun()

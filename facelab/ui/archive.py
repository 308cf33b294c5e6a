"""Sidebar widgets to export the open workspace as a zip and to import one.

The import runs in the button's callback (before the script), like the workspace picker's
actions, because it switches `state.WORKSPACE`, which the picker's selectbox is bound to and
which cannot be changed once that widget has been drawn in a run.
"""

from __future__ import annotations

import streamlit as st

from facelab.store.archive import ArchiveError, export_bytes, import_workspace
from facelab.store.workspace import Workspace
from facelab.ui import state
from facelab.ui.text import md

ERROR = "fl_archive_error"  # an import error to show on the next run
NAME = "fl_archive_name"  # the optional new name typed for an import
NONCE = "fl_archive_nonce"  # bumped after a successful import to clear the uploader
PREPARED = "fl_archive_prepared"  # (workspace name, zip bytes) where data cannot be a callable


def _deferred_downloads() -> bool:
    """Whether this Streamlit builds a download's data only when the button is clicked."""
    try:
        from streamlit.runtime.media_file_manager import MediaFileManager
    except ImportError:
        return False
    return hasattr(MediaFileManager, "add_deferred")


def export_button(w: Workspace) -> None:
    """A download button for the workspace as one .zip (built when clicked: it can be large)."""
    label, file_name = "Export workspace (.zip)", f"{w.name}.zip"
    help_text = "Crops, labels and trained runs in one file, to import on another machine."
    if _deferred_downloads():
        st.download_button(label, data=lambda: export_bytes(w), file_name=file_name, mime="application/zip",
                           on_click="ignore", key=f"fl_export_{w.name}", help=help_text)
        return
    prepared = st.session_state.get(PREPARED)
    if not prepared or prepared[0] != w.name:
        if st.button("Prepare export", key=f"fl_export_prepare_{w.name}", help=help_text):
            st.session_state[PREPARED] = prepared = (w.name, export_bytes(w))
    if prepared and prepared[0] == w.name:
        st.download_button(label, data=prepared[1], file_name=file_name, mime="application/zip",
                           on_click="ignore", key=f"fl_export_{w.name}", help=help_text)


def _upload_key() -> str:
    return f"fl_archive_upload_{st.session_state.get(NONCE, 0)}"


def _import() -> None:
    upload = st.session_state.get(_upload_key())
    if upload is None:
        st.session_state[ERROR] = "Choose a .zip made by “Export workspace” first."
        return
    try:
        w = import_workspace(upload, name=st.session_state.get(NAME) or None)
    except ArchiveError as e:
        st.session_state[ERROR] = str(e)
        return
    s = w.summary()
    st.session_state[state.WORKSPACE] = w.name
    st.session_state.pop(state.RUN, None)
    st.session_state[NONCE] = st.session_state.get(NONCE, 0) + 1
    st.session_state[NAME] = ""
    # No st.rerun() here: a callback's changes are shown by the run it triggers anyway.
    runs = "1 run" if s["runs"] == 1 else f"{s['runs']} runs"
    state.flash(f"Imported workspace {w.name}: {s['faces']} crops, {s['labelled']} labelled, {runs}.")


def import_form() -> None:
    """Upload a workspace .zip, optionally under a new name; it is verified before it is added."""
    st.file_uploader("Workspace archive (.zip)", type=["zip"], key=_upload_key())
    st.text_input("New name (optional)", key=NAME, placeholder="the name stored in the archive")
    st.button("Import", key="fl_archive_import", on_click=_import)
    error = st.session_state.pop(ERROR, None)
    if error:
        st.error(md(error))

"""The st.session_state keys that more than one page or module reads, named once, and the current
workspace. (A widget's own key, read only where the widget is drawn, stays beside it.)"""

from __future__ import annotations

import streamlit as st

from facelab.store import workspace as ws
from facelab.ui.text import md

WORKSPACE = "fl_workspace"  # name of the open workspace
RUN = "fl_run"  # id of the run the Explore/Label/Shift pages look at
HANDED_IDS, HANDED_FROM = "fl_label_ids", "fl_label_ids_from"  # frames Explore hands to Label, and from where
FLASH = "fl_flash"  # one message to show after a rerun (e.g. "deleted 3 crops")
SHEET_PAGE = "fl_sheet_page"  # page of the Dataset contact sheet
UNDO = "fl_undo"  # the last labelling (Explore's box, the Label grid), for the Label page's Undo button
LAST_CLUSTERING = "fl_last_clustering"  # (method, k) last shown on Explore; Label, Shift and Webcam follow it
DEFAULT_CLUSTERING = ("kmeans", 6)


def last_clustering() -> tuple[str, int]:
    """The clustering (method, k) the person last looked at on Explore, else K-means with 6."""
    return st.session_state.get(LAST_CLUSTERING, DEFAULT_CLUSTERING)


def current_workspace() -> ws.Workspace | None:
    """The workspace chosen in the sidebar, or None (also when it was deleted from outside)."""
    name = st.session_state.get(WORKSPACE)
    if not name:
        return None
    try:
        return ws.open_workspace(name)
    except ws.WorkspaceError:
        st.session_state.pop(WORKSPACE, None)
        st.warning(f"Workspace **{md(name)}** no longer exists (was it deleted outside facelab?).")
        return None


def use_app_navigation() -> None:
    """Make a deep link opened first on a fresh server run through streamlit_app.py.

    Streamlit treats a `pages/` folder as legacy auto-discovered pages until the main script
    has called st.navigation once, so opening e.g. /train first would run the page alone,
    without the workspace picker. Switch that mode off and rerun through the main script.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # a Streamlit without this mode
        return
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def require_workspace() -> ws.Workspace:
    """The current workspace; stops the page with a hint when there is none."""
    use_app_navigation()
    w = current_workspace()
    if w is None:
        st.info("Choose or create a workspace in the sidebar to begin.")
        st.stop()
    return w


def flash(message: str) -> None:
    st.session_state[FLASH] = message


def show_flash() -> None:
    """The pending message, in a slot drawn on every run: were it drawn only when there is a
    message, everything below would shift by one element on the next run and Streamlit would
    remount it (e.g. st.tabs jump back to their first tab)."""
    slot = st.empty()
    message = st.session_state.pop(FLASH, None)
    if message:
        slot.success(md(message))  # messages name labels, runs, files: all user text

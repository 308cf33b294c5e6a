"""Links from one page to the next, so no page ends in a message with nowhere to go.

Pages are named by their file in `pages/` and given as `st.Page` objects with an absolute path:
the same page `streamlit_app.py` registers (same file, same URL), and one `st.page_link` and
`st.switch_page` also accept when a page script runs alone (AppTest), where a "pages/x.py"
string is not found.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES_DIR = Path(__file__).resolve().parents[2] / "pages"
ICONS = {  # the app's pages, in the sidebar's order
    "dataset": ":material/video_library:", "train": ":material/model_training:",
    "explore": ":material/scatter_plot:", "label": ":material/label:", "shift": ":material/tune:",
    "webcam": ":material/videocam:",
}


def page(name: str, default: bool = False) -> st.Page:
    """The app's page `pages/<name>.py` (streamlit_app.py registers these very objects)."""
    return st.Page(PAGES_DIR / f"{name}.py", title=name.capitalize(), icon=ICONS[name], default=default)


def next_steps(*steps: tuple[str, str]) -> None:
    """A row of links, each (page name, what to do there), e.g. ("train", "Train a model")."""
    cols = st.columns([1] + [3] * len(steps), vertical_alignment="center")
    cols[0].markdown("**Next:**")
    for col, (name, text) in zip(cols[1:], steps):
        col.page_link(page(name), label=f"{text} →", icon=ICONS[name])


def go(name: str) -> None:
    """Switch to the app's page `pages/<name>.py` now."""
    st.switch_page(page(name))

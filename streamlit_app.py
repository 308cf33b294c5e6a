"""facelab's app: navigation and the workspace picker only; each page is a file in pages/."""

from pathlib import Path

import streamlit as st

from facelab.ui import nav
from facelab.ui.sidebar import workspace_picker
from facelab.ui.warm import warm_imports

st.set_page_config(page_title="facelab", page_icon=str(Path(__file__).parent / "facelab" / "ui" / "icon.png"), layout="wide")

pages = [nav.page(name, default=name == "dataset") for name in nav.ICONS]
workspace_picker()
try:
    st.navigation(pages).run()
finally:  # after the page (also one that stops early): the maps' imports, before anyone opens Explore
    warm_imports()

"""facelab's app: navigation and the workspace picker only; each page is a file in pages/."""

from pathlib import Path

import streamlit as st

from facelab.ui.sidebar import workspace_picker

st.set_page_config(page_title="facelab", page_icon=str(Path(__file__).parent / "facelab" / "ui" / "icon.png"), layout="wide")

pages = [
    st.Page("pages/dataset.py", title="Dataset", icon=":material/video_library:", default=True),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/explore.py", title="Explore", icon=":material/scatter_plot:"),
    st.Page("pages/label.py", title="Label", icon=":material/label:"),
    st.Page("pages/shift.py", title="Shift", icon=":material/tune:"),
    st.Page("pages/webcam.py", title="Webcam", icon=":material/videocam:"),
]
workspace_picker()
st.navigation(pages).run()

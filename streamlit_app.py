"""facelab's app: navigation and the workspace picker only; each page is a file in pages/."""

import streamlit as st

from facelab.ui.sidebar import workspace_picker

st.set_page_config(page_title="facelab", page_icon=":material/face:", layout="wide")

pages = [
    st.Page("pages/dataset.py", title="Dataset", icon=":material/video_library:", default=True),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
]
nav = st.navigation(pages)
workspace_picker()
nav.run()

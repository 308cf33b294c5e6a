"""The only part of facelab that imports streamlit: widgets the pages share."""

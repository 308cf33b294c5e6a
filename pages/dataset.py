"""Dataset: upload a video, build face crops from it, look through them, reject bad ones."""

import altair as alt
import pandas as pd
import streamlit as st

from facelab.data import dataset, preview
from facelab.store.workspace import WorkspaceError
from facelab.ui import nav, state
from facelab.ui.build import build_from_upload, confirm_again, report_interrupted_build, upload_key
from facelab.ui.grid import pager, thumbnail_grid
from facelab.ui.text import md

VIDEO_TYPES = ["mp4", "mov", "avi", "webm", "mkv", "m4v", "mpg", "mpeg"]
PER_PAGE = 48

st.title("Dataset")
w = state.require_workspace()
state.show_flash()
report_interrupted_build()
crop_size = w.get_meta("crop_size")

upload_box = st.container(border=True)
# Drawn at once, before a build can start in the box above: a build runs inside this script
# run, and until the run gets here the previous run's "No faces yet" would stay on screen
# under the build's progress bar.
no_faces = st.empty()
with upload_box:
    st.subheader("Add a video of your face")
    upload = st.file_uploader(
        "Video file", type=VIDEO_TYPES, key=upload_key(),
        help="Only the face crops are kept; the video itself is not stored (unless you keep a preview below).",
    )
    keep_preview = st.checkbox(
        "Keep a small preview of the video", key="fl_keep_preview",
        help=f"A silent copy, {preview.MAX_HEIGHT} px high, stored in this workspace so that clicking a frame on "
             "the Explore map plays its moment. Off by default: it shows more than your face. Deleted with the "
             "workspace, by Delete previews on this page, and when you delete any crop of that video.")
    with st.expander("Settings"):
        c1, c2, c3 = st.columns(3)
        defaults = dataset.BuildSettings()
        fps = c1.slider("Frames per second to sample", 1.0, 30.0, float(defaults.fps), 1.0)
        sizes = [32, 64, 128]
        size = c2.selectbox(
            "Crop size (px)", sizes, index=sizes.index(crop_size or defaults.size),
            disabled=crop_size is not None,
            help="Fixed by the first video of a workspace." if crop_size else None,
        )
        margin = c3.slider(
            "Margin around the face", -0.3, 0.5, float(defaults.margin), 0.05,
            help="0 = the detector's box; negative crops tighter (less hair and background).",
        )
        align = st.checkbox("Level the eyes (roll alignment)", value=defaults.align)
    settings = dataset.BuildSettings(fps=fps, size=size, margin=margin, align=align)
    if st.button("Build dataset", type="primary", disabled=upload is None):
        build_from_upload(w, upload, settings, keep_preview=keep_preview)
    else:
        confirm_again(w, upload, settings, keep_preview)

counts = dataset.skip_counts(w)
faces = dataset.faces_table(w)
if not faces:
    no_faces.info("No faces yet: upload a video of your face above to build the dataset.")
    st.stop()
if not w.summary()["runs"]:
    nav.next_steps(("train", f"Train a model on these {len(faces):,} faces"))

st.subheader("Your dataset")
labels = {
    "kept": "Faces kept", "no_face": "No face", "ambiguous": "Several faces",
    "blurred": "Blurred", "duplicate": "Near-duplicate",
}
for col, (k, label) in zip(st.columns(len(labels)), labels.items()):
    col.metric(label, counts.get(k, 0))

table = pd.DataFrame(faces)
st.altair_chart(
    alt.Chart(table)
    .mark_bar()
    .encode(
        x=alt.X("t_seconds:Q", bin=alt.Bin(maxbins=60), title="time in video (s)"),
        y=alt.Y("count():Q", title="faces kept"),
        color=alt.Color("source:N", title="video"),
        tooltip=["source:N", "count():Q"],
    )
    .properties(height=160),
    width="stretch",
)

st.subheader("Contact sheet")
st.caption("Tick the crops that are not a good view of your face, then delete them. Deleting "
           "erases their pixels and what runs made from them (codes, maps, evaluation images). "
           + dataset.RETRAIN_NOTE)
start, stop = pager(len(table), PER_PAGE, state.SHEET_PAGE)
page = table.iloc[start:stop]
crops = w.faces()[page["id"].to_numpy()]
captions = [f"{md(r.source)} · {r.t_seconds:.2f} s" for r in page.itertuples()]  # captions are Markdown
picked = thumbnail_grid(crops, page["id"].tolist(), captions, pick_label="reject", key="fl_reject")
if st.button(f"Delete {len(picked)} ticked crop(s)", disabled=not picked, type="primary"):
    try:
        n = dataset.delete_faces(w, picked)
    except WorkspaceError as e:
        st.error(str(e))
    else:
        for i in picked:
            st.session_state.pop(f"fl_reject_{i}", None)
        state.flash(f"Deleted {n} crop(s): their pixels, codes, maps and evaluation images are erased "
                    f"from disk. {dataset.RETRAIN_NOTE}")
        st.rerun()

if kept := preview.previews(w):
    st.subheader("Video previews")
    size_mb = sum(p.stat().st_size for p in kept.values()) / 1e6
    st.caption(f"{len(kept)} video preview(s) kept in this workspace ({size_mb:.1f} MB): they play a frame's "
               "moment on the Explore page.")
    if st.button("Delete previews", key="fl_delete_previews",
                 help="Erases the preview files (overwritten, then removed); the crops stay."):
        n = preview.delete_previews(w)
        state.flash(f"Deleted {n} video preview(s).")
        st.rerun()

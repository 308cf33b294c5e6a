"""Webcam: your live face through the model, shifted by sliders, placed on the latent map."""

import streamlit as st
from streamlit_webrtc import WebRtcMode, webrtc_streamer

from facelab.edits import directions as dr
from facelab.edits import edit
from facelab.live import LiveError
from facelab.space import clusters as cl
from facelab.ui import state
from facelab.ui import webcam as wc
from facelab.ui.runs import open_run_page
from facelab.ui.shift import light_map, ringed_map_spec, run_plane, with_ring
from facelab.ui.text import md

w, run_id, lat, ids, mu = open_run_page("Webcam")
pipe = wc.live_pipeline(w, run_id, lat.key)
rec = wc.recorder()
stored = dr.load_directions(w, run_id)

centres, centre_names = None, []
if len(ids) >= 3:
    method, k = state.last_clustering()
    k = min(int(k), len(ids) - 1)
    rc = cl.cluster_run(w, run_id, method, k)
    centres = rc.clustering.cluster_centers_
    centre_names = wc.cluster_labels(rc.clustering.k, cl.cluster_names(w, run_id, method, k))
pipe.set_clusters(centres, centre_names)

st.caption(wc.HELP)
# The controls and the map sit beside the video, so sliding never scrolls the face out of sight.
video_col, side_col = st.columns([3, 2])
with video_col:
    ctx = webrtc_streamer(
        key="fl_webcam", mode=WebRtcMode.SENDRECV, video_frame_callback=wc.frame_callback(pipe, rec),
        rtc_configuration={"iceServers": []}, media_stream_constraints={"video": True, "audio": False},
        async_processing=False,  # see wc.LateFrames: the processed frame goes out at once
    )
    cameras = wc.cameras_found()
playing = bool(ctx.state.playing)


@st.fragment
def controls() -> None:
    """The sliders; moving one reruns only this part and hands the pipeline new settings."""
    moves = dr.moves_of(stored)
    options = wc.toward_options(centres, centre_names, stored)
    if not moves:
        st.info(wc.NO_DIRECTION_HINT)
    alphas = {name: st.slider(f"{md(name)} ({md(edit.unit_of(d))})", -edit.SLIDER_END, edit.SLIDER_END, 0.0, 0.1,
                              key=f"fl_webcam_alpha_{run_id}_{name}")
              for name, d in moves.items()}
    a, b = st.columns(2, vertical_alignment="bottom")
    target = a.selectbox("Move toward", [wc.NO_TARGET, *options], key=f"fl_webcam_toward_{run_id}")
    strength = b.slider("strength", 0.0, 1.0, 0.0, 0.05, key="fl_webcam_strength",
                        disabled=target == wc.NO_TARGET)
    # one toggle a line: three in a row of this narrow column cut their labels short
    detail = st.toggle("Keep my detail", value=True, key="fl_webcam_detail", help=wc.DETAIL_HELP)
    side = st.toggle("Side by side", value=True, key="fl_webcam_side", help="Draw the shifted face beside yours.")
    paste = st.toggle("Paste back", key="fl_webcam_paste", help="Draw the shifted face over yours.")
    try:
        pipe.update(**wc.live_changes(moves, alphas, options, target, strength, paste, side, detail))
    except LiveError as e:
        st.error(md(e))


@st.fragment(run_every=wc.LIVE_MAP_EVERY_S if playing else None)
def live_map() -> None:
    """The map with the live face as a red ring, redrawn every few seconds while the camera
    runs, under a note when the live face is far from the model's training faces."""
    with st.container(key="fl_webcam_unfamiliar"):
        if note := wc.unfamiliar_note(pipe):
            st.warning(note)
    if len(ids) < 2:
        st.info("The map needs at least 2 faces in the dataset.")
        return
    axes, axes_key = wc.pick_axes(stored, mu)
    marked = wc.live_marked(axes or run_plane(lat.key, mu), pipe.last_latent)
    spec = ringed_map_spec(str(w.path), lat.key, axes_key, wc.LIVE_MAP_HEIGHT,
                           light_map(str(w.path), lat.key, ids, mu, axes_key, axes))
    with st.container(key="fl_webcam_map_box"):
        st.vega_lite_chart(spec=with_ring(spec, marked), width="stretch", key="fl_webcam_map")
    with st.container(key="fl_webcam_live_text"):
        st.markdown(wc.live_caption(marked, pipe.nearest_cluster, pipe.fps, playing))


with side_col:
    controls()
    live_map()
with video_col:  # after the controls, so a photo goes through the sliders' latest values
    wc.photo_panel(pipe, centres, centre_names, cameras)

with st.expander("Record to dataset"):
    wc.recording_panel(w, run_id, rec, playing)

if cameras != 0:  # a snapshot needs a camera too: without one, the photo upload above is the way
    with st.expander("No live video? Take a snapshot instead"):
        wc.snapshot_panel(pipe, centres, centre_names)

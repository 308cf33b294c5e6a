"""Pieces of the Webcam page: the session's live pipeline and recorder, the frame callback,
what the sliders hand the pipeline, and the live face's point on the map.

Most functions here are plain (no Streamlit) so they are tested with pytest: AppTest cannot
run a script that calls `webrtc_streamer()`. streamlit-webrtc itself is imported by the page.

Threads: streamlit-webrtc calls the frame callback in its WebRTC event loop's thread, where
`st.session_state` is not available; the callback gets the pipeline and the recorder through
its closure, and the page talks to them only through their thread-safe methods
(`LivePipeline.update`, `.last_latent`, `.unfamiliar`, `FrameRecorder.start/stop`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np
import pandas as pd
import streamlit as st

from facelab.data.photo import PhotoError
from facelab.data.recording import FrameRecorder, add_recording
from facelab.edits.directions import Direction, moves_of
from facelab.errors import FacelabError
from facelab.live import LiveError, LivePipeline, LiveResult
from facelab.space.generative_map import Axes
from facelab.space.latent import LatentsMissing, encode_run
from facelab.store.workspace import Workspace
from facelab.ui import state
from facelab.ui.cache import model_stamp
from facelab.ui.text import count, md

PIPE = "fl_webcam_pipe"  # (identity, LivePipeline) of this browser session
RECORDER = "fl_webcam_recorder"  # this session's FrameRecorder
RECORD = "fl_webcam_record"  # the "Record while the camera runs" toggle
RECORD_OFF = "fl_webcam_record_off"  # set to turn that toggle off on the next run
NO_TARGET = "(nothing)"
CLUSTER_PREFIX = "cluster: "
CENTRE_PREFIX = "centre: "
LIVE_NOTE = "live face"
LIVE_MAP_HEIGHT = 320
# Timed redraws while the camera runs. Every rerun takes the interpreter's lock from the video
# threads: with the map at 0.5 s and the recording panel at 1 s, the page showed 0.9 processed
# frames a second, 9 s late, where 27 fps came through without them (benchmarks/live_browser.py).
LIVE_MAP_EVERY_S = 2.0
RECORD_EVERY_S = 1.0  # the recording's count, only while it records
HELP = (
    "Press **START** to stream your camera through the model: the video comes back with your face "
    "boxed and the shifted face beside it. Nothing leaves this computer. No camera, or it does not "
    "start? Upload a photo of your face under the video instead."
)
PHOTO_TYPES = ["jpg", "jpeg", "png", "webp", "bmp"]
NO_CAMERA = (
    "**No camera was found** on this computer, so the live view cannot start. Upload a photo of your "
    "face below instead: it goes through the same model and sliders."
)
NO_CAMERA_ACCESS = (
    "**This browser does not let the page use a camera** here: browsers allow cameras only on pages of "
    "this computer (http://127.0.0.1 or localhost) or https. Upload a photo of your face below instead."
)
# Reports how many cameras the browser lists (-1: it cannot list them, e.g. a plain-http page of
# another host). Labels and ids stay in the browser: only the count comes back. streamlit-webrtc
# keeps its "NotFoundError: Requested device not found" to itself, so the page asks on its own.
CAMERA_PROBE_JS = """
export default function (component) {
  const { setStateValue } = component;
  const devices = navigator.mediaDevices;
  if (!devices || !devices.enumerateDevices) { setStateValue("cameras", -1); return; }
  devices.enumerateDevices()
    .then((all) => setStateValue("cameras", all.filter((d) => d.kind === "videoinput").length))
    .catch(() => setStateValue("cameras", -1));
}
"""
UNFAMILIAR_NOTE = (
    "**This model was trained on another face.** It draws your live face {drop:.0f} dB worse (PSNR) than "
    "the faces it was checked on, so a shift will smear your face rather than change your expression. "
    "Train a model on a video of yourself (**Dataset**, then **Train**), or match the light and pose of "
    "the video it learned from."
)
DETAIL_HELP = "On: your live face plus only what the shift changes. Off: the model's own drawing of the face."
NO_DIRECTION_HINT = (
    "No direction yet: make one on the **Shift** page (tab *Make a direction*), or from a terminal with "
    "`facelab direction fit -w WORKSPACE RUN LABEL`. Meanwhile you can move toward a cluster's centre."
)


# --- per browser session ------------------------------------------------------------------
def live_pipeline(w: Workspace, run_id: str, latents_key: str) -> LivePipeline:
    """This session's pipeline for `run_id`, made once and kept in session state.

    One per session (its tracker and frame rate belong to one camera); a new one when the run,
    its model file or its latents change (another run picked, retrained, crops added).
    """
    identity = (str(w.path), run_id, model_stamp(w, run_id), latents_key)
    held = st.session_state.get(PIPE)
    if held is None or held[0] != identity:
        with st.spinner("Loading the model for the live view…"):
            pipe = LivePipeline.for_run(w, run_id)
        st.session_state[PIPE] = (identity, pipe)
        return pipe
    return held[1]


def recorder() -> FrameRecorder:
    """This session's recorder (one per session, whatever the run)."""
    rec = st.session_state.get(RECORDER)
    if rec is None:
        rec = st.session_state[RECORDER] = FrameRecorder()
    return rec


# --- the frame callback (runs in streamlit-webrtc's event loop) ---------------------------
@dataclass
class LateFrames:
    """Which camera frames to skip so the live view never falls behind the camera.

    The callback runs synchronously, in the WebRTC event loop: a processed frame goes out at once
    rather than with the next camera frame, which async processing waits for (about 55 ms of
    the added delay, benchmarks/live_browser.py). Sync processing has no queue to drop from, so
    when the machine is busy and processing falls behind, frames would pile up without bound.
    This spots them: a frame's lateness is (now − its camera time) less the smallest such gap
    seen, which is the network's own delay; a frame more than `max_late_s` behind is skipped.
    A gap more than `reset_s` above that smallest one is a new stream or a clock jump, not a
    backlog (skipping empties a backlog at hundreds of frames a second): it starts afresh.
    """

    max_late_s: float = 0.05
    reset_s: float = 2.0
    _base: float | None = field(default=None, init=False)

    def late(self, frame_time: float | None, now: float) -> bool:
        if frame_time is None:
            return False
        gap = now - frame_time
        if self._base is None or gap < self._base or gap - self._base > self.reset_s:
            self._base = gap
        return gap - self._base > self.max_late_s


def frame_callback(pipe: LivePipeline, rec: FrameRecorder | None = None,
                   late: LateFrames | None = None) -> Callable[[Any], Any]:
    """`av.VideoFrame` in, the processed `av.VideoFrame` out (streamlit-webrtc copies the timing).

    A frame `late` says is behind the camera is recorded but not processed: the last processed
    picture goes out again (a fresh frame, as streamlit-webrtc stamps the one it is given)."""
    import av

    late = late or LateFrames()
    last: list[np.ndarray] = []

    def callback(frame):
        img = frame.to_ndarray(format="bgr24")
        if rec is not None:
            rec.offer(img)
        behind = late.late(frame.time, time.monotonic())
        if behind and last:
            return av.VideoFrame.from_ndarray(last[0], format="bgr24")
        try:
            out = pipe.process(img).frame
        except LiveError:  # an odd frame (e.g. a tiny one while the stream starts): pass it on
            out = img
        last[:] = [out]
        return av.VideoFrame.from_ndarray(out, format="bgr24")

    return callback


# --- controls -----------------------------------------------------------------------------
def cluster_labels(k: int, names: Mapping[int, str]) -> list[str]:
    """One distinct label per cluster: its name, else "cluster i"; a repeated name gets "(i)"."""
    out: list[str] = []
    for c in range(k):
        name = (names.get(c) or "").strip() or f"cluster {c}"
        out.append(f"{name} ({c})" if name in out else name)
    return out


def toward_options(centres: np.ndarray | None, labels: list[str],
                   stored: Mapping[str, Direction]) -> dict[str, np.ndarray]:
    """Places to move toward, by what the select box shows: clusters' centres, stored centres."""
    options: dict[str, np.ndarray] = {}
    if centres is not None:
        for label, c in zip(labels, np.asarray(centres, np.float32)):
            options[CLUSTER_PREFIX + label] = c
    for name, d in stored.items():
        if d.kind == "centre":
            options[CENTRE_PREFIX + name] = np.asarray(d.vector, np.float32)
    return options


PCA_MAP, AXES_MAP = "Expression map (PCA)", "Your axes"


def pick_axes(stored: Mapping[str, Direction], mu: np.ndarray) -> tuple[Axes | None, str]:
    """The live map's placing: (None, "") for the PCA plane, or two stored directions the user
    picks as x and y, fitted on the frames, with a key naming them (their names and vectors).
    Offered once two directions are stored; time is no axis here (a live face has none)."""
    moves = moves_of(stored)
    if len(moves) < 2:
        return None, ""
    if st.radio("Map", [PCA_MAP, AXES_MAP], horizontal=True, key="fl_webcam_map_kind") == PCA_MAP:
        return None, ""
    names = list(moves)
    a, b = st.columns(2)
    x = a.selectbox("x axis", names, key="fl_webcam_axes_x")
    y = b.selectbox("y axis", [n for n in names if n != x], key="fl_webcam_axes_y")
    key = ":".join([x, y, *(hashlib.sha1(moves[n].vector.tobytes()).hexdigest()[:12] for n in (x, y))])
    return Axes(moves[x], moves[y]).fit(mu), key


def live_changes(moves: Mapping[str, Direction], alphas: Mapping[str, float],
                 options: Mapping[str, np.ndarray], target: str, strength: float,
                 paste_back: bool, side_by_side: bool = True, detail: bool = True) -> dict[str, Any]:
    """Keyword arguments for `LivePipeline.update` from the controls' values.

    Zero alphas are left out (no work per frame); no target or zero strength means none.
    """
    shifts = tuple((moves[n], float(a)) for n, a in alphas.items() if n in moves and a != 0)
    vector = options.get(target)
    if vector is None or strength <= 0:
        vector, strength = None, 0.0
    return {"shifts": shifts, "target": vector, "strength": float(min(1.0, strength)),
            "paste_back": bool(paste_back), "side_by_side": bool(side_by_side), "detail": bool(detail)}


def unfamiliar_note(pipe: LivePipeline) -> str | None:
    """The plain note for a live face far from the model's training faces (`LivePipeline.unfamiliar`),
    or None: without it a model of another person just turns your face into grey mush."""
    if not pipe.unfamiliar:
        return None
    return UNFAMILIAR_NOTE.format(drop=pipe.psnr_drop)


# --- the live point on the map ------------------------------------------------------------
def live_marked(plane, latent: np.ndarray | None, note: str = LIVE_NOTE) -> pd.DataFrame | None:
    """The live face's ring for `latent_map.map_chart(marked=...)`: `latent` placed by what
    placed the map's points (`plane`: the run's fitted PCA `projection.Projector`, or fitted
    `generative_map.Axes`)."""
    if latent is None:
        return None
    xy = plane.transform(np.asarray(latent, np.float32).reshape(1, -1))[0]
    return pd.DataFrame({"x": [float(xy[0])], "y": [float(xy[1])], "note": [note]})


def live_caption(marked: pd.DataFrame | None, cluster: str | None, fps: float, playing: bool) -> str:
    """The line under the map: predicted expression, where the point is, the frame rate."""
    if marked is None:
        return ("Waiting for a face…" if playing else
                "Start the camera: your face will appear as a red ring on the map.")
    x, y = float(marked["x"].iloc[0]), float(marked["y"].iloc[0])
    where = f"map position ({x:+.2f}, {y:+.2f})"
    cluster = md(cluster) if cluster else None  # a name the user gave: shown in st.markdown
    if not playing:
        return f"Last live face: {cluster or 'no cluster'} · {where}"
    return (f"Predicted expression: **{cluster or 'no cluster'}** · {where} · {fps:.1f} fps")


# --- the snapshot fallback ------------------------------------------------------------------
def process_snapshot(pipe: LivePipeline, image: bytes, centres: np.ndarray | None = None,
                     names: list[str] | None = None, name: str = "the snapshot") -> LiveResult:
    """Run one still (e.g. from `st.camera_input`) through the live pipeline's model and sliders.

    A fresh one-frame pipeline sharing the codec and settings, with the photo search
    (`facelab.data.photo`): the live one's tracker would look for the face where the video had it.
    Raises `PhotoError` for bytes that are not an image.
    """
    from facelab.data.photo import photo_detector, read_image

    frame = read_image(image, name)
    one = LivePipeline(
        pipe.codec, replace(pipe.settings, show_stats=False, detect_every=1), detector=photo_detector(),
        bounds=pipe.bounds, margin=pipe.margin, crop_shift=pipe.crop_shift,
        centres=centres, centre_names=names or (), torch_threads=None,
    )
    return one.process(frame)


def bgr_to_rgb(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


# --- widgets --------------------------------------------------------------------------------
def recording_panel(w: Workspace, run_id: str, rec: FrameRecorder, playing: bool) -> None:
    """The "Record to dataset" toggle and buttons. Redrawn every RECORD_EVERY_S while it
    records, so the count on the button follows the recording (and never otherwise: a timed
    redraw slows the live video).

    Adding the recording also encodes the new crops with `run_id`'s model before the page
    reruns: with stale latents the page would stop at "Compute latents", dropping the camera and
    the map, and a live-map redraw racing that rerun would address the map's old place, now the
    button, which blanks the page (Streamlit's "'setIn' cannot be called on an ElementNode")."""

    ticking = playing and rec.recording

    @st.fragment(run_every=RECORD_EVERY_S if ticking else None)
    def panel() -> None:
        if st.session_state.pop(RECORD_OFF, False):
            st.session_state[RECORD] = False
        s = rec.settings
        st.caption(f"Keeps {s.fps:g} frames a second of the camera, for at most {s.max_seconds:g} s, then "
                   "adds their faces to this workspace like a video (retrain the model to learn them).")
        if st.toggle("Record while the camera runs", key=RECORD):
            rec.start()
        else:
            rec.stop()
        if playing and rec.recording != ticking:  # started, stopped or full: the timer follows
            st.rerun()
        n = len(rec)
        if rec.recording or n:
            st.caption(f"Recorded {count(n, 'frame')} ({rec.seconds:.1f} s)" + (" · full" if rec.full else ""))
        left, right = st.columns(2)
        if left.button(f"Add {n} recorded frames to the dataset", disabled=not n, type="primary",
                       key="fl_webcam_add"):
            rec.stop()
            try:
                with st.spinner("Finding faces in the recording…"):
                    report = add_recording(w, rec.frames(), s.fps)
            except FacelabError as e:  # nothing is added: a bad frame, a full disk, a locked workspace
                st.error(md(e))  # the frames stay: the user can try again or discard them
                return
            rec.clear()
            st.session_state[RECORD_OFF] = True
            try:
                with st.spinner("Placing the new faces on the map…"):
                    encode_run(w, run_id)
            except LatentsMissing:  # the model went away meanwhile: the rerun says so
                pass
            state.flash(report.message())
            st.rerun()
        if right.button("Discard the recording", disabled=not n, key="fl_webcam_discard"):
            rec.stop()
            rec.clear()
            st.session_state[RECORD_OFF] = True
            st.rerun(scope="fragment")

    panel()


_camera_probe = None  # the registered component, made once per server process


def cameras_found() -> int | None:
    """How many cameras the browser lists; -1 when it cannot list them; None until it has said."""
    global _camera_probe
    if _camera_probe is None:
        _camera_probe = st.components.v2.component("facelab.camera_probe", js=CAMERA_PROBE_JS)
    result = _camera_probe(key="fl_camera_probe", default={"cameras": None}, on_cameras_change=lambda: None)
    cameras = result.get("cameras") if result is not None else None
    return int(cameras) if isinstance(cameras, (int, float)) else None


def camera_note(cameras: int | None) -> str | None:
    """The plain words for a browser without a usable camera, or None."""
    if cameras == 0:
        return NO_CAMERA
    if cameras is not None and cameras < 0:
        return NO_CAMERA_ACCESS
    return None


def photo_panel(pipe: LivePipeline, centres: np.ndarray | None, names: list[str], cameras: int | None) -> None:
    """Beside the video, always: a photo upload through the same model and sliders, under a plain
    note when the browser found no camera (then it is the way to use this page)."""
    if note := camera_note(cameras):
        st.warning(note, icon="📷")
    photo = st.file_uploader("No camera? Upload a photo of your face", type=PHOTO_TYPES, key="fl_webcam_photo",
                             help="It goes through the same model and sliders as the live video; it is not stored.")
    if photo is not None:
        show_still(pipe, photo.getvalue(), centres, names, photo.name)


def show_still(pipe: LivePipeline, image: bytes, centres: np.ndarray | None, names: list[str], name: str) -> None:
    """One still (a photo or a snapshot) through the pipeline, or the reason it has no usable face."""
    try:
        result = process_snapshot(pipe, image, centres, names, name)
    except (PhotoError, LiveError) as e:
        st.error(md(e))
        return
    st.image(bgr_to_rgb(result.frame), width="stretch", caption=(
        f"Predicted expression: {md(result.cluster)}" if result.cluster else md(result.note or name)))


def snapshot_panel(pipe: LivePipeline, centres: np.ndarray | None, names: list[str]) -> None:
    """The fallback without WebRTC: one still from `st.camera_input` through the same model.

    The camera opens only when asked (a camera widget requests the camera as soon as it is
    drawn, which would compete with the live stream)."""
    st.caption("The snapshot goes through the same model and sliders as the live video.")
    if not st.toggle("Open the snapshot camera", key="fl_webcam_snap_on"):
        return
    shot = st.camera_input("Snapshot", key="fl_webcam_snapshot")
    if shot is not None:
        show_still(pipe, shot.getvalue(), centres, names, "the snapshot")

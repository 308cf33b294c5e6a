"""The Webcam page's plain helpers (facelab.ui.webcam) and the recorder (facelab.data.recording).

The page itself calls `webrtc_streamer()`, which AppTest cannot run: it is driven in real
Chromium by test_browser_webcam.py.
"""

from __future__ import annotations

import itertools
import json
import re
import threading

import av
import cv2
import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from facelab import sample
from facelab.data import dataset
from facelab.data.photo import PhotoError
from facelab.data.recording import (
    FrameRecorder,
    RecordingError,
    RecordSettings,
    add_recording,
    common_size,
)
from facelab.edits.directions import Direction
from facelab.live import BOX_COLOUR, FAMILIAR_WINDOW, UNFAMILIAR_DB, LivePipeline, LiveSettings
from facelab.space.projection import Projector
from facelab.store import workspace as ws
from facelab.ui import shift as us
from facelab.ui import state
from facelab.ui import webcam as wc

from builders import ThirdsCodec
from conftest import REPO
from media import media_file


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def read_frames(name: str, n: int, step: int = 1) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(media_file(name)))
    out, i = [], 0
    while len(out) < n:
        ok, frame = cap.read()
        if not ok:
            break
        if i % step == 0:
            out.append(frame)
        i += 1
    cap.release()
    assert out
    return out


@pytest.fixture(scope="module")
def faces() -> list[np.ndarray]:
    return read_frames("single_face.mp4", 16, step=4)


def smile(d: int = 9) -> Direction:
    return Direction("smile", "logistic", np.eye(d, dtype=np.float32)[0], spread=0.1)


# --- the recorder -------------------------------------------------------------------------
def test_recorder_keeps_fps_frames_a_second_only_while_on() -> None:
    clock = Clock()
    rec = FrameRecorder(RecordSettings(fps=8, max_seconds=60), clock=clock)
    frame = np.full((48, 64, 3), 120, np.uint8)
    assert not rec.offer(frame) and len(rec) == 0  # off: nothing kept
    rec.start()
    kept = 0
    for _ in range(30):  # 2 s of a 15 fps camera
        kept += rec.offer(frame)
        clock.t += 1 / 15
    assert kept == len(rec) == 16 and rec.seconds == pytest.approx(2.0)
    rec.stop()
    assert not rec.recording and not rec.offer(frame) and len(rec) == 16
    rec.clear()
    assert len(rec) == 0


def test_recorder_is_bounded_and_returns_the_frames() -> None:
    clock = Clock()
    rec = FrameRecorder(RecordSettings(fps=4, max_seconds=1.5), clock=clock)  # at most 6 frames
    rec.start()
    rng = np.random.default_rng(0)
    sent = []
    for _ in range(40):
        f = cv2.GaussianBlur(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8), (9, 9), 0)
        if rec.offer(f):
            sent.append(f)
        clock.t += 0.25
    assert len(rec) == len(sent) == 6 and rec.full and not rec.recording
    got = rec.frames()
    assert [g.shape for g in got] == [(60, 80, 3)] * 6
    for g, f in zip(got, sent):  # kept as JPEG: close to, not equal to, what came in
        assert np.abs(g.astype(int) - f).mean() < 4


def test_recorder_from_many_threads_never_passes_its_bound() -> None:
    ticks = itertools.count()  # every call a second later: every frame is due
    rec = FrameRecorder(RecordSettings(fps=30, max_seconds=1), clock=lambda: float(next(ticks)))
    rec.start()
    # a noisy frame takes a while to encode (outside the lock, GIL released): threads overlap
    frame = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)

    def feed() -> None:
        for _ in range(40):
            rec.offer(frame)

    threads = [threading.Thread(target=feed) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(rec) == 30 and rec.full


@pytest.mark.parametrize("fps, seconds", [(0, 10), (31, 10), (8, 0), (8, 601)])
def test_bad_record_settings_are_refused(fps: float, seconds: float) -> None:
    with pytest.raises(RecordingError):
        RecordSettings(fps=fps, max_seconds=seconds)


# --- adding a recording ----------------------------------------------------------------------
def test_common_size_is_the_size_most_frames_have() -> None:
    frames = [np.zeros((240, 320, 3), np.uint8)] * 5 + [np.zeros((120, 160, 3), np.uint8)]
    assert common_size(frames) == (320, 240)
    with pytest.raises(RecordingError, match="nothing was recorded"):
        common_size([])


def test_add_recording_builds_crops_from_the_frames_in_memory(home, faces, monkeypatch) -> None:
    """No video file is written and read back: the frames go straight to the builder's face
    finding, so they lose nothing to a codec; rows, source and sharp crops are a build's, and
    adding the same recording again is refused, as a video's."""
    def no_video(*args, **kwargs):
        raise AssertionError("the recording must not be written to a video file")

    monkeypatch.setattr(cv2, "VideoWriter", no_video)
    w = ws.create("me")
    frames = faces[:-1] + [cv2.resize(faces[-1], (320, 180))]  # WebRTC starts small: resized to the rest
    report = add_recording(w, frames, 8.0, name="webcam recording test")
    assert report.kept >= 10 and report.sampled == len(faces)
    assert report.kept + report.blurred + report.duplicate + report.no_face + report.ambiguous == len(faces)
    table = dataset.faces_table(w)
    assert len(table) == report.kept and {f["source"] for f in table} == {"webcam recording test"}
    assert [f["t_seconds"] for f in table] == [f["frame_index"] / 8.0 for f in table]
    h, wd = faces[0].shape[:2]
    assert all(0 <= f["box"][0] < wd and 0 < f["box"][3] <= h for f in table)  # in the frames' own pixels
    assert w.faces().shape == (report.kept, 64, 64, 3)
    assert [p.name for p in (w.path / dataset.SHARP_DIR).iterdir()] == ["0.npy"]
    with w.connect() as c:
        source = dict(c.execute("SELECT * FROM sources").fetchone())
    assert (source["video_fps"], source["frame_count"], source["width"], source["height"]) == (8.0, len(faces), wd, h)
    assert source["sha256"] and json.loads(source["counts"]) == report.counts()
    assert not [p for p in w.path.iterdir() if p.name.startswith(".")], "no temporary file is left"
    with pytest.raises(dataset.DuplicateVideo, match="already in this workspace"):
        add_recording(w, frames, 8.0)


def test_add_recording_without_a_face_adds_nothing(home) -> None:
    w = ws.create("me")
    report = add_recording(w, read_frames("no_face.mp4", 8, step=8), 8.0)
    assert report.kept == 0 and report.no_face == report.sampled == 8 and dataset.faces_table(w) == []
    assert "nothing was added" in report.message()
    with pytest.raises(RecordingError, match="nothing was recorded"):
        add_recording(w, [], 8.0)
    with pytest.raises(RecordingError, match="not a BGR image"):
        add_recording(w, [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.float32)], 8.0)
    assert w.face_count() == 0 and not [p for p in w.path.iterdir() if p.name.startswith(".")]


# --- the frame callback ---------------------------------------------------------------------
def test_frame_callback_returns_the_processed_frame_and_records(faces) -> None:
    pipe = LivePipeline(ThirdsCodec())
    rec = FrameRecorder()
    rec.start()
    callback = wc.frame_callback(pipe, rec)
    frame = av.VideoFrame.from_ndarray(faces[0], format="bgr24")
    out = callback(frame)
    assert isinstance(out, av.VideoFrame) and (out.width, out.height) == (frame.width, frame.height)
    img = out.to_ndarray(format="bgr24")
    assert (img == np.array(BOX_COLOUR, np.uint8)).all(-1).sum() > 100, "the face box is drawn"
    assert len(rec) == 1 and pipe.last_latent is not None
    # an odd frame passes through instead of stopping the stream
    tiny = av.VideoFrame.from_ndarray(np.zeros((4, 4, 3), np.uint8), format="bgr24")
    assert callback(tiny).to_ndarray(format="bgr24").shape == (4, 4, 3)


class AlwaysLate(wc.LateFrames):
    def late(self, frame_time, now) -> bool:
        return True


def test_a_late_frame_is_recorded_and_the_last_processed_picture_goes_out_again(faces) -> None:
    pipe = LivePipeline(ThirdsCodec())
    offered = []
    rec = FrameRecorder()
    rec.offer = offered.append
    callback = wc.frame_callback(pipe, rec, AlwaysLate())
    first = callback(av.VideoFrame.from_ndarray(faces[0], format="bgr24"))  # nothing to repeat yet
    latent = pipe.last_latent
    again = callback(av.VideoFrame.from_ndarray(faces[-1], format="bgr24"))
    assert again is not first and (again.to_ndarray(format="bgr24") == first.to_ndarray(format="bgr24")).all()
    assert pipe.last_latent is latent, "the late frame was not processed"
    assert len(offered) == 2 and (offered[1] == faces[-1]).all(), "but it was offered to the recording"


def simulate_sync_loop(late, process_s: float, frames: int = 300, period: float = 1 / 30,
                       skip_s: float = 0.002) -> tuple[list[float], int]:
    """Frames of a 30 fps camera through a one-at-a-time callback taking `process_s` a frame
    (`skip_s` for a skipped one): the waits of the processed frames, and how many were skipped."""
    busy_until, waits, skipped = 0.0, [], 0
    for i in range(frames):
        start = max(busy_until, 0.04 + i * period)  # arrives 40 ms after its camera time
        if late is not None and late.late(1000.0 + i * period, start):
            busy_until, skipped = start + skip_s, skipped + 1
        else:
            busy_until = start + process_s
            waits.append(start - (0.04 + i * period))
    return waits, skipped


def test_late_frames_keep_a_slow_callback_on_the_camera() -> None:
    waits, skipped = simulate_sync_loop(wc.LateFrames(), process_s=0.010)
    assert skipped == 0 and max(waits) == 0, "a callback that keeps up processes every frame"
    waits, skipped = simulate_sync_loop(None, process_s=0.080)
    assert max(waits) > 10, "without it, a slow callback falls ever further behind"
    waits, skipped = simulate_sync_loop(wc.LateFrames(max_late_s=0.05), process_s=0.080)
    assert max(waits) <= 0.05 + 0.080 and skipped > 150 and len(waits) > 100


def test_late_frames_start_afresh_after_a_clock_jump() -> None:
    late = wc.LateFrames(max_late_s=0.05, reset_s=2.0)
    assert not late.late(10.0, 100.0) and not late.late(10.1, 100.1)
    assert late.late(10.2, 100.3), "150 ms behind"
    assert not late.late(-50.0, 100.4) and not late.late(-49.9, 100.5), "a new stream: a new base"
    assert not late.late(None, 101.0), "no time stamp: processed"


# --- controls -------------------------------------------------------------------------------
def test_cluster_labels_are_distinct() -> None:
    assert wc.cluster_labels(4, {0: "smile", 2: "smile", 3: "  "}) == ["smile", "cluster 1", "smile (2)", "cluster 3"]


def test_toward_options_hold_cluster_and_stored_centres_only() -> None:
    centre = Direction("calm", "centre", np.full(9, 0.5, np.float32))
    options = wc.toward_options(np.eye(2, 9, dtype=np.float32), ["smile", "cluster 1"],
                                {"smile": smile(), "calm": centre})
    assert list(options) == ["cluster: smile", "cluster: cluster 1", "centre: calm"]
    np.testing.assert_array_equal(options["centre: calm"], centre.vector)
    assert list(wc.toward_options(None, [], {})) == []
    assert list(wc.moves_of({"smile": smile(), "calm": centre})) == ["smile"]


def test_live_changes_drive_the_pipeline(faces) -> None:
    moves = {"smile": smile()}
    options = {"cluster: light": np.ones(9, np.float32)}
    idle = wc.live_changes(moves, {"smile": 0.0}, options, wc.NO_TARGET, 0.7, False)
    assert idle == {"shifts": (), "target": None, "strength": 0.0, "paste_back": False, "side_by_side": True,
                    "detail": True}
    assert wc.live_changes(moves, {}, options, "cluster: light", 0.0, False)["target"] is None

    pipe = LivePipeline(ThirdsCodec())
    base = pipe.process(faces[0])
    changes = wc.live_changes(moves, {"smile": 2.0}, options, wc.NO_TARGET, 0.0, True, side_by_side=False)
    pipe.update(**changes)
    assert pipe.settings.paste_back and not pipe.settings.side_by_side
    shifted = pipe.process(faces[0])
    # the fake decoder paints z[0] as grey: the smile shift moved it by alpha x spread = 0.2
    assert int(shifted.shifted[0, 0, 0, 0]) - int(base.shifted[0, 0, 0, 0]) == pytest.approx(51, abs=2)
    pipe.update(**wc.live_changes(moves, {}, options, "cluster: light", 1.0, False))
    assert pipe.process(faces[0]).shifted[0, 0, 0, 0] == 255  # all the way to the white centre


def test_keep_my_detail_toggle_sets_the_live_view(faces) -> None:
    """On (the default): the pasted face is the live face plus the change, so it keeps the face's
    texture; off: the model's own face (ThirdsCodec: one flat grey)."""
    moves = {"smile": smile()}
    texture = {}
    for detail in (True, False):
        pipe = LivePipeline(ThirdsCodec())
        pipe.update(**wc.live_changes(moves, {"smile": 2.0}, {}, wc.NO_TARGET, 0.0, True, False, detail))
        assert pipe.settings.detail is detail
        result = pipe.process(faces[0])
        b = result.boxes[0]
        texture[detail] = float(result.frame[b.y + 2 * b.h // 5:b.y + 3 * b.h // 5,
                                             b.x + 2 * b.w // 5:b.x + 3 * b.w // 5].std())
    assert texture[True] > 10 > texture[False]


# --- "this model was trained on another face" -------------------------------------------------
def test_a_face_the_model_never_saw_brings_the_note(home, faces) -> None:
    """The sample's model: its own clip is familiar, one odd frame does not flash the note, and
    the GRID speaker (another person) brings it within a running window."""
    w = sample.ensure_sample(say=lambda _: None)
    pipe = LivePipeline.for_run(w, sample.RUN_ID, LiveSettings(show_stats=False))
    assert pipe.heldout_psnr is not None and 15 < pipe.heldout_psnr < 30  # 20.6 dB when measured
    other = read_frames("bbaf2n.mpg", FAMILIAR_WINDOW)
    for f in faces:
        pipe.process(f)
    assert pipe.psnr_drop is not None and pipe.psnr_drop < UNFAMILIAR_DB - 2  # measured -6.9 dB
    assert not pipe.unfamiliar and wc.unfamiliar_note(pipe) is None
    pipe.process(other[0])  # one frame of someone else: the running median stays put
    assert not pipe.unfamiliar
    for f in other[1:]:
        pipe.process(f)
    assert pipe.unfamiliar and pipe.psnr_drop > UNFAMILIAR_DB + 1  # measured 6.4 dB
    note = wc.unfamiliar_note(pipe)
    assert re.match(r"\*\*This model was trained on another face\.\*\* It draws your live face \d+ dB worse", note)


# --- the live point -------------------------------------------------------------------------
def test_live_point_is_placed_like_the_map_points() -> None:
    mu = np.random.default_rng(1).normal(size=(50, 9)).astype(np.float32)
    p = Projector().fit(mu)
    xy = p.transform(mu)
    marked = wc.live_marked(p, mu[7])
    assert list(marked.columns) == ["x", "y", "note"] and marked["note"][0] == wc.LIVE_NOTE
    assert (marked["x"][0], marked["y"][0]) == pytest.approx(tuple(xy[7]), abs=1e-5)
    assert wc.live_marked(p, None) is None
    # on two stored directions as axes (the live map's "Your axes"), the same
    from facelab.edits.directions import Direction
    from facelab.space.generative_map import Axes, axes_map

    a, b = (Direction(n, "logistic", v / np.linalg.norm(v), spread=0.7)
            for n, v in (("smile", mu[0]), ("surprise", mu[1])))
    on_axes = wc.live_marked(Axes(a, b).fit(mu), mu[7])
    assert (on_axes["x"][0], on_axes["y"][0]) == pytest.approx(tuple(axes_map(mu, None, a, b)[7]), abs=1e-5)

    caption = wc.live_caption(marked, "smile", 14.96, playing=True)
    assert caption.startswith("Predicted expression: **smile** · map position (") and caption.endswith("15.0 fps")
    assert "Last live face: smile" in wc.live_caption(marked, "smile", 0.0, playing=False)
    assert wc.live_caption(None, None, 0.0, playing=True) == "Waiting for a face…"


def test_the_live_map_background_is_thinned_evenly() -> None:
    table = pd.DataFrame({"frame_id": np.arange(5001), "x": 0.0, "y": 0.0})
    thinned = us.thin(table, 2000)
    assert 1000 < len(thinned) <= 2000 and thinned["frame_id"].iloc[0] == 0
    assert set(np.diff(thinned["frame_id"])) == {3}
    assert len(us.thin(table.head(10), 2000)) == 10


def test_a_map_redrawn_often_is_made_once_and_only_its_ring_moves() -> None:
    """The live map and the Shift page's map (`ui.shift.ringed_map_spec`)."""
    table = pd.DataFrame({"frame_id": np.arange(6), "x": np.arange(6.0), "y": 0.0, "time": 0.0, "source": "",
                          "cluster": "", "label": "", "image": ""})
    spec = us.ringed_map_spec.__wrapped__("ws", "key", "", wc.LIVE_MAP_HEIGHT, table)
    ring = spec["layer"][-1]
    assert ring["mark"]["color"] == "#d62728" and spec["datasets"][ring["data"]["name"]]
    marked = pd.DataFrame({"x": [2.5], "y": [1.0], "note": [wc.LIVE_NOTE]})
    drawn = us.with_ring(spec, marked)
    assert drawn["datasets"][ring["data"]["name"]] == [{"x": 2.5, "y": 1.0, "note": wc.LIVE_NOTE}]
    assert us.with_ring(spec, None)["datasets"][ring["data"]["name"]] == []
    points = spec["layer"][0]["data"]["name"]
    assert len(drawn["datasets"][points]) == 6 and drawn["datasets"][points] is spec["datasets"][points]
    assert spec["datasets"][ring["data"]["name"]] != drawn["datasets"][ring["data"]["name"]], "the cached spec is kept"


# --- the snapshot fallback ------------------------------------------------------------------
def test_snapshot_goes_through_the_same_model_and_sliders(faces) -> None:
    pipe = LivePipeline(ThirdsCodec())
    pipe.update(shifts=((smile(), 2.0),))
    pipe.process(faces[0])
    tracked = list(pipe.tracker.boxes)
    ok, jpeg = cv2.imencode(".jpg", faces[-1])
    result = wc.process_snapshot(pipe, jpeg.tobytes(), np.stack([np.zeros(9), np.ones(9)]), ["dark", "light"])
    assert len(result.boxes) == 1 and result.cluster in ("dark", "light")
    assert result.frame.shape == faces[-1].shape
    assert pipe.tracker.boxes == tracked, "a snapshot must not disturb the live tracker"
    with pytest.raises(PhotoError, match="snapshot"):
        wc.process_snapshot(pipe, b"not an image")


# --- per session (AppTest: the parts of the page before the camera widget) --------------------
def test_page_without_a_trained_model_says_what_to_do(home) -> None:
    ws.create("me")
    at = AppTest.from_file(str(REPO / "pages" / "webcam.py"), default_timeout=60)
    at.session_state[state.WORKSPACE] = "me"
    at.run()
    assert not at.exception, at.exception
    assert any("No trained model yet" in i.value for i in at.info)


def _pipeline_script() -> None:
    import streamlit as st

    from facelab import sample
    from facelab.store import workspace as ws
    from facelab.ui import webcam as wc

    w = ws.open_workspace("sample")
    pipe = wc.live_pipeline(w, sample.RUN_ID, st.session_state.get("latents_key", "a"))
    st.session_state.setdefault("seen", []).append(id(pipe))
    st.session_state["recorders"] = {*st.session_state.get("recorders", ()), id(wc.recorder())}


def test_one_pipeline_per_session_until_the_run_or_its_latents_change(home) -> None:
    sample.ensure_sample(say=lambda _: None)
    at = AppTest.from_function(_pipeline_script, default_timeout=60).run()
    at.run()
    assert not at.exception, at.exception
    first, again = at.session_state["seen"]
    assert first == again, "a rerun must keep the session's pipeline (its tracker and fps)"
    at.session_state["latents_key"] = "b"  # e.g. crops were added and re-encoded
    at.run()
    assert at.session_state["seen"][-1] != first
    assert len(at.session_state["recorders"]) == 1


def _axes_picker_script(n_directions: int) -> None:
    import numpy as np
    import streamlit as st

    from facelab.edits.directions import Direction
    from facelab.ui import webcam as wc

    mu = np.random.default_rng(0).normal(size=(40, 5)).astype(np.float32)
    stored = {f"d{i}": Direction(f"d{i}", "logistic", np.eye(5, dtype=np.float32)[i]) for i in range(n_directions)}
    stored["home"] = Direction("home", "centre", mu.mean(0))  # a centre is a place, never an axis
    axes, key = wc.pick_axes(stored, mu)
    st.write("PCA" if axes is None else f"axes {axes.x.name} {axes.y.name} {key.split(':')[:2]}")


@pytest.mark.parametrize("n", [1, 2])
def test_the_live_map_offers_your_axes_once_two_directions_are_stored(n) -> None:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_axes_picker_script, args=(n,), default_timeout=30).run()
    assert not at.exception
    assert at.markdown[-1].value == "PCA"
    if n == 1:
        assert not at.radio  # one direction: nothing to pick, the PCA map
        return
    at.radio(key="fl_webcam_map_kind").set_value(wc.AXES_MAP).run()
    assert at.markdown[-1].value == "axes d0 d1 ['d0', 'd1']"
    assert at.selectbox(key="fl_webcam_axes_y").options == ["d1"]  # not the x axis again, never the centre
    at.selectbox(key="fl_webcam_axes_x").set_value("d1").run()
    assert at.markdown[-1].value == "axes d1 d0 ['d1', 'd0']"

"""Video input that used to mislead or hurt: variable frame rates, 4K memory, the same video
built twice, a file damaged in the middle, a face in a second video stream. Every clip is made
here from the repository's sample clip."""

from __future__ import annotations

import re
import weakref
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from facelab.cli import main
from facelab.data import dataset
from facelab.data.video import sample_frames
from facelab.store import workspace as wsmod

from conftest import REPO, wait_for_app

SAMPLE = REPO / "sample" / "WolfgangLanger_Pexels.mp4"
FACE_START = 380  # the sample's frames from here on show a clear face


def clip_frames(n: int, start: int = FACE_START) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(SAMPLE))
    cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    frames = [cap.read()[1] for _ in range(n)]
    cap.release()
    return frames


def write_h264(path: Path, streams: list[list[np.ndarray]], times_ms: list[float]) -> Path:
    """An H.264 .mp4 with one video stream per list of frames, frame i shown at times_ms[i]."""
    out = av.open(str(path), "w")
    h, w = streams[0][0].shape[:2]
    encoders = []
    for _ in streams:
        s = out.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        encoders.append(s)
    for i, t in enumerate(times_ms):
        for s, frames in zip(encoders, streams):
            vf = av.VideoFrame.from_ndarray(frames[i], format="bgr24")
            vf.pts, vf.time_base = int(t), Fraction(1, 1000)
            for p in s.encode(vf):
                out.mux(p)
    for s in encoders:
        for p in s.encode():
            out.mux(p)
    out.close()
    return path


def write_mjpg(path: Path, frames: list[np.ndarray], fps: float = 24.0) -> Path:
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert out.isOpened()
    for f in frames:
        out.write(f)
    out.release()
    return path


# --- 13: variable frame rate ---------------------------------------------------------------
def test_variable_frame_rate_is_sampled_by_time_stamps(tmp_path):
    # 60 frames in the first second, then one frame every half second for 30 s.
    times = [i * 1000 / 60 for i in range(60)] + [1000 + 500 * k for k in range(60)]
    small = [cv2.resize(f, (320, 180), interpolation=cv2.INTER_AREA) for f in clip_frames(120, start=0)]
    video = write_h264(tmp_path / "vfr.mp4", [small], times)
    got = [(i, t) for i, t, _ in sample_frames(video, fps=8)]
    # 8 of the first second's 60 frames, then every frame (2 a second is under 8 a second).
    assert len(got) == 8 + 60
    for i, t in got:
        assert t == pytest.approx(times[i] / 1000, abs=0.002), f"frame {i}"


# --- 14: memory bounded whatever the resolution ---------------------------------------------
def test_4k_build_holds_few_small_frames(home, tmp_path, monkeypatch):
    frames = [cv2.resize(f, (3840, 2160), interpolation=cv2.INTER_LINEAR) for f in clip_frames(12)]
    video = write_mjpg(tmp_path / "uhd.avi", frames, fps=24)
    del frames
    alive: list[weakref.ref] = []
    peak = {"frames": 0, "bytes": 0}
    real = dataset.sample_frames

    def watched(*args, **kwargs):
        for i, t, frame in real(*args, **kwargs):
            alive.append(weakref.ref(frame))
            live = [r() for r in alive if r() is not None]
            peak["frames"] = max(peak["frames"], len(live))
            peak["bytes"] = max(peak["bytes"], sum(f.nbytes for f in live))
            del live
            yield i, t, frame

    monkeypatch.setattr(dataset, "sample_frames", watched)
    w = wsmod.create("me")
    report = dataset.build(w, video, dataset.BuildSettings(fps=24))  # every frame sampled
    assert report.kept > 0
    # One 4K frame is 24.9 MB: the frames are shrunk as they are decoded, and only a bounded
    # number wait for detection at any time.
    assert peak["bytes"] < 64e6, peak
    assert peak["frames"] <= dataset.FRAMES_IN_FLIGHT + 2 * dataset.BuildSettings().smooth + 2, peak
    # Boxes are still stored in the video's own pixels.
    boxes = [f["box"] for f in dataset.faces_table(w)]
    assert max(x + bw for x, _, bw, _ in boxes) <= 3840
    assert np.median([bw for _, _, bw, _ in boxes]) > 2 * 640 / 6  # a 4K face, not a 640-px one


# --- 15: the same video built twice ---------------------------------------------------------
@pytest.fixture
def clip(tmp_path) -> Path:
    return write_mjpg(tmp_path / "clip.avi", clip_frames(24), fps=24)


def test_same_video_again_is_refused_unless_asked(home, clip):
    w = wsmod.create("me")
    first = dataset.build(w, clip, name="holiday.avi")
    assert first.kept > 0
    with pytest.raises(dataset.DuplicateVideo,
                       match=rf"^holiday2\.avi is already in this workspace \(built on \d{{4}}-\d\d-\d\d "
                             rf"\d\d:\d\d UTC as holiday\.avi, {first.kept} crops\)"):
        dataset.build(w, clip, name="holiday2.avi")
    assert w.summary()["faces"] == first.kept and w.summary()["sources"] == 1
    again = dataset.build(w, clip, again=True)
    assert w.summary()["faces"] == first.kept + again.kept


def test_cli_refuses_a_known_video_and_offers_again(home, clip, capsys):
    assert main(["build", str(clip), "-w", "me", "--create", "-q"]) == 0
    kept = wsmod.open_workspace("me").summary()["faces"]
    capsys.readouterr()
    assert main(["build", str(clip), "-w", "me", "-q"]) == 2
    err = capsys.readouterr().err
    assert "clip.avi is already in this workspace" in err and "--again" in err
    assert wsmod.open_workspace("me").summary()["faces"] == kept
    assert main(["build", str(clip), "-w", "me", "-q", "--again"]) == 0
    assert wsmod.open_workspace("me").summary()["faces"] == 2 * kept


@pytest.mark.browser
def test_page_resets_the_uploader_and_asks_before_adding_a_known_video(page, app_url, clip):
    page.goto(app_url)
    wait_for_app(page)
    page.get_by_label("Name", exact=True).fill("me")
    page.get_by_role("button", name="Create").click()
    page.get_by_text("No faces yet").wait_for()
    uploader = "[data-testid='stMain'] [data-testid='stFileUploader'] input[type='file']"
    build = page.get_by_role("button", name="Build dataset")

    page.locator(uploader).set_input_files(str(clip))
    build.click()
    page.get_by_text(re.compile(r"Added \d+ faces")).wait_for(timeout=60_000)
    added = int(re.search(r"Added (\d+) faces", page.get_by_text(re.compile(r"Added \d+ faces")).inner_text())[1])
    assert page.locator("[data-testid='stFileUploaderFile']").count() == 0  # the uploader is empty
    assert build.is_disabled()

    wait_for_app(page)  # the rerun that swapped in a fresh uploader has finished: one uploader left
    page.wait_for_function("s => document.querySelectorAll(s).length === 1", arg=uploader, timeout=30_000)
    page.locator(uploader).set_input_files(str(clip))
    build.click()
    page.get_by_text("is already in this workspace").wait_for(timeout=60_000)
    assert wsmod.open_workspace("me").summary()["faces"] == added  # nothing added yet
    page.get_by_role("button", name="Add it again").click()
    page.get_by_text(re.compile(r"Added \d+ faces")).wait_for(timeout=60_000)
    assert wsmod.open_workspace("me").summary()["faces"] == 2 * added


# --- 16: messages that say what was found ---------------------------------------------------
def test_damaged_middle_is_reported_and_the_frames_before_it_are_used(home, tmp_path):
    data = bytearray(SAMPLE.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 20_000] = bytes(20_000)
    video = tmp_path / "damaged.mp4"
    video.write_bytes(bytes(data))
    report = dataset.build(wsmod.create("me"), video)
    assert report.kept > 0
    note = " ".join(report.notes)
    m = re.search(r"damaged\.mp4 is damaged at about frame (\d+) \((\d+\.\d) s\) of its 472: "
                  r"the (\d+) frames before it were used", note)
    assert m, note
    assert m[1] == m[3] and 100 < int(m[1]) < 400
    assert float(m[2]) == pytest.approx(int(m[1]) / 23.976, abs=0.2)
    assert "truncated" not in report.message() and note in report.message()


def test_face_in_the_second_stream_is_named_not_just_no_face(home, tmp_path):
    faces = clip_frames(24)
    wall = [np.full_like(f, 90) for f in faces]
    video = write_h264(tmp_path / "two.mp4", [wall, faces], [i * 1000 / 24 for i in range(24)])
    report = dataset.build(wsmod.create("me"), video)
    assert report.kept == 0
    assert "two.mp4 holds 2 video streams; only the first was read" in report.message()

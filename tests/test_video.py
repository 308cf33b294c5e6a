"""facelab.data.video: probing files and sampling frames (synthetic videos and the real clips)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from facelab.data.video import VideoError, is_sampled, probe, sample_frames, sample_step, sampled_count

from media import media_file


def write_counter_video(path: Path, n: int = 48, fps: float = 24.0, size=(96, 64)) -> Path:
    """An MJPG .avi whose frame i is a flat grey of level 5*i (readable back despite JPEG)."""
    w, h = size
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert out.isOpened()
    for i in range(n):
        out.write(np.full((h, w, 3), 5 * i, np.uint8))
    out.release()
    return path


def level(frame: np.ndarray) -> int:
    return int(round(frame.mean() / 5))


def test_probe_reads_the_header(tmp_path):
    info = probe(write_counter_video(tmp_path / "c.avi"))
    assert (info.width, info.height, info.frame_count) == (96, 64, 48)
    assert info.fps == pytest.approx(24.0)
    assert info.duration_s == pytest.approx(2.0)


def test_sample_frames_keeps_one_frame_per_slot_in_order(tmp_path):
    video = write_counter_video(tmp_path / "c.avi")
    got = list(sample_frames(video, fps=8))
    assert [i for i, _, _ in got] == list(range(0, 48, 3))
    assert [level(f) for _, _, f in got] == list(range(0, 48, 3))  # the pixels are those frames'
    assert [t for _, t, _ in got] == pytest.approx([i / 24 for i in range(0, 48, 3)])
    assert all(f.shape == (64, 96, 3) and f.dtype == np.uint8 for _, _, f in got)


def test_sampling_faster_than_the_video_keeps_every_frame(tmp_path):
    video = write_counter_video(tmp_path / "c.avi", n=10)
    assert [i for i, _, _ in sample_frames(video, fps=60)] == list(range(10))


@pytest.mark.parametrize("video_fps,fps,n", [(23.976, 8, 472), (30, 8, 54000), (25, 7.3, 75), (5, 8, 40)])
def test_sampled_count_matches_the_sampling_rule(video_fps, fps, n):
    from facelab.data.video import VideoInfo

    step = sample_step(video_fps, fps)
    kept = sum(is_sampled(i, step) for i in range(n))
    assert sampled_count(VideoInfo(Path("x"), video_fps, n, 1, 1, n / video_fps), fps) == kept
    assert kept == pytest.approx(min(n, n * fps / video_fps), abs=1)


def test_the_real_clip_gives_eight_frames_a_second():
    frames = [(i, t) for i, t, _ in sample_frames(media_file("WolfgangLanger_Pexels.mp4"), 8)]
    assert len(frames) == 158
    assert frames[1][1] - frames[0][1] == pytest.approx(3 / 23.976, abs=1e-3)


def test_bad_sampling_rate_is_refused(tmp_path):
    with pytest.raises(VideoError, match="positive"):
        list(sample_frames(write_counter_video(tmp_path / "c.avi"), fps=0))


# --- bad input: each a clear VideoError -----------------------------------------------------
def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoError, match=r"empty.mp4 is empty \(0 bytes\)"):
        probe(tmp_path / "empty.mp4")


def test_missing_file(tmp_path):
    with pytest.raises(VideoError, match="does not exist"):
        probe(tmp_path / "nope.mp4")


def test_text_renamed_mp4(tmp_path):
    (tmp_path / "notes.mp4").write_text("these are not the frames you are looking for\n" * 50)
    with pytest.raises(VideoError, match="notes.mp4 is not a readable video"):
        probe(tmp_path / "notes.mp4")


@pytest.mark.parametrize("name", ["multi_face.jpg", "photo.mp4"])
def test_an_image_is_not_a_video(tmp_path, name):
    path = shutil.copy(media_file("multi_face.jpg"), tmp_path / name)
    with pytest.raises(VideoError, match="is an image, not a video"):
        probe(path)


def cut(src: Path, dst: Path, share: float = 0.3) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * share)])
    return dst


def test_truncated_video_is_refused_before_or_during_sampling(tmp_path):
    # The Pexels file has its index first: it opens, then its frames run out.
    short = cut(media_file("WolfgangLanger_Pexels.mp4"), tmp_path / "cut.mp4")
    with pytest.raises(VideoError, match=r"cut.mp4 is truncated: only \d+ of its 472 frames"):
        list(sample_frames(short, 8))
    # single_face.mp4 has its index at the end: cut short, it does not open at all.
    short = cut(media_file("single_face.mp4"), tmp_path / "cut2.mp4")
    with pytest.raises(VideoError, match="cut2.mp4 is not a readable video"):
        probe(short)


def test_skipped_frames_are_grabbed_not_decoded_to_pixels(tmp_path, monkeypatch):
    import facelab.data.video as video

    calls = {"grab": 0, "retrieve": 0, "set": 0}

    class Counting:
        def __init__(self, cap):
            self.cap = cap

        def __getattr__(self, name):
            attr = getattr(self.cap, name)
            if name in calls:
                def counted(*a):
                    calls[name] += 1
                    return attr(*a)
                return counted
            return attr

    real_open = video._open
    monkeypatch.setattr(video, "_open", lambda path: Counting(real_open(path)))
    got = list(sample_frames(write_counter_video(tmp_path / "c.avi"), fps=8, planned=False))
    assert calls["retrieve"] == len(got) == 16
    assert calls["grab"] == 48 + 1  # every frame, then the one that says the end is reached
    assert calls["set"] == 0  # never seeks


@pytest.mark.parametrize("clip", ["WolfgangLanger_Pexels.mp4", "bbaf2n.mpg", "single_face.mp4"])
def test_planned_sampling_gives_the_grabbed_frames_converting_only_those(clip, monkeypatch):
    """The planned way (packets listed first, unneeded frames not decoded) yields the very
    frames, indices and times of decoding every frame, and converts only the kept ones."""
    import facelab.data.video as video

    path = media_file(clip)
    grabbed = list(sample_frames(path, 8, planned=False))
    converted = []
    real_bgr = video.to_bgr
    monkeypatch.setattr(video, "to_bgr", lambda f: converted.append(f.pts) or real_bgr(f))
    monkeypatch.setattr(video, "_sample_grabbed", None)  # the planned way alone
    planned = list(sample_frames(path, 8))
    assert [i for i, _, _ in planned] == [i for i, _, _ in grabbed]
    assert [t for _, t, _ in planned] == pytest.approx([t for _, t, _ in grabbed], abs=1e-9)
    for (i, _, a), (_, _, b) in zip(planned, grabbed):
        assert np.array_equal(a, b), f"frame {i}"
    assert len(converted) == len(planned) > 10


def test_planned_sampling_goes_on_the_grabbed_way_where_decoding_fails(tmp_path, monkeypatch):
    import facelab.data.video as video

    path = media_file("WolfgangLanger_Pexels.mp4")
    grabbed = [(i, t) for i, t, _ in sample_frames(path, 8, planned=False)]
    real = video._sample_planned

    def failing(p, plan):  # the decoder gives up after 20 kept frames
        for n, item in enumerate(real(p, plan)):
            if n == 20:
                raise video._PlanFailed("damaged here")
            yield item

    monkeypatch.setattr(video, "_sample_planned", failing)
    got = [(i, t) for i, t, _ in sample_frames(path, 8)]
    assert got == grabbed  # nothing twice, nothing missing
"""The webcam pipeline (facelab.live) on real frames, with a fake codec (no training needed)."""

from __future__ import annotations

import threading
from dataclasses import replace

import cv2
import numpy as np
import pytest

from facelab.data.faces import Box, FaceDetector
from facelab.edits.directions import Direction
from facelab.live import (
    BAND_H,
    FAMILIAR_MIN,
    FAMILIAR_WINDOW,
    NO_FACE_NOTE,
    STAGES,
    UNFAMILIAR_DB,
    LiveError,
    LivePipeline,
    LiveSettings,
    heldout_psnr,
    side_place,
)

from builders import ThirdsCodec
from media import media_file


class CountingDetector(FaceDetector):
    def __init__(self) -> None:
        super().__init__()
        self.detects = self.tracks = 0

    def detect(self, frame_bgr):
        self.detects += 1
        return super().detect(frame_bgr)

    def track(self, frame_bgr, last):
        self.tracks += 1
        return super().track(frame_bgr, last)


def frames(name: str, n: int, step: int = 1) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(media_file(name)))
    out = []
    while len(out) < n:
        ok, frame = cap.read()
        if not ok:
            break
        if cap.get(cv2.CAP_PROP_POS_FRAMES) % step == 0:
            out.append(frame)
    cap.release()
    assert out, f"no frames read from {name}"
    return out


@pytest.fixture(scope="module")
def face_frames() -> list[np.ndarray]:
    return frames("single_face.mp4", 12, step=3)


def test_face_is_found_boxed_and_shifted(face_frames: list[np.ndarray]) -> None:
    codec = ThirdsCodec()
    up = Direction("brighter", "custom", np.eye(9, dtype=np.float32)[0], spread=0.1)
    pipe = LivePipeline(codec, LiveSettings(shifts=((up, 2.0),)),
                        centres=np.stack([np.zeros(9), np.ones(9)]), centre_names=["dark", "light"])
    frame = face_frames[0]
    before = frame.copy()
    result = pipe.process(frame)
    np.testing.assert_array_equal(frame, before)  # the input is never drawn on
    assert result.frame.shape == frame.shape and result.frame.dtype == np.uint8
    assert len(result.boxes) == 1
    box = result.boxes[0]
    assert box.w > 60 and 0 <= box.x < frame.shape[1] and 0 <= box.y < frame.shape[0]
    assert set(STAGES) | {"total"} <= set(result.timings)
    assert all(v >= 0 for v in result.timings.values())
    assert result.latents.shape == (1, 9) and result.shifted.shape == (1, 64, 64, 3)
    # the shift moved z[0] by alpha x spread = 0.2, and the decoded grey shows it
    assert result.shifted[0, 0, 0, 0] == pytest.approx(min(255, (result.latents[0, 0] + 0.2) * 255), abs=1.5)
    np.testing.assert_array_equal(pipe.last_latent, result.latents[0])
    assert pipe.nearest_cluster == result.cluster in ("dark", "light")
    assert not np.array_equal(result.frame[BAND_H:], frame[BAND_H:]), "box and face must be drawn"
    # the box outline is drawn in green at the box's left edge
    y = box.y + box.h // 2
    assert result.frame[y, box.x].tolist() == [80, 220, 80]


def test_no_face_passes_through_with_a_note() -> None:
    frame = frames("no_face.mp4", 1)[0]
    pipe = LivePipeline(ThirdsCodec())
    result = pipe.process(frame)
    assert result.boxes == [] and result.note == NO_FACE_NOTE and result.shifted.shape[0] == 0
    assert result.frame.shape == frame.shape
    np.testing.assert_array_equal(result.frame[BAND_H:], frame[BAND_H:])
    assert not np.array_equal(result.frame[:BAND_H], frame[:BAND_H]), "the note must be drawn"
    assert pipe.last_latent is None and pipe.nearest_cluster is None
    # without stats, only the note's strip changes, and only up to the note's width
    pipe.update(show_stats=False)
    out = pipe.process(frame).frame
    np.testing.assert_array_equal(out[:, 200:], frame[:, 200:])


def test_tracking_between_full_searches(face_frames: list[np.ndarray]) -> None:
    det = CountingDetector()
    codec = ThirdsCodec()
    pipe = LivePipeline(codec, LiveSettings(detect_every=4), detector=det)
    found = [len(pipe.process(f).boxes) for f in face_frames[:8]]
    assert found == [1] * 8
    assert det.detects == 2 and det.tracks == 6
    assert codec.encoded == 8


def test_several_faces_are_each_processed() -> None:
    img = cv2.imread(str(media_file("multi_face.jpg")))
    img = cv2.resize(img, (640, round(img.shape[0] * 640 / img.shape[1])), interpolation=cv2.INTER_AREA)
    codec = ThirdsCodec()
    # a group photo's faces are small: search a larger frame for smaller faces than by default
    detector = FaceDetector(short_side=240, min_face=0.1, scale_factor=1.1)
    result = LivePipeline(codec, detector=detector).process(img)
    assert len(result.boxes) >= 2
    assert result.latents.shape[0] == result.shifted.shape[0] == len(result.boxes) == codec.encoded
    areas = [b.w * b.h for b in result.boxes]
    assert areas == sorted(areas, reverse=True), "the largest face comes first"


def test_paste_back_changes_the_face_only(face_frames: list[np.ndarray]) -> None:
    frame = face_frames[0]
    off = LiveSettings(side_by_side=False, show_stats=False)
    plain = LivePipeline(ThirdsCodec(), off).process(frame)
    pasted = LivePipeline(ThirdsCodec(), replace(off, paste_back=True, detail=False)).process(frame)
    b = plain.boxes[0]
    inner = (slice(b.y + b.h // 3, b.y + 2 * b.h // 3), slice(b.x + b.w // 3, b.x + 2 * b.w // 3))
    assert not np.array_equal(pasted.frame[inner], plain.frame[inner])
    # the plain decoded face is one flat grey (see ThirdsCodec): the centre of the face becomes it
    centre = pasted.frame[b.y + b.h // 2, b.x + b.w // 2]
    assert np.ptp(centre.astype(int)) <= 2
    # far from the face nothing changed
    np.testing.assert_array_equal(pasted.frame[:, : max(0, b.x - b.w)], plain.frame[:, : max(0, b.x - b.w)])


def test_paste_back_is_the_live_face_plus_the_decoded_change(face_frames: list[np.ndarray]) -> None:
    """Detail-preserving (the default): no move pastes the live face itself; a move adds only the
    decoded change (ThirdsCodec: a flat grey step), so the face's own detail stays."""
    frame = face_frames[0]
    off = LiveSettings(side_by_side=False, show_stats=False)
    plain = LivePipeline(ThirdsCodec(), off).process(frame)
    still = LivePipeline(ThirdsCodec(), replace(off, paste_back=True)).process(frame)
    np.testing.assert_array_equal(still.frame, plain.frame)
    up = Direction("brighter", "custom", np.eye(9, dtype=np.float32)[0], spread=0.1)
    moved = LivePipeline(ThirdsCodec(), replace(off, paste_back=True, shifts=((up, 1.0),))).process(frame)
    step = int(moved.shifted[0, 0, 0, 0]) - int(LivePipeline(ThirdsCodec(), off).process(frame).shifted[0, 0, 0, 0])
    assert step > 20  # z[0] + 0.1 is about 25 grey levels brighter
    b = moved.boxes[0]
    inner = (slice(b.y + 2 * b.h // 5, b.y + 3 * b.h // 5), slice(b.x + 2 * b.w // 5, b.x + 3 * b.w // 5))
    expected = np.clip(frame[inner].astype(int) + step, 0, 255)
    assert np.abs(moved.frame[inner].astype(int) - expected).max() <= 1
    assert np.std(moved.frame[inner].astype(float)) > 10, "the live face's detail stays"


def test_side_by_side_never_covers_a_face(face_frames: list[np.ndarray]) -> None:
    """Beside the face where there is room; when the face fills the frame, a smaller view in
    the room left beside its box; never over the box."""
    f = face_frames[0]
    b = LivePipeline(ThirdsCodec()).process(f).boxes[0]
    pad = 0.15  # a close-up: the face fills the frame
    x0, y0 = int(b.x - pad * b.w), int(b.y - pad * b.h)
    close = f[max(0, y0):int(b.y + b.h * (1 + pad)), max(0, x0):int(b.x + b.w * (1 + pad))]
    close = cv2.resize(close, (480, round(480 * close.shape[0] / close.shape[1])))
    for frame in (f, close):
        result = LivePipeline(ThirdsCodec(), LiveSettings(show_stats=False, detail=False)).process(frame)
        (box,) = result.boxes
        inside = (slice(max(BAND_H, box.y) + 3, box.y + box.h - 3), slice(box.x + 3, box.x + box.w - 3))
        np.testing.assert_array_equal(result.frame[inside], frame[inside])
        outside = result.frame.copy()
        outside[max(BAND_H, box.y) - 2:box.y + box.h + 2, box.x - 2:box.x + box.w + 2] = frame[
            max(BAND_H, box.y) - 2:box.y + box.h + 2, box.x - 2:box.x + box.w + 2]
        assert not np.array_equal(outside, frame), "the side-by-side view is drawn somewhere"
    # a face that fills the whole frame leaves no room: no view rather than one over the face
    box = Box(0, 0, 200, 200)
    assert side_place(200, 200, (-20, -20, 220, 220), box, [box]) is None
    # room on the left only: it goes there, clear of the square, at most the face's size
    box = Box(300, 60, 100, 100)
    sx, sy, m = side_place(420, 240, (280, 40, 420, 180), box, [box])
    assert sx + m <= 280 and m == 140 and sy >= BAND_H


def test_familiarity_is_a_running_median_against_the_held_out_psnr(face_frames: list[np.ndarray]) -> None:
    """No verdict without a reference or on the first few frames; then the held-out PSNR minus
    the median live PSNR: near 0 for faces drawn as well as the held-out ones."""
    assert FAMILIAR_MIN <= 8 < FAMILIAR_WINDOW
    codec = ThirdsCodec()
    blind = LivePipeline(codec)
    for f in face_frames:
        blind.process(f)
    assert blind.psnr_drop is None and not blind.unfamiliar
    probe = LivePipeline(codec, heldout_psnr=0.0)
    for f in face_frames[:8]:
        probe.process(f)
    live = -probe.psnr_drop  # ThirdsCodec draws flat grey: a low PSNR on a real face
    assert 3 < live < 30
    for ref, unfamiliar in ((live, False), (live + UNFAMILIAR_DB + 1, True)):
        pipe = LivePipeline(codec, LiveSettings(detail=False), heldout_psnr=ref)
        for i, f in enumerate(face_frames[:8]):
            pipe.process(f)
            assert (pipe.psnr_drop is None) == (i + 1 < FAMILIAR_MIN)
        assert pipe.unfamiliar is unfamiliar, pipe.psnr_drop
    # the reference: the median over held-out crops (flat ones ThirdsCodec draws exactly, noisy ones not)
    flat = np.full((5, 64, 64, 3), 128, np.uint8)
    noisy = np.random.default_rng(0).integers(0, 255, (5, 64, 64, 3), dtype=np.uint8)
    flat_db, noisy_db = (heldout_psnr(codec, x, codec.encode(x)[0]) for x in (flat, noisy))
    assert flat_db > 40 and noisy_db < 20
    assert heldout_psnr(codec, flat[:0], np.zeros((0, 9), np.float32)) is None


def test_settings_swap_whole_and_reject_bad_values(face_frames: list[np.ndarray]) -> None:
    pipe = LivePipeline(ThirdsCodec())
    first = pipe.settings
    new = pipe.update(strength=0.5, target=np.ones(9, np.float32))
    assert first.strength == 0.0 and new.strength == 0.5 and pipe.settings is new
    with pytest.raises(LiveError, match="between 0 and 1"):
        pipe.update(strength=2.0)
    assert pipe.settings is new, "a rejected update leaves the old settings"
    with pytest.raises(LiveError, match="centre"):
        pipe.update(shifts=((Direction("laugh", "centre", np.zeros(9, np.float32)), 1.0),))
    with pytest.raises(LiveError, match="9 values"):
        pipe.update(shifts=((np.ones(4, np.float32), 1.0),))
    with pytest.raises(LiveError, match="9 values"):
        pipe.update(target=np.ones(3))
    assert pipe.settings is new
    with pytest.raises(LiveError, match="BGR"):
        pipe.process(np.zeros((10, 10), np.uint8))

    # toward the target: s=0.5 moves z[0] half way to 1
    result = pipe.process(face_frames[0])
    expected = (result.latents[0, 0] + 1.0) / 2
    assert result.shifted[0, 0, 0, 0] == pytest.approx(expected * 255, abs=1.5)

    # a page thread changing sliders while frames are processed never breaks a frame
    errors: list[BaseException] = []

    def slide() -> None:
        try:
            for i in range(200):
                pipe.update(strength=(i % 11) / 10)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=slide)
    t.start()
    for f in face_frames[:6]:
        assert pipe.process(f).frame.shape == f.shape
    t.join()
    assert not errors


def test_real_codec_in_a_callback_thread(face_frames: list[np.ndarray]) -> None:
    """A random-weight BetaVAE behind the pipeline, called from another thread as
    streamlit-webrtc does; the one-torch-thread limit stays in that thread."""
    import torch

    from facelab.model.models import ModelConfig, TorchCodec, build_model

    # The paper's network: its random weights make the shift change the face (the default one
    # starts from a PCA basis fitted to data, all zeros untrained).
    codec = TorchCodec(build_model(ModelConfig(latent_dim=8, arch="paper")), torch.device("cpu"))
    direction = Direction("d", "custom", np.eye(8, dtype=np.float32)[1], spread=1.0)
    pipe = LivePipeline(codec, LiveSettings(shifts=((direction, 3.0),), paste_back=True))
    main_threads = torch.get_num_threads()
    seen: dict = {}

    def callback() -> None:
        seen["results"] = [pipe.process(f) for f in face_frames[:3]]
        seen["threads"] = torch.get_num_threads()

    t = threading.Thread(target=callback)
    t.start()
    t.join()
    results = seen["results"]
    assert all(len(r.boxes) == 1 and r.shifted.shape == (1, 64, 64, 3) for r in results)
    assert results[-1].latents.shape == (1, 8) and np.all(np.isfinite(results[-1].latents))
    assert seen["threads"] == 1 and torch.get_num_threads() == main_threads
    # the shift changed the decoded face (a random decoder barely reacts, but it does)
    plain = LivePipeline(codec, torch_threads=None).process(face_frames[0]).shifted[0]
    assert not np.array_equal(plain, results[0].shifted[0])

"""facelab.data.faces: geometry and crops on drawn frames; detection, tracking, alignment on real ones."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from facelab.data.faces import (
    Box,
    FaceDetector,
    crop_box,
    crop_face,
    crop_sharpness,
    difference,
    roll_from_eyes,
    same_place,
    sharpness,
)
from facelab.data.video import sample_frames

from media import media_file


@pytest.fixture(scope="module")
def pexels_frames() -> list[np.ndarray]:
    return [f for _, _, f in sample_frames(media_file("WolfgangLanger_Pexels.mp4"), 8)]


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


def scene(h=240, w=320) -> np.ndarray:
    """A BGR frame: grey background, a blue square (x 100..160, y 80..140) with a red dot inside."""
    f = np.full((h, w, 3), 90, np.uint8)
    f[80:140, 100:160] = (255, 0, 0)
    f[105:115, 125:135] = (0, 0, 255)
    return f


# --- geometry and crops on drawn frames ------------------------------------------------------
def test_box_basics():
    b = Box(10, 20, 30, 40)
    assert (b.area, b.center, b.as_tuple()) == (1200, (25.0, 40.0), (10, 20, 30, 40))


def test_crop_box_margin_and_shift():
    b = Box(100, 100, 100, 100)
    assert crop_box(b, margin=0.0, shift=0.0) == (150, 150, 100)
    assert crop_box(b, margin=0.25, shift=0.0) == (150, 150, 150)
    cx, cy, side = crop_box(b, margin=-0.05, shift=0.1)
    assert (cx, cy) == (150, 160) and side == pytest.approx(90)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_crop_is_square_rgb_uint8_of_the_box(size):
    crop = crop_face(scene(), Box(100, 80, 60, 60), size, margin=0.0, shift=0.0)
    assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
    # the box is all blue (BGR 255,0,0) but the red dot: in RGB, blue is the last channel
    assert crop[..., 2].mean() > 200 and crop[2, 2].tolist() == [0, 0, 255]
    c = size // 2
    assert crop[c, c].tolist() == [255, 0, 0]  # the red dot sits in the middle


def test_margin_takes_in_background():
    tight = crop_face(scene(), Box(100, 80, 60, 60), 64, margin=0.0, shift=0.0)
    wide = crop_face(scene(), Box(100, 80, 60, 60), 64, margin=0.5, shift=0.0)
    grey = lambda c: (np.abs(c.astype(int) - 90).sum(-1) < 10).mean()  # noqa: E731
    assert grey(tight) == 0 and 0.6 < grey(wide) < 0.8  # (2x side: 3/4 of the area is background)


def test_shift_moves_the_crop_down():
    down = crop_face(scene(), Box(100, 80, 60, 60), 60, margin=0.0, shift=0.25)
    # the square moved 15 px down: its top rows are blue, its bottom 15 rows background
    assert down[:40, :, 2].mean() > 200 and np.abs(down[-10:].astype(int) - 90).max() < 10


def test_crop_leaving_the_frame_is_padded_not_failed():
    crop = crop_face(scene(), Box(-30, -30, 80, 80), 64, margin=0.2)
    assert crop.shape == (64, 64, 3)


def test_explicit_roll_rotates_the_crop():
    f = np.full((200, 200, 3), 0, np.uint8)
    f[98:102, 40:160] = 255  # a horizontal bar
    flat = crop_face(f, Box(50, 50, 100, 100), 64, margin=0.0, shift=0.0)
    turned = crop_face(f, Box(50, 50, 100, 100), 64, margin=0.0, shift=0.0, align=30.0)
    rows_flat = (flat.mean(-1) > 100).any(1).sum()
    rows_turned = (turned.mean(-1) > 100).any(1).sum()
    assert rows_flat <= 5 and rows_turned > 20  # the bar now crosses many rows


def test_roll_from_eyes():
    assert roll_from_eyes([(10, 20, 10, 10), (60, 20, 10, 10)], 80) == pytest.approx(0)
    tilted = roll_from_eyes([(10, 20, 10, 10), (60, 30, 10, 10)], 80)
    assert tilted == pytest.approx(np.degrees(np.arctan2(10, 50)))  # image-right eye lower: > 0
    assert roll_from_eyes([(10, 20, 10, 10)], 80) == 0  # one eye: no roll
    assert roll_from_eyes([(10, 20, 10, 10), (15, 20, 10, 10)], 80) == 0  # both on one side
    assert roll_from_eyes([(10, 0, 10, 10), (45, 60, 10, 10)], 80) == 0  # too steep to be eyes


def test_sharpness_and_difference():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(img, (0, 0), 2)
    assert sharpness(np.zeros((32, 32), np.uint8)) == 0
    assert crop_sharpness(img) > 10 * crop_sharpness(blurred)
    assert crop_sharpness(cv2.resize(img, (128, 128))) > 0  # any size is measured at 64x64
    assert difference(img, img) == 0
    assert difference(np.zeros_like(img), np.full_like(img, 200)) == pytest.approx(200)


# --- real faces -------------------------------------------------------------------------------
def test_detects_the_face_in_a_real_frame(detector, pexels_frames):
    frame = pexels_frames[100]
    boxes = detector.detect(frame)
    assert boxes, "no face found"
    b = boxes[0]
    h, w = frame.shape[:2]
    assert 0.5 * h < b.h < h and 0.25 * w < b.center[0] < 0.75 * w  # a close-up, near the middle
    assert boxes == sorted(boxes, key=lambda x: -x.area)


def test_no_face_in_a_scene_without_one(detector):
    frames = [f for _, _, f in sample_frames(media_file("no_face.mp4"), 2)]
    assert all(detector.detect(f) == [] for f in frames)


def test_several_faces_in_a_group_photo():
    # The defaults look for one close face (>= 20% of the frame); a group photo's faces are small.
    photo = cv2.imread(str(media_file("multi_face.jpg")))
    boxes = FaceDetector(short_side=667, min_face=0.04).detect(photo)
    assert len(boxes) >= 2
    assert boxes == sorted(boxes, key=lambda b: -b.area)


def test_tracking_follows_the_face_and_loses_it_where_there_is_none(detector, pexels_frames):
    a, b = pexels_frames[100], pexels_frames[101]
    last = detector.detect(a)[0]
    tracked = detector.track(b, last)
    full = detector.detect(b)[0]
    assert tracked is not None
    assert abs(tracked.center[0] - full.center[0]) < 0.15 * full.w
    assert abs(tracked.w - full.w) < 0.25 * full.w
    blank = np.full_like(b, 60)
    assert detector.track(blank, last) is None


def test_detection_is_the_same_from_several_threads(detector, pexels_frames):
    frames = pexels_frames[::20]
    expected = [detector.detect(f) for f in frames]
    results: dict[int, list] = {}

    def work(k: int) -> None:
        results[k] = [detector.detect(f) for f in frames]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[k] == expected for k in range(3))


@pytest.mark.parametrize("angle", [-12, 12])
def test_eye_alignment_undoes_a_head_roll(detector, pexels_frames, angle):
    frame = pexels_frames[90]
    b = detector.detect(frame)[0]
    h, w = frame.shape[:2]
    rot = cv2.getRotationMatrix2D(b.center, angle, 1.0)  # OpenCV: positive = counter-clockwise
    tilted = cv2.warpAffine(frame, rot, (w, h), borderMode=cv2.BORDER_REPLICATE)
    tb = detector.detect(tilted)[0]
    roll = detector.eye_roll(tilted, tb)
    assert roll == pytest.approx(-angle, abs=7)
    base = crop_face(frame, b, 64)
    plain = crop_face(tilted, tb, 64)
    aligned = crop_face(tilted, tb, 64, align=True, detector=detector)
    assert difference(base, aligned) < difference(base, plain)


def test_alignment_falls_back_to_no_rotation_without_eyes(detector):
    f = scene()
    box = Box(100, 80, 60, 60)
    assert np.array_equal(crop_face(f, box, 64, align=True, detector=detector), crop_face(f, box, 64))


def test_tracking_a_still_face_from_an_anchor_does_not_drift(detector, pexels_frames):
    frame = pexels_frames[50]
    anchor = detector.detect(frame)[0]
    boxes = []
    for _ in range(6):
        box = detector.track(frame, anchor)
        if not same_place(box, anchor):
            anchor = box
        boxes.append(box)
    assert len(set(boxes[1:])) == 1  # the same box every time
    assert same_place(Box(100, 100, 100, 100), Box(105, 95, 104, 104))
    assert not same_place(Box(100, 100, 100, 100), Box(130, 100, 100, 100))
    assert not same_place(Box(100, 100, 120, 120), Box(100, 100, 100, 100))

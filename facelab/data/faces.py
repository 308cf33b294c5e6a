"""Find one face in a frame and cut a tight, square, optionally roll-aligned crop of it.

Pure functions on numpy frames (BGR in, RGB out), no files, no database. Detection is
OpenCV's Haar cascade: old, but fast on a CPU, good enough for a frontal face filling a good
part of the frame (a video of oneself), and shipped inside opencv-python.

Speed: a full-frame search runs on a grey frame shrunk by an integer factor to about
`short_side` pixels (block averaging: fast and free of aliasing); between full searches
`FaceDetector.track` looks only in a small window around the last face, shrunk so the face is
about `track_face_px` wide, for a narrow band of sizes: a fraction of a full search's cost.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import cv2
import numpy as np

FACE_CASCADE = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
EYE_CASCADE = cv2.data.haarcascades + "haarcascade_eye.xml"
HAAR_MIN = 24  # the frontal-face cascade's window: smaller faces are never found

# Crop geometry, as fractions of the Haar box's side. The box runs roughly from the brows to
# the chin and from cheek to cheek; a box-sized square moved a little down keeps the brows,
# eyes, mouth and chin (what expressions are made of) with little hair, ear or background.
DEFAULT_MARGIN = -0.05
DEFAULT_SHIFT = 0.08


@dataclass(frozen=True)
class Box:
    """An axis-aligned face box in frame pixels."""

    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        return self.w * self.h

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.w / 2, self.y + self.h / 2

    def as_tuple(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.w, self.h


def same_place(box: Box, anchor: Box) -> bool:
    """Whether a tracked box is close enough to the tracking anchor to keep the anchor.

    Track from a fixed anchor, and move it only when the face really moved: re-centring the
    window on every tracked box lets the box wander and grow, even on a still face.
    """
    (bx, by), (ax, ay) = box.center, anchor.center
    return (abs(bx - ax) <= 0.1 * anchor.w and abs(by - ay) <= 0.1 * anchor.h
            and 1 / 1.08 <= box.w / anchor.w <= 1.08)


def _largest_first(boxes: list[Box]) -> list[Box]:
    # Ties broken by position so the order never depends on the detector's internal order.
    return sorted(boxes, key=lambda b: (-b.area, b.y, b.x, b.w))


class FaceDetector:
    """Haar face search on a downscaled grey frame, plus a cheap local search (tracking).

    Thread-safe: every thread gets its own cascade objects (OpenCV's are not meant to be
    shared), and OpenCV releases the GIL while it searches, so a thread pool uses all cores.
    """

    def __init__(
        self,
        short_side: int = 120,
        min_face: float = 0.2,
        scale_factor: float = 1.2,
        min_neighbors: int = 5,
        track_window: float = 1.4,
        track_face_px: int = 48,
        track_scale_factor: float = 1.1,
        track_size_tolerance: float = 1.15,
    ) -> None:
        self.short_side = short_side  # full search on a grey frame >= this (and < 2x this) high
        self.min_face = min_face  # smallest face of a full search, share of the short side
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.track_window = track_window  # tracking window side, in face sides
        self.track_face_px = track_face_px  # the face is shrunk to >= this (and < 2x this) to track
        self.track_scale_factor = track_scale_factor
        self.track_size_tolerance = track_size_tolerance  # tracked size within last size x/÷ this
        self._local = threading.local()

    def _cascade(self, which: str) -> cv2.CascadeClassifier:
        cascade = getattr(self._local, which, None)
        if cascade is None:
            cascade = cv2.CascadeClassifier(FACE_CASCADE if which == "face" else EYE_CASCADE)
            if cascade.empty():
                raise RuntimeError(f"OpenCV could not load its Haar cascade for {which}s")
            setattr(self._local, which, cascade)
        return cascade

    def detect(self, frame: np.ndarray) -> list[Box]:
        """Every face in the frame (BGR, or grey: see `to_gray`), in frame pixels, largest first."""
        k = max(1, min(frame.shape[:2]) // self.short_side)
        gray = shrink(to_gray(frame), k)
        m = max(HAAR_MIN, int(min(gray.shape) * self.min_face))
        found = self._cascade("face").detectMultiScale(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(m, m)
        )
        return _largest_first([_scale_box(b, k) for b in found])

    def track(self, frame: np.ndarray, last: Box) -> Box | None:
        """The face near `last` (about its size, in a window `track_window` times its side),
        or None when it is not there; the caller then runs a full `detect`. `frame` is BGR or
        grey; pass grey when it is at hand (converting a window costs more than a frame)."""
        h, w = frame.shape[:2]
        side = max(last.w, last.h)
        cx, cy = last.center
        half = side * self.track_window / 2
        x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
        x1, y1 = min(w, int(math.ceil(cx + half))), min(h, int(math.ceil(cy + half)))
        if x1 - x0 < side * 0.8 or y1 - y0 < side * 0.8:
            return None
        # Shrink by an integer factor (fast), then resample so the face is track_face_px wide.
        k = max(1, side // self.track_face_px)
        gray = shrink(to_gray(frame[y0:y1, x0:x1]), k)
        f = min(1.0, self.track_face_px * k / side)
        if f < 1.0:
            gray = cv2.resize(gray, (max(1, round(gray.shape[1] * f)), max(1, round(gray.shape[0] * f))),
                              interpolation=cv2.INTER_AREA)
        k = k / f
        face = side / k
        lo = max(HAAR_MIN, int(face / self.track_size_tolerance))
        hi = max(lo + 1, int(math.ceil(face * self.track_size_tolerance)))
        found = self._cascade("face").detectMultiScale(
            gray, scaleFactor=self.track_scale_factor, minNeighbors=self.min_neighbors,
            minSize=(lo, lo), maxSize=(hi, hi),
        )
        if len(found) == 0:
            return None
        best = _largest_first([_scale_box(b, k) for b in found])[0]
        return Box(best.x + x0, best.y + y0, best.w, best.h)

    def eye_roll(self, frame_bgr: np.ndarray, box: Box) -> float:
        """The head's roll in degrees (positive: the person's left eye, on the image's right,
        sits lower), from two eyes found in the upper half of the face; 0 when unsure."""
        x0, y0 = max(0, box.x), max(0, box.y)
        x1, y1 = min(frame_bgr.shape[1], box.x + box.w), min(frame_bgr.shape[0], box.y + box.h * 6 // 10)
        if x1 - x0 < 20 or y1 - y0 < 12:
            return 0.0
        scale = min(1.0, 120 / box.w)
        region = cv2.cvtColor(frame_bgr[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
        if scale < 1.0:
            region = cv2.resize(region, (round((x1 - x0) * scale), round((y1 - y0) * scale)),
                                interpolation=cv2.INTER_AREA)
        fw = box.w * scale
        lo, hi = max(8, int(fw * 0.12)), max(9, int(fw * 0.4))
        eyes = self._cascade("eye").detectMultiScale(region, 1.1, 4, minSize=(lo, lo), maxSize=(hi, hi))
        return roll_from_eyes([tuple(map(float, e)) for e in eyes], fw)


def roll_from_eyes(eyes: list[tuple[float, float, float, float]], face_w: float) -> float:
    """Roll angle (degrees) from eye boxes found in a face's upper half; 0 without a clear pair.

    A pair is one eye in each half of the face, of similar size, not too far apart in height;
    of several pairs the largest wins. Angles past 30 degrees are taken for false eyes.
    """
    centres = [(x + w / 2, y + h / 2, w) for x, y, w, h in eyes]
    left = [c for c in centres if c[0] < face_w / 2]
    right = [c for c in centres if c[0] >= face_w / 2]
    best = None
    for a in left:
        for b in right:
            dx, dy = b[0] - a[0], b[1] - a[1]
            if dx < face_w * 0.2 or abs(dy) > face_w * 0.25 or max(a[2], b[2]) > 1.6 * min(a[2], b[2]):
                continue
            key = a[2] + b[2]
            if best is None or key > best[0]:
                best = (key, math.degrees(math.atan2(dy, dx)))
    if best is None or abs(best[1]) > 30:
        return 0.0
    return best[1]


def to_gray(frame: np.ndarray) -> np.ndarray:
    """A grey version of a BGR frame; a grey (2-D) frame is returned as is."""
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def shrink(img: np.ndarray, k: int) -> np.ndarray:
    """`img` made k times smaller by averaging k x k blocks (OpenCV's fast integer-area path:
    the edge is first trimmed to a multiple of k)."""
    if k <= 1:
        return img
    h, w = img.shape[:2]
    h, w = h - h % k, w - w % k
    return cv2.resize(img[:h, :w], (w // k, h // k), interpolation=cv2.INTER_AREA)


def _scale_box(b, f: float) -> Box:
    x, y, w, h = (float(v) for v in b)
    return Box(round(x * f), round(y * f), round(w * f), round(h * f))


def crop_box(box: Box, margin: float = DEFAULT_MARGIN, shift: float = DEFAULT_SHIFT) -> tuple[float, float, float]:
    """Centre (x, y) and side of the square crop for a face box: the box's side grown by
    `margin` of it on each side (negative: trimmed), its centre moved down by `shift` of it."""
    side = max(box.w, box.h) * (1 + 2 * margin)
    cx, cy = box.center
    return cx, cy + shift * box.h, side


def crop_face(
    frame_bgr: np.ndarray,
    box: Box,
    size: int = 64,
    margin: float = DEFAULT_MARGIN,
    align: bool | float = False,
    shift: float = DEFAULT_SHIFT,
    detector: FaceDetector | None = None,
) -> np.ndarray:
    """A size x size x 3 RGB uint8 crop of the face in `box`: `square_crop` of `face_square`."""
    return square_crop(face_square(frame_bgr, box, margin, align, shift, detector), size)


def face_square(
    frame_bgr: np.ndarray,
    box: Box,
    margin: float = DEFAULT_MARGIN,
    align: bool | float = False,
    shift: float = DEFAULT_SHIFT,
    detector: FaceDetector | None = None,
) -> np.ndarray:
    """The face's square (`crop_box`) at the frame's own resolution, BGR: cut once, it gives a
    frame's crops of every size (`square_crop`; a build cuts 64 and 128 px, and the rotation is
    most of the work).

    `align=True` rotates it so the eyes are level (Haar eye search; no rotation when the eyes
    are not found); a number is taken as the roll angle itself. Parts of the square outside the
    frame repeat the frame's edge pixels.
    """
    cx, cy, side = crop_box(box, margin, shift)
    if align is True:
        angle = (detector or _default_detector()).eye_roll(frame_bgr, box)
    else:
        angle = float(align or 0.0)
    if not angle:
        return frame_square(frame_bgr, cx, cy, side)
    # Rotate a larger patch at full resolution, then cut the square from its centre.
    big = frame_square(frame_bgr, cx, cy, side * 1.5)
    c = big.shape[0] / 2
    rot = cv2.getRotationMatrix2D((c, c), angle, 1.0)
    big = cv2.warpAffine(big, rot, (big.shape[1], big.shape[0]), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    return frame_square(big, c, c, side)


def square_crop(square: np.ndarray, size: int) -> np.ndarray:
    """A `face_square` resized to size x size, RGB uint8."""
    # Block-average down to under 4x the size first (fast), then area-resample the rest.
    square = shrink(square, max(1, square.shape[0] // (2 * size)))
    interp = cv2.INTER_AREA if square.shape[0] > size else cv2.INTER_LINEAR
    small = cv2.resize(square, (size, size), interpolation=interp)
    return cv2.cvtColor(small, cv2.COLOR_BGR2RGB)


def frame_square(img: np.ndarray, cx: float, cy: float, side: float) -> np.ndarray:
    """The side x side square centred on (cx, cy), padded by edge replication where it leaves `img`."""
    s = max(2, int(round(side)))
    x0, y0 = int(round(cx - s / 2)), int(round(cy - s / 2))
    h, w = img.shape[:2]
    pad = max(0, -x0, -y0, x0 + s - w, y0 + s - h)
    if pad:
        img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    return img[y0:y0 + s, x0:x0 + s]


_DEFAULT: FaceDetector | None = None


def _default_detector() -> FaceDetector:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = FaceDetector()
    return _DEFAULT


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian: high for crisp edges, low for a blurred (moving) face."""
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def crop_sharpness(crop_rgb: np.ndarray) -> float:
    """`sharpness` of a crop measured at 64x64, so one threshold fits every crop size."""
    gray = cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2GRAY)
    if gray.shape[0] != 64:
        gray = cv2.resize(gray, (64, 64), interpolation=cv2.INTER_AREA)
    return sharpness(gray)


def difference(a_rgb: np.ndarray, b_rgb: np.ndarray) -> float:
    """Mean absolute grey-level difference of two crops at 32x32 (0..255): near 0 for a frame
    repeated by a still video, a few units for two frames of a moving face."""
    def small(c: np.ndarray) -> np.ndarray:
        g = cv2.cvtColor(c, cv2.COLOR_RGB2GRAY)
        return cv2.resize(g, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)

    return float(np.abs(small(a_rgb) - small(b_rgb)).mean())


class BoxSmoother:
    """Centred smoothing of one source's face boxes over time, so a still head gives a still crop.

    Haar boxes come in scale steps of a few per cent, so a still face's box jitters in size
    from frame to frame and the model would spend capacity on the zoom. Each box is replaced by
    the mean (centre, log of width and height) of the boxes within `radius` frames on either
    side (fewer near a segment's ends, the same number on both sides, so a steady move is
    followed without lag), over one *segment*: a run of boxes with no frame without a face, no gap over `max_gap_s`
    and no jump (centre moved over `jump` of the side, or size changed by over `jump`). A real
    jump starts a new segment, so it is followed at once rather than smeared. A smoothed box
    within `hold` of the one before (centre and size, as a share of the side) is replaced by
    it, so a still head keeps the very same crop instead of drifting by a pixel.

    Feed it in time order: `push(t, box, item)` returns the (item, smoothed box) pairs whose
    window is complete (a delay of `radius` frames), `flush()` the rest at the end. `box=None`
    (no face in that frame) ends the segment and comes back as (item, None) in order.
    """

    def __init__(self, radius: int = 3, jump: float = 0.25, max_gap_s: float = 1.0,
                 hold: float = 0.015) -> None:
        self.radius, self.jump, self.max_gap_s, self.hold = radius, jump, max_gap_s, hold
        self._held: Box | None = None  # the last box given back in the open segment
        self._seg: list[tuple[float, Box, object]] = []  # the open segment (from its first box)
        self._next = 0  # index in _seg of the first box not yet given back
        self._dropped = 0  # boxes of the open segment no longer kept in _seg

    def push(self, t: float, box: Box | None, item: object = None) -> list[tuple[object, Box | None]]:
        out: list[tuple[object, Box | None]] = []
        if box is None or (self._seg and self._breaks(self._seg[-1], t, box)):
            out += self.flush()
        if box is None:
            return out + [(item, None)]
        self._seg.append((t, box, item))
        while self._next < len(self._seg) - self.radius:
            out.append(self._emit(self._next))
            self._next += 1
        # Keep only what the next windows still need.
        drop = max(0, self._next - self.radius)
        if drop:
            del self._seg[:drop]
            self._next -= drop
            self._dropped += drop
        return out

    def flush(self) -> list[tuple[object, Box | None]]:
        """Every box not given back yet (end of the source, or of a segment)."""
        out = [self._emit(i) for i in range(self._next, len(self._seg))]
        self._seg, self._next, self._held, self._dropped = [], 0, None, 0
        return out

    def _breaks(self, prev: tuple[float, Box, object], t: float, box: Box) -> bool:
        pt, pb, _ = prev
        (px, py), (bx, by) = pb.center, box.center
        side = max(pb.w, pb.h)
        return (t - pt > self.max_gap_s
                or math.hypot(bx - px, by - py) > self.jump * side
                or abs(math.log(max(box.w, box.h) / side)) > math.log1p(self.jump))

    def _emit(self, i: int) -> tuple[object, Box]:
        r = min(self.radius, i + self._dropped, len(self._seg) - 1 - i)
        window = self._seg[i - r:i + r + 1]
        n = len(window)
        cx = sum(b.center[0] for _, b, _ in window) / n
        cy = sum(b.center[1] for _, b, _ in window) / n
        w = math.exp(sum(math.log(b.w) for _, b, _ in window) / n)
        h = math.exp(sum(math.log(b.h) for _, b, _ in window) / n)
        box = Box(round(cx - w / 2), round(cy - h / 2), round(w), round(h))
        held = self._held
        if held is not None:
            (hx, hy), side = held.center, max(held.w, held.h)
            if (abs(cx - hx) <= self.hold * side and abs(cy - hy) <= self.hold * side
                    and abs(math.log(max(w, h) / side)) <= self.hold):
                box = held
        self._held = box
        return self._seg[i][2], box


def size_jitter(boxes: list[Box | None]) -> float:
    """Median |Δsize| / size between consecutive boxes (both present) of one source: how much
    the crop zooms from frame to frame (0 for a perfectly still crop)."""
    steps = [abs(b.w - a.w) / a.w for a, b in zip(boxes, boxes[1:]) if a is not None and b is not None]
    return float(np.median(steps)) if steps else float("nan")

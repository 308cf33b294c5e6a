"""The webcam pipeline: one BGR frame in, the frame with its faces shifted out.

No Streamlit here: the Webcam page calls `LivePipeline.process` from streamlit-webrtc's
frame-callback thread, and sliders on the page hand new settings over with `update(...)`.
Settings are a small frozen dataclass swapped whole under a lock, so the callback always sees
one consistent set (never half of a slider change) and never waits for the page.

Per frame: find faces (a full Haar search every `detect_every` frames, a cheap local search
around the last faces in between), crop each the way the dataset crops video frames, encode
them in one batch, shift the codes by the current sliders (`facelab.edits.edit.compose`, as the
Shift page and the CLI do), decode, and draw: a box around each face, the shifted face beside it
(never over any face) and optionally pasted back over it through a soft elliptical mask, and the
frame rate and latency. The shifted face is detail-preserving by default: the live face's own
square of the frame plus the decoded change (`facelab.edits.edit.with_change`), so it is still you.
A frame without a face passes through with a note.

How familiar the live face is to the model (`LivePipeline.psnr_drop`, `.unfamiliar`): a model of
one person draws another person, or the same person in very different light or pose, as grey
mush, and the page should say why. The measure is the reconstruction PSNR of the largest live
face (its 64-px crop against decode(μ), which the detail-preserving view decodes anyway) against
the run's held-out PSNR (median over its 'val' crops, `heldout_psnr`): the drop in dB, a running
median over the last FAMILIAR_WINDOW frames with a face so that one odd frame (a hand, a blink,
motion blur) does not flash the note. PSNR is OpenCV's (the same figure as `facelab.model.metrics.psnr`,
which would import torch here). Measured on the bundled sample model (held-out median
20.6 dB), every frame streamed through this pipeline: its own clip (472 frames) a drop of -9.3 to
+0.6 dB (median -6.8), the GRID speaker in tests/data/bbaf2n.mpg (75 frames) 6.3 to 6.5 dB (live
PSNR 14 dB: mush). UNFAMILIAR_DB = 4 lies between, a little nearer the other person: a note
wrongly shown on your own face is worse than one shown a little late.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from facelab.data.faces import (
    DEFAULT_MARGIN,
    DEFAULT_SHIFT,
    Box,
    FaceDetector,
    crop_box,
    crop_face,
    frame_square,
    same_place,
)
from facelab.edits.edit import LatentBounds, compose, decode_change, with_change
from facelab.errors import FacelabError
from facelab.space.clusters import nearest_centre

if TYPE_CHECKING:
    from facelab.edits.directions import Direction
    from facelab.model.models import Codec

STAGES = ("detect", "crop", "encode", "shift", "decode", "paste")
BAND_H = 26  # the top band where the note and the stats are written; nothing else draws there
GAP = 6  # px between a face and its side-by-side view
MIN_SIDE = 32  # a smaller side-by-side view shows nothing worth covering the frame with
NO_FACE_NOTE = "no face found"
BOX_COLOUR = (80, 220, 80)  # BGR
TEXT_COLOUR = (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX
FAMILIAR_WINDOW = 30  # frames with a face in the running median of the live PSNR
FAMILIAR_MIN = 5  # frames with a face before the measure says anything (no verdict on one frame)
UNFAMILIAR_DB = 4.0  # live PSNR this far below the held-out PSNR: "trained on another face"
HELDOUT_FACES = 256  # at most this many held-out crops decoded for the reference (load time)


class LiveError(FacelabError):
    """A frame or a setting the pipeline cannot use; the message is meant for the user."""


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields, not objects
class LiveSettings:
    """What the sliders say; replaced whole (see `LivePipeline.update`)."""

    shifts: tuple[tuple["Direction | np.ndarray", float], ...] = ()  # (direction, slider setting: edit.compose)
    target: np.ndarray | None = None  # a centre to move toward (a cluster's or a label's)
    strength: float = 0.0  # s of z' = z + s (target - z), in [0, 1]
    side_by_side: bool = True  # draw the shifted face beside the live one
    paste_back: bool = False  # draw the shifted face over the live one (soft elliptical mask)
    detail: bool = True  # show the live face plus the decoded change; False: the plain decoded face
    show_stats: bool = True  # fps and latency in the top band
    detect_every: int = 5  # a full face search every N frames, tracking in between
    max_faces: int = 4

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 1.0:
            raise LiveError(f"strength must be between 0 and 1, got {self.strength}")
        if self.detect_every < 1 or self.max_faces < 1:
            raise LiveError("detect_every and max_faces must be at least 1")
        object.__setattr__(self, "shifts", tuple(tuple(p) for p in self.shifts))


@dataclass
class LiveResult:
    frame: np.ndarray  # BGR, the input's size
    boxes: list[Box]
    latents: np.ndarray  # μ of each face before the shift (faces x D)
    shifted: np.ndarray  # the decoded shifted faces, RGB uint8 faces x S x S x 3
    timings: dict[str, float] = field(default_factory=dict)  # ms per stage, plus 'total'
    cluster: str | None = None  # nearest cluster of the largest face
    note: str = ""
    edited: np.ndarray | None = None  # the codes after the shift (faces x D), `facelab.edits.edit.compose`


class FaceTracker:
    """Full search every `detect_every` frames; in between, each face is looked for near where
    it was (`FaceDetector.track`). Losing any face triggers a full search at once."""

    def __init__(self, detector: FaceDetector, detect_every: int = 5, max_faces: int = 4) -> None:
        self.detector = detector
        self.detect_every = detect_every
        self.max_faces = max_faces
        self.boxes: list[Box] = []
        self._anchors: list[Box] = []
        self._since_detect = 0

    def update(self, frame_bgr: np.ndarray) -> list[Box]:
        self._since_detect += 1
        if self.boxes and self._since_detect < self.detect_every:
            tracked = [self.detector.track(frame_bgr, a) for a in self._anchors]
            if all(t is not None for t in tracked):
                # Search around fixed anchors, moved only when the face really moved (as the
                # dataset builder does): re-centring on every box lets it drift and grow.
                self._anchors = [a if same_place(t, a) else t for t, a in zip(tracked, self._anchors)]
                self.boxes = tracked
                return self.boxes
        self.boxes = list(self.detector.detect(frame_bgr))[: self.max_faces]
        self._anchors = list(self.boxes)
        self._since_detect = 0
        return self.boxes


class LivePipeline:
    """Holds the codec, the current settings and the tracker; `process(frame)` does the rest."""

    def __init__(
        self,
        codec: "Codec",
        settings: LiveSettings | None = None,
        *,
        detector: FaceDetector | None = None,
        bounds: LatentBounds | None = None,
        centres: np.ndarray | None = None,
        centre_names: Sequence[str] = (),
        margin: float = DEFAULT_MARGIN,
        crop_shift: float = DEFAULT_SHIFT,
        torch_threads: int | None = 1,
        heldout_psnr: float | None = None,
    ) -> None:
        self.codec = codec
        self.heldout_psnr = heldout_psnr  # the reference of `psnr_drop`; None: no familiarity measure
        self.torch_threads = torch_threads
        self._thread_state = threading.local()
        self.size = int(codec.config.image_size)
        self.bounds = bounds
        self.margin, self.crop_shift = margin, crop_shift
        self._lock = threading.Lock()
        self._settings = self._check(settings or LiveSettings())
        self._process_lock = threading.Lock()  # one frame at a time: the tracker has state
        self._clusters: tuple[np.ndarray, tuple[str, ...]] | None = None
        if centres is not None:
            self.set_clusters(centres, centre_names)
        self.tracker = FaceTracker(detector or FaceDetector(), self._settings.detect_every,
                                   self._settings.max_faces)
        self._masks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._last_latent: np.ndarray | None = None
        self._last_cluster: str | None = None
        self._last_t: float | None = None
        self._fps = 0.0
        self._latency_ms = 0.0
        self._live_psnr: deque[float] = deque(maxlen=FAMILIAR_WINDOW)
        self._psnr_drop: float | None = None

    @classmethod
    def for_run(cls, ws, run_id: str, settings: LiveSettings | None = None, **kwargs: Any) -> "LivePipeline":
        """The pipeline for a workspace's trained run: its codec, latent bounds from its faces'
        codes, and the crop geometry the workspace's faces were cut with (so live crops look
        like the training crops)."""
        from facelab.data.dataset import build_settings_of
        from facelab.model.models import load_codec
        from facelab.space.latent import active_latents, load_latents

        codec = load_codec(ws.run_dir(run_id))
        lat = load_latents(ws, run_id, compute=True, codec=codec)
        _, mu = active_latents(ws, lat)
        build = build_settings_of(ws)
        kwargs.setdefault("bounds", LatentBounds.from_latents(mu) if len(mu) else None)
        if "heldout_psnr" not in kwargs:
            held = ws.active_face_ids("val")
            held = held[held < len(lat.mu)]
            if len(held) == 0:  # a tiny dataset holds nothing out: its faces are the best we have
                held = ws.active_face_ids()
                held = held[held < len(lat.mu)]
            kwargs["heldout_psnr"] = heldout_psnr(codec, ws.faces()[held], lat.rows(held))
        kwargs.setdefault("margin", build.margin)
        kwargs.setdefault("crop_shift", build.shift)
        return cls(codec, settings, **kwargs)

    # --- settings (any thread) ---------------------------------------------------------
    @property
    def settings(self) -> LiveSettings:
        with self._lock:
            return self._settings

    def update(self, **changes: Any) -> LiveSettings:
        """Replace some settings at once, e.g. `update(shifts=((smile, 2.0),), paste_back=True)`.

        Bad values raise `LiveError` and leave the current settings in place.
        """
        with self._lock:
            new = self._check(replace(self._settings, **changes))
            self._settings = new
            return new

    def _check(self, settings: LiveSettings) -> LiveSettings:
        """Refuse here, in the page's thread, what would otherwise fail in the frame callback."""
        d = int(self.codec.config.latent_dim)
        for direction, alpha in settings.shifts:
            if getattr(direction, "kind", "") == "centre":
                raise LiveError(f"{direction.name!r} is a centre: set it as the target instead")
            v = np.asarray(getattr(direction, "vector", direction))
            if v.shape != (d,) or not np.all(np.isfinite(v)) or not np.isfinite(alpha):
                raise LiveError(f"a shift needs a finite direction of {d} values and a finite alpha")
        if settings.target is not None:
            t = np.asarray(settings.target)
            if t.shape != (d,) or not np.all(np.isfinite(t)):
                raise LiveError(f"the target must be a finite vector of {d} values")
        return settings

    def set_clusters(self, centres: np.ndarray | None, names: Sequence[str] = ()) -> None:
        """Cluster centres (K x D) and their names, for `nearest_cluster`; None clears them."""
        if centres is None:
            clusters = None
        else:
            c = np.asarray(centres, dtype=np.float32)
            names = tuple(names) or tuple(f"cluster {i}" for i in range(len(c)))
            if c.ndim != 2 or len(names) != len(c):
                raise LiveError(f"need K x D centres and K names, got {c.shape} and {len(names)} names")
            clusters = (c, names)
        with self._lock:
            self._clusters = clusters

    # --- what the page shows (any thread) ----------------------------------------------
    @property
    def last_latent(self) -> np.ndarray | None:
        """μ of the largest face of the latest frame that had one (for the map's live point)."""
        return self._last_latent

    @property
    def nearest_cluster(self) -> str | None:
        return self._last_cluster

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def psnr_drop(self) -> float | None:
        """dB by which the model draws the live face worse than its held-out faces: the run's
        held-out PSNR minus the running median of the largest live face's PSNR over the last
        FAMILIAR_WINDOW frames with a face. None without a reference or before FAMILIAR_MIN
        such frames. Near 0 or below: a face like the training faces."""
        return self._psnr_drop

    @property
    def unfamiliar(self) -> bool:
        """The live face is far from the model's training faces (another person, or very
        different light or pose): what the page's "trained on another face" note says."""
        drop = self._psnr_drop
        return drop is not None and drop >= UNFAMILIAR_DB

    # --- the frame callback -----------------------------------------------------------
    def process(self, frame_bgr: np.ndarray) -> LiveResult:
        """The frame with boxes, shifted faces and stats drawn; never changes `frame_bgr`.

        Meant for one stream; calls from several threads are served one at a time.
        """
        with self._process_lock:
            return self._process(frame_bgr)

    def _process(self, frame_bgr: np.ndarray) -> LiveResult:
        frame = np.asarray(frame_bgr)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 or min(frame.shape[:2]) < 8:
            raise LiveError(f"expected a BGR uint8 H x W x 3 frame, got {frame.dtype} {frame.shape}")
        settings = self.settings
        with self._lock:
            clusters = self._clusters
        self._limit_torch_threads()
        t_start = time.perf_counter()
        timings: dict[str, float] = {}
        clock = [t_start]

        def lap(stage: str) -> None:
            now = time.perf_counter()
            timings[stage] = (now - clock[0]) * 1000.0
            clock[0] = now

        self.tracker.detect_every, self.tracker.max_faces = settings.detect_every, settings.max_faces
        boxes = self.tracker.update(frame)
        lap("detect")
        out = frame.copy()
        d = int(self.codec.config.latent_dim)
        s = self.size
        if not boxes:
            for stage in STAGES[1:]:
                timings[stage] = 0.0
            result = LiveResult(out, [], np.zeros((0, d), np.float32), np.zeros((0, s, s, 3), np.uint8),
                                timings, None, NO_FACE_NOTE)
            return self._finish(result, settings, t_start)

        crops = np.stack([crop_face(frame, b, s, self.margin, False, self.crop_shift) for b in boxes])
        lap("crop")
        mu, _ = self.codec.encode(crops)
        mu = np.asarray(mu, dtype=np.float32)
        lap("encode")
        z = self._apply(mu, settings)
        lap("shift")
        # decode(μ) in the same batch as z: the detail-preserving view adds the decoded change
        # to the live face, and the familiarity measure compares it with the crop
        before, shifted = decode_change(self.codec, mu, z)
        lap("decode")
        self._measure_familiarity(crops[0], before[0])
        for i, (box, face) in enumerate(zip(boxes, shifted)):
            rgb = before[i] if settings.detail else None
            self._draw_face(out, frame, box, face, rgb, boxes, settings)
        lap("paste")

        cluster = _nearest(mu[0], clusters)
        self._last_latent, self._last_cluster = mu[0].copy(), cluster
        result = LiveResult(out, list(boxes), mu, shifted, timings, cluster, edited=z)
        return self._finish(result, settings, t_start)

    # --- pieces -----------------------------------------------------------------------
    def _limit_torch_threads(self) -> None:
        """One torch thread for the calling thread only (OpenMP's count is per thread).

        Why: one 64-px face is too small to share between cores, and on a busy machine (the
        browser, Streamlit and the camera decoder all want the same 2 cores) a second torch
        thread spin-waiting for its turn made encode + decode 10-30x slower in our benchmark.
        """
        if self.torch_threads is None or getattr(self._thread_state, "done", False):
            return
        torch = sys.modules.get("torch")  # only a torch codec has loaded it; never import it here
        if torch is not None:
            torch.set_num_threads(self.torch_threads)
        self._thread_state.done = True

    def _measure_familiarity(self, crop: np.ndarray, decoded: np.ndarray) -> None:
        """Add one frame's PSNR (crop against its reconstruction) to the running median."""
        if self.heldout_psnr is None:
            return
        self._live_psnr.append(cv2.PSNR(crop, decoded))
        if len(self._live_psnr) >= FAMILIAR_MIN:
            self._psnr_drop = self.heldout_psnr - float(np.median(self._live_psnr))

    def _apply(self, mu: np.ndarray, settings: LiveSettings) -> np.ndarray:
        z = compose(mu, settings.shifts, settings.target, settings.strength, self.bounds)
        return np.ascontiguousarray(z, dtype=np.float32)

    def _draw_face(self, out: np.ndarray, frame: np.ndarray, box: Box, face_rgb: np.ndarray,
                   before_rgb: np.ndarray | None, boxes: Sequence[Box], settings: LiveSettings) -> None:
        """Paste and/or show beside one face: `face_rgb` is its decoded shifted face; with
        `before_rgb` (its decoded unshifted face) the face drawn is the live square of `frame`
        plus the decoded change, at the frame's own resolution."""
        h, w = out.shape[:2]
        cx, cy, side = crop_box(box, self.margin, self.crop_shift)
        n = max(8, int(round(side)))
        x0, y0 = int(round(cx - n / 2)), int(round(cy - n / 2))
        if before_rgb is None:
            face_bgr = cv2.resize(cv2.cvtColor(face_rgb, cv2.COLOR_RGB2BGR), (n, n), interpolation=cv2.INTER_LINEAR)
        else:
            face_bgr = with_change(frame_square(frame, cx, cy, n), before_rgb[..., ::-1], face_rgb[..., ::-1])
        if settings.paste_back:
            _blend(out, face_bgr, x0, y0, self._mask(n))
        if settings.side_by_side:
            place = side_place(w, h, (x0, y0, x0 + n, y0 + n), box, boxes, n)
            if place is not None:
                sx, sy, m = place
                small = face_bgr if m == n else cv2.resize(face_bgr, (m, m), interpolation=cv2.INTER_AREA)
                out[sy:sy + m, sx:sx + m] = small
                cv2.rectangle(out, (sx, sy), (sx + m - 1, sy + m - 1), BOX_COLOUR, 1)
        y_top = max(BAND_H, box.y)
        cv2.rectangle(out, (box.x, y_top), (box.x + box.w - 1, box.y + box.h - 1), BOX_COLOUR, 2)

    def _mask(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """A soft ellipse (1 inside the face, fading to 0 at the square's edge) and 1 minus it,
        cached per size."""
        masks = self._masks.get(n)
        if masks is None:
            m = np.zeros((n, n), np.float32)
            cv2.ellipse(m, (n // 2, n // 2), (int(n * 0.38), int(n * 0.46)), 0, 0, 360, 1.0, -1)
            k = max(3, (n // 8) | 1)
            mask = cv2.GaussianBlur(m, (k, k), 0)
            if len(self._masks) > 32:
                self._masks.clear()
            masks = self._masks[n] = (mask, 1.0 - mask)
        return masks

    def _finish(self, result: LiveResult, settings: LiveSettings, t_start: float) -> LiveResult:
        now = time.perf_counter()
        latency = (now - t_start) * 1000.0
        if self._last_t is not None:
            dt = now - self._last_t
            if dt > 0:
                self._fps = 1.0 / dt if self._fps == 0 else 0.9 * self._fps + 0.1 / dt
        self._last_t = now
        self._latency_ms = latency if self._latency_ms == 0 else 0.9 * self._latency_ms + 0.1 * latency
        parts = [result.note] if result.note else []
        if settings.show_stats:
            parts.append(f"{self._fps:4.1f} fps  {self._latency_ms:4.0f} ms")
        if result.cluster:
            parts.append(result.cluster)
        if parts:
            _band_text(result.frame, "   ".join(parts))
        result.timings["total"] = (time.perf_counter() - t_start) * 1000.0
        return result


def heldout_psnr(codec: "Codec", faces: np.ndarray, mu: np.ndarray) -> float | None:
    """Median reconstruction PSNR (dB) of held-out crops from their μ: how well the model draws
    faces like its training faces that it never trained on, the reference of `psnr_drop`.
    At most HELDOUT_FACES evenly spaced crops (it runs when the page loads a model); None for none."""
    if len(faces) == 0:
        return None
    from facelab.model.models import resize_images

    pick = np.unique(np.linspace(0, len(faces) - 1, min(len(faces), HELDOUT_FACES)).round().astype(int))
    decoded = codec.decode(np.asarray(mu, np.float32)[pick])
    return float(np.median([cv2.PSNR(a, b) for a, b in zip(decoded, resize_images(faces[pick], decoded.shape[1]))]))


def _nearest(z: np.ndarray, clusters: tuple[np.ndarray, tuple[str, ...]] | None) -> str | None:
    if clusters is None or len(clusters[0]) == 0 or clusters[0].shape[1] != z.shape[0]:
        return None
    centres, names = clusters
    return names[int(nearest_centre(z, centres)[0])]


def _blend(out: np.ndarray, face: np.ndarray, x0: int, y0: int, masks: tuple[np.ndarray, np.ndarray]) -> None:
    """out[y0:y0+n, x0:x0+n] = mask * face + (1 - mask) * out, rounded, clipped to the frame;
    where the face is what was there the frame stays exactly as it was."""
    n = face.shape[0]
    h, w = out.shape[:2]
    fx0, fy0 = max(0, -x0), max(0, -y0)
    fx1, fy1 = min(n, w - x0), min(n, h - y0)
    if fx1 <= fx0 or fy1 <= fy0:
        return
    region = out[y0 + fy0:y0 + fy1, x0 + fx0:x0 + fx1]
    mask, inverse = (np.ascontiguousarray(m[fy0:fy1, fx0:fx1]) for m in masks)
    region[:] = cv2.blendLinear(np.ascontiguousarray(face[fy0:fy1, fx0:fx1]), np.ascontiguousarray(region),
                                mask, inverse)


def side_place(w: int, h: int, square: tuple[int, int, int, int], box: Box,
               boxes: Sequence[Box] = (), want: int = 0) -> tuple[int, int, int] | None:
    """(x, y, side) of the side-by-side view of one face in a w x h frame, or None.

    Never over a face: the view goes right, left, below or above the face (its detection `box`
    and its crop `square`, x0, y0, x1, y1, together), wherever the largest one fits (at most
    `want` px, below the text band), away from every face box; when the face fills the frame
    it shrinks, keeping clear of the box alone, and below MIN_SIDE it is left out.
    """
    want = want or (square[2] - square[0])
    others = [(b.x, b.y, b.x + b.w, b.y + b.h) for b in boxes]
    own = (box.x, box.y, box.x + box.w, box.y + box.h)
    face = (min(square[0], own[0]), min(square[1], own[1]), max(square[2], own[2]), max(square[3], own[3]))
    for x0, y0, x1, y1 in (face, own):
        x0, y0, x1, y1 = max(0, x0), max(BAND_H, y0), min(w, x1), min(h, y1)
        room_h, room_w = h - BAND_H, w
        candidates = [  # (side, x, y), in order of preference
            (min(want, w - x1 - GAP, room_h), x1 + GAP, None),  # right
            (min(want, x0 - GAP, room_h), None, None),  # left
            (min(want, h - y1 - GAP, room_w), None, y1 + GAP),  # below
            (min(want, y0 - GAP - BAND_H, room_w), None, None),  # above
        ]
        best = None
        for i, (m, sx, sy) in enumerate(candidates):
            if m < MIN_SIDE:
                continue
            if i in (0, 1):
                sx = sx if i == 0 else x0 - GAP - m
                sy = min(max(BAND_H, y0), h - m)
            else:
                sy = sy if i == 2 else y0 - GAP - m
                sx = min(max(0, x0), w - m)
            rect = (sx, sy, sx + m, sy + m)
            if any(_overlap(rect, o) for o in others):
                continue
            if best is None or m > best[2]:
                best = (sx, sy, m)
        if best is not None:
            return best
    return None


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _band_text(out: np.ndarray, text: str) -> None:
    """White text on a dark strip in the top-left band (the only place notes go)."""
    (tw, _), _ = cv2.getTextSize(text, FONT, 0.5, 1)
    cv2.rectangle(out, (0, 0), (min(out.shape[1] - 1, tw + 10), BAND_H - 1), (0, 0, 0), -1)
    cv2.putText(out, text, (5, BAND_H - 9), FONT, 0.5, TEXT_COLOUR, 1, cv2.LINE_AA)

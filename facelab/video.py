"""Read video files: check that a file is a real video, and sample its frames at a chosen rate.

Sampling decodes every frame (inter-frame codecs need the previous ones) but converts only the
kept frames to BGR: `grab()` for the skipped ones, `retrieve()` for the kept. Seeking with
CAP_PROP_POS_FRAMES instead would be about 5x slower, so we never seek.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# FFmpeg's own log (e.g. "Invalid NAL unit size" for a cut file) would reach the user's
# terminal as noise; our errors say what went wrong. Read by OpenCV when it first opens a video.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402
import numpy as np

# A file whose stream ends before this share of the frames its header announces is truncated.
# (Containers without an index, e.g. MPEG-PS, only estimate their count; they never trip this
# because the estimate then comes from the file's own, already short, size.)
TRUNCATED_BELOW = 0.9


class VideoError(ValueError):
    """A video the user gave cannot be used; the message says why, in the user's words."""


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    fps: float
    frame_count: int
    width: int
    height: int
    duration_s: float


def _open(path: Path) -> cv2.VideoCapture:
    # FFmpeg explicitly: the default backend order could pick the image-sequence reader.
    # OpenCV warns on stderr when FFmpeg cannot open a file; we raise a clear error instead.
    logging = cv2.utils.logging
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    try:
        return cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    finally:
        logging.setLogLevel(level)


def probe(path: str | Path, name: str | None = None) -> VideoInfo:
    """What is in `path`, or a `VideoError` saying why it is not a usable video. Messages call
    the file `name` (default: the path's own), e.g. an upload's name rather than its temp copy's.

    Refused: a missing or zero-byte file, a file that is not a video (e.g. text renamed .mp4),
    an image (FFmpeg would open a JPEG as a one-frame video), a file whose first frame cannot
    be decoded (truncated before its first frame).
    """
    path = Path(path)
    name = name or path.name
    if not path.is_file():
        raise VideoError(f"{name} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise VideoError(f"{name} is empty (0 bytes): not a video")
    if cv2.haveImageReader(str(path)):  # looks at the file's signature, not its name
        raise VideoError(f"{name} is an image, not a video: give a video file (mp4, mov, webm, ...)")
    cap = _open(path)
    try:
        if not cap.isOpened():
            raise VideoError(
                f"{name} is not a readable video (unknown format, or the file is damaged or cut short)"
            )
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        count = int(count) if math.isfinite(count) and count > 0 else 0
        ok, frame = cap.read()
        if not ok or frame is None:
            raise VideoError(f"{name} is not a readable video (no frame could be decoded: damaged or cut short)")
        if count == 1:
            raise VideoError(f"{name} holds a single frame (an image, not a video)")
        if not math.isfinite(fps) or fps <= 0 or fps > 1000:
            raise VideoError(f"{name} has no usable frame rate ({fps!r})")
        h, w = frame.shape[:2]
    finally:
        cap.release()
    return VideoInfo(path, fps, count, int(w), int(h), count / fps if count else 0.0)


def sample_step(video_fps: float, fps: float) -> float:
    """Frames of the video per sampled frame (>= 1: never more samples than frames)."""
    if not fps > 0:
        raise VideoError(f"sampling rate must be positive, not {fps!r}")
    return max(1.0, video_fps / fps)


def is_sampled(frame_index: int, step: float) -> bool:
    """Keep the first frame of each `step`-long slot: frame i is kept iff floor(i/step) moves on.

    A pure rule on the index (not on wall-clock or decoder timestamps), so sampling the same
    file twice keeps the same frames.
    """
    return frame_index == 0 or math.floor(frame_index / step) != math.floor((frame_index - 1) / step)


def sample_frames(
    path: str | Path, fps: float = 8.0, name: str | None = None
) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield (frame_index, t_seconds, BGR frame) for frames sampled at about `fps` per second.
    Errors call the file `name`, as `probe` does.

    Raises `VideoError` before the first frame for an unusable file, and after the last one if
    the stream stops well before the frame count its header announces (a truncated file): a
    caller that stages its results, like `facelab.dataset.build`, then keeps nothing of it.
    """
    info = probe(path, name)
    step = sample_step(info.fps, fps)
    cap = _open(info.path)
    try:
        i = -1
        while cap.grab():
            i += 1
            if not is_sampled(i, step):
                continue
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                break
            yield i, i / info.fps, frame
        read = i + 1
    finally:
        cap.release()
    if info.frame_count and read < TRUNCATED_BELOW * info.frame_count:
        raise VideoError(
            f"{name or info.path.name} is truncated: only {read} of its {info.frame_count} frames could be read"
        )


def sampled_count(info: VideoInfo, fps: float) -> int:
    """How many frames `sample_frames(info.path, fps)` will yield (from the header's count)."""
    step = sample_step(info.fps, fps)
    # Frames 0..n-1 fall in slots floor(i / step) = 0..floor((n-1) / step), one sample per slot.
    return math.floor((info.frame_count - 1) / step) + 1 if info.frame_count else 0

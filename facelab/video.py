"""Read video files: check that a file is a real video, and sample its frames at a chosen rate.

Sampling decodes every frame (inter-frame codecs need the previous ones) but converts only the
kept frames to BGR: `grab()` for the skipped ones, `retrieve()` for the kept. Seeking with
CAP_PROP_POS_FRAMES instead would be about 5x slower, so we never seek. Frames are kept by
their own time stamps (CAP_PROP_POS_MSEC after `grab()`), not by index / nominal rate, which
is wrong for variable-frame-rate files. PyAV (installed with streamlit-webrtc) only inspects
the file: how many video streams it holds, and whether a file that stops early is cut short
or damaged in the middle.
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
    video_streams: int = 1  # video streams in the file (cover pictures aside); the first is read


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
    return VideoInfo(path, fps, count, int(w), int(h), count / fps if count else 0.0,
                     _video_streams(path))


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
    path: str | Path, fps: float = 8.0, name: str | None = None, *,
    max_short_side: int | None = None, notes: list[str] | None = None,
) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield (frame_index, t_seconds, BGR frame) for frames sampled at about `fps` per second.
    Errors call the file `name`, as `probe` does.

    Sampled by each frame's own time stamp (a variable-frame-rate phone clip has no fixed
    frames-per-second), and `t_seconds` is that time stamp, counted from the first frame.
    `max_short_side` shrinks each kept frame as soon as it is decoded, so a 4K or 8K video
    never holds more than a few full-size frames in memory.

    Raises `VideoError` before the first frame for an unusable file, and after the last one if
    the file ends well before the frame count its header announces (a truncated file): a
    caller that stages its results, like `facelab.dataset.build`, then keeps nothing of it.
    A file damaged in the middle (its data goes on after the frame that cannot be decoded) is
    read up to the damage; with `notes` given, a line saying so is appended to it and the
    frames before are kept; without it, that too is a `VideoError`. A file with several video
    streams gets a note saying which one was read.
    """
    info = probe(path, name)
    name = name or info.path.name
    if notes is not None and info.video_streams > 1:
        notes.append(f"{name} holds {info.video_streams} video streams; only the first was read "
                     "(if your face is in another one, save that stream to its own file)")
    sample_step(info.fps, fps)  # refuses a bad rate; the time stamps decide what is kept
    cap = _open(info.path)
    try:
        i, t, t0, slot = -1, 0.0, 0.0, None
        while cap.grab():
            i += 1
            t = _frame_time(cap, i, t, t0, info.fps)
            if i == 0:
                t0, t = t, 0.0
            s = math.floor(t * fps + 1e-6)  # the slot of 1/fps seconds this frame falls in
            if s == slot:
                continue
            slot = s
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                break
            yield i, t, downscale(frame, max_short_side)
        read = i + 1
    finally:
        cap.release()
    if info.frame_count and read < TRUNCATED_BELOW * info.frame_count:
        if _packet_count(info.path) < TRUNCATED_BELOW * info.frame_count:
            raise VideoError(
                f"{name} is truncated: only {read} of its {info.frame_count} frames could be read"
            )
        damaged = f"{name} is damaged at about frame {read} ({t:.1f} s) of its {info.frame_count}"
        if notes is None:
            raise VideoError(f"{damaged}: nothing after it can be read")
        notes.append(f"{damaged}: the {read} frames before it were used, the rest could not be read")


def _frame_time(cap: cv2.VideoCapture, i: int, last: float, t0: float, video_fps: float) -> float:
    """The grabbed frame's time stamp in seconds (absolute for frame 0, else counted from t0).
    A file without time stamps (or with one going back) gets its frame's place at the nominal rate."""
    ms = cap.get(cv2.CAP_PROP_POS_MSEC)
    if i == 0:
        return ms / 1000 if math.isfinite(ms) and ms >= 0 else 0.0
    t = ms / 1000 - t0 if math.isfinite(ms) else -1.0
    return t if t > last else last + 1 / video_fps


def downscale(frame: np.ndarray, max_short_side: int | None) -> np.ndarray:
    """`frame` shrunk (area-averaged) so its short side is at most `max_short_side`."""
    short = min(frame.shape[:2])
    if not max_short_side or short <= max_short_side:
        return frame
    f = max_short_side / short
    h, w = frame.shape[:2]
    return cv2.resize(frame, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)


def _video_streams(path: Path) -> int:
    """How many video streams (cover pictures aside) the file holds; OpenCV reads the first.
    1 when PyAV is missing or cannot read the file (OpenCV could, or probe would have refused)."""
    try:
        import av

        with av.open(str(path)) as c:
            return max(1, sum(1 for s in c.streams.video
                              if not (s.disposition & av.stream.Disposition.attached_pic)))
    except Exception:  # noqa: BLE001 - only a note depends on it
        return 1


def _packet_count(path: Path) -> float:
    """Packets in the file's first video stream (read, not decoded): about its frame count when
    the data is all there, even if some of it is damaged; `inf` without PyAV (cannot tell)."""
    n = 0
    try:
        import av
    except ImportError:
        return math.inf
    try:
        with av.open(str(path)) as c:
            for p in c.demux(c.streams.video[0]):
                n += p.size > 0
    except Exception:  # noqa: BLE001 - a cut file may stop the demuxer: count what was read
        pass
    return n


def sampled_count(info: VideoInfo, fps: float) -> int:
    """How many frames `sample_frames(info.path, fps)` will yield (from the header's count)."""
    step = sample_step(info.fps, fps)
    # Frames 0..n-1 fall in slots floor(i / step) = 0..floor((n-1) / step), one sample per slot.
    return math.floor((info.frame_count - 1) / step) + 1 if info.frame_count else 0

"""Read video files: check that a file is a real video, and sample its frames at a chosen rate.

Frames are kept by their own time stamps, not by index / nominal rate, which is wrong for
variable-frame-rate files. Two ways to sample, giving the same frames (same pixels, indices
and times):

- **planned (PyAV)**, the default: the file's packets are listed first (read, not decoded:
  a few ms a minute), which says from their time stamps which frames will be kept. Then the
  decoder is told to skip, for every other packet, a frame no later frame depends on
  (FFmpeg's `skip_frame`, "non-reference"); only the kept frames are converted to BGR. An
  H.264 clip with B-frames decodes in about 0.6x the time of every frame; a stream in which
  every frame is a reference (some phones) gains nothing and costs nothing.
- **grab/retrieve (OpenCV)**: every frame decoded, only the kept ones converted. Used for files
  whose packets lack time stamps, and to go on where the planned pass meets damage, so that
  damaged and truncated files are reported exactly as before. Never seeks (5x slower).

PyAV also says how many video streams a file holds and whether one that stops early is cut
short or damaged in the middle.
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
import numpy as np  # noqa: E402

from facelab.data.faces import shrink  # noqa: E402
from facelab.errors import FacelabError  # noqa: E402

# A file whose stream ends before this share of the frames its header announces is truncated.
# (Containers without an index, e.g. MPEG-PS, only estimate their count; they never trip this
# because the estimate then comes from the file's own, already short, size.)
TRUNCATED_BELOW = 0.9


class VideoError(FacelabError):
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
    max_short_side: int | None = None, notes: list[str] | None = None, planned: bool = True,
) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield (frame_index, t_seconds, BGR frame) for frames sampled at about `fps` per second.
    Errors call the file `name`, as `probe` does.

    Sampled by each frame's own time stamp (a variable-frame-rate phone clip has no fixed
    frames-per-second), and `t_seconds` is that time stamp, counted from the first frame.
    `max_short_side` shrinks each kept frame as soon as it is decoded, so a 4K or 8K video
    never holds more than a few full-size frames in memory. `planned=False` uses only the
    grab/retrieve way (see the module docstring; for comparisons).

    Raises `VideoError` before the first frame for an unusable file, and after the last one if
    the file ends well before the frame count its header announces (a truncated file): a
    caller that stages its results, like `facelab.data.dataset.build`, then keeps nothing of it.
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
    last = -1  # the last frame yielded, by index
    plan = _plan(info.path, fps) if planned else None
    if plan is not None:
        try:
            for i, t, frame in _sample_planned(info.path, plan):
                last = i
                yield i, t, downscale(frame, max_short_side)
        except _PlanFailed:
            plan = None  # go on from `last` the other way, which reports the damage
        else:
            _check_complete(info, name, len(plan.pts), plan.time(len(plan.pts) - 1), notes)
    if plan is None:
        reach = _Reach()
        for i, t, frame in _sample_grabbed(info, fps, reach, after=last):
            yield i, t, downscale(frame, max_short_side)
        _check_complete(info, name, reach.read, reach.t, notes)


@dataclass(frozen=True)
class _Plan:
    """The frames of a file's first video stream by time stamp, and which of them are kept."""

    stream: int  # index of the stream in the file
    pts: list[int]  # every frame's time stamp, in time-base units, in order
    time_base: float
    kept: frozenset[int]  # the time stamps of the frames to keep

    def time(self, i: int) -> float:
        return (self.pts[i] - self.pts[0]) * self.time_base if i >= 0 else 0.0


class _PlanFailed(Exception):
    """The planned pass met something it cannot read (damage): finish the other way."""


def _plan(path: Path, fps: float) -> _Plan | None:
    """The sampling plan from the packets' time stamps, or None when they cannot make one
    (a packet without a time stamp, two with the same one, a file the demuxer stops in)."""
    import av

    try:
        with av.open(str(path)) as c:
            stream = first_video_stream(c)
            if stream is None:
                return None
            pts = [p.pts for p in c.demux(stream) if p.size and not p.is_discard]
            time_base = float(stream.time_base or 0)
            index = stream.index
    except Exception:  # noqa: BLE001 - the other way reads it, or says what is wrong
        return None
    if not pts or not time_base or any(p is None for p in pts):
        return None
    pts.sort()
    if any(a == b for a, b in zip(pts, pts[1:])):
        return None
    kept, slot = [], None
    for p in pts:
        s = math.floor((p - pts[0]) * time_base * fps + 1e-6)  # the slot of 1/fps seconds it falls in
        if s != slot:
            kept.append(p)
            slot = s
    return _Plan(index, pts, time_base, frozenset(kept))


def moving_streams(container) -> list:
    """The video streams of an open PyAV container that are not cover pictures."""
    import av

    return [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]


def first_video_stream(container):
    """The first video stream that is not a cover picture (the one OpenCV reads, so the one the
    crops come from), or None."""
    return next(iter(moving_streams(container)), None)


def _sample_planned(path: Path, plan: _Plan) -> Iterator[tuple[int, float, np.ndarray]]:
    """The kept frames of `plan`, decoding of the others only what later frames need.
    Raises `_PlanFailed` where decoding fails or disagrees with the plan."""
    import av

    index = {p: i for i, p in enumerate(plan.pts)}
    try:
        with av.open(str(path)) as c:
            stream = c.streams[plan.stream]
            stream.thread_type = "SLICE"  # frame threads cost more CPU, which detection needs
            codec = stream.codec_context
            for packet in c.demux(stream):
                codec.skip_frame = "NONREF" if packet.pts is not None and packet.pts not in plan.kept \
                    else "DEFAULT"
                for frame in codec.decode(packet):
                    if frame.pts not in plan.kept:
                        if frame.pts not in index:
                            raise _PlanFailed(f"a frame at {frame.pts} outside the plan")
                        continue
                    i = index[frame.pts]
                    yield i, plan.time(i), to_bgr(frame)
    except av.error.FFmpegError as e:
        raise _PlanFailed(str(e)) from e


def to_bgr(frame) -> np.ndarray:
    """A PyAV video frame as a BGR array, converted as OpenCV's own reader converts it (the
    same pixels)."""
    return frame.to_ndarray(format="bgr24")


@dataclass
class _Reach:
    read: int = 0  # frames read
    t: float = 0.0  # the last one's time


def _sample_grabbed(info: VideoInfo, fps: float, reach: _Reach, after: int = -1
                    ) -> Iterator[tuple[int, float, np.ndarray]]:
    """The kept frames by grab/retrieve, from the frame after index `after` on; `reach` says
    how far it read."""
    cap = _open(info.path)
    i, t, t0, slot = -1, 0.0, 0.0, None
    try:
        while cap.grab():
            i += 1
            t = _frame_time(cap, i, t, t0, info.fps)
            if i == 0:
                t0, t = t, 0.0
            s = math.floor(t * fps + 1e-6)  # the slot of 1/fps seconds this frame falls in
            if s == slot:
                continue
            slot = s
            if i <= after:
                continue
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                break
            yield i, t, frame
    finally:
        cap.release()
        reach.read, reach.t = i + 1, t


def _check_complete(info: VideoInfo, name: str, read: int, t: float, notes: list[str] | None) -> None:
    """Raise (truncated), or note (damaged in the middle), a file that gave well under the
    frames its header announces; `read` frames were read, the last at `t` seconds."""
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
    """`frame` shrunk so its short side is at most `max_short_side`: averaged over whole blocks
    of pixels as far as it goes, then resampled linearly by the factor under 2 that is left.
    (OpenCV's area resampling by a fractional factor, e.g. 720p to 640, costs 6x as much and
    looks the same at that factor.)"""
    short = min(frame.shape[:2])
    if not max_short_side or short <= max_short_side:
        return frame
    frame = shrink(frame, short // max_short_side)
    short = min(frame.shape[:2])
    if short <= max_short_side:
        return frame
    f = max_short_side / short
    h, w = frame.shape[:2]
    return cv2.resize(frame, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_LINEAR)


def _video_streams(path: Path) -> int:
    """How many video streams (cover pictures aside) the file holds; OpenCV reads the first.
    1 when PyAV is missing or cannot read the file (OpenCV could, or probe would have refused)."""
    try:
        import av

        with av.open(str(path)) as c:
            return max(1, len(moving_streams(c)))
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
            for p in c.demux(first_video_stream(c) or c.streams.video[0]):
                n += p.size > 0
    except Exception:  # noqa: BLE001 - a cut file may stop the demuxer: count what was read
        pass
    return n


def sampled_count(info: VideoInfo, fps: float) -> int:
    """How many frames `sample_frames(info.path, fps)` will yield (from the header's count)."""
    step = sample_step(info.fps, fps)
    # Frames 0..n-1 fall in slots floor(i / step) = 0..floor((n-1) / step), one sample per slot.
    return math.floor((info.frame_count - 1) / step) + 1 if info.frame_count else 0

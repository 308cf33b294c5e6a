"""Record webcam frames and add them to a workspace's dataset.

The Webcam page's frame callback runs in streamlit-webrtc's thread and offers every raw frame
to a `FrameRecorder`; the recorder keeps at most `fps` frames a second and stops taking them
after `max_seconds`, so a forgotten toggle never fills the memory. Frames are kept as JPEG
bytes (about 40 KB at 640x480 instead of 900 KB raw: a full minute stays near 20 MB).

Adding them runs the frames, as they are in memory, through the dataset builder's own face
finding and cropping (`facelab.data.dataset.add_frames`) and appends the crops with
`facelab.data.dataset.append_crops`, the one way crops enter a workspace: no video file is written
and decoded again, so the crops lose nothing to a video codec.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import cv2
import numpy as np

from facelab.errors import FacelabError

if TYPE_CHECKING:
    from facelab.data.dataset import BuildReport
    from facelab.store.workspace import Workspace

JPEG_QUALITY = 90


class RecordingError(FacelabError):
    """A recording that cannot be written or added; the message is meant for the user."""


@dataclass(frozen=True)
class RecordSettings:
    fps: float = 8.0  # frames kept per second (the dataset's default sampling rate)
    max_seconds: float = 60.0  # recording stops by itself after this long

    def __post_init__(self) -> None:
        if not 0 < self.fps <= 30 or not 0 < self.max_seconds <= 600:
            raise RecordingError("recording needs 0 < fps <= 30 and 0 < max_seconds <= 600")

    @property
    def max_frames(self) -> int:
        return max(1, int(round(self.fps * self.max_seconds)))


class FrameRecorder:
    """A bounded, thread-safe buffer of webcam frames (JPEG-encoded BGR).

    `offer(frame)` is called for every frame from the camera thread and is cheap when the
    recorder is off or the frame is not due; `start`, `stop`, `take` and the counters are
    called from the page.
    """

    def __init__(self, settings: RecordSettings = RecordSettings(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._frames: list[bytes] = []
        self._recording = False
        self._next_due: float | None = None  # when the next frame may be kept; None: at once

    @property
    def recording(self) -> bool:
        with self._lock:
            return self._recording and len(self._frames) < self.settings.max_frames

    @property
    def full(self) -> bool:
        with self._lock:
            return len(self._frames) >= self.settings.max_frames

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)

    @property
    def seconds(self) -> float:
        """Seconds of video the kept frames make at the recording's frame rate."""
        return len(self) / self.settings.fps

    def start(self) -> None:
        with self._lock:
            if not self._recording:
                self._recording = True
                self._next_due = None

    def stop(self) -> None:
        with self._lock:
            self._recording = False

    def clear(self) -> None:
        with self._lock:
            self._frames.clear()

    def offer(self, frame_bgr: np.ndarray) -> bool:
        """Keep this frame if recording, due (1/fps after the last kept one) and not full."""
        now = self._clock()
        with self._lock:
            if not self._recording or len(self._frames) >= self.settings.max_frames:
                return False
            if self._next_due is not None and now < self._next_due:
                return False
            # Due times step by 1/fps from the last due time, not from `now`, so a 15 fps
            # camera gives 8 frames a second, not 7.5; after a gap they restart from now.
            step = 1.0 / self.settings.fps
            due = None if self._next_due is None else self._next_due + step
            self._next_due = due if due is not None and due > now else now + step
        ok, jpeg = cv2.imencode(".jpg", frame_bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            return False
        with self._lock:
            if len(self._frames) >= self.settings.max_frames:
                return False
            self._frames.append(jpeg.tobytes())
        return True

    def frames(self) -> list[np.ndarray]:
        """The kept frames, decoded (BGR), oldest first; the buffer is left as it is."""
        with self._lock:
            kept = list(self._frames)
        return [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for b in kept]


def common_size(frames: Sequence[np.ndarray]) -> tuple[int, int]:
    """(width, height) most frames have: WebRTC starts small and raises the resolution."""
    if not frames:
        raise RecordingError("nothing was recorded")
    (h, w), _ = Counter(f.shape[:2] for f in frames).most_common(1)[0]
    return int(w), int(h)


def recording_name(when: str | None = None) -> str:
    return f"webcam recording {when or time.strftime('%Y-%m-%d %H:%M:%S')}"


def add_recording(workspace: Workspace, frames: Sequence[np.ndarray], fps: float,
                  name: str | None = None) -> BuildReport:
    """Add recorded frames to the workspace's dataset; returns the `BuildReport`.

    Cropped with the workspace's own build settings (crop size, margin, shift…) so webcam
    crops match the video crops; every recorded frame is sampled, `fps` apart. Frames of
    another size than most are resized to theirs (WebRTC starts small). All or nothing, as a
    video build: a failure leaves the workspace unchanged.
    """
    from facelab.data.dataset import CropSource, add_frames, build_settings_of

    if not frames:
        raise RecordingError("nothing was recorded: turn on recording while the camera runs")
    for f in frames:
        if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
            raise RecordingError(f"a recorded frame is not a BGR image: {f.dtype} {f.shape}")
    settings = replace(build_settings_of(workspace), fps=float(fps))
    width, height = common_size(frames)
    source = CropSource(name or recording_name(), video_fps=float(fps), frame_count=len(frames),
                        width=width, height=height, duration_s=len(frames) / fps)
    digest = hashlib.sha256()  # of the frames as cropped: adding the same recording twice is refused
    return add_frames(workspace, _sampled(frames, (width, height), fps, settings.keep_short_side(), digest.update),
                      settings, source, sha256=digest.hexdigest, total=len(frames),
                      scale=settings.frame_scale(width, height))


def _sampled(frames: Sequence[np.ndarray], size: tuple[int, int], fps: float, keep: int,
             hash_update: Callable[[bytes], object]) -> Iterator[tuple[int, float, np.ndarray]]:
    """(frame_index, t_seconds, frame) as `facelab.data.video.sample_frames` yields a video's:
    at the common `size`, shrunk to the short side `keep`; each one's bytes go to `hash_update`."""
    from facelab.data.video import downscale

    for i, f in enumerate(frames):
        if (f.shape[1], f.shape[0]) != size:
            f = cv2.resize(f, size, interpolation=cv2.INTER_AREA)
        f = downscale(f, keep)
        hash_update(np.ascontiguousarray(f).tobytes())
        yield i, i / fps, f

"""Record webcam frames and add them to a workspace's dataset.

The Webcam page's frame callback runs in streamlit-webrtc's thread and offers every raw frame
to a `FrameRecorder`; the recorder keeps at most `fps` frames a second and stops taking them
after `max_seconds`, so a forgotten toggle never fills the memory. Frames are kept as JPEG
bytes (about 40 KB at 640x480 instead of 900 KB raw: a full minute stays near 20 MB).

Adding them writes the kept frames to a temporary MJPG .avi inside the workspace folder
(OpenCV writes MJPG everywhere; it cannot write H.264) and hands it to `facelab.dataset.build`,
the one way crops enter a workspace, then deletes the file.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from facelab.errors import FacelabError

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


def write_avi(frames: Sequence[np.ndarray], path: str | Path, fps: float) -> Path:
    """Write BGR frames to an MJPG .avi; frames of another size are resized to the common one."""
    path = Path(path)
    if path.suffix.lower() != ".avi":
        raise RecordingError(f"the recording must be written to an .avi file, not {path.name}")
    size = common_size(frames)
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"MJPG"), float(fps), size)
    if not writer.isOpened():
        raise RecordingError(f"could not write the recording to {path.parent} (is the disk full or read-only?)")
    try:
        for f in frames:
            if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
                raise RecordingError(f"a recorded frame is not a BGR image: {f.dtype} {f.shape}")
            writer.write(f if (f.shape[1], f.shape[0]) == size
                         else cv2.resize(f, size, interpolation=cv2.INTER_AREA))
    finally:
        writer.release()
    return path


def recording_name(when: str | None = None) -> str:
    return f"webcam recording {when or time.strftime('%Y-%m-%d %H:%M:%S')}"


def add_recording(workspace, frames: Sequence[np.ndarray], fps: float, name: str | None = None):
    """Add recorded frames to the workspace's dataset; returns the `BuildReport`.

    Cropped with the workspace's own build settings (crop size, margin, shift…) so webcam
    crops match the video crops; every recorded frame is sampled. The temporary video is
    deleted whatever happens; a failed build leaves the workspace unchanged (see
    `facelab.dataset.build`).
    """
    from facelab.dataset import build, build_settings_of

    if not frames:
        raise RecordingError("nothing was recorded: turn on recording while the camera runs")
    settings = replace(build_settings_of(workspace), fps=float(fps))
    # ".tmp" in the name: `storage.remove_stale_temps` clears it if this process dies mid-way.
    tmp = Path(workspace.path) / f".webcam-{uuid.uuid4().hex[:12]}.tmp.avi"
    try:
        write_avi(frames, tmp, fps)
        return build(workspace, tmp, settings, name=name or recording_name())
    finally:
        tmp.unlink(missing_ok=True)

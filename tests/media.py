"""The media files the tests read, all from inside this repository.

Two kinds: files that ship (the sample clip in `sample/`, a GRID clip in `tests/data/`, see its
README for the credit) and files made here from the sample clip the first time a test asks for
them, once per test process, in a temporary folder removed at exit. Each generated file has the
property the tests rely on (checked with the detectors and the build on this machine):

- `single_face.mp4`: 72 frames of the sample at 30 fps (19 frames when sampled at 8 fps), a face
  in each; MPEG-4 in an .mp4 whose index comes last (cut short, it does not open at all).
- `no_face.mp4`: the sample's wooden background alone, slowly panning: no detector finds a face.
- `face_noface.mov`: the face for 2.5 s, then it slides out to the right and the background stays.
- `multi_face.jpg`: two frames of the sample side by side: two faces of about the same size.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np

from conftest import REPO

SAMPLE = REPO / "sample" / "WolfgangLanger_Pexels.mp4"
SHIPPED = {
    "WolfgangLanger_Pexels.mp4": SAMPLE,
    "bbaf2n.mpg": REPO / "tests" / "data" / "bbaf2n.mpg",
}
FACE_START = 340  # frames 280-423 of the sample: one clear face (no hand over it, no false box)
BACKGROUND_W = 200  # the sample's left strip that holds only the wooden wall


def media_file(name: str) -> Path:
    """The path of test media `name` (shipped, or generated on first use)."""
    if name in SHIPPED:
        path = SHIPPED[name]
        assert path.exists(), f"{path} is missing from the repository"
        return path
    if name not in GENERATORS:
        raise KeyError(f"no test media named {name!r}: known are {sorted([*SHIPPED, *GENERATORS])}")
    return _generated(name)


@functools.cache
def _folder() -> Path:
    path = Path(tempfile.mkdtemp(prefix="facelab-test-media-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@functools.cache
def _generated(name: str) -> Path:
    path = _folder() / name
    GENERATORS[name](path)
    return path


def sample_range(start: int, stop: int) -> list[np.ndarray]:
    """The sample clip's BGR frames start..stop-1 (640x360; not cached: 100 frames are 70 MB)."""
    cap = cv2.VideoCapture(str(SAMPLE))
    frames = []
    for i in range(stop):
        ok = cap.grab()
        assert ok, f"{SAMPLE} has fewer than {stop} frames"
        if i >= start:
            frames.append(cap.retrieve()[1])
    cap.release()
    return frames


def background(frame: np.ndarray, pan: int = 0) -> np.ndarray:
    """A faceless frame of the same size: the frame's wall strip tiled (mirrored, so without
    seams), shifted `pan` pixels so that consecutive frames are not identical."""
    h, w = frame.shape[:2]
    strip = frame[:, :BACKGROUND_W]
    tile = np.hstack([strip, strip[:, ::-1]])
    row = np.tile(tile, (1, -(-(w + pan) // tile.shape[1]) + 1, 1))
    return np.ascontiguousarray(row[:, pan:pan + w])


def write_video(path: Path, frames: Iterable[np.ndarray], fps: float) -> None:
    """MPEG-4 Part 2 (OpenCV cannot write H.264), index at the end as FFmpeg writes it."""
    writer = None
    for frame in frames:
        if writer is None:
            h, w = frame.shape[:2]
            writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            assert writer.isOpened(), f"OpenCV cannot write {path.name}"
        writer.write(frame)
    assert writer is not None, f"no frames for {path.name}"
    writer.release()


def make_single_face(path: Path) -> None:
    write_video(path, sample_range(FACE_START, FACE_START + 72), 30.0)


def make_no_face(path: Path) -> None:
    frames = sample_range(FACE_START, FACE_START + 72)
    write_video(path, (background(f, pan=2 * i) for i, f in enumerate(frames)), 24.0)


def make_face_noface(path: Path) -> None:
    """60 frames of the face, 8 in which it slides out to the right, 52 of the wall alone."""
    frames = sample_range(FACE_START - 60, FACE_START + 60)

    def frame(i: int, f: np.ndarray) -> np.ndarray:
        if i < 60:
            return f
        out = background(f, pan=i)
        dx = min(f.shape[1], (i - 59) * f.shape[1] // 8)
        out[:, dx:] = f[:, :f.shape[1] - dx]
        return out

    write_video(path, (frame(i, f) for i, f in enumerate(frames)), 24.0)


def make_multi_face(path: Path) -> None:
    frames = sample_range(FACE_START, FACE_START + 61)
    assert cv2.imwrite(str(path), np.hstack([frames[0], frames[60]]))


GENERATORS: dict[str, Callable[[Path], None]] = {
    "single_face.mp4": make_single_face,
    "no_face.mp4": make_no_face,
    "face_noface.mov": make_face_noface,
    "multi_face.jpg": make_multi_face,
}

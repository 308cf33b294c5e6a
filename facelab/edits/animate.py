"""Pictures of an interpolation: one PNG strip, or an animated GIF or MP4 going there and back.

64-px faces are tiny on a screen, so frames are upscaled (nearest keeps the pixels honest,
bicubic looks smoother). Files are written atomically (`facelab.store.storage`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from facelab.errors import FacelabError
from facelab.store.storage import write_bytes_atomic

Resample = Literal["nearest", "bicubic"]
_RESAMPLE = {"nearest": Image.Resampling.NEAREST, "bicubic": Image.Resampling.BICUBIC}
DEFAULT_SCALE = 4
DISPLAY_PX = 192  # the least a face is shown at on a page: at 64 px an expression change is invisible
GAP = 4  # pixels between the real end frames and the decoded strip
BACKGROUND = (255, 255, 255)


class AnimateError(FacelabError):
    """Bad frames or settings for a strip or GIF; the message is meant for the user."""


def _frames(images: np.ndarray | Sequence[np.ndarray], what: str = "frames") -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] == 0:
        raise AnimateError(f"{what} must be N x H x W x 3 RGB images, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise AnimateError(f"{what} must be uint8, got {arr.dtype}")
    return arr


def upscale(images: np.ndarray, scale: int = DEFAULT_SCALE, resample: Resample = "nearest") -> np.ndarray:
    """Each image `scale` times larger (N x H x W x 3 uint8 in, N x sH x sW x 3 out)."""
    arr = _frames(images)
    if int(scale) != scale or scale < 1:
        raise AnimateError(f"scale must be a whole number >= 1, got {scale}")
    if resample not in _RESAMPLE:
        raise AnimateError(f"resample must be one of {', '.join(_RESAMPLE)}, got {resample!r}")
    if scale == 1:
        return arr.copy()
    if resample == "nearest":  # exact and fast in numpy
        return arr.repeat(scale, axis=1).repeat(scale, axis=2)
    h, w = arr.shape[1:3]
    return np.stack([
        np.asarray(Image.fromarray(a).resize((w * scale, h * scale), _RESAMPLE[resample])) for a in arr
    ])


def for_display(images: np.ndarray, min_px: int = DISPLAY_PX, resample: Resample = "bicubic") -> np.ndarray:
    """Faces upscaled by a whole factor to at least `min_px` (for showing only; the model and the
    saved pictures keep their own size)."""
    arr = _frames(images)
    return upscale(arr, max(1, -(-int(min_px) // arr.shape[1])), resample)


def pingpong(frames: np.ndarray) -> np.ndarray:
    """Forward then back without repeating the ends: 2N - 2 frames that loop smoothly."""
    arr = _frames(frames)
    if len(arr) < 2:
        return arr
    return np.concatenate([arr, arr[-2:0:-1]])


def strip_image(
    frames: np.ndarray,
    ends: tuple[np.ndarray, np.ndarray] | None = None,
    scale: int = DEFAULT_SCALE,
    resample: Resample = "nearest",
) -> np.ndarray:
    """One row: [real A] gap [decoded frames ...] gap [real B]; ends are optional."""
    big = upscale(frames, scale, resample)
    h, w = big.shape[1:3]
    tiles: list[np.ndarray] = list(big)
    if ends is not None:
        real = upscale(_frames(np.stack(ends), "end frames"), scale, resample)
        if real.shape[1:] != big.shape[1:]:
            raise AnimateError(
                f"end frames are {ends[0].shape[:2]}, the decoded frames {frames.shape[1:3]}: "
                "they must be the same size"
            )
        gap = np.full((h, GAP, 3), BACKGROUND, np.uint8)
        row = np.concatenate(tiles, axis=1)
        return np.concatenate([real[0], gap, row, gap, real[1]], axis=1)
    return np.concatenate(tiles, axis=1)


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _playback(frames: np.ndarray, duration_ms: int, scale: int, resample: Resample, bounce: bool) -> np.ndarray:
    """The frames as an animation plays them: upscaled, and there and back when `bounce`."""
    if int(duration_ms) != duration_ms or not 10 <= duration_ms <= 10_000:
        raise AnimateError(f"frame duration must be 10-10000 ms, got {duration_ms}")
    seq = upscale(frames, scale, resample)
    return pingpong(seq) if bounce else seq


def gif_bytes(
    frames: np.ndarray,
    duration_ms: int = 120,
    scale: int = DEFAULT_SCALE,
    resample: Resample = "nearest",
    bounce: bool = True,
) -> bytes:
    """An endlessly looping GIF of the frames (forward and back when `bounce`)."""
    images = [Image.fromarray(f) for f in _playback(frames, duration_ms, scale, resample, bounce)]
    buf = io.BytesIO()
    # disposal=1 and optimize=False: every frame is drawn whole; identical neighbouring
    # frames are still merged by Pillow (their durations add up), which plays the same.
    images[0].save(
        buf, format="GIF", save_all=True, append_images=images[1:], duration=int(duration_ms),
        loop=0, optimize=False, disposal=1,
    )
    return buf.getvalue()


def mp4_bytes(
    frames: np.ndarray,
    duration_ms: int = 120,
    scale: int = DEFAULT_SCALE,
    resample: Resample = "nearest",
    bounce: bool = True,
) -> bytes:
    """An H.264 MP4 of the frames (forward and back when `bounce`), written in memory with
    PyAV (FFmpeg, already there for the webcam), so no file ever holds a face half-written."""
    import av

    seq = _playback(frames, duration_ms, scale, resample, bounce)
    h, w = seq.shape[1:3]
    seq = np.pad(seq, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")  # H.264 wants even sides
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=Fraction(1000, int(duration_ms)))
        stream.width, stream.height, stream.pix_fmt = seq.shape[2], seq.shape[1], "yuv420p"
        stream.options = {"crf": "18"}  # faces: keep the detail the edit is about
        for frame in seq:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        out.mux(stream.encode())
    return buf.getvalue()


def save_strip(
    path: str | Path,
    frames: np.ndarray,
    ends: tuple[np.ndarray, np.ndarray] | None = None,
    duration_ms: int = 120,
    scale: int = DEFAULT_SCALE,
    resample: Resample = "nearest",
) -> Path:
    """Write frames as a .png strip (with the real ends if given), or a ping-pong .gif or .mp4."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".png":
        data = png_bytes(strip_image(frames, ends, scale, resample))
    elif suffix == ".gif":
        data = gif_bytes(frames, duration_ms, scale, resample)
    elif suffix == ".mp4":
        data = mp4_bytes(frames, duration_ms, scale, resample)
    else:
        raise AnimateError(f"cannot write {path.name!r}: the name must end in .png, .gif or .mp4")
    return write_bytes_atomic(path, data)

"""A face from a still photo, cropped exactly like the workspace's video frames.

A photo is searched more thoroughly than video frames (one image, so a finer scale step and
smaller faces are affordable); the crop uses the workspace's own margin, shift and alignment,
so the model sees the same kind of crop it was trained on.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from facelab.data.faces import Box, FaceDetector, crop_face
from facelab.errors import FacelabError

PHOTO_SHORT_SIDE = 480  # px of the grey image a photo is searched on
PHOTO_MIN_FACE = 0.08  # smallest face looked for, as a share of the photo's short side


class PhotoError(FacelabError):
    """A photo without a usable face; the message says what was found."""


def read_image(source: str | Path | bytes, name: str = "the photo") -> np.ndarray:
    """BGR pixels of an image file or its bytes."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise PhotoError(f"{path} does not exist or is not a file")
        source, name = path.read_bytes(), path.name
    frame = cv2.imdecode(np.frombuffer(source, np.uint8), cv2.IMREAD_COLOR)
    if frame is None:
        raise PhotoError(f"{name} is not an image (JPEG, PNG, …) that can be read")
    return frame


def photo_detector() -> FaceDetector:
    return FaceDetector(short_side=PHOTO_SHORT_SIDE, min_face=PHOTO_MIN_FACE, scale_factor=1.1)


def describe(boxes: list[Box]) -> str:
    return "; ".join(f"{i}: {b.w}x{b.h} at ({b.x}, {b.y})" for i, b in enumerate(boxes, 1))


def choose_face(boxes: list[Box], ambiguous_ratio: float, face: int | None = None,
                name: str = "the photo", option: str = "face") -> Box:
    """The face to use: number `face` (1-based), else the only one of its size.

    As for video frames, a clearly smaller second box is a false detection, not a face.
    `option` names how the user picks a face in messages (e.g. "--face" in the CLI).
    """
    if not boxes:
        raise PhotoError(f"no face found in {name}")
    if face is not None:
        if not 1 <= face <= len(boxes):
            raise PhotoError(f"{option} {face}: {name} has {len(boxes)} face(s): {describe(boxes)}")
        return boxes[face - 1]
    if any(b.area >= ambiguous_ratio * boxes[0].area for b in boxes[1:]):
        raise PhotoError(f"{len(boxes)} faces found in {name} ({describe(boxes)}): pick one with {option} N")
    return boxes[0]


def crop_photo_face(ws, frame: np.ndarray, box: Box, image_size: int,
                    detector: FaceDetector | None = None) -> np.ndarray:
    """RGB crop of `box` with the geometry the workspace's latest video was cropped with."""
    from facelab.data.dataset import build_settings_of

    s = build_settings_of(ws)
    return crop_face(frame, box, image_size, s.margin, s.align, s.shift, detector=detector or photo_detector())


def faces_in_photo(source: str | Path | bytes, name: str = "the photo") -> tuple[np.ndarray, list[Box]]:
    """The photo's BGR pixels and the faces found in it (`photo_detector`), largest first."""
    frame = read_image(source, name)
    return frame, photo_detector().detect(frame)


def photo_face_crop(ws, frame: np.ndarray, boxes: list[Box], face: int | None, name: str, image_size: int,
                    option: str = "face") -> np.ndarray:
    """The face picked among `boxes` (`choose_face`), cropped as the workspace's video was and at
    least as large as the sharp crops the edits are drawn on: what the Shift page and
    `facelab shift` both start from."""
    from facelab.data.dataset import SHARP_SIZE, build_settings_of

    box = choose_face(boxes, build_settings_of(ws).ambiguous_ratio, face, name, option)
    return crop_photo_face(ws, frame, box, max(SHARP_SIZE, image_size))

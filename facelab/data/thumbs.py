"""Small JPEG data URIs of crops: hover thumbnails inside a chart spec, with no extra requests."""

from __future__ import annotations

import base64

import cv2
import numpy as np

THUMB_PX = 40
JPEG_QUALITY = 70


def data_uri(image_rgb: np.ndarray, size: int = THUMB_PX) -> str:
    small = cv2.resize(image_rgb, (size, size), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("could not encode a thumbnail")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def data_uris(images: np.ndarray, size: int = THUMB_PX) -> list[str]:
    return [data_uri(im, size) for im in images]

"""What several test modules build their data from, in one place: generated images and crops,
workspaces holding them (with or without a trained run), stand-in codecs, and waiting helpers.
The `one_thread` fixture is in conftest.py; a module asks for it with
`pytestmark = pytest.mark.usefixtures("one_thread")`.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from facelab.data.dataset import append_crops
from facelab.space.latent import encode_run
from facelab.store import workspace as ws
from facelab.store.db import now_iso
from facelab.store.workspace import Workspace

from media import media_file

SIZE = 16  # side of the generated crops of the map tests
SMALL = dict(image_size=32, latent_dim=8, batch_size=16, lr=1e-3, beta=1.0)  # a model that trains in seconds


# --- images ---------------------------------------------------------------------------------

def blob_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Structured generated faces-ish images: a bright disc whose position and colour vary
    smoothly (two true factors), on a dark background, with a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    cx, cy = rng.uniform(0.3, 0.7, n), rng.uniform(0.3, 0.7, n)
    hue = rng.uniform(0, 1, n)
    disc = ((xx[None] - cx[:, None, None]) ** 2 + (yy[None] - cy[:, None, None]) ** 2) < 0.04
    colour = np.stack([hue, 1 - hue, np.full(n, 0.5)], 1)
    img = disc[..., None] * colour[:, None, None, :] * 220 + 20 + rng.normal(0, 4, (n, size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=None)
def real_crops(n: int = 30, size: int = 32) -> np.ndarray:
    """Face crops from the Pexels clip (Haar on a downscaled grey frame, largest box)."""
    import cv2

    cap = cv2.VideoCapture(str(media_file("WolfgangLanger_Pexels.mp4")))
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    crops, index = [], 0
    while len(crops) < n:
        if not cap.grab():
            break
        index += 1
        if index % 8:
            continue
        ok, frame = cap.retrieve()
        small = cv2.resize(frame, (320, 180))
        boxes = cascade.detectMultiScale(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), 1.1, 5, minSize=(22, 22))
        if len(boxes) == 0:
            continue
        x, y, w, h = (int(v * 2) for v in max(boxes, key=lambda b: b[2] * b[3]))
        crop = cv2.resize(frame[y : y + h, x : x + w], (size, size), interpolation=cv2.INTER_AREA)
        crops.append(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
    cap.release()
    assert len(crops) == n, f"only {len(crops)} faces found in the clip"
    return np.stack(crops)


def blob_crops(n_per: int, seed: int = 0, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Dark crops then bright crops (two clear groups for any linear codec); returns (crops, group)."""
    rng = np.random.default_rng(seed)
    dark = rng.integers(0, 60, size=(n_per, size, size, 3))
    bright = rng.integers(190, 256, size=(n_per, size, size, 3))
    return np.concatenate([dark, bright]).astype(np.uint8), np.repeat([0, 1], n_per)


# --- workspaces -----------------------------------------------------------------------------
def training_workspace(name: str, images: np.ndarray, val_block: int | None = 5,
                   deleted: tuple[int, ...] = ()) -> ws.Workspace:
    """A workspace holding `images` as crops of one source, 10 per second; with `val_block`,
    every val_block-th block of 10 crops is held out ('val'), like the dataset builder's time
    blocks."""
    w = ws.create(name)
    split = ["val" if val_block and (i // 10) % val_block == val_block - 1 else "train" for i in range(len(images))]
    append_crops(w, images, np.arange(len(images)) / 10, source="test", split=split)
    delete_faces(w, deleted)
    return w


def add_faces(w: Workspace, crops: np.ndarray) -> np.ndarray:
    """Append crops as one source, 8 per second, the way every crop is added. Returns their ids."""
    return append_crops(w, crops, np.arange(len(crops)) / 8.0, source="clip.mp4").ids


def add_run(w: Workspace, run_id: str = "r1") -> Path:
    """A runs row and a run folder with a (fake) model file."""
    with w.connect(write=True) as c:
        # Fill whatever columns the runs table requires (its schema belongs to the training code).
        cols = [r["name"] for r in c.execute("PRAGMA table_info(runs)") if r["notnull"] and r["dflt_value"] is None]
        values = {col: ("{}" if col in ("config", "summary") else now_iso() if col.endswith("_at") else run_id)
                  for col in cols}
        values.update(id=run_id, kind="vae")
        c.execute(
            f"INSERT INTO runs({', '.join(values)}) VALUES({', '.join('?' * len(values))})", list(values.values())
        )
    d = w.run_dir(run_id)
    d.mkdir(parents=True, exist_ok=True)
    (d / "model.pt").write_bytes(b"weights v1")
    return d


def delete_faces(w: Workspace, ids) -> None:
    with w.connect(write=True) as c:
        c.executemany("UPDATE faces SET deleted = 1 WHERE id = ?", [(int(i),) for i in ids])


def mapped_workspace(n_per: int = 30, name: str = "w", run_id: str = "r1") -> tuple[Workspace, np.ndarray]:
    """A workspace with 2·n_per crops in two groups, a run, and its latents encoded."""
    w = ws.create(name)
    crops, group = blob_crops(n_per)
    add_faces(w, crops)
    add_run(w, run_id)
    encode_run(w, run_id, codec=LinearCodec())
    return w, group


# --- stand-in codecs ----------------------------------------------------------------------
class LinearCodec:
    """A fixed random linear map from pixels to D latents; counts the crops it encoded."""

    def __init__(self, dim: int = 4, seed: int = 0, size: int = SIZE) -> None:
        rng = np.random.default_rng(seed)
        self.w = rng.normal(size=(size * size * 3, dim)).astype(np.float32) / (size * 4)
        self.encoded = 0
        self.calls = 0

    def encode(self, images: np.ndarray, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
        assert images.dtype == np.uint8 and images.ndim == 4
        self.encoded += len(images)
        self.calls += 1
        x = images.reshape(len(images), -1).astype(np.float32) / 255.0
        mu = x @ self.w
        return mu, np.full_like(mu, -1.0)


class FlatCodec:
    """Decodes a latent to a flat colour from its first three values: distinct latents, distinct frames."""

    def __init__(self, dim: int = 8, size: int = 16) -> None:
        self.dim, self.size = dim, size

    def decode(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, np.float32)
        assert z.ndim == 2 and z.shape[1] == self.dim
        rgb = np.clip(128 + 40 * z[:, :3], 0, 255).astype(np.uint8)
        return np.broadcast_to(rgb[:, None, None, :], (len(z), self.size, self.size, 3)).copy()


class ThirdsCodec:
    """z = mean colour of each third of the crop (9 values); decode paints z[0] as grey."""

    def __init__(self, size: int = 64) -> None:
        self.config = SimpleNamespace(image_size=size, latent_dim=9)
        self.encoded = 0

    def encode(self, images: np.ndarray, batch_size: int = 512):
        assert images.dtype == np.uint8 and images.shape[1:] == (64, 64, 3)
        self.encoded += len(images)
        thirds = np.array_split(images.astype(np.float32) / 255.0, 3, axis=1)
        mu = np.concatenate([t.mean(axis=(1, 2)) for t in thirds], axis=1)
        return mu.astype(np.float32), np.zeros_like(mu)

    def decode(self, z: np.ndarray) -> np.ndarray:
        grey = np.clip(np.asarray(z)[:, 0] * 255, 0, 255).astype(np.uint8)
        return np.broadcast_to(grey[:, None, None, None], (len(z), 64, 64, 3)).copy()


# --- waiting --------------------------------------------------------------------------------
def wait_for(predicate, timeout: float = 90.0, every: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")

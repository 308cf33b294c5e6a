"""Latent cache: one row per crop, recomputed when the model or the dataset changes, nothing more.

The helpers here (`make_workspace`, `LinearCodec`, ...) are shared with the other explore tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from facelab import workspace as ws_mod
from facelab.db import now_iso
from facelab.latent import (
    LatentsMissing, active_latents, encode_run, latents_path, load_latents, require_latents,
)
from facelab.storage import save_npy_atomic
from facelab.workspace import Workspace

SIZE = 16


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


def blob_crops(n_per: int, seed: int = 0, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Dark crops then bright crops (two clear groups for any linear codec); returns (crops, group)."""
    rng = np.random.default_rng(seed)
    dark = rng.integers(0, 60, size=(n_per, size, size, 3))
    bright = rng.integers(190, 256, size=(n_per, size, size, 3))
    return np.concatenate([dark, bright]).astype(np.uint8), np.repeat([0, 1], n_per)


def add_faces(w: Workspace, crops: np.ndarray) -> np.ndarray:
    """Append crops the way the dataset builder does: array first, then rows. Returns their ids."""
    old = w.faces(mmap=False)
    start = old.shape[0]
    save_npy_atomic(w.faces_path, np.concatenate([old, crops]) if start else crops)
    with w.connect(write=True) as c:
        src = c.execute(
            "INSERT INTO sources(name, settings, counts, created_at) VALUES('clip.mp4', '{}', '{}', ?)",
            (now_iso(),),
        ).lastrowid
        c.executemany(
            "INSERT INTO faces(id, source_id, frame_index, t_seconds, x, y, w, h) VALUES(?, ?, ?, ?, 0, 0, 10, 10)",
            [(start + i, src, i, i / 8.0) for i in range(len(crops))],
        )
    return np.arange(start, start + len(crops))


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


def make_workspace(n_per: int = 30, name: str = "w", run_id: str = "r1") -> tuple[Workspace, np.ndarray]:
    """A workspace with 2·n_per crops in two groups, a run, and its latents encoded."""
    w = ws_mod.create(name)
    crops, group = blob_crops(n_per)
    add_faces(w, crops)
    add_run(w, run_id)
    encode_run(w, run_id, codec=LinearCodec())
    return w, group


def test_encode_caches_every_row_and_reports_progress(home: Path) -> None:
    w = ws_mod.create("w")
    crops, _ = blob_crops(20)
    add_faces(w, crops)
    add_run(w)
    assert load_latents(w, "r1") is None
    with pytest.raises(LatentsMissing, match="this run has no latents yet"):
        require_latents(w, "r1")

    codec = LinearCodec()
    seen: list[tuple[int, int]] = []
    lat = encode_run(w, "r1", codec=codec, progress=lambda d, t: seen.append((d, t)))
    assert lat.mu.shape == (40, 4) and lat.logvar.shape == (40, 4) and lat.mu.dtype == np.float32
    np.testing.assert_allclose(lat.mu, codec.encode(crops)[0], rtol=1e-6)
    assert seen[-1] == (40, 40)
    assert latents_path(w, "r1").exists()

    # Read back from disk (a new process would do the same); no encoding needed.
    again = load_latents(w, "r1")
    assert again is not None and again.key == lat.key
    np.testing.assert_array_equal(again.mu, lat.mu)
    codec2 = LinearCodec()
    encode_run(w, "r1", codec=codec2)
    assert codec2.encoded == 0


def test_deleting_a_face_changes_the_key_and_active_rows(home: Path) -> None:
    w, _ = make_workspace(10)
    before = require_latents(w, "r1")
    delete_faces(w, [3])
    assert load_latents(w, "r1") is None, "a deletion must invalidate the cache"
    codec = LinearCodec()
    after = encode_run(w, "r1", codec=codec)
    assert after.key != before.key
    assert codec.encoded == 0, "same model, same crops: the rows are reused"
    keep = np.arange(20) != 3
    np.testing.assert_array_equal(after.mu[keep], before.mu[keep])
    assert not after.mu[3].any() and not after.logvar[3].any(), "a deleted crop's code is never kept"
    ids, mu = active_latents(w, after)
    assert 3 not in ids and len(ids) == 19
    np.testing.assert_array_equal(mu, before.mu[ids])


def test_new_model_file_re_encodes_everything(home: Path) -> None:
    w, _ = make_workspace(10)
    before = require_latents(w, "r1")
    model = w.run_dir("r1") / "model.pt"
    model.write_bytes(b"weights v2, retrained")
    os.utime(model, ns=(model.stat().st_atime_ns, model.stat().st_mtime_ns + 10**9))
    assert load_latents(w, "r1") is None
    codec = LinearCodec(seed=1)
    after = encode_run(w, "r1", codec=codec)
    assert codec.encoded == 20 and after.key != before.key
    assert not np.allclose(after.mu, before.mu)


def test_appended_crops_are_encoded_alone(home: Path) -> None:
    w, _ = make_workspace(10)
    new_ids = add_faces(w, blob_crops(3, seed=5)[0])
    assert load_latents(w, "r1") is None
    codec = LinearCodec()
    lat = encode_run(w, "r1", codec=codec)
    assert codec.encoded == 6 and lat.mu.shape[0] == 26
    np.testing.assert_allclose(lat.mu[new_ids], codec.encode(w.faces()[new_ids])[0], rtol=1e-6)


def test_run_without_model_is_a_clear_error(home: Path) -> None:
    w = ws_mod.create("w")
    add_faces(w, blob_crops(2)[0])
    w.run_dir("r9").mkdir(parents=True)
    with pytest.raises(LatentsMissing, match="no trained model"):
        encode_run(w, "r9", codec=LinearCodec())
    assert load_latents(w, "r9") is None


def test_corrupt_cache_is_recomputed(home: Path) -> None:
    w, _ = make_workspace(5)
    latents_path(w, "r1").write_bytes(b"not an npz")
    assert load_latents(w, "r1") is None
    codec = LinearCodec()
    assert encode_run(w, "r1", codec=codec).mu.shape == (10, 4) and codec.encoded == 10

"""Latent cache: one row per crop, recomputed when the model or the dataset changes, nothing more."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from facelab.space.latent import (
    LatentsMissing,
    active_latents,
    encode_run,
    latents_path,
    load_latents,
    require_latents,
)
from facelab.store import workspace as ws_mod

from builders import LinearCodec, add_faces, add_run, blob_crops, delete_faces, mapped_workspace


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
    w, _ = mapped_workspace(10)
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
    w, _ = mapped_workspace(10)
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
    w, _ = mapped_workspace(10)
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
    w, _ = mapped_workspace(5)
    latents_path(w, "r1").write_bytes(b"not an npz")
    assert load_latents(w, "r1") is None
    codec = LinearCodec()
    assert encode_run(w, "r1", codec=codec).mu.shape == (10, 4) and codec.encoded == 10

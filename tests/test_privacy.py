"""Deleted faces are gone: no file of the workspace, and no fresh export, holds their pixels or
their latent codes, and the pixels are overwritten where they lay (issue 12).

One workspace is built from the repository's sample clip through the dataset's own append path,
a tiny run is trained, its latents encoded, a PCA map, clusters, `facelab eval` images and an
export made; then crops are deleted (with `facelab crops delete`) and every byte is searched.
"""

from __future__ import annotations

import errno
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from facelab.cli import main
from facelab.data import dataset
from facelab.model.jobs import create_run
from facelab.model.models import ModelConfig
from facelab.model.train import split_ids, train_run
from facelab.space import clusters, latent, projection
from facelab.store import archive
from facelab.store import workspace as wsmod

from conftest import REPO

CLIP = REPO / "sample" / "WolfgangLanger_Pexels.mp4"
TINY = ModelConfig(image_size=64, latent_dim=8, batch_size=16, steps=2, eval_every=2,
                   lr_warmup_steps=0)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(workspace, run id) with crops, a trained run, latents, a map, clusters, eval images."""
    home = tmp_path_factory.mktemp("privacy-home")
    torch.set_num_threads(1)
    w = wsmod.create("me", home)
    dataset.build(w, CLIP, dataset.BuildSettings(fps=3.0, workers=1))
    run = create_run(w, TINY)
    train_run(w, run)
    latent.encode_run(w, run)
    projection.compute_projection(w, run, projection.ProjectionSettings("pca"))
    clusters.cluster_run(w, run, "kmeans", 3)
    assert main(["eval", "-w", str(w.path), run]) == 0
    return w, run


def _decoded_images(data: bytes) -> list[np.ndarray]:
    """The pixels of an image file (PNG, JPEG, GIF frames), at scale 1 and undone 2x enlargement."""
    from PIL import Image, ImageSequence

    try:
        im = Image.open(io.BytesIO(data))
        frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]
    except Exception:  # noqa: BLE001 - not an image
        return []
    return [a for f in frames for a in (f, f[::2, ::2], f[1::2, 1::2])]


def _contents(data: bytes, name: str) -> list[tuple[str, bytes]]:
    """The file itself, every member of a zip (recursively: .npz inside an export), decoded images."""
    out = [(name, data)]
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            for member in z.namelist():
                out += _contents(z.read(member), f"{name}!{member}")
    out += [(f"{name} (pixels)", np.ascontiguousarray(a).tobytes()) for a in _decoded_images(data)]
    return out


def _needles(crops: np.ndarray, mu: np.ndarray) -> dict[str, bytes]:
    """Byte strings that only a deleted crop or its code would contain."""
    out: dict[str, bytes] = {}
    for k, (crop, code) in enumerate(zip(crops, mu)):
        raw = crop.tobytes()
        out[f"crop {k} (whole row)"] = raw
        out[f"crop {k} (256 bytes from its middle)"] = raw[len(raw) // 2: len(raw) // 2 + 256]
        out[f"crop {k} (middle scanline)"] = crop[crop.shape[0] // 2].tobytes()
        out[f"crop {k} (latent μ)"] = np.asarray(code, "<f4").tobytes()
    return out


def _found(paths: list[Path], needles: dict[str, bytes]) -> list[str]:
    hits = []
    for path in paths:
        for where, data in _contents(path.read_bytes(), str(path)):
            hits += [f"{what} in {where}" for what, needle in needles.items() if needle in data]
    return hits


def test_deleted_crops_leave_no_trace_in_files_or_exports(built, tmp_path, capsys):
    w, run = built
    faces = w.faces(mmap=False)
    lat = latent.require_latents(w, run)
    val = split_ids(w).val_ids
    # Two held-out crops (drawn in the eval reconstructions) and two training crops.
    train = np.setdiff1d(w.active_face_ids(), val)
    doomed = sorted({int(val[0]), int(val[1]), int(train[0]), int(train[len(train) // 2])})
    needles = _needles(faces[doomed], lat.mu[doomed])
    sharp = dataset.sharp_faces(w, doomed)  # the 128-px crops of the same boxes, kept for display
    needles.update({f"128-px {k}": v for k, v in _needles(sharp, lat.mu[doomed]).items()})
    files = lambda: [p for p in w.path.rglob("*") if p.is_file()]  # noqa: E731
    assert _found(files(), needles), "the search must see the crops before they are deleted"
    archive.export_workspace(w, tmp_path / "before.zip")
    assert _found([tmp_path / "before.zip"], needles)

    assert main(["crops", "delete", "-w", str(w.path), *map(str, doomed)]) == 0
    out = capsys.readouterr().out
    assert f"deleted {len(doomed)} crops" in out and "retrain" in out

    archive.export_workspace(w, tmp_path / "after.zip")
    assert _found(files() + [tmp_path / "after.zip"], needles) == []
    # Maps and clusters that listed the deleted crops are gone too (their ids alone tell).
    for cache in list(w.runs_dir.rglob("*.npz")):
        with np.load(cache, allow_pickle=False) as z:
            if "ids" in z:
                assert not np.isin(z["ids"], doomed).any(), cache
    # What remains still works: codes of the other crops are kept, and maps are re-made.
    again = latent.encode_run(w, run)
    keep = w.active_face_ids()
    np.testing.assert_array_equal(again.mu[keep], lat.mu[keep])
    assert not again.mu[doomed].any()
    assert projection.get_projection(w, run, projection.ProjectionSettings("pca")) is not None


def test_a_build_keeps_sharper_crops_of_the_same_boxes(built):
    import cv2

    from facelab.data.faces import sharpness

    w, _ = built
    ids = w.active_face_ids()[:6]
    assert len(list((w.path / dataset.SHARP_DIR).glob("*.npy"))) == 1  # one file per build
    sharp, small = dataset.sharp_faces(w, ids), w.faces(mmap=False)[ids]
    assert sharp.shape == (6, dataset.SHARP_SIZE, dataset.SHARP_SIZE, 3)
    down = np.stack([cv2.resize(s, small.shape[1:3], interpolation=cv2.INTER_AREA) for s in sharp])
    assert np.abs(down.astype(int) - small).mean() < 4  # the same face in the same box
    gray = lambda a: cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)  # noqa: E731
    up = [cv2.resize(f, sharp.shape[1:3], interpolation=cv2.INTER_CUBIC) for f in small]
    assert np.mean([sharpness(gray(s)) for s in sharp]) > 1.5 * np.mean([sharpness(gray(u)) for u in up])


def test_pixels_are_overwritten_where_they_lie(built):
    """The crop rows are zeroed in the very file (inode) they were in, not in a renamed copy,
    whose old blocks would keep the bytes on disk."""
    w, _ = built
    ids = w.active_face_ids()[-2:]
    fd = os.open(w.faces_path, os.O_RDONLY)
    try:
        before = os.fstat(fd).st_ino
        assert dataset.delete_faces(w, ids) == 2
        old_view = np.load(os.fdopen(os.dup(fd), "rb"), allow_pickle=False)
    finally:
        os.close(fd)
    assert os.stat(w.faces_path).st_ino == before
    assert not old_view[ids].any()


def test_a_failed_overwrite_keeps_the_crops_deleted_and_can_be_repeated(built, monkeypatch):
    import facelab.store.erase as erase

    w, _ = built
    target = int(w.active_face_ids()[0])
    real = os.pwrite

    def no_space(fd, data, at):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(erase.os, "pwrite", no_space)
    with pytest.raises(dataset.BuildError, match="No space left on device.*delete them again"):
        dataset.delete_faces(w, [target])
    assert target not in w.active_face_ids(), "a half-erased crop is never shown or trained on"
    monkeypatch.setattr(erase.os, "pwrite", real)
    assert dataset.delete_faces(w, [target]) == 0  # already marked, but overwritten again
    assert not w.faces(mmap=False)[target].any()


def test_crops_delete_command_rejects_bad_ids(built, capsys):
    w, _ = built
    n = w.face_count()
    assert main(["crops", "delete", "-w", str(w.path), str(n + 5)]) == 2
    assert f"no crop with id {n + 5}" in capsys.readouterr().err
    assert main(["crops", "delete", "-w", str(w.path), "abc"]) == 2
    assert "crop ids are whole numbers" in capsys.readouterr().err
    assert w.face_count() == n


def test_dataset_page_says_what_a_delete_leaves_behind(built, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from facelab.ui import state

    w, _ = built
    monkeypatch.setenv("FACELAB_HOME", str(w.path.parents[1]))
    at = AppTest.from_file(str(REPO / "pages" / "dataset.py"), default_timeout=60)
    at.session_state[state.WORKSPACE] = w.name
    at.run()
    assert not at.exception
    assert any("retrain" in c.value for c in at.caption), "the note is shown where delete is offered"
    next(c for c in at.checkbox if c.key and c.key.startswith("fl_reject_")).check()
    at.run()
    next(b for b in at.button if b.label.startswith("Delete 1")).click().run()
    assert not at.exception
    assert any("retrain" in s.value for s in at.success)

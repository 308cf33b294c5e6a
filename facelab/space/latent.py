"""Latent codes of every crop of a run (μ and logσ²), cached beside the run.

The cache (`runs/<id>/latents.npz`) holds one row per row of `faces.npy`, deleted crops
included, so row i is always face id i; callers keep the rows of
`Workspace.active_face_ids()`. It carries the key it was computed under (the model file's
mtime and size, the number of crops, a hash of the deleted ids) and is trusted only while the
key still matches. The short `Latents.key` digest is what projections and clusters key their
own caches on, so anything stale downstream follows automatically.

Why re-encode less than everything: the code of crop i depends only on the model and the
crop, so when only the deleted set changed the other rows are kept (the key still changes, which
invalidates the maps and clusters computed on the active rows), and when crops were appended
only the new rows are encoded. A new model file re-encodes everything.

The rows of deleted crops are zeros, never their codes: decoding a code gives the face back.
`erase_latent_rows` zeroes them in place when crops are deleted (`facelab.store.erase`), and
`encode_run` zeroes them again before every write.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from facelab.errors import FacelabError
from facelab.model.model_config import weights_path
from facelab.store.erase import shred
from facelab.store.storage import write_atomic
from facelab.store.workspace import Workspace

LATENTS_FILE = "latents.npz"
CHUNK = 4096  # crops read from the memory-mapped array per codec call

Progress = Callable[[int, int], None]  # (done, total)


class LatentsMissing(FacelabError, LookupError):
    """The run has no (up-to-date) latents; the message says what to do."""

    def __init__(self, message: str = "this run has no latents yet") -> None:
        super().__init__(message)

    def __str__(self) -> str:  # LookupError would quote the message
        return str(self.args[0])


class Encoder(Protocol):
    def encode(self, images: np.ndarray, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class Latents:
    """μ and logσ² of every crop (row i = face id i) and the key they were computed under."""

    mu: np.ndarray
    logvar: np.ndarray
    stamp: dict[str, Any]

    @property
    def key(self) -> str:
        return stamp_digest(self.stamp)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """μ of the given face ids (e.g. `workspace.active_face_ids()`)."""
        return self.mu[np.asarray(ids, dtype=np.int64)]


def latents_path(workspace: Workspace, run_id: str) -> Path:
    return workspace.run_dir(run_id) / LATENTS_FILE


def current_stamp(workspace: Workspace, run_id: str) -> dict[str, Any]:
    """What the latents depend on, read now; raises LatentsMissing if the run has no model."""
    weights = weights_path(workspace.run_dir(run_id))
    try:
        st = weights.stat()  # type: ignore[union-attr]
    except (AttributeError, FileNotFoundError):  # not trained yet, or deleted just now
        raise LatentsMissing(f"run {run_id!r} has no trained model yet") from None
    n, deleted = workspace.crop_counts()
    digest = hashlib.sha1(deleted.astype("<i8").tobytes()).hexdigest()
    return {
        "model_file": weights.name,
        "model_mtime_ns": st.st_mtime_ns,
        "model_size": st.st_size,
        "n_faces": n,
        "deleted_sha1": digest,
    }


def erase_latent_rows(workspace: Workspace, run_id: str, ids: np.ndarray) -> None:
    """Zero the rows of crops `ids` in the run's cache: the old file is overwritten in place
    (`shred`) before the edited copy is written, so the codes leave the disk too. The stamp is
    kept: `encode_run` then refreshes it without encoding anything. A crash in between leaves
    no cache (recomputed on demand), never the old codes."""
    path = latents_path(workspace, run_id)
    if not path.exists():
        return
    cached = _read_cache(path)
    shred(path)
    if cached is None or not cached.mu.ndim == 2:
        return  # unreadable: nothing to keep
    ids = np.asarray(ids, dtype=np.int64)
    ids = ids[(ids >= 0) & (ids < cached.mu.shape[0])]
    mu, logvar = np.array(cached.mu), np.array(cached.logvar)
    mu[ids] = 0
    logvar[ids] = 0
    _write_cache(path, Latents(mu=mu, logvar=logvar, stamp=cached.stamp))


def stamp_digest(stamp: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:16]


def _read_cache(path: Path) -> Latents | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            stamp = json.loads(str(z["stamp"]))
            return Latents(mu=z["mu"], logvar=z["logvar"], stamp=stamp)
    except (FileNotFoundError, KeyError, ValueError, OSError):
        return None  # absent or unreadable: treated as missing, recomputed on demand


def _write_cache(path: Path, lat: Latents) -> None:
    stamp = np.array(json.dumps(lat.stamp, sort_keys=True))
    write_atomic(path, lambda f: np.savez(f, mu=lat.mu, logvar=lat.logvar, stamp=stamp))


def load_latents(
    workspace: Workspace,
    run_id: str,
    compute: bool = False,
    *,
    codec: Encoder | None = None,
    progress: Progress | None = None,
) -> Latents | None:
    """The cached latents if still valid; else None, or computed now when `compute`."""
    if compute:
        return encode_run(workspace, run_id, codec=codec, progress=progress)
    try:
        stamp = current_stamp(workspace, run_id)
    except LatentsMissing:
        return None
    cached = _read_cache(latents_path(workspace, run_id))
    if cached is None or cached.stamp != stamp:
        return None
    return cached


def require_latents(workspace: Workspace, run_id: str) -> Latents:
    """Like `load_latents` but raises `LatentsMissing` instead of returning None."""
    lat = load_latents(workspace, run_id)
    if lat is None:
        raise LatentsMissing()
    return lat


def encode_run(
    workspace: Workspace,
    run_id: str,
    *,
    codec: Encoder | None = None,
    progress: Progress | None = None,
    batch_size: int = 512,
    force: bool = False,
) -> Latents:
    """Encode the crops the cache lacks (all of them after a model change) and store them.

    `codec` defaults to `facelab.model.models.load_codec(run_dir)`; tests pass their own.
    """
    stamp = current_stamp(workspace, run_id)
    path = latents_path(workspace, run_id)
    cached = None if force else _read_cache(path)
    if cached is not None and cached.stamp == stamp:
        if progress:
            progress(stamp["n_faces"], stamp["n_faces"])
        return cached

    faces = workspace.faces(mmap=True)[: stamp["n_faces"]]  # rows appended since are not in the key
    n = faces.shape[0]
    start = 0
    same_model = (
        cached is not None
        and all(cached.stamp.get(f) == stamp[f] for f in ("model_file", "model_mtime_ns", "model_size"))
        and cached.mu.shape[0] <= n
    )
    if same_model:
        start = cached.mu.shape[0]  # rows already encoded by this very model

    if start < n and codec is None:
        from facelab.model.models import load_codec  # lazy: heavy, and absent in some tests

        codec = load_codec(workspace.run_dir(run_id))

    mus: list[np.ndarray] = [cached.mu] if same_model and start else []
    logvars: list[np.ndarray] = [cached.logvar] if same_model and start else []
    if progress:
        progress(start, n)
    for lo in range(start, n, CHUNK):
        hi = min(lo + CHUNK, n)
        # A writable copy of the memory-mapped rows: torch refuses read-only arrays without one.
        mu, logvar = codec.encode(np.array(faces[lo:hi]), batch_size=batch_size)
        mus.append(np.asarray(mu, dtype=np.float32))
        logvars.append(np.asarray(logvar, dtype=np.float32))
        if progress:
            progress(hi, n)
    if mus:
        mu_all, logvar_all = np.concatenate(mus), np.concatenate(logvars)
    else:  # no crops at all
        mu_all = logvar_all = np.zeros((0, 0), np.float32)
    deleted = workspace.crop_counts()[1]
    deleted = deleted[deleted < mu_all.shape[0]]
    mu_all[deleted] = 0  # never store a deleted crop's code (see the module docstring)
    logvar_all[deleted] = 0
    lat = Latents(mu=mu_all, logvar=logvar_all, stamp=stamp)
    _write_cache(path, lat)
    return lat


def active_latents(workspace: Workspace, lat: Latents) -> tuple[np.ndarray, np.ndarray]:
    """(face ids, μ rows) of the crops not deleted: what maps, clusters and probes use."""
    ids = workspace.active_face_ids()
    ids = ids[ids < lat.mu.shape[0]]
    return ids, lat.rows(ids)

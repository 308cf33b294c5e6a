"""Atomic file writes: a crash or a full disk never leaves a half-written file in place.

Every file facelab keeps is written to a temporary file in the same folder, flushed to disk,
then renamed over the old one (rename is atomic on POSIX), so readers see the old or the new
file, never a mix.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

WORKSPACES_DIR = "workspaces"  # <home>/workspaces/<name>/: see facelab.store.workspace


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call `write(f)` on a temp file beside `path`, fsync it, then rename it onto `path`."""
    path = Path(path)
    make_folder(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def make_folder(folder: str | Path) -> Path:
    """Create `folder` and its missing parents, except a workspace folder itself.

    One rule for every writer: folders are made below a workspace, never the workspace (only
    `workspace.create` and an import make one). A map worker or training job still writing when
    its workspace was deleted then fails with FileNotFoundError instead of bringing back a
    folder that `facelab workspaces` does not list but that blocks the name.
    """
    folder = Path(folder)
    if folder.is_dir():
        return folder
    top = folder
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    if top.parent.name == WORKSPACES_DIR:
        raise FileNotFoundError(f"workspace folder {top} is gone (deleted or renamed)")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    return write_atomic(path, lambda f: f.write(data))


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    return write_bytes_atomic(path, json.dumps(obj, indent=2, sort_keys=True).encode())


def save_npy_atomic(path: str | Path, array: np.ndarray) -> Path:
    return write_atomic(path, lambda f: np.save(f, np.ascontiguousarray(array), allow_pickle=False))


def load_npy(path: str | Path, mmap: bool = True) -> np.ndarray:
    """Load an array saved by `save_npy_atomic` (never unpickles)."""
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def remove_stale_temps(folder: str | Path, max_age_s: float = 3600.0) -> int:
    """Delete temp files a crashed writer left behind (hidden, with ".tmp" in the name, as
    `write_atomic`, uploads and webcam recordings make them); returns how many were removed.

    Only files untouched for `max_age_s` count as left behind: another tab or process may be
    writing a fresh one right now.
    """
    removed = 0
    now = time.time()
    for tmp in Path(folder).glob(".*.tmp*"):
        try:
            if now - tmp.stat().st_mtime < max_age_s:
                continue
            tmp.unlink()
        except FileNotFoundError:
            continue
        removed += 1
    return removed

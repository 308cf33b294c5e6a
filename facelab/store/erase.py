"""Erasing deleted crops for good: their pixels and everything made from them.

Writing a new file and renaming it over the old one (`facelab.store.storage.write_atomic`) frees the
old blocks but leaves their bytes on the disk. So what must be erased is overwritten where it
lies first: rows of an .npy by `pwrite` at their offsets, whole files by zeros; each then
`fsync`ed. (Copy-on-write filesystems and SSD wear levelling may still keep old copies; the
README says so.)

`erase_derived` handles what runs derive from crops: latent rows are zeroed (the other rows stay
valid), maps and clusters that list a deleted crop are removed (they are stale anyway: their key
is the latents key, which changes with the deleted set), and evaluation images (`facelab eval`,
re-made on demand) are removed; so is the opt-in preview of each video a deleted crop came from
(`facelab.data.preview`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

EVAL_DIR = "eval"  # runs/<id>/eval: the default output folder of `facelab eval`
BLOCK = 1 << 20


def _runs(ids: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted ids as (first, count) runs of consecutive ids, so each run is one write."""
    out: list[tuple[int, int]] = []
    for i in sorted({int(i) for i in ids}):
        if out and out[-1][0] + out[-1][1] == i:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((i, 1))
    return out


def zero_npy_rows(path: str | Path, ids: Iterable[int]) -> None:
    """Overwrite rows of a C-ordered .npy file with zeros in place, then fsync.

    Raises OSError if the file cannot be written (the rows written before the error stay zero)
    and ValueError if it is not a plain C-ordered array.
    """
    fd = os.open(path, os.O_RDWR)
    try:
        with os.fdopen(os.dup(fd), "rb") as f:
            fmt = np.lib.format
            read = fmt.read_array_header_1_0 if fmt.read_magic(f) == (1, 0) else fmt.read_array_header_2_0
            shape, fortran, dtype = read(f)
            offset = f.tell()
        if fortran or dtype.hasobject or not shape:
            raise ValueError(f"{path} is not a plain C-ordered array")
        row = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        for first, count in _runs(i for i in ids if 0 <= int(i) < shape[0]):
            _write_zeros(fd, offset + first * row, count * row)
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_zeros(fd: int, at: int, size: int) -> None:
    zeros = bytes(min(size, BLOCK))
    while size > 0:
        n = os.pwrite(fd, zeros[: min(size, BLOCK)], at)
        at += n
        size -= n


def shred(path: str | Path) -> None:
    """Overwrite a file with zeros in place, fsync it, then remove it. A missing file is fine."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return
    try:
        size = os.fstat(fd).st_size
        _write_zeros(fd, 0, size)
        os.fsync(fd)
    finally:
        os.close(fd)
    path.unlink(missing_ok=True)


def _lists_any(path: Path, deleted: np.ndarray) -> bool:
    """Whether a cache .npz (with an `ids` array) lists a deleted crop; unreadable counts as yes."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return bool(np.isin(z["ids"], deleted).any())
    except Exception:  # noqa: BLE001 - a damaged cache may hold anything: erase it
        return True


def erase_derived(workspace, ids: Iterable[int]) -> None:
    """Erase what every run derived from the crops `ids` (see the module docstring)."""
    from facelab.data.preview import delete_previews, sources_of
    from facelab.space.latent import erase_latent_rows

    deleted = np.array(sorted({int(i) for i in ids}), dtype=np.int64)
    if not deleted.size:
        return
    delete_previews(workspace, sources_of(workspace, deleted.tolist()))  # it shows those moments too
    if not workspace.runs_dir.is_dir():
        return
    for run_dir in sorted(p for p in workspace.runs_dir.iterdir() if p.is_dir() and not p.is_symlink()):
        erase_latent_rows(workspace, run_dir.name, deleted)
        for sub in ("projections", "clusters"):
            for cache in sorted((run_dir / sub).glob("*.npz")):
                if _lists_any(cache, deleted):
                    shred(cache)
        eval_dir = run_dir / EVAL_DIR
        if eval_dir.is_dir():
            for image in sorted(eval_dir.iterdir()):
                if image.is_file() and not image.is_symlink():
                    shred(image)

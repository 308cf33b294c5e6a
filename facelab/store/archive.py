"""A whole workspace as one zip: export it here, import it on another machine, trust nothing.

An archive holds:
```
manifest.json     format and schema versions, workspace name, crop size, faces array shape and
                  dtype, and the SHA-256, size and mtime of every other member
facelab.sqlite    a consistent copy (SQLite's backup API: a training job writing at the same time
                  cannot tear it), in rollback-journal mode and vacuumed, so it is one file
faces.npy         the crops, cut to the rows that copy lists
runs/<id>/...     each run's plain files: config.json, model.pt, pca.npz, latents.npz,
                  clusters/*.npz, projections/*.npz, *.json
```
Logs, temp files, renders (PNG/GIF, re-made on demand) and by default `checkpoint.pt` (large,
only needed to resume training) stay behind. File mtimes travel in the manifest and are
restored, because the latents cache is keyed on the model file's mtime (`facelab.space.latent`):
without them an imported run would re-encode and lose its maps and clusters.

Import treats the zip as hostile until proven otherwise. Member names must fit the layout above
(no absolute paths, `..`, backslashes, links or special files), sizes are bounded against zip
bombs, every member must match the manifest's SHA-256, arrays load with `allow_pickle=False`,
weights with `torch.load(weights_only=True)` into the network their config describes, and the
database must have exactly facelab's schema and as many faces as the array has rows. Nothing is
ever unpickled. All of this happens in a hidden folder inside the workspaces root; only a fully
verified workspace is renamed into place, so a refused archive leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import shutil
import sqlite3
import stat
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np

import facelab
from facelab.model.model_config import CONFIG_FILE, MODEL_FILE, weights_path
from facelab.store import db
from facelab.store.processes import owned_name
from facelab.store.storage import load_npy, write_atomic
from facelab.store.workspace import (
    DB_FILE,
    FACES_FILE,
    IMPORT_PREFIX,
    NAME_RE,
    Workspace,
    WorkspaceError,
    remove_leftovers,
    validate_name,
    workspaces_root,
)

FORMAT = "facelab-workspace"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
CHECKPOINT_FILE = "checkpoint.pt"  # as in facelab.model.train, repeated so export never imports torch

# Limits against hostile archives. Deflate cannot shrink data more than ~1032:1, so the total
# bound is the real guard against bombs; the ratio check refuses headers that lie.
MAX_TOTAL_BYTES = 4 << 30
MAX_MEMBERS = 100_000
MAX_MANIFEST_BYTES = 32 << 20
MAX_JSON_BYTES = 16 << 20
MAX_RATIO = 200
RATIO_MIN_BYTES = 64 << 20  # smaller members are not worth a ratio check
DISK_MARGIN_BYTES = 64 << 20

_PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_RUN_SUFFIXES = (".json", ".npy", ".npz")
_MAX_RUN_DEPTH = 3  # runs/<id>/<sub>/<file>
_CHUNK = 1 << 20

Source = str | Path | bytes | BinaryIO


class ArchiveError(WorkspaceError):
    """An archive that cannot be written or imported; the message says why, for the user."""


# --- what belongs in an archive ---------------------------------------------------------------
def is_archivable(rel: str, include_checkpoints: bool = False) -> bool:
    """Whether a workspace-relative path ('runs/<id>/model.pt') belongs in an archive.

    The one rule both sides use: export packs exactly these files and import refuses anything
    else, so a name outside the layout (`../x`, `/etc/x`, `a\\b`, `.tmp` files) never lands.
    """
    if rel in (DB_FILE, FACES_FILE):
        return True
    parts = rel.split("/")
    if len(parts) < 3 or len(parts) > 2 + _MAX_RUN_DEPTH or parts[0] != "runs":
        return False
    if not NAME_RE.fullmatch(parts[1]) or not all(_PART_RE.fullmatch(p) for p in parts[2:]):
        return False
    name = parts[-1]
    if name == MODEL_FILE and len(parts) == 3:
        return True
    if name == CHECKPOINT_FILE and len(parts) == 3:
        return include_checkpoints
    return name.endswith(_RUN_SUFFIXES)


def _run_files(w: Workspace, include_checkpoints: bool) -> list[tuple[str, Path]]:
    """(archive name, path) of every run file to pack; links and odd files are skipped."""
    out: list[tuple[str, Path]] = []
    if not w.runs_dir.is_dir():
        return out
    for top, dirs, files in os.walk(w.runs_dir):  # never follows links
        base = Path(top)
        dirs[:] = sorted(d for d in dirs if not (base / d).is_symlink())
        for name in sorted(files):
            path = base / name
            rel = path.relative_to(w.path).as_posix()
            if not path.is_symlink() and is_archivable(rel, include_checkpoints):
                out.append((rel, path))
    return out


# --- export -------------------------------------------------------------------------------------
class _HashingWriter:
    """A write-only file that hashes and counts what passes through to `out`."""

    def __init__(self, out: IO[bytes]):
        self.out, self.sha, self.size = out, hashlib.sha256(), 0

    def write(self, data) -> int:
        data = memoryview(data).cast("B")
        self.sha.update(data)
        self.size += len(data)
        return self.out.write(data)


def _zip_info(rel: str, mtime_ns: int) -> zipfile.ZipInfo:
    t = time.localtime(max(mtime_ns / 1e9, 315_532_800 + 86_400))  # the zip format starts in 1980
    info = zipfile.ZipInfo(rel, date_time=t[:6])
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    # Arrays and weights barely compress (crops ~20%, floats ~7%) at ~27 MB/s here: store them.
    info.compress_type = zipfile.ZIP_STORED if rel.endswith((".npy", ".npz", ".pt")) else zipfile.ZIP_DEFLATED
    return info


def _add(z: zipfile.ZipFile, rel: str, mtime_ns: int, size_hint: int,
         write: Callable[[_HashingWriter], None]) -> dict:
    info = _zip_info(rel, mtime_ns)
    with z.open(info, "w", force_zip64=size_hint > (1 << 30)) as dst:
        hw = _HashingWriter(dst)
        write(hw)
    return {"sha256": hw.sha.hexdigest(), "size": hw.size, "mtime_ns": int(mtime_ns)}


def _copy_into(src: IO[bytes], dst: _HashingWriter) -> None:
    while chunk := src.read(_CHUNK):
        dst.write(chunk)


def _snapshot_db(src: Path, dst: Path) -> None:
    """A consistent single-file copy of a live WAL database."""
    conn = sqlite3.connect(src, timeout=db.BUSY_TIMEOUT_S)
    out = sqlite3.connect(dst)
    try:
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # never waits on a writer
        except sqlite3.OperationalError:
            pass
        conn.backup(out)  # one step: a read transaction, so the copy is one moment's state
        out.execute("PRAGMA journal_mode = DELETE")
        out.execute("VACUUM")
    finally:
        out.close()
        conn.close()


def write_archive(w: Workspace, out: IO[bytes], *, include_checkpoints: bool = False) -> dict:
    """Write the workspace as a zip to the binary file `out`; returns the manifest."""
    if not w.exists():
        raise ArchiveError(f"workspace {w.name!r} is gone (its folder was deleted or moved)")
    files: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="facelab-export-") as tmp, \
            zipfile.ZipFile(out, "w", allowZip64=True) as z:
        copy = Path(tmp) / DB_FILE
        _snapshot_db(w.db_path, copy)
        conn = sqlite3.connect(copy)
        try:
            schema = int(conn.execute("PRAGMA user_version").fetchone()[0])
            n_faces = int(conn.execute("SELECT COUNT(*) FROM faces").fetchone()[0])
            row = conn.execute("SELECT value FROM meta WHERE key = 'crop_size'").fetchone()
            crop_size = json.loads(row[0]) if row else None
        finally:
            conn.close()
        with open(copy, "rb") as f:
            files[DB_FILE] = _add(z, DB_FILE, time.time_ns(), copy.stat().st_size, lambda hw: _copy_into(f, hw))

        faces = None
        if n_faces:
            try:
                arr = load_npy(w.faces_path, mmap=True)  # the file as renamed into place: whole
                mtime = w.faces_path.stat().st_mtime_ns
            except (OSError, ValueError) as e:
                raise ArchiveError(f"workspace {w.name!r} is damaged: cannot read {FACES_FILE} ({e})") from None
            if arr.ndim != 4 or arr.shape[0] < n_faces:
                raise ArchiveError(
                    f"workspace {w.name!r} is damaged: {FACES_FILE} has shape {arr.shape}, "
                    f"the database lists {n_faces} crops"
                )
            arr = arr[:n_faces]  # rows past the database's count are not part of the dataset
            faces = {"shape": list(arr.shape), "dtype": str(arr.dtype)}
            crop_size = crop_size or int(arr.shape[1])
            files[FACES_FILE] = _add(z, FACES_FILE, mtime, arr.nbytes,
                                     lambda hw: np.lib.format.write_array(hw, arr, allow_pickle=False))
            del arr

        for rel, path in _run_files(w, include_checkpoints):
            try:
                f = open(path, "rb")
            except FileNotFoundError:  # a temp renamed or a run deleted meanwhile
                continue
            with f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):
                    continue
                files[rel] = _add(z, rel, st.st_mtime_ns, st.st_size, lambda hw: _copy_into(f, hw))

        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "facelab_version": facelab.__version__,
            "schema_version": schema,
            "workspace": w.name,
            "created_at": db.now_iso(),
            "crop_size": crop_size,
            "faces": faces,
            "include_checkpoints": bool(include_checkpoints),
            "files": files,
        }
        info = _zip_info(MANIFEST_FILE, time.time_ns())
        z.writestr(info, json.dumps(manifest, indent=1, sort_keys=True).encode())
    return manifest


def export_workspace(w: Workspace, dest_zip_path: str | Path, *, include_checkpoints: bool = False) -> Path:
    """Write the workspace to `dest_zip_path` atomically (a reader never sees half a zip)."""
    dest = Path(dest_zip_path)
    write_atomic(dest, lambda f: write_archive(w, f, include_checkpoints=include_checkpoints))
    return dest


def export_bytes(w: Workspace, *, include_checkpoints: bool = False) -> bytes:
    """The archive in memory, e.g. for `st.download_button`."""
    buf = io.BytesIO()
    write_archive(w, buf, include_checkpoints=include_checkpoints)
    return buf.getvalue()


# --- import: checks on the zip itself -------------------------------------------------------------
def _open_zip(source: Source) -> tuple[zipfile.ZipFile, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        fileobj, label = io.BytesIO(bytes(source)), "the uploaded file"
    elif isinstance(source, (str, Path)):
        path = Path(source)
        label = path.name
        if not path.is_file():
            raise ArchiveError(f"no such archive: {path}")
        fileobj = path
    else:
        fileobj, label = source, getattr(source, "name", None) or "the uploaded file"
    try:
        return zipfile.ZipFile(fileobj), str(label)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError):
        raise ArchiveError(f"{label} is not a zip file, or it is damaged or truncated") from None


def _check_name(name: str) -> None:
    bad = (
        name.startswith("/") or "\\" in name or ":" in name or "\x00" in name
        or any(p in ("", ".", "..") for p in name.rstrip("/").split("/"))
    )
    if bad:
        raise ArchiveError(f"the archive holds an unsafe file name {name!r}: refused")


def _check_members(z: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Every member's name, type and size is acceptable; returns the files by name."""
    infos = z.infolist()
    if infos and min(i.header_offset for i in infos) != 0:
        # Data before the first member: the end record found is not this archive's own (e.g. a
        # truncated zip whose last stored .npz still ends in one), or junk was prepended.
        raise ArchiveError("the file is not a zip file, or it is damaged or truncated")
    if len(infos) > MAX_MEMBERS:
        raise ArchiveError(f"the archive holds {len(infos)} files, more than a workspace has")
    files: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        name = info.filename
        _check_name(name)
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind == stat.S_IFLNK:
            raise ArchiveError(f"the archive holds a symbolic link {name!r}: refused")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise ArchiveError(f"the archive holds a special file {name!r}: refused")
        if info.flag_bits & 0x1:
            raise ArchiveError(f"{name!r} is encrypted: facelab archives never are")
        if info.is_dir():
            continue  # folders are made as files need them
        if name != MANIFEST_FILE and not is_archivable(name, include_checkpoints=True):
            raise ArchiveError(f"the archive holds {name!r}, which is no part of a facelab workspace")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ArchiveError(f"{name!r} uses a compression facelab does not write")
        if name in files:
            raise ArchiveError(f"the archive holds {name!r} twice")
        if info.file_size > RATIO_MIN_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise ArchiveError(f"{name!r} claims to expand {info.file_size // max(info.compress_size, 1)}-fold: "
                               "refused as a possible zip bomb")
        total += info.file_size
        files[name] = info
    if total > MAX_TOTAL_BYTES:
        raise ArchiveError(f"the archive would unpack to {total / 2**30:.1f} GiB, "
                           f"more than the {MAX_TOTAL_BYTES / 2**30:.0f} GiB allowed")
    return files


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read_manifest(z: zipfile.ZipFile, files: dict[str, zipfile.ZipInfo]) -> dict:
    """The manifest, checked against the members; `files` loses the manifest entry."""
    info = files.pop(MANIFEST_FILE, None)
    if info is None:
        raise ArchiveError(f"the archive has no {MANIFEST_FILE}: it is not a facelab workspace export")
    if info.file_size > MAX_MANIFEST_BYTES:
        raise ArchiveError(f"{MANIFEST_FILE} is implausibly large")
    try:
        m = json.loads(z.read(info))
    except (ValueError, RecursionError, zipfile.BadZipFile, zlib.error, EOFError) as e:  # too deeply nested: damaged
        raise ArchiveError(f"{MANIFEST_FILE} is damaged ({e})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise ArchiveError(f"{MANIFEST_FILE} does not describe a facelab workspace")
    if not _int(m.get("format_version")) or m["format_version"] > FORMAT_VERSION:
        raise ArchiveError("the archive was made by a newer facelab: update facelab to import it")
    schema = m.get("schema_version")
    if not _int(schema) or schema < 1:
        raise ArchiveError(f"{MANIFEST_FILE} has no valid schema version")
    if schema > db.SCHEMA_VERSION:
        raise ArchiveError(f"the archive was written by a newer facelab (database schema {schema} > "
                           f"{db.SCHEMA_VERSION}): update facelab to import it")
    if not isinstance(m.get("workspace"), str):
        raise ArchiveError(f"{MANIFEST_FILE} does not name the workspace")
    listed = m.get("files")
    if not isinstance(listed, dict):
        raise ArchiveError(f"{MANIFEST_FILE} does not list the files")
    for name, entry in listed.items():
        if name not in files:
            raise ArchiveError(f"{name!r} is listed in {MANIFEST_FILE} but missing from the archive")
        if (not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str)
                or not _SHA_RE.fullmatch(entry["sha256"]) or entry.get("size") != files[name].file_size):
            raise ArchiveError(f"{MANIFEST_FILE} has no valid checksum and size for {name!r}")
    extra = sorted(set(files) - set(listed))
    if extra:
        raise ArchiveError(f"{extra[0]!r} is in the archive but not in its {MANIFEST_FILE}")
    if DB_FILE not in files:
        raise ArchiveError(f"the archive has no {DB_FILE}")
    faces = m.get("faces")
    if faces is None:
        if FACES_FILE in files:
            raise ArchiveError(f"{MANIFEST_FILE} says there are no crops, yet the archive has {FACES_FILE}")
    else:
        shape = faces.get("shape") if isinstance(faces, dict) else None
        if (not isinstance(shape, list) or len(shape) != 4 or not all(_int(s) and s >= 0 for s in shape)
                or faces.get("dtype") != "uint8"):
            raise ArchiveError(f"{MANIFEST_FILE} describes the crops wrongly")
        if FACES_FILE not in files:
            raise ArchiveError(f"the archive has no {FACES_FILE}")
    return m


# --- import: extract and check what is inside -------------------------------------------------------
def _extract(z: zipfile.ZipFile, files: dict[str, zipfile.ZipInfo], listed: dict, dest: Path) -> None:
    """Copy every member under `dest`, checking its SHA-256 as it streams."""
    for name, info in files.items():
        path = dest.joinpath(*name.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        sha, size = hashlib.sha256(), 0
        try:
            with z.open(info) as src, open(path, "xb") as out:
                while chunk := src.read(_CHUNK):
                    size += len(chunk)
                    if size > info.file_size:
                        raise ArchiveError(f"{name!r} is larger than the archive says: refused")
                    sha.update(chunk)
                    out.write(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:
            raise ArchiveError(f"{name!r} is damaged in the archive ({e})") from None
        if size != info.file_size or sha.hexdigest() != listed[name]["sha256"]:
            raise ArchiveError(f"{name!r} does not match its checksum: the archive is damaged or was altered")
        mtime = listed[name].get("mtime_ns")
        if _int(mtime) and 0 < mtime < 2**62:
            os.utime(path, ns=(mtime, mtime))  # keeps caches keyed on mtimes valid


def _reference_schema(version: int) -> set[tuple]:
    conn = sqlite3.connect(":memory:")
    try:
        db.apply_migrations(conn, 0, version)
        return set(conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"))
    finally:
        conn.close()


def _check_db(path: Path, schema: int, n_faces: int, crop_size: int | None) -> None:
    with open(path, "rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            raise ArchiveError(f"{DB_FILE} is not an SQLite database")
    try:
        conn = sqlite3.connect(path)
    except sqlite3.Error as e:
        raise ArchiveError(f"{DB_FILE} cannot be opened ({e})") from None
    try:
        conn.execute("PRAGMA trusted_schema = OFF")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > db.SCHEMA_VERSION:
            raise ArchiveError(f"the archive was written by a newer facelab (database schema {version} > "
                               f"{db.SCHEMA_VERSION}): update facelab to import it")
        if version != schema:
            raise ArchiveError(f"{DB_FILE} has schema {version}, its manifest says {schema}")
        if set(conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")) != _reference_schema(version):
            raise ArchiveError(f"{DB_FILE} does not have facelab's tables (schema {version})")
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise ArchiveError(f"{DB_FILE} is damaged ({check})")
        if conn.execute("PRAGMA foreign_key_check").fetchone() is not None:
            raise ArchiveError(f"{DB_FILE} has rows that point at nothing (e.g. labels of missing faces)")
        count = int(conn.execute("SELECT COUNT(*) FROM faces").fetchone()[0])
        if count != n_faces:
            raise ArchiveError(f"{DB_FILE} lists {count} crops but {FACES_FILE} holds {n_faces}")
        row = conn.execute("SELECT value FROM meta WHERE key = 'crop_size'").fetchone()
        if row is not None and crop_size is not None and json.loads(row[0]) != crop_size:
            raise ArchiveError(f"{DB_FILE} says the crops are {row[0]} px but {FACES_FILE} holds {crop_size} px")
    except ArchiveError:
        raise
    except (sqlite3.Error, ValueError, RecursionError) as e:
        raise ArchiveError(f"{DB_FILE} is damaged or not a facelab database ({e})") from None
    finally:
        conn.close()


def _check_faces(path: Path, manifest: dict) -> tuple[int, int | None]:
    """(rows, crop size) of faces.npy, which must be a plain uint8 N×S×S×3 array."""
    if manifest["faces"] is None:
        return 0, None
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ArchiveError(f"{FACES_FILE} is not a plain array file (it may hold pickled objects): {e}") from None
    shape, dtype = tuple(arr.shape), arr.dtype
    del arr
    expected = tuple(manifest["faces"]["shape"])
    if dtype != np.uint8 or shape != expected:
        raise ArchiveError(f"{FACES_FILE} holds {dtype} {shape}, its manifest says uint8 {expected}")
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
        raise ArchiveError(f"{FACES_FILE} does not hold square RGB crops (shape {shape})")
    return shape[0], shape[1]


def _check_npz(path: Path, name: str) -> None:
    try:
        with zipfile.ZipFile(path) as inner:
            if sum(i.file_size for i in inner.infolist()) > MAX_TOTAL_BYTES:
                raise ArchiveError(f"{name!r} would unpack to more than {MAX_TOTAL_BYTES >> 30} GiB: refused")
        with np.load(path, allow_pickle=False) as arrays:
            for key in arrays.files:
                arrays[key]  # an object array raises here instead of unpickling
    except ArchiveError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise ArchiveError(f"{name!r} is not a plain array file (it may hold pickled objects): {e}") from None


def _check_file(path: Path, name: str) -> None:
    """Every file by its type: JSON parses, arrays load without pickle."""
    if name.endswith(".json"):
        if path.stat().st_size > MAX_JSON_BYTES:
            raise ArchiveError(f"{name!r} is implausibly large")
        try:
            json.loads(path.read_bytes())
        except (ValueError, RecursionError) as e:  # nested too deeply for the parser: refused, not a traceback
            raise ArchiveError(f"{name!r} is not valid JSON ({e})") from None
    elif name.endswith(".npz"):
        _check_npz(path, name)
    elif name.endswith(".npy") and name != FACES_FILE:
        try:
            np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ArchiveError(f"{name!r} is not a plain array file (it may hold pickled objects): {e}") from None


def _check_runs(runs_dir: Path) -> None:
    """Each run's weights load (weights_only) into the network its config.json describes."""
    if not runs_dir.is_dir():
        return
    import torch

    from facelab.model.models import ModelError, load_codec, load_config

    cpu = torch.device("cpu")
    for run in sorted(runs_dir.iterdir()):
        has_weights = weights_path(run) is not None
        try:
            if (run / CONFIG_FILE).exists():
                load_config(run)
            elif has_weights:
                raise ModelError(f"run {run.name!r} has weights but no {CONFIG_FILE}")
            if has_weights:
                load_codec(run, cpu)
            if (run / CHECKPOINT_FILE).exists():
                state = torch.load(io.BytesIO((run / CHECKPOINT_FILE).read_bytes()), map_location="cpu",
                                   weights_only=True)
                if not isinstance(state, dict):
                    raise ModelError(f"{CHECKPOINT_FILE} of run {run.name!r} is not a facelab checkpoint")
        except (ModelError, ValueError, KeyError, OSError, RuntimeError, EOFError) as e:
            raise ArchiveError(f"run {run.name!r} cannot be used: {e}") from None
        except Exception as e:  # e.g. pickle.UnpicklingError from a checkpoint: refused, never run
            raise ArchiveError(f"run {run.name!r} cannot be used ({type(e).__name__}: {e})") from None


def _settle_db(path: Path) -> None:
    """Migrate an older schema, and stop jobs that were running where the archive was made."""
    try:
        db.init(path)
    except (db.SchemaTooNew, sqlite3.Error) as e:
        raise ArchiveError(f"{DB_FILE} cannot be opened ({e})") from None
    with db.connect(path, write=True) as c:
        c.execute(
            "UPDATE jobs SET state = 'cancelled', pid = NULL, heartbeat = NULL, cancel_requested = 0, "
            "ended_at = COALESCE(ended_at, ?), error = 'stopped by the export; resume to train it here' "
            "WHERE state IN ('queued', 'running')",
            (db.now_iso(),),
        )


# --- import -----------------------------------------------------------------------------------------
def _free_name(root: Path, name: str) -> str:
    for i in range(2, 1000):
        candidate = f"{name[:60]}-{i}"
        if not (root / candidate).exists():
            return candidate
    return f"{name[:50]}-{secrets.token_hex(3)}"


def _target_name(root: Path, manifest: dict, name: str | None) -> str:
    chosen = (name or "").strip() or manifest["workspace"]
    try:
        chosen = validate_name(chosen)
    except WorkspaceError as e:
        raise ArchiveError(f"{e}; choose a new name for the import") from None
    if (root / chosen).exists():
        raise ArchiveError(f"a workspace named {chosen!r} already exists: import it under another name "
                           f"(e.g. {_free_name(root, chosen)!r})")
    return chosen


def import_workspace(source: Source, name: str | None = None, home: str | Path | None = None) -> Workspace:
    """Verify the archive completely, then add it as a new workspace (its own name, or `name`).

    `source` is a path, the archive's bytes, or a seekable binary file (e.g. a Streamlit upload).
    Raises `ArchiveError` with the reason for anything that is not a sound facelab archive;
    then nothing is created.
    """
    z, label = _open_zip(source)
    with z:
        files = _check_members(z)
        manifest = _read_manifest(z, files)
        root = workspaces_root(home)
        new_name = _target_name(root, manifest, name)
        created_root = not root.exists()
        root.mkdir(parents=True, exist_ok=True)
        remove_leftovers(root)  # what killed imports left (their owner pid is in the name)
        need = sum(i.file_size for i in files.values()) + DISK_MARGIN_BYTES
        if shutil.disk_usage(root).free < need:
            raise ArchiveError(f"not enough free disk space to import {label} ({need >> 20} MiB needed)")
        tmp = root / owned_name(IMPORT_PREFIX, new_name)
        try:
            tmp.mkdir()
            try:
                _extract(z, files, manifest["files"], tmp)
                n_faces, crop = _check_faces(tmp / FACES_FILE, manifest)
                _check_db(tmp / DB_FILE, manifest["schema_version"], n_faces, crop)
                for rel in files:
                    _check_file(tmp.joinpath(*rel.split("/")), rel)
                _check_runs(tmp / "runs")
                (tmp / "runs").mkdir(exist_ok=True)
                _settle_db(tmp / DB_FILE)
            except OSError as e:
                raise ArchiveError(f"could not unpack {label}: {e}") from None
            dest = root / new_name
            if dest.exists():  # created by someone else while we checked
                raise ArchiveError(f"a workspace named {new_name!r} already exists: import it under another name")
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if created_root:
                try:
                    root.rmdir()
                except OSError:
                    pass
            raise
    return Workspace(dest)


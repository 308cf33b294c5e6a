"""Workspaces: one folder per person, holding their crops, database and trained runs.

```
<home>/workspaces/<name>/
  facelab.sqlite     sources, faces, labels, runs, jobs (see facelab.store.db)
  faces.npy          uint8 crops N x S x S x 3 (RGB), row i <-> faces.id i
  runs/<run-id>/     model.pt, config.json, latents.npy, caches
```
The home folder is `~/.facelab` unless FACELAB_HOME or the CLI's `--home` says otherwise.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facelab.errors import FacelabError
from facelab.store import db, processes
from facelab.store.storage import WORKSPACES_DIR, load_npy, remove_stale_temps

HELD_OUT_SHARE = 0.1  # held out: of each source's time in blocks (`dataset.split_for`), or of the faces

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
DB_FILE = "facelab.sqlite"
FACES_FILE = "faces.npy"
IMPORT_PREFIX = ".importing-"  # <root>/.importing-<name>.<pid>.<hex>/: an import being unpacked
DELETE_PREFIX = ".deleting-"  # <root>/.deleting-<name>.<pid>.<hex>/: a delete under way
UPLOAD_PREFIX = ".upload-"  # <workspace>/.upload-video.<pid>.<hex>.tmp: an upload being built
DEFAULT_CROP_SIZE = 64  # a workspace's crop side until its first build records its own
LEFTOVER_MAX_AGE_S = 24 * 3600  # a hidden folder with no owner pid in its name: left by a crash


def _face_rows(c) -> int:
    """Rows of the faces table (deleted crops included): what `face_count` and `crop_counts` count."""
    return int(c.execute("SELECT COUNT(*) FROM faces").fetchone()[0])


class WorkspaceError(FacelabError):
    """A workspace problem with a message meant for the user."""


def home_dir(override: str | Path | None = None) -> Path:
    if override:
        return Path(override).expanduser().resolve()
    env = os.environ.get("FACELAB_HOME")
    if env:
        return Path(env).expanduser().resolve()
    return (Path.home() / ".facelab").resolve()


def workspaces_root(home: str | Path | None = None) -> Path:
    return home_dir(home) / WORKSPACES_DIR


def validate_name(name: str) -> str:
    """Return the name if it is safe as a folder name, else raise with what is allowed."""
    name = (name or "").strip()
    if not NAME_RE.fullmatch(name):
        raise WorkspaceError(
            f"invalid workspace name {name!r}: use 1-64 letters, digits, '-' or '_', "
            "starting with a letter or digit (no spaces, dots or slashes)"
        )
    return name


@dataclass(frozen=True)
class Workspace:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def db_path(self) -> Path:
        return self.path / DB_FILE

    @property
    def faces_path(self) -> Path:
        return self.path / FACES_FILE

    @property
    def runs_dir(self) -> Path:
        return self.path / "runs"

    def run_dir(self, run_id: str) -> Path:
        if not NAME_RE.fullmatch(run_id):
            raise WorkspaceError(f"invalid run id {run_id!r}")
        return self.runs_dir / run_id

    def connect(self, write: bool = False):
        """A short transaction on this workspace's database (see `facelab.store.db.connect`)."""
        if not self.db_path.exists():
            raise WorkspaceError(
                f"workspace {self.name!r} is gone (its folder was deleted or moved)"
            )
        return db.connect(self.db_path, write=write)

    def exists(self) -> bool:
        return self.db_path.exists()

    # --- meta -------------------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        with self.connect() as c:
            row = c.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row["value"]) if row else default

    def set_meta(self, key: str, value: Any) -> None:
        with self.connect(write=True) as c:
            c.execute(
                "INSERT INTO meta(key, value) VALUES(?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )

    # --- crops ------------------------------------------------------------------------
    @property
    def crop_size(self) -> int:
        """The crops' side in pixels (the first build records it): what a new run trains at,
        from the Train page and `facelab train` alike."""
        return int(self.get_meta("crop_size", DEFAULT_CROP_SIZE))

    def face_count(self) -> int:
        """Rows of faces.npy that the database knows of (deleted crops included)."""
        with self.connect() as c:
            return _face_rows(c)

    def crop_counts(self) -> tuple[int, np.ndarray]:
        """(number of crops, sorted ids of the deleted ones), read in one transaction."""
        with self.connect() as c:
            n = _face_rows(c)
            deleted = [r[0] for r in c.execute("SELECT id FROM faces WHERE deleted = 1 ORDER BY id")]
        return n, np.asarray(deleted, dtype=np.int64)

    def crops_key(self) -> str:
        """A short digest of the crops' count and deleted set: caches of anything drawn from the
        crops (in memory, or the Train page's baselines on disk) key on it, so a delete drops them."""
        n, deleted = self.crop_counts()
        return hashlib.sha1(f"{n}:".encode() + deleted.astype("<i8").tobytes()).hexdigest()[:16]

    def faces(self, mmap: bool = True) -> np.ndarray:
        """All crops, N x S x S x 3 uint8 RGB, row i = faces.id i.

        Rows past the database's count (left by a writer that died between renaming the
        array and committing its rows) are not part of the dataset and are cut off here.
        """
        n = self.face_count()
        if n == 0 or not self.faces_path.exists():
            size = self.crop_size
            return np.zeros((0, size, size, 3), np.uint8)
        arr = load_npy(self.faces_path, mmap=mmap)
        if arr.shape[0] < n:
            raise WorkspaceError(
                f"workspace {self.name!r} is damaged: {FACES_FILE} has {arr.shape[0]} crops, "
                f"the database lists {n}"
            )
        return arr[:n]

    def active_face_ids(self, split: str | None = None) -> np.ndarray:
        """Ids of crops not deleted by the user, optionally of one side of `held_out_split`:
        'train' or 'val' (held out)."""
        if split:
            train, val, _ = self.held_out_split()
            return {"train": train, "val": val}[split]
        with self.connect() as c:
            return np.array([r[0] for r in c.execute("SELECT id FROM faces WHERE deleted = 0 ORDER BY id")],
                            dtype=np.int64)

    def held_out_split(self) -> tuple[np.ndarray, np.ndarray, str]:
        """(ids to train on, ids held out, a note when the held-out ones are not the `faces.split`
        column's), over the crops not deleted: the one held-out set that training, its figures,
        the judge and the webcam's familiarity check all use.

        The column's 'val' crops (time blocks, `dataset.split_for`), unless they are too few to
        judge by (under half of `HELD_OUT_SHARE`: a short clip's held-out blocks may fall where hardly
        any face was found, 2 of 151 in one real clip; a tiny dataset has none): then the last
        `HELD_OUT_SHARE` by time.
        """
        with self.connect() as c:
            rows = c.execute(
                "SELECT id, split FROM faces WHERE deleted = 0 ORDER BY source_id, t_seconds, id"
            ).fetchall()
        ids = np.array([r[0] for r in rows], np.int64)
        is_val = np.array([r[1] == "val" for r in rows], dtype=bool)
        note, few = "", int(is_val.sum())
        if len(ids) >= 2 and few < math.ceil(HELD_OUT_SHARE * len(ids) / 2):
            k = max(1, math.ceil(HELD_OUT_SHARE * len(ids)))
            is_val[:] = False
            is_val[-k:] = True
            why = (f"only {few} of its faces are in the held-out ('val') time blocks, too few to judge by"
                   if few else "the dataset has no held-out ('val') faces")
            note = f"{why}: held out the last {k} by time instead"
        return np.sort(ids[~is_val]), np.sort(ids[is_val]), note

    def summary(self) -> dict[str, int]:
        with self.connect() as c:
            one = lambda q: int(c.execute(q).fetchone()[0])  # noqa: E731
            return {
                "sources": one("SELECT COUNT(*) FROM sources"),
                "faces": one("SELECT COUNT(*) FROM faces WHERE deleted = 0"),
                "labelled": one("SELECT COUNT(DISTINCT face_id) FROM labels"),
                "runs": one("SELECT COUNT(*) FROM runs"),
            }


def _path_for(name: str, home: str | Path | None) -> Path:
    root = workspaces_root(home)
    path = (root / validate_name(name)).resolve()
    if path.parent != root.resolve():  # belt and braces: the regex already forbids this
        raise WorkspaceError(f"workspace name {name!r} escapes the workspace folder")
    return path


def create(name: str, home: str | Path | None = None) -> Workspace:
    path = _path_for(name, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir()
    except FileExistsError:
        raise WorkspaceError(f"a workspace named {name!r} already exists") from None
    try:
        db.init(path / DB_FILE)
        (path / "runs").mkdir()
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return Workspace(path)


def open_workspace(name: str, home: str | Path | None = None) -> Workspace:
    path = _path_for(name, home)
    if not (path / DB_FILE).exists():
        raise WorkspaceError(f"no workspace named {name!r} (create it first)")
    db.init(path / DB_FILE)  # migrates an older schema
    remove_stale_temps(path)
    return Workspace(path)


def open_or_create(name: str, home: str | Path | None = None) -> Workspace:
    try:
        return open_workspace(name, home)
    except WorkspaceError:
        try:
            return create(name, home)
        except WorkspaceError:  # created by someone else in between
            return open_workspace(name, home)


def list_workspaces(home: str | Path | None = None) -> list[str]:
    """The workspaces of this home (opening the home also clears what crashed work left)."""
    root = workspaces_root(home)
    if not root.is_dir():
        return []
    remove_leftovers(root)
    return sorted(
        p.name for p in root.iterdir() if NAME_RE.fullmatch(p.name) and (p / DB_FILE).exists()
    )


def _leftover(entry: Path, prefix: str) -> bool:
    """Whether a hidden work folder was left by a process that is gone: its owner pid (in the
    name, see `processes.owned_name`; the older `-<pid>` suffix of deletes too) is dead, or,
    without one, it is older than LEFTOVER_MAX_AGE_S."""
    pid = processes.owner_pid(entry.name, prefix)
    tail = entry.name.rsplit("-", 1)[-1]
    if pid is None and prefix == DELETE_PREFIX and tail.isdigit():
        pid = int(tail)
    if pid is not None:
        return not processes.pid_alive(pid)
    return time.time() - entry.stat().st_mtime > LEFTOVER_MAX_AGE_S


def remove_leftovers(root: str | Path) -> int:
    """Remove what killed imports, interrupted deletes and uploads of a stopped server left in
    the workspaces root; work another live process is doing right now is left alone.
    Returns how many entries were removed."""
    removed = 0
    for entry in Path(root).iterdir():
        try:
            if entry.name.startswith((IMPORT_PREFIX, DELETE_PREFIX)):
                prefix = IMPORT_PREFIX if entry.name.startswith(IMPORT_PREFIX) else DELETE_PREFIX
                if entry.is_dir() and not entry.is_symlink() and _leftover(entry, prefix):
                    shutil.rmtree(entry, ignore_errors=True)
                    removed += 1
            elif NAME_RE.fullmatch(entry.name) and entry.is_dir():
                for tmp in entry.glob(UPLOAD_PREFIX + "*.tmp"):
                    if processes.owner_gone(tmp.name, UPLOAD_PREFIX):
                        tmp.unlink(missing_ok=True)
                        removed += 1
        except OSError:  # removed by someone else meanwhile, or unreadable: not ours to judge
            continue
    return removed


def workers(path: str | Path) -> list[tuple[int, str]]:
    """(pid, what) of each live training job and map worker of the workspace at `path`.

    Jobs are the 'running' rows of its jobs table; map workers write their pid into
    runs/*/projections/*.status.json, and the ones this process started but that have not
    written it yet are in `processes.children_in`.
    """
    path = Path(path)
    found: dict[int, str] = {}
    if (path / DB_FILE).exists():
        with db.connect(path / DB_FILE) as c:
            rows = c.execute("SELECT run_id, pid FROM jobs WHERE state = 'running'").fetchall()
        for r in rows:
            if r["pid"] != os.getpid() and processes.pid_alive(r["pid"], r["run_id"]):
                found[r["pid"]] = f"training run {r['run_id']}"
    for status in path.glob("runs/*/projections/*.status.json"):
        try:
            s = json.loads(status.read_text())
            pid = int(s.get("pid") or 0)
        except (OSError, ValueError, TypeError, AttributeError):
            continue
        if s.get("state") == "running" and pid != os.getpid() and processes.pid_alive(pid, "project"):
            found[pid] = f"a map of run {status.parent.parent.name}"
    for pid in processes.children_in(path):
        found.setdefault(pid, "a background task")
    return sorted(found.items())


def rename(old: str, new: str, home: str | Path | None = None) -> Workspace:
    src = _path_for(old, home)
    dst = _path_for(new, home)
    if not (src / DB_FILE).exists():
        raise WorkspaceError(f"no workspace named {old!r}")
    if dst.exists():
        raise WorkspaceError(f"a workspace named {new!r} already exists")
    # A running job or map worker holds the old path and would fail with "workspace is gone".
    busy = workers(src)
    if busy:
        pid, what = busy[0]
        raise WorkspaceError(
            f"cannot rename {old!r} while {what} is running (pid {pid}): "
            "wait for it to finish or cancel it, then rename"
        )
    os.rename(src, dst)
    return Workspace(dst)


def delete(name: str, home: str | Path | None = None) -> None:
    """Remove every file of the workspace (crops, database, runs). There is no undo.

    Its training jobs and map workers are stopped first (queued runs are cancelled, so no
    finishing job elsewhere starts one): left running, they would keep writing into it.
    """
    path = _path_for(name, home)
    if not path.exists():
        raise WorkspaceError(f"no workspace named {name!r}")
    if (path / DB_FILE).exists():
        with db.connect(path / DB_FILE, write=True) as c:
            c.execute("UPDATE jobs SET state = 'cancelled', pid = NULL WHERE state = 'queued'")
    processes.stop([pid for pid, _ in workers(path)])
    # Rename first so a half-finished delete never looks like a usable workspace; the owner pid
    # in the name lets `remove_leftovers` finish it if this process dies mid-way.
    trash = path.with_name(processes.owned_name(DELETE_PREFIX, path.name))
    os.rename(path, trash)
    shutil.rmtree(trash)

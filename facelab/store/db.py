"""The workspace database: SQLite in WAL mode, one versioned schema, migrated on open.

SQLite is the single source of truth for everything but pixel arrays. Connections are short
lived (one per operation) and wait for locks instead of failing, so two browser tabs, a
training job and the CLI can share one workspace.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from facelab.errors import FacelabError

BUSY_TIMEOUT_S = 30.0

# Each entry migrates from version i to i+1; append, never edit one that has shipped. An entry
# is a script of statements split on ";", or a tuple of statements (a trigger holds ";").
MIGRATIONS: list[str | tuple[str, ...]] = [
    """
    CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE sources(
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        sha256 TEXT,
        video_fps REAL, frame_count INTEGER, width INTEGER, height INTEGER, duration_s REAL,
        settings TEXT NOT NULL,
        counts TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE faces(
        id INTEGER PRIMARY KEY,
        source_id INTEGER NOT NULL REFERENCES sources(id),
        frame_index INTEGER NOT NULL,
        t_seconds REAL NOT NULL,
        x INTEGER NOT NULL, y INTEGER NOT NULL, w INTEGER NOT NULL, h INTEGER NOT NULL,
        sharpness REAL,
        split TEXT NOT NULL DEFAULT 'train' CHECK(split IN ('train', 'val')),
        deleted INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX faces_source ON faces(source_id);
    CREATE TABLE skipped(
        source_id INTEGER NOT NULL REFERENCES sources(id),
        frame_index INTEGER NOT NULL,
        t_seconds REAL NOT NULL,
        reason TEXT NOT NULL CHECK(reason IN ('no_face', 'ambiguous', 'blurred', 'duplicate'))
    );
    CREATE INDEX skipped_source ON skipped(source_id);
    CREATE TABLE label_names(name TEXT PRIMARY KEY, created_at TEXT NOT NULL);
    CREATE TABLE labels(
        face_id INTEGER NOT NULL REFERENCES faces(id),
        label TEXT NOT NULL REFERENCES label_names(name) ON UPDATE CASCADE ON DELETE CASCADE,
        created_at TEXT NOT NULL,
        PRIMARY KEY(face_id, label)
    );
    CREATE TABLE runs(
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        config TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        summary TEXT
    );
    CREATE TABLE epochs(
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        epoch INTEGER NOT NULL,
        metrics TEXT NOT NULL,
        PRIMARY KEY(run_id, epoch)
    );
    CREATE TABLE jobs(
        run_id TEXT PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
        state TEXT NOT NULL CHECK(state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
        pid INTEGER,
        heartbeat REAL,
        progress TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        queued_at TEXT NOT NULL,
        started_at TEXT,
        ended_at TEXT,
        error TEXT
    );
    CREATE INDEX jobs_state ON jobs(state);
    CREATE TABLE cluster_names(
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        method TEXT NOT NULL,
        k INTEGER NOT NULL,
        cluster INTEGER NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY(run_id, method, k, cluster)
    );
    CREATE TABLE directions(
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        spec TEXT NOT NULL,
        vector BLOB NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY(run_id, name)
    );
    """,
    # A cluster's name remembers one of its frames (its medoid when named): cluster numbers
    # change when the latents are re-made, the frame does not (facelab.space.clusters.cluster_names).
    "ALTER TABLE cluster_names ADD COLUMN face_id INTEGER",
    # meta 'labels_version' counts every change of what a probe is fitted on (a label set or
    # cleared, renamed or removed; a face deleted or restored), whoever writes it (the pages, the
    # CLI, an archive import): caches of probes and judges key on it (facelab.data.labels.version).
    ("INSERT OR IGNORE INTO meta(key, value) VALUES('labels_version', 0)",
     *(f"CREATE TRIGGER labels_version_{name} AFTER {event} BEGIN "
       "UPDATE meta SET value = value + 1 WHERE key = 'labels_version'; END"
       for name, event in (("insert", "INSERT ON labels"), ("delete", "DELETE ON labels"),
                           ("update", "UPDATE ON labels"), ("faces", "UPDATE OF deleted ON faces"),
                           ("faces_gone", "DELETE ON faces")))),
]
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(FacelabError):
    """The file was written by a newer facelab; refuse rather than corrupt it."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _open(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def apply_migrations(conn: sqlite3.Connection, start: int, end: int) -> None:
    """Run the migrations from schema `start` to `end` on `conn` (no transaction of its own)."""
    for step in MIGRATIONS[start:end]:
        for statement in step.split(";") if isinstance(step, str) else step:
            if statement.strip():
                conn.execute(statement)


def _migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"this workspace was written by a newer facelab (schema {version} > {SCHEMA_VERSION})"
        )
    if version == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]  # another process may have won
        apply_migrations(conn, version, SCHEMA_VERSION)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _set_wal(conn: sqlite3.Connection) -> None:
    # Switching journal mode needs a moment with no other writer; retry briefly if locked.
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def init(path: Path) -> None:
    """Create or upgrade the database at `path`."""
    conn = _open(path)
    try:
        _set_wal(conn)
        _migrate(conn)
    finally:
        conn.close()


@contextmanager
def connect(path: Path, write: bool = False) -> Iterator[sqlite3.Connection]:
    """One short transaction: committed when the block ends, rolled back if it raises.

    `write=True` takes the write lock up front (BEGIN IMMEDIATE) so a read-then-write block
    never fails half-way on a lock held by another process.
    """
    conn = _open(path)
    try:
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        conn.close()

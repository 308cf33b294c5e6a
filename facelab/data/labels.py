"""User labels on crops (`label_names` and `labels` tables): any name, one or many per frame.

Every change is one short write transaction of INSERT OR IGNORE / DELETE rows, never a
read-modify-write of a whole label set, so two tabs labelling at once both keep their work.
Each change returns an `UndoRecord` naming exactly the rows it changed; `undo(record)` reverts
those rows only (and returns the record that redoes them).
"""

from __future__ import annotations

import csv
import io
import re
import sqlite3
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from facelab.errors import FacelabError
from facelab.store.db import now_iso
from facelab.store.workspace import Workspace

DEFAULT_LABELS = ("smile", "neutral", "surprise", "sad", "angry")
MAX_LABEL_LEN = 32
CSV_HEADER = ("face_id", "label", "t_seconds", "source")
_DEFAULTS_META = "default_labels_created"
_FORMULA_START = re.compile(r"'*[=+\-@\t\r]")  # what a spreadsheet would run as a formula
MIN_EXAMPLES = 5  # faces with a label, and without it, before anything is learnt from it (direction, probe, judge, timeline)
Negatives = Literal["auto", "labelled", "all"]
NEGATIVES = ("auto", "labelled", "all")


class LabelError(FacelabError):
    """A label or label file the user gave is not acceptable; the message says why."""


@dataclass(frozen=True)
class UndoRecord:
    """What one action did: `label` set (on=True) or cleared on exactly these face ids."""

    label: str
    face_ids: tuple[int, ...]
    on: bool

    def __bool__(self) -> bool:  # an action that changed nothing has nothing to undo
        return bool(self.face_ids)


def validate_label_name(name: str) -> str:
    """Normalise (strip, lower-case) and check a label name; raises LabelError if unusable."""
    if not isinstance(name, str):
        raise LabelError("a label name must be text")
    clean = " ".join(name.split()).lower()
    if not clean:
        raise LabelError("a label name cannot be empty")
    if len(clean) > MAX_LABEL_LEN:
        raise LabelError(f"label {clean[:40]!r} is too long: at most {MAX_LABEL_LEN} characters")
    if not any(unicodedata.category(ch)[0] in "LN" for ch in clean):
        raise LabelError(f"label {clean!r} needs at least one letter or digit")
    if any(unicodedata.category(ch)[0] == "C" for ch in clean):
        raise LabelError(f"label {clean!r} contains control characters")
    return clean


def _insert_names(c: sqlite3.Connection, names: Iterable[str]) -> None:
    now = now_iso()
    c.executemany("INSERT OR IGNORE INTO label_names(name, created_at) VALUES(?, ?)", [(n, now) for n in names])


def ensure_default_labels(workspace: Workspace) -> None:
    """Create the default label set once per workspace (a default the user removed stays removed)."""
    with workspace.connect() as c:  # the common case reads only, leaving the write lock free
        if c.execute("SELECT 1 FROM meta WHERE key = ?", (_DEFAULTS_META,)).fetchone():
            return
    with workspace.connect(write=True) as c:
        if c.execute("SELECT 1 FROM meta WHERE key = ?", (_DEFAULTS_META,)).fetchone():
            return
        _insert_names(c, DEFAULT_LABELS)
        c.execute("INSERT INTO meta(key, value) VALUES(?, 'true')", (_DEFAULTS_META,))


def add_label_name(workspace: Workspace, name: str) -> str:
    """Add a label name (no error if it exists); returns the normalised name."""
    clean = validate_label_name(name)
    with workspace.connect(write=True) as c:
        _insert_names(c, [clean])
    return clean


def remove_label_name(workspace: Workspace, name: str) -> int:
    """Delete a label name and every use of it; returns how many frames lost it."""
    clean = validate_label_name(name)
    with workspace.connect(write=True) as c:
        n = c.execute("DELETE FROM labels WHERE label = ?", (clean,)).rowcount
        c.execute("DELETE FROM label_names WHERE name = ?", (clean,))
    return n


def label_names(workspace: Workspace) -> list[str]:
    """Label names, oldest first (the defaults, then the user's own in the order added)."""
    ensure_default_labels(workspace)
    with workspace.connect() as c:
        return [r[0] for r in c.execute("SELECT name FROM label_names ORDER BY created_at, rowid")]


def _check_face_ids(c: sqlite3.Connection, ids: list[int]) -> None:
    known = {r[0] for r in c.execute("SELECT id FROM faces")}
    unknown = sorted(set(ids) - known)
    if unknown:
        shown = ", ".join(map(str, unknown[:5])) + (" ..." if len(unknown) > 5 else "")
        raise LabelError(f"no such face id(s): {shown}")


def set_labels(workspace: Workspace, face_ids: Iterable[int], label: str, on: bool = True) -> UndoRecord:
    """Set (or clear) `label` on many frames in one transaction; the name is added if new."""
    clean = validate_label_name(label)
    ids = sorted({int(i) for i in np.asarray(list(face_ids), dtype=np.int64).ravel()})
    if not ids:
        return UndoRecord(clean, (), on)
    with workspace.connect(write=True) as c:
        _check_face_ids(c, ids)
        has = {r[0] for r in c.execute("SELECT face_id FROM labels WHERE label = ?", (clean,))}
        if on:
            _insert_names(c, [clean])
            changed = [i for i in ids if i not in has]
            now = now_iso()
            c.executemany(
                "INSERT OR IGNORE INTO labels(face_id, label, created_at) VALUES(?, ?, ?)",
                [(i, clean, now) for i in changed],
            )
        else:
            changed = [i for i in ids if i in has]
            c.executemany("DELETE FROM labels WHERE face_id = ? AND label = ?", [(i, clean) for i in changed])
    return UndoRecord(clean, tuple(changed), on)


def toggle(workspace: Workspace, face_id: int, label: str) -> UndoRecord:
    """Flip one label on one frame."""
    clean = validate_label_name(label)
    with workspace.connect() as c:
        has = c.execute("SELECT 1 FROM labels WHERE face_id = ? AND label = ?", (int(face_id), clean)).fetchone()
    return set_labels(workspace, [face_id], clean, on=not has)


def undo(workspace: Workspace, record: UndoRecord) -> UndoRecord:
    """Revert exactly the rows `record` changed; returns the record that redoes them."""
    if not record.face_ids:
        return record
    with workspace.connect(write=True) as c:
        if record.on:
            c.executemany(
                "DELETE FROM labels WHERE face_id = ? AND label = ?", [(i, record.label) for i in record.face_ids]
            )
        else:
            _insert_names(c, [record.label])
            now = now_iso()
            c.executemany(
                "INSERT OR IGNORE INTO labels(face_id, label, created_at) VALUES(?, ?, ?)",
                [(i, record.label, now) for i in record.face_ids],
            )
    return UndoRecord(record.label, record.face_ids, not record.on)


def version(workspace: Workspace) -> int:
    """A number that changes whenever the labels, or the faces they are on, change (kept by
    database triggers): the cache key of anything fitted on labels."""
    with workspace.connect() as c:
        row = c.execute("SELECT value FROM meta WHERE key = 'labels_version'").fetchone()
    return int(row[0])


def labels_of(workspace: Workspace) -> dict[int, set[str]]:
    """Labels of every labelled frame (frames without labels are absent)."""
    out: dict[int, set[str]] = {}
    with workspace.connect() as c:
        for face_id, label in c.execute("SELECT face_id, label FROM labels"):
            out.setdefault(face_id, set()).add(label)
    return out


def faces_with(workspace: Workspace, label: str) -> np.ndarray:
    """Ids of the frames carrying `label`, ascending."""
    clean = validate_label_name(label)
    with workspace.connect() as c:
        rows = c.execute("SELECT face_id FROM labels WHERE label = ? ORDER BY face_id", (clean,))
        return np.array([r[0] for r in rows], dtype=np.int64)


def counts(workspace: Workspace) -> dict[str, int]:
    """Frames per label name (0 for names not used yet), deleted frames not counted."""
    ensure_default_labels(workspace)
    with workspace.connect() as c:
        rows = c.execute(
            "SELECT n.name, COUNT(f.id) FROM label_names n "
            "LEFT JOIN labels l ON l.label = n.name "
            "LEFT JOIN faces f ON f.id = l.face_id AND f.deleted = 0 "
            "GROUP BY n.name ORDER BY n.created_at, n.rowid"
        )
        return {name: int(n) for name, n in rows}


def _cell_out(text: str) -> str:
    """A text cell a spreadsheet shows as text: one leading apostrophe before a formula start
    (`=`, `+`, `-`, `@`, tab, CR), also before apostrophes already there, so import can undo it."""
    return "'" + text if _FORMULA_START.match(text) else text


def _cell_in(text: str) -> str:
    """Undo `_cell_out`: drop the one apostrophe it added."""
    return text[1:] if text.startswith("'") and _FORMULA_START.match(text[1:]) else text


def export_csv(workspace: Workspace) -> str:
    """`face_id,label,t_seconds,source`, one row per (frame, label), sorted by frame."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    with workspace.connect() as c:
        rows = c.execute(
            "SELECT l.face_id, l.label, f.t_seconds, s.name FROM labels l "
            "JOIN faces f ON f.id = l.face_id LEFT JOIN sources s ON s.id = f.source_id "
            "ORDER BY l.face_id, l.label"
        )
        for face_id, label, t, source in rows:
            w.writerow((face_id, _cell_out(label), f"{t:.3f}", _cell_out(source or "")))
    return buf.getvalue()


def import_csv(workspace: Workspace, text: str) -> int:
    """Add the labels of a CSV (as written by `export_csv`; only face_id,label are required).

    All or nothing: a wrong header, a bad face id or an invalid label name rejects the whole
    file with the line it is on, and nothing is changed. Labels already set are kept.
    Returns how many (frame, label) pairs were new.
    """
    if text.startswith("\ufeff"):
        text = text[1:]  # a BOM from spreadsheet exports
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise LabelError("line 1: the file is empty; expected a header 'face_id,label'")
    header = [h.strip().lower() for h in rows[0]]
    if header[:2] != ["face_id", "label"]:
        raise LabelError(f"line 1: expected a header starting with 'face_id,label', got {','.join(rows[0])!r}")
    pairs: list[tuple[int, str, int]] = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) < 2:
            raise LabelError(f"line {lineno}: expected face_id,label")
        try:
            face_id = int(row[0].strip())
        except ValueError:
            raise LabelError(f"line {lineno}: face id {row[0]!r} is not a whole number") from None
        try:
            label = validate_label_name(_cell_in(row[1].strip()))
        except LabelError as e:
            raise LabelError(f"line {lineno}: {e}") from None
        pairs.append((face_id, label, lineno))
    with workspace.connect(write=True) as c:
        known = {r[0] for r in c.execute("SELECT id FROM faces")}
        for face_id, _, lineno in pairs:
            if face_id not in known:
                raise LabelError(f"line {lineno}: no face with id {face_id} in this workspace")
        before = int(c.execute("SELECT COUNT(*) FROM labels").fetchone()[0])
        _insert_names(c, sorted({p[1] for p in pairs}))
        now = now_iso()
        c.executemany(
            "INSERT OR IGNORE INTO labels(face_id, label, created_at) VALUES(?, ?, ?)",
            [(f, lab, now) for f, lab, _ in pairs],
        )
        after = int(c.execute("SELECT COUNT(*) FROM labels").fetchone()[0])
    return after - before


def binary_targets(
    face_ids: np.ndarray,
    labels_of: Mapping[int, set[str]],
    label: str,
    negatives: Negatives = "auto",
    minimum: int = MIN_EXAMPLES,
) -> tuple[np.ndarray, np.ndarray, str]:
    """(mask of faces used, y, negatives_from) for one label, given `face_id -> labels`: the
    yes/no targets that directions, the latent probe and the pixel judge all learn from.

    negatives='labelled': faces labelled with something else and not the label (explicit
    "not L" judgments); 'all': every face without the label (unlabelled ones may secretly be
    L); 'auto': 'labelled' when there are at least `minimum` of those, else 'all'.
    `negatives_from` says which was used.
    """
    if negatives not in NEGATIVES:
        raise LabelError(f"negatives must be one of {', '.join(NEGATIVES)}, got {negatives!r}")
    tags = [labels_of.get(int(i), ()) for i in np.asarray(face_ids)]
    has = np.array([label in t for t in tags], dtype=bool)
    labelled_neg = np.array([bool(t) and label not in t for t in tags], dtype=bool)
    if negatives == "auto":
        negatives = "labelled" if labelled_neg.sum() >= minimum else "all"
    used = has | labelled_neg if negatives == "labelled" else np.ones(len(tags), dtype=bool)
    return used, has[used], negatives

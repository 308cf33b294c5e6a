"""Input from outside kept in its place: label CSVs never carry a live spreadsheet formula, and a
workspace zip whose JSON is nested too deeply for the parser is refused as damaged, not a traceback."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest

from facelab.cli import main as cli
from facelab.data import labels as lb
from facelab.store import archive
from facelab.store import workspace as ws

from builders import add_faces, blob_crops

FORMULAS = ["=cmd|' /C calc'!A0", "@SUM(1+1)", "+1+1", "-2+3", "'=already quoted"]


def _cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))[1:]


def test_label_csv_neutralises_formulas_and_round_trips(home: Path, tmp_path: Path, capsys) -> None:
    w = ws.create("w")
    add_faces(w, blob_crops(len(FORMULAS))[0])
    with w.connect(write=True) as c:
        c.execute("UPDATE sources SET name = ?", ("=HYPERLINK(\"http://127.0.0.1/\")",))
    for i, name in enumerate(FORMULAS):
        lb.set_labels(w, [i], name)
    stored = lb.labels_of(w)
    quoted = {"'" + lb.validate_label_name(f) for f in FORMULAS}

    assert cli(["labels", "export", "--workspace", "w", "--out", str(tmp_path / "l.csv")]) == 0
    text = (tmp_path / "l.csv").read_text()
    for face_id, label, _, source in _cells(text):
        assert label in quoted, label
        assert source == "'=HYPERLINK(\"http://127.0.0.1/\")"
    assert {r[1] for r in _cells(text)} == quoted

    other = ws.create("other")
    add_faces(other, blob_crops(len(FORMULAS))[0])
    assert cli(["labels", "import", "--workspace", "other", str(tmp_path / "l.csv")]) == 0
    assert lb.labels_of(other) == stored


def test_label_names_a_user_types_round_trip_through_csv(home: Path) -> None:
    w = ws.create("w")
    add_faces(w, blob_crops(4)[0])
    names = ["=1+1", "@home", "'quoted", "plain"]
    for i, name in enumerate(names):
        lb.set_labels(w, [i], name)
    text = lb.export_csv(w)
    assert all(label[0] not in "=+-@\t\r" for _, label, _, _ in _cells(text))
    other = ws.create("other")
    add_faces(other, blob_crops(4)[0])
    assert lb.import_csv(other, text) == 4
    assert lb.labels_of(other) == lb.labels_of(w)


# --- deeply nested JSON in a workspace zip -------------------------------------------------------
DEEP = b"[" * 200_000


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def _with_member(exported: bytes, name: str, data: bytes) -> bytes:
    """The export plus one member, listed in the manifest with its right checksum."""
    with zipfile.ZipFile(io.BytesIO(exported)) as z:
        files = {i.filename: z.read(i) for i in z.infolist()}
    m = json.loads(files[archive.MANIFEST_FILE])
    m["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    return _zip({**files, name: data, archive.MANIFEST_FILE: json.dumps(m).encode()})


@pytest.fixture
def exported(home: Path) -> bytes:
    w = ws.create("bob")
    add_faces(w, blob_crops(2)[0])
    return archive.export_bytes(w)


@pytest.mark.parametrize("where", ["run json", "manifest"])
def test_deeply_nested_json_is_refused_as_damaged(exported: bytes, home: Path, tmp_path: Path, where: str,
                                                  capsys) -> None:
    if where == "manifest":
        with zipfile.ZipFile(io.BytesIO(exported)) as z:
            bad = _zip({**{i.filename: z.read(i) for i in z.infolist()}, archive.MANIFEST_FILE: DEEP})
    else:
        bad = _with_member(exported, "runs/r1/metrics.json", DEEP)
    root = ws.workspaces_root()
    before = sorted(p.name for p in root.iterdir())

    with pytest.raises(archive.ArchiveError, match="damaged|not valid JSON"):
        archive.import_workspace(bad, name="carol")

    (tmp_path / "deep.zip").write_bytes(bad)
    assert cli(["import", str(tmp_path / "deep.zip"), "--name", "carol"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("facelab: error:") and "\n" not in err and "Traceback" not in err
    assert ws.list_workspaces() == ["bob"]
    assert sorted(p.name for p in root.iterdir()) == before, "a refused import leaves nothing behind"

"""Workspace export/import as one zip: a faithful round trip, and every bad archive refused
with a clear message, leaving the workspaces folder exactly as it was."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import pickle
import sqlite3
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from facelab.data import dataset, labels
from facelab.model import jobs
from facelab.model.models import ModelConfig, load_codec
from facelab.space import clusters, latent, projection
from facelab.store import archive, db
from facelab.store import workspace as ws

from media import media_file

RUN_FILES = ("config.json", "model.pt", "latents.npz")


class Evil:
    """Pickled, it opens (creates) `path` when loaded: a loader that unpickles would do so."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


# --- a small real workspace, built once ------------------------------------------------------------
@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Workspace 'alice': crops of a real clip, labels, a trained 1-epoch run with latents, a map and
    clusters, a queued run, and files that must stay behind (log, temp, render)."""
    home = tmp_path_factory.mktemp("src-home")
    w = ws.create("alice", home)
    dataset.build(w, media_file("single_face.mp4"))
    ids = w.active_face_ids()
    assert len(ids) >= 8
    labels.set_labels(w, ids[:3], "smile")
    labels.set_labels(w, ids[2:5], "eyes-closed")
    run_id = jobs.create_run(w, ModelConfig(steps=5, latent_dim=4), name="tiny")
    summary = jobs.run_job(w, run_id)
    assert summary["state"] == "done", summary
    latent.encode_run(w, run_id)
    projection.compute_projection(w, run_id, projection.ProjectionSettings("pca"))
    clusters.cluster_run(w, run_id, "kmeans", 2)
    queued = jobs.create_run(w, ModelConfig(steps=5, latent_dim=4), name="never started")
    run_dir = w.run_dir(run_id)
    (run_dir / "train.log").write_text("epoch 1\n")
    (run_dir / ".model.pt.abc123.tmp").write_bytes(b"half written")
    (run_dir / "eval").mkdir()
    (run_dir / "eval" / "grid.png").write_bytes(b"\x89PNG")
    assert (run_dir / "checkpoint.pt").exists()
    return {"home": home, "w": w, "run": run_id, "queued": queued}


@pytest.fixture(scope="module")
def zip_path(source, tmp_path_factory) -> Path:
    return archive.export_workspace(source["w"], tmp_path_factory.mktemp("zips") / "alice.zip")


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {i.filename: z.read(i) for i in z.infolist()}


def rezip(files: dict[str, bytes], *, fix_manifest: bool = True, infos: dict[str, zipfile.ZipInfo] | None = None) -> bytes:
    """A zip of `files`; with `fix_manifest` its checksums are made to match, so the check under
    test is the one that must refuse it."""
    files = dict(files)
    if fix_manifest and archive.MANIFEST_FILE in files:
        m = json.loads(files[archive.MANIFEST_FILE])
        m["files"] = {
            name: {**m["files"].get(name, {}), "sha256": hashlib.sha256(data).hexdigest(),
                   "size": len(data)}
            for name, data in files.items() if name != archive.MANIFEST_FILE and not name.endswith("/")
        }
        files[archive.MANIFEST_FILE] = json.dumps(m).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr((infos or {}).get(name, name), data)
    return buf.getvalue()


def run_member(source, name: str) -> str:
    return f"runs/{source['run']}/{name}"


def db_rows(w: ws.Workspace, sql: str) -> list[tuple]:
    with w.connect() as c:
        return [tuple(r) for r in c.execute(sql)]


# --- round trip ------------------------------------------------------------------------------------------
def test_round_trip_under_a_new_name(source, zip_path: Path) -> None:
    w, run_id, home = source["w"], source["run"], source["home"]
    with zipfile.ZipFile(zip_path) as z:
        names = set(z.namelist())
        manifest = json.loads(z.read("manifest.json"))
    assert {"manifest.json", "facelab.sqlite", "faces.npy"} <= names
    assert {run_member(source, f) for f in RUN_FILES} <= names
    assert any(n.startswith(f"runs/{run_id}/projections/") and n.endswith(".npz") for n in names)
    assert run_member(source, "clusters/kmeans-k2.npz") in names
    assert not any(n.endswith(("checkpoint.pt", ".log", ".tmp", ".png")) for n in names), names
    assert manifest["workspace"] == "alice" and manifest["schema_version"] == db.SCHEMA_VERSION
    assert manifest["faces"] == {"shape": [w.face_count(), 64, 64, 3], "dtype": "uint8"}
    assert manifest["crop_size"] == 64 and set(manifest["files"]) == names - {"manifest.json"}

    w2 = archive.import_workspace(zip_path, name="bob", home=home)
    assert w2.name == "bob" and sorted(ws.list_workspaces(home)) == ["alice", "bob"]
    np.testing.assert_array_equal(w.faces(), w2.faces())
    assert labels.labels_of(w) == labels.labels_of(w2) and labels.labels_of(w2)
    for sql in ("SELECT * FROM runs ORDER BY id", "SELECT * FROM epochs ORDER BY run_id, epoch",
                "SELECT * FROM faces ORDER BY id", "SELECT * FROM sources", "SELECT * FROM label_names"):
        assert db_rows(w, sql) == db_rows(w2, sql)
    assert jobs.status(w2, run_id).state == "done"
    assert jobs.status(w2, source["queued"]).state == "cancelled"  # it will not start by itself here
    assert jobs.status(w, source["queued"]).state == "queued"

    # mtimes travel, so the caches keyed on them are still valid: nothing is re-encoded
    lat, lat2 = latent.load_latents(w, run_id), latent.load_latents(w2, run_id)
    assert lat2 is not None and lat2.key == lat.key
    np.testing.assert_array_equal(lat.mu, lat2.mu)
    assert projection.load_projection(w2, run_id, projection.ProjectionSettings("pca")) is not None
    assert clusters.load_clusters(w2, run_id, "kmeans", 2) is not None
    z = lat.mu[:3]
    np.testing.assert_allclose(load_codec(w.run_dir(run_id)).decode(z), load_codec(w2.run_dir(run_id)).decode(z))
    assert not (w2.run_dir(run_id) / "checkpoint.pt").exists()
    assert not [p for p in w2.path.parent.iterdir() if p.name.startswith(".")]


def test_export_bytes_with_checkpoints_imports_under_the_stored_name(source, home: Path) -> None:
    data = archive.export_bytes(source["w"], include_checkpoints=True)
    assert run_member(source, "checkpoint.pt") in zipfile.ZipFile(io.BytesIO(data)).namelist()
    w2 = archive.import_workspace(data)  # FACELAB_HOME = the fresh `home`
    assert w2.path == home / "workspaces" / "alice"
    assert (w2.run_dir(source["run"]) / "checkpoint.pt").exists()
    with pytest.raises(archive.ArchiveError, match="already exists.*alice-2"):
        archive.import_workspace(data)


def test_export_of_a_live_workspace_cuts_crops_to_the_database(tmp_path: Path, home: Path) -> None:
    """Rows a dying writer left past the database's count are not exported (counts must match)."""
    w = ws.create("grow")
    faces = np.random.default_rng(0).integers(0, 255, (5, 64, 64, 3), dtype=np.uint8)
    dataset.append_crops(w, faces[:3], [0.0] * 3, source="x")
    np.save(w.faces_path, faces)  # the dying writer's two rows
    archive.export_workspace(w, tmp_path / "grow.zip")
    w2 = archive.import_workspace(tmp_path / "grow.zip", name="grown")
    np.testing.assert_array_equal(w2.faces(), faces[:3])
    assert np.load(w2.faces_path).shape[0] == 3


def test_export_during_an_open_write_is_consistent_and_does_not_wait(source, home: Path) -> None:
    """The copy is one moment's state: an uncommitted write is not in it, committed ones are."""
    w = source["w"]
    face = int(w.active_face_ids()[-1])
    with w.connect(write=True) as c:  # another writer, mid-transaction
        c.execute("INSERT INTO label_names(name, created_at) VALUES('half-done', ?)", (db.now_iso(),))
        c.execute("INSERT INTO labels(face_id, label, created_at) VALUES(?, 'half-done', ?)", (face, db.now_iso()))
        data = archive.export_bytes(w)
        c.execute("ROLLBACK")
        c.execute("BEGIN")
    w2 = archive.import_workspace(data, name="snapshot")
    assert "half-done" not in labels.label_names(w2)
    assert labels.labels_of(w2) == labels.labels_of(w)


# --- refused archives ------------------------------------------------------------------------------------
def _flip_raw(raw: bytes, files: dict[str, bytes]) -> bytes:
    """Flip a byte of faces.npy inside the zip itself (it is stored, so its bytes appear as is)."""
    needle = files["faces.npy"][5000:5064]
    at = raw.index(needle) + 10
    return raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1:]


def _flip_content(files: dict[str, bytes]) -> bytes:
    faces = bytearray(files["faces.npy"])
    faces[5000] ^= 0xFF
    return rezip({**files, "faces.npy": bytes(faces)}, fix_manifest=False)


def _db_edit(files: dict[str, bytes], tmp: Path, sql: str) -> bytes:
    path = tmp / "edit.sqlite"
    path.write_bytes(files["facelab.sqlite"])
    conn = sqlite3.connect(path)
    conn.executescript(sql)
    conn.close()
    return rezip({**files, "facelab.sqlite": path.read_bytes()})


def _manifest_edit(files: dict[str, bytes], **changes) -> bytes:
    m = {**json.loads(files["manifest.json"]), **changes}
    return rezip({**files, "manifest.json": json.dumps(m).encode()}, fix_manifest=False)


def _symlink(files: dict[str, bytes], source) -> bytes:
    info = zipfile.ZipInfo(run_member(source, "notes.json"))
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return rezip({**files, info.filename: b"/etc/passwd"}, infos={info.filename: info})


def _malicious_pt(marker: Path, raw_pickle: bool) -> bytes:
    payload = {"encoder.0.weight": Evil(marker)}
    if raw_pickle:
        return pickle.dumps(payload, protocol=2)
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def _pickled_npy(marker: Path) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([Evil(marker), 1], dtype=object), allow_pickle=True)
    return buf.getvalue()


def _pickled_npz(marker: Path) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, mu=np.zeros((2, 4), np.float32), stamp=np.array([Evil(marker)], dtype=object))
    return buf.getvalue()


CASES = {
    # name: (build(files, raw, source, tmp, marker) -> bytes, message pattern)
    "truncated": (lambda f, raw, s, t, m: raw[: len(raw) // 2], "not a zip file"),
    "not a zip": (lambda f, raw, s, t, m: b"hello, I am not a zip" * 10, "not a zip file"),
    "flipped byte in the zip": (lambda f, raw, s, t, m: _flip_raw(raw, f), "damaged"),
    "flipped byte, rezipped": (lambda f, raw, s, t, m: _flip_content(f), "checksum"),
    "parent path": (lambda f, raw, s, t, m: rezip({**f, "../evil": b"x"}), "unsafe file name"),
    "nested parent path": (lambda f, raw, s, t, m: rezip({**f, "runs/../../evil.json": b"{}"}), "unsafe file name"),
    "absolute path": (lambda f, raw, s, t, m: rezip({**f, "/tmp/evil.json": b"{}"}), "unsafe file name"),
    "backslash": (lambda f, raw, s, t, m: rezip({**f, "runs\\x\\evil.json": b"{}"}), "unsafe file name"),
    "symlink": (lambda f, raw, s, t, m: _symlink(f, s), "symbolic link"),
    "stray file": (lambda f, raw, s, t, m: rezip({**f, "notes.txt": b"hi"}), "no part of a facelab workspace"),
    "hidden temp file": (lambda f, raw, s, t, m: rezip({**f, run_member(s, ".model.pt.x.tmp"): b"x"}), "no part"),
    "file not in manifest": (lambda f, raw, s, t, m: rezip({**f, run_member(s, "x.json"): b"{}"}, fix_manifest=False),
                             "not in its manifest"),
    "file missing": (lambda f, raw, s, t, m: rezip({k: v for k, v in f.items() if not k.endswith("latents.npz")},
                                                   fix_manifest=False), "missing from the archive"),
    "missing manifest": (lambda f, raw, s, t, m: rezip({k: v for k, v in f.items() if k != "manifest.json"}),
                         "no manifest.json"),
    "manifest not json": (lambda f, raw, s, t, m: rezip({**f, "manifest.json": b"{nope"}, fix_manifest=False), "damaged"),
    "newer schema in manifest": (lambda f, raw, s, t, m: _manifest_edit(f, schema_version=db.SCHEMA_VERSION + 1),
                                 "newer facelab"),
    "newer schema in database": (lambda f, raw, s, t, m: _db_edit(f, t, f"PRAGMA user_version = {db.SCHEMA_VERSION + 1};"),
                                 "newer facelab"),
    "foreign tables": (lambda f, raw, s, t, m: _db_edit(f, t, "CREATE TRIGGER t AFTER UPDATE ON jobs BEGIN "
                                                           "DELETE FROM faces; END;"), "facelab's tables"),
    "database not sqlite": (lambda f, raw, s, t, m: rezip({**f, "facelab.sqlite": b"\0" * 4096}), "not an SQLite"),
    "crop count mismatch": (lambda f, raw, s, t, m: _db_edit(f, t, "DELETE FROM faces WHERE id = "
                                                               "(SELECT MAX(id) FROM faces);"), "lists .* crops"),
    "faces shape mismatch": (lambda f, raw, s, t, m: _manifest_edit(f, faces={"shape": [1, 64, 64, 3], "dtype": "uint8"}),
                             "manifest says"),
    "malicious model.pt (torch.save)": (lambda f, raw, s, t, m: rezip({**f, run_member(s, "model.pt"): _malicious_pt(m, False)}),
                                        "cannot be used"),
    "malicious model.pt (raw pickle)": (lambda f, raw, s, t, m: rezip({**f, run_member(s, "model.pt"): _malicious_pt(m, True)}),
                                        "cannot be used"),
    "malicious checkpoint.pt": (lambda f, raw, s, t, m: rezip({**f, run_member(s, "checkpoint.pt"): _malicious_pt(m, False)}),
                                "cannot be used"),
    "model.pt of another network": (lambda f, raw, s, t, m: rezip({**f, run_member(s, "config.json"): json.dumps(
        {**json.loads(f[run_member(s, "config.json")]), "latent_dim": 7}).encode()}), "does not match"),
    "pickled faces.npy": (lambda f, raw, s, t, m: rezip({**f, "faces.npy": _pickled_npy(m)}), "pickled objects"),
    "pickled latents.npz": (lambda f, raw, s, t, m: rezip({**f, run_member(s, "latents.npz"): _pickled_npz(m)}),
                            "pickled objects"),
    "bad json": (lambda f, raw, s, t, m: rezip({**f, run_member(s, "run.json"): b"{oops"}), "not valid JSON"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_archive_is_refused_and_changes_nothing(case: str, source, zip_path: Path, home: Path, tmp_path: Path) -> None:
    build, pattern = CASES[case]
    marker = tmp_path / "pwned"
    data = build(members(zip_path), zip_path.read_bytes(), source, tmp_path, marker)
    ws.create("keep")
    root = ws.workspaces_root()
    before = sorted(os.listdir(root))
    with pytest.raises(archive.ArchiveError, match=pattern):
        archive.import_workspace(data, name="newcomer")
    assert sorted(os.listdir(root)) == before == ["keep"]
    assert not marker.exists(), "the archive's pickle was run"


def test_refused_import_into_an_empty_home_leaves_no_folder(zip_path: Path, home: Path) -> None:
    with pytest.raises(archive.ArchiveError, match="not a zip file"):
        archive.import_workspace(zip_path.read_bytes()[:-100])
    assert list(home.iterdir()) == []


def test_existing_name_is_refused_with_a_suggestion(source, zip_path: Path) -> None:
    root = ws.workspaces_root(source["home"])
    before = sorted(os.listdir(root))
    with pytest.raises(archive.ArchiveError, match="'alice' already exists.*another name"):
        archive.import_workspace(zip_path, home=source["home"])
    with pytest.raises(archive.ArchiveError, match="invalid workspace name"):
        archive.import_workspace(zip_path, name="../etc", home=source["home"])
    assert sorted(os.listdir(root)) == before


def test_zip_bomb_limits(zip_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "MAX_TOTAL_BYTES", 100_000)
    with pytest.raises(archive.ArchiveError, match="would unpack to"):
        archive.import_workspace(zip_path)
    monkeypatch.undo()
    monkeypatch.setattr(archive, "RATIO_MIN_BYTES", 1000)
    files = members(zip_path)
    bomb = rezip({**files, "runs/x/bomb.json": b" " * 1_000_000})
    with pytest.raises(archive.ArchiveError, match="zip bomb"):
        archive.import_workspace(bomb)
    assert not ws.workspaces_root().exists()


# --- command line ----------------------------------------------------------------------------------------
def test_cli_export_and_import(source, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from facelab import cli

    monkeypatch.chdir(tmp_path)
    src = str(source["w"].path)  # a workspace given by its folder
    assert cli.main(["export", "--workspace", src]) == 0
    assert (tmp_path / "alice.zip").exists() and "exported alice" in capsys.readouterr().out
    assert cli.main(["export", "--workspace", src]) == 2
    assert "--force" in capsys.readouterr().err
    assert cli.main(["export", "--workspace", src, "--force", "--out", "copy.zip"]) == 0
    assert cli.main(["import", "alice.zip", "--name", "carol"]) == 0
    assert "imported carol" in capsys.readouterr().out
    assert ws.list_workspaces() == ["carol"]
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 broken")
    assert cli.main(["import", "bad.zip"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("facelab: error:") and "not a zip file" in err and "\n" not in err
    assert ws.list_workspaces() == ["carol"]


def test_cli_register_builds_both_commands() -> None:
    from facelab.cli import archive as cli_archive

    parser = argparse.ArgumentParser()
    parser.add_argument("--home")
    cli_archive.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["import", "x.zip", "--name", "n"])
    assert (args.zip, args.name) == ("x.zip", "n")
    args = parser.parse_args(["export", "-w", "a", "--checkpoints"])
    assert args.checkpoints and args.out is None


# --- the sidebar widgets ---------------------------------------------------------------------------------
def _widgets_script() -> None:
    import streamlit as st

    from facelab.store import workspace as ws
    from facelab.ui import archive as ui_archive
    from facelab.ui import state

    state.show_flash()
    name = st.session_state.get(state.WORKSPACE)
    if name:
        st.caption(f"open: {name}")
        ui_archive.export_button(ws.open_workspace(name))
    ui_archive.import_form()


def test_widgets_import_form(zip_path: Path, home: Path) -> None:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_widgets_script, default_timeout=60).run()
    assert not at.exception and len(at.button) == 1 and len(at.download_button) == 0
    at.button[0].click().run()
    assert "Choose a .zip" in at.error[0].value.replace("\\", "")  # shown escaped (facelab.ui.text.md)

    at.file_uploader[0].set_value(("bad.zip", b"PK\x03\x04 not really", "application/zip")).run()
    at.button[0].click().run()
    assert not at.exception and len(at.error) == 1 and "not a zip file" in at.error[0].value
    assert ws.list_workspaces() == []

    at.file_uploader[0].set_value(("alice.zip", zip_path.read_bytes(), "application/zip")).run()
    at.text_input[0].set_value("dora").run()
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert ws.list_workspaces() == ["dora"]
    assert at.session_state["fl_workspace"] == "dora"
    assert "Imported workspace dora" in at.success[0].value
    assert at.text_input[0].value == "" and at.file_uploader[0].value in (None, [])
    assert at.download_button[0].label == "Export workspace (.zip)"


def test_widgets_prepare_export_where_downloads_cannot_be_deferred(source, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    from facelab.ui import archive as ui_archive

    monkeypatch.setenv("FACELAB_HOME", str(source["home"]))
    monkeypatch.setattr(ui_archive, "_deferred_downloads", lambda: False)
    at = AppTest.from_function(_widgets_script, default_timeout=60)
    at.session_state["fl_workspace"] = "alice"
    at.run()
    assert len(at.download_button) == 0 and at.button[0].label == "Prepare export"
    at.button[0].click().run()
    assert not at.exception and at.download_button[0].label == "Export workspace (.zip)"

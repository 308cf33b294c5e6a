"""Workspaces: create / open / list / rename / delete, names that cannot escape, atomic arrays."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from facelab.cli import main as cli
from facelab.store import db
from facelab.store import workspace as ws
from facelab.store.storage import load_npy, save_npy_atomic


def test_create_list_rename_delete(home: Path) -> None:
    assert ws.list_workspaces() == []
    w = ws.create("alice")
    assert w.path == home / "workspaces" / "alice"
    assert ws.list_workspaces() == ["alice"]
    with pytest.raises(ws.WorkspaceError, match="already exists"):
        ws.create("alice")
    ws.rename("alice", "bob")
    assert ws.list_workspaces() == ["bob"]
    assert ws.open_workspace("bob").summary() == {"sources": 0, "faces": 0, "labelled": 0, "runs": 0}
    ws.delete("bob")
    assert ws.list_workspaces() == []
    assert not any((home / "workspaces").iterdir()), "delete must remove every file"


@pytest.mark.parametrize("bad", ["../x", "a/b", "..", ".hidden", "", " ", "a b", "x" * 65, "/etc", "a\\b"])
def test_names_cannot_escape_the_root(home: Path, bad: str) -> None:
    with pytest.raises(ws.WorkspaceError, match="invalid workspace name"):
        ws.create(bad)
    assert not (home / "x").exists() and not (home.parent / "x").exists()


def test_home_override_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACELAB_HOME", str(tmp_path / "env"))
    assert ws.workspaces_root() == tmp_path / "env" / "workspaces"
    assert ws.workspaces_root(tmp_path / "flag") == tmp_path / "flag" / "workspaces"


def test_schema_is_versioned_wal_and_refuses_newer(home: Path) -> None:
    w = ws.create("v")
    con = sqlite3.connect(w.db_path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == db.SCHEMA_VERSION
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.execute(f"PRAGMA user_version = {db.SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(db.SchemaTooNew):
        ws.open_workspace("v")


def test_meta_round_trip(home: Path) -> None:
    w = ws.create("m")
    assert w.crop_size == ws.DEFAULT_CROP_SIZE == 64 and w.faces().shape == (0, 64, 64, 3)
    w.set_meta("crop_size", 32)  # a build records its size: runs train at it, empty crops have it
    assert w.crop_size == 32 and w.faces().shape == (0, 32, 32, 3)
    w.set_meta("crop_size", 64)
    w.set_meta("crop_size", 128)
    assert w.get_meta("crop_size") == 128
    assert w.get_meta("missing", "d") == "d"


def test_atomic_save_keeps_old_file_when_writing_fails(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "a.npy"
    save_npy_atomic(path, np.arange(4))

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_npy_atomic(path, np.arange(10))
    monkeypatch.undo()
    assert load_npy(path).tolist() == [0, 1, 2, 3]
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"], "no temp file left behind"


def test_deleted_folder_gives_clear_error(home: Path) -> None:
    w = ws.create("gone")
    ws.delete("gone")
    with pytest.raises(ws.WorkspaceError, match="is gone"):
        w.summary()


def test_cli_lists_and_rejects_bad_names(home: Path, capsys) -> None:
    assert cli(["workspace", "create", "carol"]) == 0
    assert cli(["workspaces"]) == 0
    assert "carol" in capsys.readouterr().out
    assert cli(["workspace", "create", "../evil"]) == 2
    assert "invalid workspace name" in capsys.readouterr().err
    assert cli(["workspace", "delete", "carol", "--yes"]) == 0
    assert ws.list_workspaces() == []


def test_only_old_temp_files_are_cleared_on_open(home: Path) -> None:
    import os
    import time

    w = ws.create("t")
    fresh, old = w.path / ".faces.npy.abc.tmp", w.path / ".crops128.xyz.tmp.raw"  # the sharp crops a build stages
    fresh.write_bytes(b"being written by another tab")
    old.write_bytes(b"left by a crash")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    ws.open_workspace("t")
    assert fresh.exists(), "a temp file another writer is using must survive"
    assert not old.exists()

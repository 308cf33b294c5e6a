"""Workspaces and hidden folders that must not outlive their delete, rename or owner process:
background workers are stopped on delete, writers never bring a deleted workspace back, a
rename waits for a run, leftovers of killed imports/deletes/uploads go, children are reaped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from facelab.model import jobs
from facelab.model.models import ModelConfig
from facelab.space import projection as pj
from facelab.store import archive, processes
from facelab.store import workspace as ws
from facelab.store.storage import save_npy_atomic, write_bytes_atomic

from builders import blob_images, mapped_workspace, training_workspace, wait_for

REPO = Path(__file__).resolve().parents[1]
LONG_RUN = ModelConfig(image_size=32, latent_dim=4, batch_size=16)  # the default length: minutes


pytestmark = pytest.mark.usefixtures("one_thread")  # bit-equal results, no crawling


def proc_state(pid: int) -> str | None:
    """The state letter of /proc/<pid>/stat ('Z' = defunct), None once the pid is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_python(code: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "FACELAB_HOME": str(home), "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_delete_stops_a_map_worker_and_the_workspace_stays_gone(home: Path) -> None:
    w, _ = mapped_workspace(100)
    s = pj.ProjectionSettings("tsne", perplexity=5)
    pj.start_projection(w, "r1", s)
    status = pj.projections_dir(w, "r1") / f"{s.slug}.status.json"

    def worker_pid() -> int | None:  # the child's own pid: it has opened the workspace and works
        try:
            pid = json.loads(status.read_text())["pid"]
        except (OSError, ValueError, KeyError):
            return None
        return pid if pid != os.getpid() else None

    pid = wait_for(worker_pid)
    os.kill(pid, signal.SIGSTOP)  # hold it mid-map, as a long t-SNE would be
    try:
        ws.delete("w")
        assert not processes.pid_alive(pid), "the map worker still runs after its workspace was deleted"
    finally:
        if proc_state(pid) is not None:
            os.kill(pid, signal.SIGCONT)
        wait_for(lambda: not processes.pid_alive(pid), timeout=60)
    assert ws.list_workspaces() == [] and not w.path.exists()
    ws.create("w")  # the name is free again


def test_a_writer_never_recreates_a_deleted_workspace(home: Path, tmp_path: Path) -> None:
    w = ws.create("w")
    ws.delete("w")
    with pytest.raises(FileNotFoundError, match="is gone"):
        write_bytes_atomic(w.run_dir("r1") / "projections" / "tsne.npz", b"late map")
    with pytest.raises(FileNotFoundError):
        save_npy_atomic(w.faces_path, np.zeros((1, 4, 4, 3), np.uint8))
    assert not w.path.exists() and ws.list_workspaces() == []
    ws.create("w")
    # Below a live workspace, and outside any, missing folders are still made.
    write_bytes_atomic(w.run_dir("r1") / "projections" / "x.bin", b"ok")
    assert write_bytes_atomic(tmp_path / "a" / "b" / "c.bin", b"ok").read_bytes() == b"ok"


def test_rename_is_refused_while_training_and_delete_stops_the_run(home: Path) -> None:
    w = training_workspace("t", blob_images(60))
    run = jobs.create_run(w, LONG_RUN)
    jobs.start(w, run)
    pid = jobs.status(w, run).pid
    try:
        with pytest.raises(ws.WorkspaceError, match=rf"cannot rename 't' while training run {run} is running"):
            ws.rename("t", "t2")
        assert ws.list_workspaces() == ["t"] and jobs.status(w, run).state == "running"
        ws.delete("t")
        assert not processes.pid_alive(pid), "the training job still runs after its workspace was deleted"
    finally:
        kill(pid)
    assert ws.list_workspaces() == [] and not w.path.exists()
    ws.create("t")


def test_leftovers_of_a_killed_import_and_delete_are_cleaned(home: Path, tmp_path: Path) -> None:
    w = training_workspace("w", blob_images(20))
    zip_path = archive.export_workspace(w, tmp_path / "w.zip")
    root = ws.workspaces_root()
    killed_import = run_python(f"""
        import os, signal
        from facelab.store import archive
        archive._check_runs = lambda runs: os.kill(os.getpid(), signal.SIGKILL)
        archive.import_workspace({str(zip_path)!r}, "copy")
    """, home)
    killed_delete = run_python("""
        import os, shutil, signal
        from facelab.store import workspace
        shutil.rmtree = lambda path, *a, **k: os.kill(os.getpid(), signal.SIGKILL)
        workspace.delete("w")
    """, home)
    assert killed_import.returncode == killed_delete.returncode == -signal.SIGKILL, killed_import.stderr
    assert len(list(root.glob(".importing-copy*"))) == 1 and len(list(root.glob(".deleting-w*"))) == 1
    live = root / processes.owned_name(ws.IMPORT_PREFIX, "busy")  # an import this process is doing
    live.mkdir()

    assert ws.list_workspaces() == []
    assert sorted(p.name for p in root.iterdir()) == [live.name]
    assert archive.import_workspace(zip_path, "copy").name == "copy"
    ws.create("w")


def test_an_upload_copy_of_a_killed_server_is_removed(home: Path) -> None:
    w = ws.create("w")
    killed = run_python("""
        import os, signal
        from facelab.data import dataset
        from facelab.ui.build import build_from_upload
        from facelab.store.workspace import open_workspace

        class Upload:  # a browser upload whose server is killed while it is copied
            name = "clip.mp4"
            sent = False
            def read(self, n=-1):
                if self.sent:
                    os.kill(os.getpid(), signal.SIGKILL)
                self.sent = True
                return b"x" * 1000

        build_from_upload(open_workspace("w"), Upload(), dataset.BuildSettings())
    """, home)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len(list(w.path.glob(".upload-*.tmp"))) == 1
    mine = w.path / (processes.owned_name(ws.UPLOAD_PREFIX, "video") + ".tmp")  # a live upload
    mine.write_bytes(b"y")

    assert ws.list_workspaces() == ["w"]  # what the app's sidebar does on its first run
    assert list(w.path.glob(".upload-*.tmp")) == [mine]


def test_a_finished_job_is_reaped(home: Path) -> None:
    w = ws.create("nofaces")
    run = jobs.create_run(w, LONG_RUN)
    jobs.start(w, run)  # fails fast: the workspace has no faces
    pid = jobs.status(w, run).pid
    try:
        wait_for(lambda: proc_state(pid) in ("Z", None), timeout=120, every=0.05)
        assert proc_state(pid) == "Z"  # exited, not yet collected
        assert jobs.list_runs(w)[0].state == "failed"  # what the Train page polls
        assert proc_state(pid) is None, "the finished job stays a defunct entry"
    finally:
        kill(pid)

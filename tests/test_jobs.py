"""Background jobs through real child processes: run, no duplicates, cancel, kill -9 and
resume to the same result as an uninterrupted run, the queue, failures, the CLI."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from dataclasses import replace

import pytest
import torch

from facelab.cli import main as cli
from facelab.model import jobs
from facelab.model.models import ModelConfig
from facelab.model.train import CHECKPOINT_FILE, train_run
from facelab.space.latent import load_latents
from facelab.store import workspace as ws

from builders import blob_images, training_workspace, wait_for

CONFIG = ModelConfig(image_size=32, latent_dim=8, batch_size=16, lr=1e-3, beta=1.0, steps=40, eval_every=8)
IMAGES = blob_images(160, seed=3)
VOLATILE = ("seconds", "images_per_s")


pytestmark = pytest.mark.usefixtures("one_thread")  # bit-equal results, no crawling


def pause_outside_a_write(w, pid: int) -> None:
    """SIGSTOP the child at a moment it holds no database write lock.

    Stopped inside a write (a heartbeat, an epoch row) it would keep the lock, and every other
    writer would wait out the busy timeout: a hang no user can cause, only this test.
    """
    for _ in range(200):
        os.kill(pid, signal.SIGSTOP)
        conn = sqlite3.connect(w.db_path, timeout=0.05, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.01)
        finally:
            conn.close()
    raise AssertionError("the training child held the write lock every time it was paused")


def wait_state(w, run_id, states=("done", "failed", "cancelled", "dead"), timeout=120.0):
    return wait_for(lambda: (s := jobs.status(w, run_id)).state in states and s, timeout, 0.1)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same run trained without interruption, in this process: (weights, epoch rows)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACELAB_HOME", str(tmp_path_factory.mktemp("refhome")))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        mp.setenv("FACELAB_THREADS", "1")
        w = training_workspace("ref", IMAGES)
        run = jobs.create_run(w, CONFIG)
        train_run(w, run)
        torch.set_num_threads(threads)
        weights = torch.load(w.run_dir(run) / "model.pt", weights_only=True)
        return weights, jobs.epoch_metrics(w, run)


def assert_same_result(w, run_id, reference) -> None:
    weights, rows = reference
    got = torch.load(w.run_dir(run_id) / "model.pt", weights_only=True)
    for k, v in weights.items():
        torch.testing.assert_close(got[k], v, rtol=1e-5, atol=1e-6)
    got_rows = jobs.epoch_metrics(w, run_id)
    assert [r["epoch"] for r in got_rows] == list(range(1, CONFIG.intervals + 1))
    for a, b in zip(got_rows, rows):
        for key in b:
            if key not in VOLATILE:
                assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (a["epoch"], key)


def test_background_run_is_never_started_twice(home) -> None:
    w = training_workspace("bg", IMAGES[:60])
    run = jobs.create_run(w, ModelConfig(**{**CONFIG.__dict__, "steps": 24}), name="tiny")
    assert jobs.status(w, run).state == "queued"
    # Two tabs and a rerun click "start" at once.
    threads = [threading.Thread(target=jobs.start, args=(w, run)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pid = jobs.status(w, run).pid
    jobs.start(w, run)
    assert jobs.status(w, run).pid == pid
    final = wait_state(w, run)
    assert final.state == "done", final.error
    assert (final.epoch, final.epochs, final.fraction) == (3, 3, 1.0)
    assert final.metrics["val_psnr"] > 10 and final.name == "tiny"
    log = (w.run_dir(run) / jobs.LOG_FILE).read_text()
    assert log.count("step 24/24") == 1, log  # one process trained it
    assert [r.run_id for r in jobs.list_runs(w)] == [run]
    assert len(jobs.epoch_metrics(w, run)) == 3
    lat = load_latents(w, run)  # encoded by the job before it said 'done': Explore needs no click
    assert lat is not None and lat.mu.shape == (60, CONFIG.latent_dim)
    jobs.delete_run(w, run)
    assert jobs.list_runs(w) == [] and not w.run_dir(run).exists()


def test_a_failed_encoding_leaves_the_trained_run_done(home, monkeypatch) -> None:
    w = training_workspace("enc", IMAGES[:40])
    run = jobs.create_run(w, ModelConfig(**{**CONFIG.__dict__, "steps": 8}))
    seen: list[dict] = []

    def broken(*args, **kwargs):
        kwargs["progress"](0, 40)
        raise OSError("disk full")

    monkeypatch.setattr("facelab.space.latent.encode_run", broken)
    summary = jobs.run_job(w, run, echo=seen.append)  # in this process, as `facelab train --run` does
    assert summary["state"] == "done"
    st = jobs.status(w, run)
    assert st.state == "done" and st.error is None
    assert load_latents(w, run) is None  # Explore then offers "Compute latents"
    assert any(p.get("phase") == jobs.LATENTS_PHASE for p in seen)


def test_the_same_run_is_not_created_twice_while_one_is_active(home) -> None:
    w = training_workspace("twin", IMAGES[:40])
    tiny = ModelConfig(**{**CONFIG.__dict__, "steps": 8})
    first = jobs.create_run(w, tiny, name="first")
    with pytest.raises(jobs.JobError, match=r"the same run is already queued: first"):
        jobs.create_run(w, tiny)  # a double click, or a second tab with the same form
    other = jobs.create_run(w, replace(tiny, seed=1))  # another seed is another run
    jobs.cancel(w, first)
    again = jobs.create_run(w, tiny)  # once the first is no longer active, it may be trained again
    assert {r.run_id for r in jobs.list_runs(w)} == {again, other, first}


def test_cancel_checkpoints_and_resume_matches_uninterrupted(home, reference) -> None:
    w = training_workspace("c", IMAGES)
    run = jobs.create_run(w, CONFIG)
    jobs.start(w, run)
    wait_for(lambda: len(jobs.epoch_metrics(w, run)) >= 1)
    pid = jobs.status(w, run).pid
    pause_outside_a_write(w, pid)  # hold it mid-run so the cancel surely lands before the end
    try:
        jobs.cancel(w, run)
    finally:
        os.kill(pid, signal.SIGCONT)
    st = wait_state(w, run, timeout=30)
    assert st.state == "cancelled", st.error
    assert st.epoch < CONFIG.intervals
    ckpt = torch.load(w.run_dir(run) / CHECKPOINT_FILE, weights_only=True)
    assert ckpt["interval"] == st.epoch
    jobs.resume(w, run)
    st = wait_state(w, run)
    assert st.state == "done", st.error
    assert_same_result(w, run, reference)


def test_killed_run_is_dead_and_resumes_to_the_same_result(home, reference) -> None:
    w = training_workspace("k", IMAGES)
    run = jobs.create_run(w, CONFIG)
    jobs.start(w, run)
    wait_for(lambda: len(jobs.epoch_metrics(w, run)) >= 2)
    pid = jobs.status(w, run).pid
    pause_outside_a_write(w, pid)  # stopped holding the write lock, it would block status() below
    assert jobs.status(w, run).state == "running"
    os.kill(pid, signal.SIGKILL)
    st = wait_for(lambda: (s := jobs.status(w, run)).state == "dead" and s, timeout=10)
    assert "resume" in st.error
    killed_at = torch.load(w.run_dir(run) / CHECKPOINT_FILE, weights_only=True)["step"]
    jobs.resume(w, run)
    st = wait_state(w, run)
    assert st.state == "done", st.error
    log = (w.run_dir(run) / jobs.LOG_FILE).read_text()
    assert f"resumed at step {killed_at + 1} of 40" in log, log  # from the checkpoint, not from scratch
    assert_same_result(w, run, reference)


def test_queue_runs_one_job_at_a_time(home, monkeypatch) -> None:
    monkeypatch.setenv("FACELAB_MAX_JOBS", "1")
    w = training_workspace("q", IMAGES[:40])
    tiny = ModelConfig(**{**CONFIG.__dict__, "steps": 8})
    first, second = jobs.create_run(w, tiny), jobs.create_run(w, replace(tiny, seed=1))
    jobs.start(w, first)
    jobs.start(w, second)
    states = {jobs.status(w, first).state, jobs.status(w, second).state}
    assert states in ({"running", "queued"}, {"done", "queued"}, {"done", "running"}, {"done"})
    for run in (first, second):  # the finishing job starts the queued one
        st = wait_state(w, run, states=("done", "failed", "dead"))
        assert st.state == "done", st.error


def test_a_failing_job_ends_failed_with_the_reason(home) -> None:
    w = ws.create("nofaces")
    run = jobs.create_run(w, CONFIG)
    jobs.start(w, run)
    st = wait_state(w, run)
    assert st.state == "failed"
    assert "has no faces: build a dataset" in st.error
    assert jobs.status(w, run).state == "failed"


def test_cli_train_runs_and_eval(home, capsys, tmp_path) -> None:
    training_workspace("cli", IMAGES[:60])
    args = ["train", "-w", "cli", "--kind", "vae", "--latent", "4", "--steps", "6", "--eval-every", "3", "--batch", "16",
            "--image-size", "32", "--lr", "1e-3"]
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert "step 3/6" in out and "step 6/6" in out and "done" in out
    run = out.split()[1].rstrip(":")
    assert cli(["runs", "-w", "cli"]) == 0
    out = capsys.readouterr().out
    assert run in out and "step 6/6" in out  # progress in steps, as on the Train page
    assert cli(["eval", "-w", "cli", run, "--out", str(tmp_path / "ev")]) == 0
    out = capsys.readouterr().out
    assert "PSNR" in out and "active units" in out
    assert sorted(p.name for p in (tmp_path / "ev").iterdir()) == [
        "reconstructions.png", "samples.png", "traversals.png", "triangle.png"]
    # Bad input: one line, exit 2, nothing created.
    assert cli(["train", "-w", "cli", "--latent", "0"]) == 2
    assert "latent size" in capsys.readouterr().err
    assert cli(["train", "-w", "cli", "--run", run, "--beta", "2"]) == 2
    assert "already has its settings" in capsys.readouterr().err
    assert len(jobs.list_runs(ws.open_workspace("cli"))) == 1
    ws.create("empty")
    assert cli(["train", "-w", "empty", "--steps", "1"]) == 2
    assert "has no faces" in capsys.readouterr().err
    # Without --image-size a new run trains at the workspace's crop size (32 px here), as on the Train page.
    assert cli(["train", "-w", "cli", "--steps", "1", "--latent", "4", "--batch", "16"]) == 0
    assert {r.config.image_size for r in jobs.list_runs(ws.open_workspace("cli"))} == {32}


def test_a_finished_job_leaves_what_the_pages_first_read_cached(home, monkeypatch) -> None:
    """The Train page's baselines, and Explore's PCA map and default clustering: on 15,000
    crops, making those on a fresh server's first visit took over a second (scikit-learn's import)."""
    from facelab.model import quality
    from facelab.space import clusters, projection

    w = training_workspace("warm", IMAGES[:40])
    run = jobs.create_run(w, ModelConfig(**{**CONFIG.__dict__, "steps": 8}))
    jobs.run_job(w, run)
    monkeypatch.setattr(quality, "compute_baselines", lambda *a: pytest.fail("computed again on the page"))
    assert quality.run_report(w, jobs.status(w, run))["pca32_psnr"] is not None
    assert projection.load_projection(w, run, projection.ProjectionSettings(method="pca")) is not None
    k_max, k = clusters.k_range(40)
    assert (k_max, k) == (12, 6)
    assert clusters.load_clusters(w, run, clusters.METHODS[0], k) is not None


def test_one_heartbeat_for_every_worker_never_beats_after_stop() -> None:
    """Training jobs and map workers share processes.Heartbeat: once stop() returns, no beat
    runs, so a worker's final status is never overwritten by a late "running"."""
    from facelab.store import processes

    beats: list[float] = []
    inside = threading.Event()

    def beat() -> None:
        inside.set()
        time.sleep(0.05)  # a slow write (a busy database)
        beats.append(time.monotonic())

    hb = processes.Heartbeat(beat, every=0.01).start()
    assert inside.wait(5)
    hb.stop()  # waits for the beat in flight
    stopped = time.monotonic()
    time.sleep(0.1)
    assert beats and max(beats) <= stopped
    hb.beat()  # a direct beat after stop does nothing either
    assert max(beats) <= stopped
    # One rule for "dead": a live process with a stale heartbeat is dead, a fresh one is not.
    assert not processes.dead(os.getpid(), time.time())
    assert processes.dead(os.getpid(), time.time() - processes.STALE_S - 1)
    assert processes.dead(None, time.time())

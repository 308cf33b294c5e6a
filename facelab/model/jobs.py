"""Background training jobs: one detached child process per run, its state in SQLite.

The `jobs` table has one row per run and is the one source of truth for its state:
queued → running → done | failed | cancelled. 'dead' is never stored: it is what a 'running'
row whose process is gone (or whose heartbeat stopped) is reported as, and such a run resumes
from its last checkpoint.

Why a child process and not a thread: a Streamlit rerun, a closed tab or a second tab must not
stop or duplicate training. A run is claimed in a BEGIN IMMEDIATE transaction together with a
liveness check of the recorded pid, so two tabs clicking "start" at once get one process.
The child (`python -m facelab train --workspace W --run R`, the same command a user can type)
writes a heartbeat every 2 s from a side thread, handles SIGTERM/SIGINT by checkpointing at the
next step, and when it ends starts the oldest queued run, keeping at most FACELAB_MAX_JOBS
(default 1) trainings on the machine.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone

from facelab.model.model_config import ModelConfig
from facelab.store import processes
from facelab.store.db import now_iso
from facelab.store.processes import pid_alive
from facelab.store.storage import make_folder
from facelab.store.workspace import DB_FILE, Workspace, WorkspaceError

LOG_FILE = "train.log"
LATENTS_PHASE = "latents"  # progress phase of a finished run encoding its crops (encode_after_training)


class JobError(WorkspaceError):
    """A job request that cannot be done as asked; the message is for the user."""


@dataclass
class RunStatus:
    run_id: str
    name: str
    kind: str
    state: str  # queued / running / done / failed / cancelled / dead
    epoch: int  # epochs completed
    epochs: int
    eta_s: float | None = None
    metrics: dict = field(default_factory=dict)  # the last epoch's row (see epoch_metrics)
    error: str | None = None
    heartbeat_age_s: float | None = None
    pid: int | None = None
    step: int = 0  # step within the epoch under way
    steps: int = 0
    created_at: str = ""
    config: ModelConfig | None = None
    summary: dict = field(default_factory=dict)
    phase: str = ""  # the child's last progress phase while running (e.g. LATENTS_PHASE)

    @property
    def active(self) -> bool:
        """Queued or running: the page should keep polling."""
        return self.state in ("queued", "running")

    @property
    def fraction(self) -> float:
        """Progress 0..1 for a progress bar."""
        if self.state == "done":
            return 1.0
        if not self.epochs:
            return 0.0
        within = self.step / self.steps if self.steps else 0.0
        return min(1.0, (self.epoch + within) / self.epochs)

    @property
    def budget(self) -> str:
        """Where the run stands, in optimizer steps (the epochs of runs made before steps)."""
        c = self.config
        if self.state == "running" and self.phase == LATENTS_PHASE:
            return "trained; placing every face on the map"
        if c is not None and c.spec.fitted:
            return "fitted" if self.state == "done" else "fitting"
        if c is None or c.legacy_epochs:
            return f"epoch {self.epoch}/{self.epochs}"
        return f"step {round(self.fraction * c.steps):,}/{c.steps:,}"


def max_jobs() -> int:
    try:
        return max(1, int(os.environ.get("FACELAB_MAX_JOBS", "1")))
    except ValueError:
        return 1


# --- process liveness ------------------------------------------------------------------
def _is_dead(row) -> bool:
    return row["state"] == "running" and processes.dead(row["pid"], row["heartbeat"], row["run_id"])


# --- runs ------------------------------------------------------------------------------
def _new_run_id(kind: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{kind}-{stamp}-{secrets.token_hex(2)}"


def default_name(config: ModelConfig) -> str:
    """"<kind> z<latents>", with β where the run chooses it (a β-VAE)."""
    beta = f" β{config.beta:g}" if config.spec.beta is None else ""
    return f"{config.spec.short}{beta} z{config.latent_dim}"


def create_run(workspace: Workspace, config: ModelConfig, name: str | None = None) -> str:
    """Record a new run (state 'queued'); `start` launches it."""
    config.validate()
    run_id = _new_run_id(config.kind)
    now = now_iso()
    with workspace.connect(write=True) as c:  # BEGIN IMMEDIATE: two tabs cannot both pass the check
        twin = _active_twin(c, config)
        if twin is not None:
            raise JobError(f"the same run is already {twin['state']}: {twin['name']} ({twin['run_id']}). "
                           "Change a setting (the seed, say) to train another.")
        c.execute(
            "INSERT INTO runs(id, name, kind, config, created_at, updated_at) VALUES(?, ?, ?, ?, ?, ?)",
            (run_id, (name or "").strip() or default_name(config), config.kind, config.to_json(), now, now),
        )
        c.execute("INSERT INTO jobs(run_id, state, queued_at) VALUES(?, 'queued', ?)", (run_id, now))
    make_folder(workspace.run_dir(run_id))
    return run_id


def _active_twin(c, config: ModelConfig):
    """A queued or live running run with exactly this config: what a double click or a second
    tab would otherwise start again (the same settings and seed give the same model)."""
    rows = c.execute(
        "SELECT r.id AS run_id, r.name, r.config, j.state, j.pid, j.heartbeat FROM runs r "
        "JOIN jobs j ON j.run_id = r.id WHERE j.state IN ('queued', 'running')"
    ).fetchall()
    wanted = config.to_json()
    return next((r for r in rows if r["config"] == wanted and not _is_dead(r)), None)


def _job_row(c, run_id: str):
    row = c.execute("SELECT * FROM jobs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        raise JobError(f"no run {run_id!r} in this workspace")
    return row


def _siblings(workspace: Workspace) -> list[Workspace]:
    """Every workspace beside this one (the machine-wide job limit counts them all)."""
    root = workspace.path.parent
    others = [Workspace(p) for p in sorted(root.iterdir()) if (p / DB_FILE).exists()] if root.is_dir() else []
    return others or [workspace]


def _running_elsewhere(workspace: Workspace) -> int:
    n = 0
    for w in _siblings(workspace):
        if w.path == workspace.path:
            continue
        try:
            with w.connect() as c:
                rows = c.execute("SELECT run_id, state, pid, heartbeat FROM jobs WHERE state = 'running'").fetchall()
        except Exception:  # a workspace being deleted or from another version: not ours to judge
            continue
        n += sum(not _is_dead(r) for r in rows)
    return n


def _spawn(workspace: Workspace, run_id: str) -> int:
    log = make_folder(workspace.run_dir(run_id)) / LOG_FILE
    args = ["train", "--workspace", str(workspace.path), "--run", run_id]
    return processes.spawn(args, workspace.path, log).pid


def start(workspace: Workspace, run_id: str) -> None:
    """Launch the run in a detached child process, or leave it queued when the machine's job
    slots are full. Idempotent: a run that is already running (alive) is left alone, so
    two tabs or a page rerun never start a second copy."""
    busy_elsewhere = _running_elsewhere(workspace)
    with workspace.connect(write=True) as c:  # BEGIN IMMEDIATE: one claimer at a time
        row = _job_row(c, run_id)
        if row["state"] == "running" and not _is_dead(row):
            return
        if row["state"] == "done":
            return
        running = c.execute("SELECT run_id, state, pid, heartbeat FROM jobs WHERE state = 'running'").fetchall()
        busy = busy_elsewhere + sum(not _is_dead(r) for r in running if r["run_id"] != run_id)
        now = now_iso()
        if busy >= max_jobs():
            c.execute(
                "UPDATE jobs SET state = 'queued', pid = NULL, error = NULL, cancel_requested = 0, "
                "queued_at = CASE WHEN state = 'queued' THEN queued_at ELSE ? END WHERE run_id = ?",
                (now, run_id),
            )
            return
        pid = _spawn(workspace, run_id)
        c.execute(
            "UPDATE jobs SET state = 'running', pid = ?, heartbeat = ?, started_at = ?, ended_at = NULL, "
            "error = NULL, cancel_requested = 0, progress = NULL WHERE run_id = ?",
            (pid, time.time(), now, run_id),
        )


def start_next(workspace: Workspace) -> str | None:
    """Start the oldest queued run of this machine's workspaces if a slot is free."""
    candidates = []
    for w in _siblings(workspace):
        try:
            with w.connect() as c:
                for r in c.execute("SELECT run_id, queued_at FROM jobs WHERE state = 'queued'"):
                    candidates.append((r["queued_at"], w, r["run_id"]))
        except Exception:
            continue
    for _, w, run_id in sorted(candidates, key=lambda t: (t[0], t[2])):
        start(w, run_id)
        with w.connect() as c:
            if _job_row(c, run_id)["state"] == "running":
                return run_id
        return None  # slots are full
    return None


def cancel(workspace: Workspace, run_id: str) -> None:
    """Ask the run to stop: it checkpoints at its next step and ends 'cancelled'."""
    with workspace.connect(write=True) as c:
        row = _job_row(c, run_id)
        if row["state"] == "queued" or (row["state"] == "running" and _is_dead(row)):
            c.execute(
                "UPDATE jobs SET state = 'cancelled', pid = NULL, ended_at = ? WHERE run_id = ?",
                (now_iso(), run_id),
            )
            return
        if row["state"] != "running":
            return
        c.execute("UPDATE jobs SET cancel_requested = 1 WHERE run_id = ?", (run_id,))
        pid = row["pid"]
        if row["progress"] is None:
            # The child has not written its first heartbeat, so its SIGTERM handler may not be
            # installed yet (it is still importing torch): a signal now would kill it outright.
            # It reads cancel_requested with that first heartbeat instead.
            return
    try:
        os.kill(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass  # the heartbeat thread also sees cancel_requested


def resume(workspace: Workspace, run_id: str) -> None:
    """Continue a cancelled, failed or dead run from its last checkpoint."""
    with workspace.connect(write=True) as c:
        row = _job_row(c, run_id)
        if row["state"] == "running" and not _is_dead(row):
            return
        if row["state"] == "done":
            raise JobError(f"run {run_id!r} has already finished")
        if row["state"] == "running" and pid_alive(row["pid"], run_id):
            # Hung (stale heartbeat) but alive, e.g. suspended: it must not wake up and
            # write over the resumed run's checkpoint.
            try:
                os.kill(row["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
        c.execute(
            "UPDATE jobs SET state = 'queued', pid = NULL, error = NULL, cancel_requested = 0, "
            "queued_at = ? WHERE run_id = ?",
            (now_iso(), run_id),
        )
    start(workspace, run_id)


def _status_from(row, job, last_metrics: dict | None) -> RunStatus:
    config = ModelConfig.from_json(row["config"])
    progress = json.loads(job["progress"]) if job["progress"] else {}
    state = "dead" if _is_dead(job) else job["state"]
    error = job["error"]
    age = time.time() - job["heartbeat"] if job["heartbeat"] is not None else None
    epochs = config.intervals  # evaluation intervals (the rows of the epochs table)
    last = last_metrics or {}
    eta = progress.get("eta_s") if state == "running" else None
    if eta is not None and job["heartbeat"] is not None:
        eta = max(0.0, eta - (time.time() - progress.get("at", job["heartbeat"])))
    if state == "dead" and not error:
        error = "the training process stopped without reporting; resume it to continue from the last checkpoint"
    return RunStatus(
        run_id=row["id"], name=row["name"], kind=row["kind"], state=state,
        epoch=int(last.get("epoch", 0)), epochs=epochs, eta_s=eta, metrics=last, error=error,
        heartbeat_age_s=age, pid=job["pid"],
        step=int(progress.get("step", 0)) if state == "running" else 0,
        steps=int(progress.get("steps", 0)), created_at=row["created_at"], config=config,
        summary=json.loads(row["summary"]) if row["summary"] else {},
        phase=str(progress.get("phase", "")) if state == "running" else "",
    )


_STATUS_SQL = """
SELECT r.*, j.run_id AS j_run_id, j.state, j.pid, j.heartbeat, j.progress, j.error AS j_error,
       (SELECT metrics FROM epochs e WHERE e.run_id = r.id ORDER BY epoch DESC LIMIT 1) AS last
FROM runs r JOIN jobs j ON j.run_id = r.id
"""


def _from_joined(r) -> RunStatus:
    job = {"run_id": r["j_run_id"], "state": r["state"], "pid": r["pid"], "heartbeat": r["heartbeat"],
           "progress": r["progress"], "error": r["j_error"]}
    return _status_from(r, job, json.loads(r["last"]) if r["last"] else None)


def status(workspace: Workspace, run_id: str) -> RunStatus:
    processes.reap()  # pages poll this: finished children do not linger as zombies
    with workspace.connect() as c:
        r = c.execute(_STATUS_SQL + " WHERE r.id = ?", (run_id,)).fetchone()
    if r is None:
        raise JobError(f"no run {run_id!r} in workspace {workspace.name!r}")
    return _from_joined(r)


def list_runs(workspace: Workspace) -> list[RunStatus]:
    """Every run of the workspace, newest first."""
    processes.reap()  # pages poll this: finished children do not linger as zombies
    with workspace.connect() as c:
        rows = c.execute(_STATUS_SQL + " ORDER BY r.created_at DESC, r.id DESC").fetchall()
    return [_from_joined(r) for r in rows]


def epoch_metrics(workspace: Workspace, run_id: str) -> list[dict]:
    """One dict per finished epoch: epoch, train_loss, val_loss, recon, kl, val_recon, val_kl,
    val_psnr, val_ssim, kl_per_dim (list), active_units, seconds, beta, images_per_s."""
    with workspace.connect() as c:
        rows = c.execute("SELECT metrics FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,)).fetchall()
    return [json.loads(r["metrics"]) for r in rows]


def delete_run(workspace: Workspace, run_id: str) -> None:
    """Remove the run: its process (killed if running), rows and folder. No undo."""
    run_dir = workspace.run_dir(run_id)
    with workspace.connect(write=True) as c:
        row = _job_row(c, run_id)
        pid = row["pid"] if row["state"] == "running" and pid_alive(row["pid"], run_id) else None
        c.execute("DELETE FROM runs WHERE id = ?", (run_id,))  # epochs, jobs, … cascade
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 5
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    if run_dir.exists():
        trash = run_dir.with_name(f".deleting-{run_id}-{os.getpid()}")
        os.rename(run_dir, trash)
        shutil.rmtree(trash, ignore_errors=True)


# --- inside the child: run one job ----------------------------------------------------
def encode_after_training(workspace: Workspace, run_id: str, progress=None) -> bool:
    """Encode every crop with the finished model, so Explore's map and Label's uncertainty order
    are ready when the run shows 'done' (no "Compute latents" click). Runs before the run is
    marked done; a failure here is logged and returns False, never failing a trained run: the
    pages then offer to encode by hand."""
    from facelab.space.latent import encode_run

    def step(done: int, total: int) -> None:
        if progress is not None:
            progress({"phase": LATENTS_PHASE, "done": done, "total": total})

    try:
        encode_run(workspace, run_id, progress=step)
    except Exception:  # noqa: BLE001 - the model is trained and saved; latents can wait
        traceback.print_exc()
        return False
    return True


def warm_caches(workspace: Workspace, run_id: str) -> None:
    """What the pages first read of a finished run, made here (a few seconds) so their first
    visit reads it from the workspace's caches: the Train page's mean-crop and PCA-32 figures,
    and Explore's PCA map and default clustering (on 15,000 crops, importing scikit-learn to
    make those took over a second of Explore's first visit on a fresh server)."""
    from facelab.model import quality
    from facelab.space import clusters, projection

    def explore() -> None:
        n = len(projection.get_projection(workspace, run_id, projection.ProjectionSettings(method="pca")).ids)
        if n >= 3:  # Explore draws no map below that
            clusters.cluster_run(workspace, run_id, clusters.METHODS[0], clusters.k_range(n)[1])

    for warm in (lambda: quality.baselines(workspace, status(workspace, run_id).config.image_size), explore):
        try:
            warm()
        except Exception:  # noqa: BLE001 - only caches: the pages make them themselves otherwise
            traceback.print_exc()


def _claim(workspace: Workspace, run_id: str) -> None:
    """Mark the run as ours, refusing when another live process holds it."""
    me = os.getpid()
    with workspace.connect(write=True) as c:
        row = _job_row(c, run_id)
        if row["state"] == "running" and row["pid"] != me and not _is_dead(row):
            raise JobError(f"run {run_id!r} is already running (pid {row['pid']})")
        if row["state"] == "done":
            raise JobError(f"run {run_id!r} has already finished")
        c.execute(
            "UPDATE jobs SET state = 'running', pid = ?, heartbeat = ?, error = NULL, "
            "ended_at = NULL, started_at = COALESCE(started_at, ?) WHERE run_id = ?",
            (me, time.time(), now_iso(), run_id),
        )


def _finish(workspace: Workspace, run_id: str, state: str, error: str | None = None) -> None:
    with workspace.connect(write=True) as c:
        c.execute(
            "UPDATE jobs SET state = ?, error = ?, ended_at = ?, heartbeat = ? WHERE run_id = ? AND pid = ?",
            (state, error, now_iso(), time.time(), run_id, os.getpid()),
        )


@dataclass
class _JobBeat:
    """What a training job's heartbeat writes: the time and the latest progress; it also
    notices a cancel request stored in the database (in case the signal was missed)."""

    workspace: Workspace
    run_id: str
    stop_flag: threading.Event
    progress: dict = field(default_factory=dict)

    def __call__(self) -> None:
        with self.workspace.connect(write=True) as c:
            c.execute(
                "UPDATE jobs SET heartbeat = ?, progress = ? WHERE run_id = ? AND pid = ?",
                (time.time(), json.dumps(self.progress), self.run_id, os.getpid()),
            )
            row = c.execute("SELECT cancel_requested FROM jobs WHERE run_id = ?", (self.run_id,)).fetchone()
        if row is not None and row["cancel_requested"]:
            self.stop_flag.set()


def run_job(workspace: Workspace, run_id: str, *, echo=None) -> dict:
    """Train the run in this process as a tracked job: claim it, heartbeat, handle SIGTERM /
    SIGINT by checkpointing, record the outcome, then start the next queued run.

    `facelab train --run R` calls this, whether started by `start()` or typed in a shell.
    """
    from facelab.model.train import TrainError, train_run

    stop = threading.Event()
    _claim(workspace, run_id)
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    job = _JobBeat(workspace, run_id, stop)
    hb = processes.Heartbeat(job)
    hb.beat()  # the first heartbeat: from now on `cancel` may signal; sees an early cancel request
    hb.start()

    def progress(p: dict) -> None:
        if echo is not None:
            echo(p)
        p = {k: v for k, v in p.items() if k != "metrics"}
        job.progress = {**p, "at": time.time()}
        if p.get("phase") in ("epoch", "start") or (p.get("phase") == LATENTS_PHASE and not p.get("done")):
            hb.beat()

    summary: dict = {}
    try:
        summary = train_run(workspace, run_id, progress=progress, should_stop=stop.is_set)
        if summary.get("state", "done") == "done":
            encode_after_training(workspace, run_id, progress)
            warm_caches(workspace, run_id)
        _finish(workspace, run_id, summary.get("state", "done"))
    except (TrainError, WorkspaceError, ValueError) as e:
        _finish(workspace, run_id, "failed", str(e))
        summary = {"state": "failed", "error": str(e)}
    except BaseException as e:
        traceback.print_exc()
        msg = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        _finish(workspace, run_id, "failed", msg)
        summary = {"state": "failed", "error": msg}
    finally:
        hb.stop()
        for s, handler in old.items():
            signal.signal(s, handler)
    try:
        start_next(workspace)
    except Exception:
        traceback.print_exc()
    return summary

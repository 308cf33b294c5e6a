"""The background processes facelab starts (training jobs, map workers): one way to start
them, one heartbeat, one rule for when a worker is dead; liveness, reaping, stopping, and the
owner pid that hidden work folders carry in their names.

Where a worker keeps its status differs by what it does: a training job in the `jobs` table
(its run's row, with cancel requests and progress), a map worker in a JSON file beside its
cache (a map belongs to latents, not to a database row). Both start with `spawn`, beat with
`Heartbeat`, and are judged dead by `dead`.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

HEARTBEAT_S = 2.0  # a worker writes its heartbeat this often
STALE_S = 30.0  # a heartbeat older than this means the worker hung or died

# Children this process started, with the workspace folder they work in. Polling them reaps
# the finished ones, so no defunct (zombie) entry lingers under a long-lived server; only
# our own Popen objects are polled, never os.wait() on children someone else started.
_children: list[tuple[subprocess.Popen, Path]] = []
_lock = threading.Lock()


def track(proc: subprocess.Popen, folder: str | Path) -> None:
    """Remember a child started for the workspace at `folder` (so it is reaped and stoppable)."""
    with _lock:
        _children.append((proc, Path(folder)))


def reap() -> None:
    """Collect the exit status of every finished child this process started."""
    with _lock:
        _children[:] = [(p, f) for p, f in _children if p.poll() is None]


def children_in(folder: str | Path) -> list[int]:
    """Pids of this process's live children working in the workspace at `folder`."""
    reap()
    folder = Path(folder)
    with _lock:
        return [p.pid for p, f in _children if f == folder]


def spawn(args: list[str], folder: str | Path, log: str | Path) -> subprocess.Popen:
    """Start `python -m facelab <args>` for the workspace at `folder` in its own session (a
    closed browser tab or Ctrl-C in the server's terminal does not kill it), its output appended
    to `log`; tracked so it is reaped when done and stopped if the workspace is deleted."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # OMP_WAIT_POLICY: see facelab/__init__.py
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "facelab", *args], stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True, close_fds=True, env=env,
            cwd=str(Path(__file__).resolve().parents[2]),
        )
    track(proc, folder)
    return proc


class Heartbeat:
    """Calls `beat()` every HEARTBEAT_S on a side thread until `stop()`; after `stop()` returns
    no beat runs, so a worker's final status is never overwritten by a late "running". A beat
    that fails on the thread (a busy database) is retried at the next one."""

    def __init__(self, beat: Callable[[], None], every: float = HEARTBEAT_S) -> None:
        self._beat, self._every = beat, every
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True, name="facelab-heartbeat")

    def beat(self) -> None:
        """One beat now (its errors are the caller's)."""
        with self._lock:
            if not self._done.is_set():
                self._beat()

    def _run(self) -> None:
        while not self._done.wait(self._every):
            try:
                self.beat()
            except Exception:
                pass

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._done.set()


def dead(pid: int | None, heartbeat: float | None, marker: str | None = None) -> bool:
    """A worker that says it is running is dead when its process is gone or its heartbeat is
    older than STALE_S (hung, or suspended); `marker` as in `pid_alive`."""
    if not pid_alive(pid, marker):
        return True
    return heartbeat is not None and time.time() - heartbeat > STALE_S


def pid_alive(pid: int | None, marker: str | None = None) -> bool:
    """True when `pid` is a live process, not a zombie; with `marker`, also (on Linux) one whose
    command line names facelab or the marker, so a recycled pid is not mistaken for ours."""
    if not pid:
        return False
    reap()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return False
            if marker is not None and pid != os.getpid():
                cmd = (proc / "cmdline").read_bytes()
                return b"facelab" in cmd or marker.encode() in cmd
        except OSError:
            return False
    return True


def stop(pids: list[int], timeout_s: float = 5.0) -> None:
    """SIGKILL each pid (never this process) and wait until they are gone."""
    pids = [p for p in set(pids) if p and p != os.getpid()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + timeout_s
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)


# --- hidden work folders named for their owner ------------------------------------------------
def owned_name(prefix: str, name: str) -> str:
    """`<prefix><name>.<pid>.<random>`: a hidden work folder or file of this process. Names
    never hold a dot, so `owner_pid` reads the pid back unambiguously."""
    return f"{prefix}{name}.{os.getpid()}.{secrets.token_hex(4)}"


def owner_pid(entry: str, prefix: str) -> int | None:
    """The pid `owned_name` put in `entry`, or None for a name it did not make."""
    if not entry.startswith(prefix):
        return None
    parts = entry[len(prefix):].split(".")
    if len(parts) < 3 or not parts[1].isdigit():
        return None
    return int(parts[1])


def owner_gone(entry: str, prefix: str) -> bool:
    """True when `entry` was made by `owned_name` in a process that is no longer running."""
    pid = owner_pid(entry, prefix)
    return pid is not None and not pid_alive(pid)

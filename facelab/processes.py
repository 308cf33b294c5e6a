"""Whether a background process facelab started (a training job, a map worker) still runs."""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int | None, marker: str | None = None) -> bool:
    """True when `pid` is a live process, not a zombie; with `marker`, also (on Linux) one whose
    command line names facelab or the marker, so a recycled pid is not mistaken for ours."""
    if not pid:
        return False
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

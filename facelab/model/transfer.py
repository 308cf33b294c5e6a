"""Moving a trained run between workspaces or machines: a folder of plain files.

An exported run is `config.json` + `model.pt` (a state_dict) or `pca.npz`, and `run.json`
(its name, summary and per-epoch metrics). Import checks everything before it touches the
workspace: the config parses, the weights load with `weights_only=True` into the network the
config describes, and the image size matches the workspace's crops. Nothing is unpickled.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from facelab.model.models import CONFIG_FILE, WEIGHTS_FILES, ModelError, load_codec, load_config
from facelab.store.db import now_iso
from facelab.store.storage import write_json_atomic
from facelab.store.workspace import NAME_RE, Workspace, WorkspaceError

RUN_FILE = "run.json"


class TransferError(WorkspaceError):
    """A run folder that cannot be imported; the message says why."""


def export_run(workspace: Workspace, run_id: str, dest: str | Path) -> Path:
    """Write the run's files to `dest` (a folder), ready for `import_run` elsewhere."""
    from facelab.model import jobs

    status = jobs.status(workspace, run_id)
    if status.state != "done":
        raise TransferError(f"run {run_id!r} is {status.state}; only a finished run can be exported")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    src = workspace.run_dir(run_id)
    for name in (CONFIG_FILE, *WEIGHTS_FILES):
        if (src / name).exists():
            shutil.copy2(src / name, dest / name)
    write_json_atomic(dest / RUN_FILE, {
        "id": run_id, "name": status.name, "summary": status.summary,
        "epochs": jobs.epoch_metrics(workspace, run_id),
    })
    return dest


def import_run(workspace: Workspace, src: str | Path, run_id: str | None = None) -> str:
    """Add an exported run to the workspace as a finished run; returns its id."""
    src = Path(src)
    try:
        config = load_config(src)
        load_codec(src)  # the weights must load into the configured network
    except (ModelError, OSError, ValueError) as e:
        raise TransferError(f"{src} is not a usable run folder: {e}") from None
    crop = workspace.get_meta("crop_size")
    if crop is not None and crop != config.image_size:
        raise TransferError(f"the run was trained on {config.image_size} px crops, this workspace has {crop} px")
    try:
        meta = json.loads((src / RUN_FILE).read_text()) if (src / RUN_FILE).exists() else {}
    except ValueError as e:
        raise TransferError(f"{src / RUN_FILE} is not valid JSON: {e}") from None
    run_id = run_id or meta.get("id") or f"{config.kind}-imported"
    if not NAME_RE.fullmatch(run_id):
        run_id = re.sub(r"[^A-Za-z0-9_-]", "-", run_id)[:64].strip("-") or "imported"
    dest = workspace.run_dir(run_id)
    if dest.exists():
        raise TransferError(f"this workspace already has a run {run_id!r}")
    tmp = dest.with_name(f".import-{run_id}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in (CONFIG_FILE, *WEIGHTS_FILES):
        if (src / name).exists():
            shutil.copy2(src / name, tmp / name)
    epochs = meta.get("epochs", [])
    now = now_iso()
    try:
        with workspace.connect(write=True) as c:
            c.execute(
                "INSERT INTO runs(id, name, kind, config, created_at, updated_at, summary) VALUES(?, ?, ?, ?, ?, ?, ?)",
                (run_id, meta.get("name") or run_id, config.kind, config.to_json(), now, now,
                 json.dumps(meta.get("summary") or {})),
            )
            c.execute("INSERT INTO jobs(run_id, state, queued_at, ended_at) VALUES(?, 'done', ?, ?)",
                      (run_id, now, now))
            c.executemany("INSERT INTO epochs(run_id, epoch, metrics) VALUES(?, ?, ?)",
                          [(run_id, int(e["epoch"]), json.dumps(e)) for e in epochs])
            tmp.rename(dest)  # inside the transaction: a failed rename rolls the rows back
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return run_id

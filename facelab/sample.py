"""The bundled sample: a ready workspace built from the shipped clip and model.

`facelab sample` (run by `make run`) creates the "sample" workspace on first start: it builds
the crops from `sample/WolfgangLanger_Pexels.mp4` (every frame, as the model was trained),
imports the β-VAE from `models/sample/`, labels frames by the time spans in
`models/sample/labels.json`, encodes every crop, and stores the smile direction, so a newcomer
sees a map, clusters, labels and a working Shift page without uploading anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from facelab.data import dataset, labels
from facelab.edits import directions
from facelab.model import jobs, transfer
from facelab.space import latent
from facelab.store import workspace as ws

NAME = "sample"
REPO = Path(__file__).resolve().parents[1]
VIDEO = REPO / "sample" / "WolfgangLanger_Pexels.mp4"
MODEL_DIR = REPO / "models" / "sample"
RUN_ID = "sample-betavae"
BUILD = dataset.BuildSettings(fps=24.0)  # every frame of the 23.98 fps clip


def label_spans(path: Path = MODEL_DIR / "labels.json") -> list[dict]:
    return json.loads(path.read_text())["spans"]


def apply_label_spans(w: ws.Workspace, spans: list[dict]) -> int:
    """Label every crop whose time stamp falls in a span; returns how many labels were set."""
    faces = dataset.faces_table(w)
    n = 0
    for span in spans:
        ids = [f["id"] for f in faces if span["from"] <= f["t_seconds"] <= span["to"]]
        n += len(labels.set_labels(w, ids, span["label"]).face_ids)
    return n


def ensure_sample(home: str | Path | None = None, reset: bool = False,
                  say: Callable[[str], None] = print) -> ws.Workspace:
    """The sample workspace, created from the shipped files if absent (or if `reset`)."""
    if NAME in ws.list_workspaces(home):
        if not reset:
            w = ws.open_workspace(NAME, home)
            _refresh_direction(w, say)
            return w
        ws.delete(NAME, home)
    say("creating the sample workspace from the bundled clip and model…")
    w = ws.create(NAME, home)
    try:
        report = dataset.build(w, VIDEO, BUILD)
        say(f"  {report.kept} face crops from {VIDEO.name}")
        if (MODEL_DIR / "config.json").exists():
            transfer.import_run(w, MODEL_DIR, RUN_ID)
            latent.encode_run(w, RUN_ID)
            say(f"  imported the trained model {RUN_ID} and encoded every crop")
        say(f"  {apply_label_spans(w, label_spans())} labels from models/sample/labels.json")
        if (MODEL_DIR / "config.json").exists():
            _learn_smile(w)
            say("  stored the smile direction")
            jobs.warm_caches(w, RUN_ID)  # the Train page's baselines, Explore's map and clusters, ready
    except BaseException:
        ws.delete(NAME, home)  # never leave a half-made sample behind
        raise
    return w


def _learn_smile(w: ws.Workspace) -> None:
    """The smile direction fitted on the labels as they are now and stored, as the Shift page's
    "Learn direction" does with its defaults."""
    directions.save_direction(w, RUN_ID, directions.fit_label_direction(w, RUN_ID, "smile"))


def _refresh_direction(w: ws.Workspace, say: Callable[[str], None]) -> None:
    """The sample's smile direction learnt again if an older facelab stored it (`Direction.stale`),
    from the labels as they are now, as the Shift page's "Learn direction" would; once."""
    try:
        smile = directions.load_direction(w, RUN_ID, "smile")
        if smile.stale:
            _learn_smile(w)
            say("  learnt the smile direction again (an older facelab stored it with a weaker slider)")
    except directions.DirectionError as e:  # deleted, or its labels are gone: leave it to the user
        say(f"  the smile direction was left as it is: {e}")

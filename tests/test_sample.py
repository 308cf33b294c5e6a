"""The bundled sample: a ready workspace from the shipped clip and model, made once, resettable."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from facelab import sample
from facelab.cli import main as cli
from facelab.data import labels
from facelab.edits import directions
from facelab.model import jobs
from facelab.space import latent
from facelab.store import workspace as ws


def test_sample_workspace_is_ready_to_explore(home: Path) -> None:
    assert cli(["sample"]) == 0
    w = ws.open_workspace("sample")
    assert w.summary()["faces"] >= 450
    run = jobs.status(w, sample.RUN_ID)
    assert run.state == "done" and run.metrics["val_psnr"] > 18
    assert latent.load_latents(w, sample.RUN_ID) is not None, "latents must be ready for the map"
    counts = labels.counts(w)
    assert counts["smile"] > 150 and counts["sad"] > 30 and counts["neutral"] > 10
    smile = directions.load_direction(w, sample.RUN_ID, "smile")
    assert smile.vector.shape == (32,)

    assert smile.normal is not None and not smile.stale

    # A second start is quick and keeps what the user did; --reset starts over.
    labels.set_labels(w, [0], "surprise")
    assert cli(["sample"]) == 0
    assert labels.counts(w)["surprise"] == 1
    # ... except a smile direction an older facelab stored (no normal): learnt again, once
    old = replace(smile, spec={k: v for k, v in smile.spec.items() if k != "normal"})
    directions.save_direction(w, sample.RUN_ID, old)
    assert directions.load_direction(w, sample.RUN_ID, "smile").stale
    assert cli(["sample"]) == 0
    assert not directions.load_direction(w, sample.RUN_ID, "smile").stale
    assert cli(["sample", "--reset"]) == 0
    assert labels.counts(ws.open_workspace("sample"))["surprise"] == 0

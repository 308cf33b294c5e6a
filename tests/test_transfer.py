"""Exporting a run and importing it elsewhere; broken run folders are refused and change nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facelab.model import jobs, transfer
from facelab.model.models import BetaVAE, ModelConfig, load_codec, save_model
from facelab.store import workspace as ws


def make_run_folder(path: Path, size: int = 64) -> ModelConfig:
    config = ModelConfig(latent_dim=4, image_size=size, steps=1, arch="paper")
    torch.manual_seed(0)
    save_model(path, BetaVAE(config), config)
    (path / transfer.RUN_FILE).write_text(json.dumps({"name": "tiny", "epochs": [{"epoch": 1, "val_psnr": 9.5}]}))
    return config


def test_import_then_export_round_trip(home: Path, tmp_path: Path) -> None:
    make_run_folder(tmp_path / "src")
    w = ws.create("a")
    run_id = transfer.import_run(w, tmp_path / "src", "tiny-run")
    s = jobs.status(w, run_id)
    assert (s.state, s.name, s.metrics["val_psnr"]) == ("done", "tiny", 9.5)
    transfer.export_run(w, run_id, tmp_path / "out")
    x = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    np.testing.assert_allclose(load_codec(tmp_path / "src").encode(x)[0], load_codec(tmp_path / "out").encode(x)[0])


@pytest.mark.parametrize("damage", ["weights", "config", "pickle"])
def test_broken_run_folder_is_refused_and_changes_nothing(home: Path, tmp_path: Path, damage: str) -> None:
    src = tmp_path / "src"
    make_run_folder(src)
    if damage == "weights":
        (src / "model.pt").write_bytes(b"\x00" * 100)
    elif damage == "config":
        (src / "config.json").write_text('{"kind": "betavae", "latent_dim": 7, "nonsense": 1}')
    else:  # a pickle that runs a command when loaded: must be refused, never unpickled
        import os
        import pickle

        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {tmp_path / 'pwned'}",))

        (src / "model.pt").write_bytes(pickle.dumps({"w": Evil()}))
    w = ws.create("b")
    with pytest.raises(transfer.TransferError):
        transfer.import_run(w, src, "x")
    assert jobs.list_runs(w) == []
    assert not any(w.runs_dir.iterdir())
    assert not (tmp_path / "pwned").exists()


def test_image_size_must_match_the_workspace(home: Path, tmp_path: Path) -> None:
    make_run_folder(tmp_path / "src", size=32)
    w = ws.create("c")
    w.set_meta("crop_size", 64)
    with pytest.raises(transfer.TransferError, match="32 px"):
        transfer.import_run(w, tmp_path / "src", "x")


def test_train_elsewhere_and_bring_the_run_back_with_the_cli(tmp_path: Path, monkeypatch, capsys) -> None:
    """README's GPU recipe: export the workspace, import it on the other machine, train there,
    export the run, import it back here."""
    from facelab.cli import main as cli

    from builders import blob_images, training_workspace

    here, there = tmp_path / "here", tmp_path / "there"
    monkeypatch.setenv("FACELAB_HOME", str(here))
    w = training_workspace("me", blob_images(40, size=64, seed=1))  # the size `train` defaults to: run-import checks it
    zip_path = tmp_path / "me.zip"
    assert cli(["export", "-w", "me", "--out", str(zip_path)]) == 0
    assert cli(["--home", str(there), "import", str(zip_path)]) == 0
    assert cli(["--home", str(there), "train", "-w", "me", "--kind", "vae", "--latent", "4", "--steps", "3",
                "--batch", "16"]) == 0
    (run_id,) = [r.run_id for r in jobs.list_runs(ws.open_workspace("me", there))]
    run_dir = tmp_path / "run"
    assert cli(["--home", str(there), "run-export", "-w", "me", run_id, "--out", str(run_dir)]) == 0
    assert cli(["run-export", "-w", "me", run_id, "--out", str(run_dir)]) == 2  # not here, and out is taken
    assert cli(["run-import", "-w", "me", str(run_dir)]) == 0
    s = jobs.status(w, run_id)
    assert s.state == "done" and s.metrics["val_psnr"] > 0
    assert len(jobs.epoch_metrics(w, run_id)) == 1
    assert cli(["run-import", "-w", "me", str(run_dir)]) == 2  # twice: refused, with a reason
    assert "already has a run" in capsys.readouterr().err

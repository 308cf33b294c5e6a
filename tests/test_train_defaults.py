"""The default training recipe: one set of defaults, a step budget that leaves the prior on a
short real clip, and runs that refuse or stop on non-finite numbers instead of storing NaNs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from facelab.cli import main as cli
from facelab.data import dataset
from facelab.model import jobs, quality
from facelab.model.models import BetaVAE, ModelConfig, ModelError, load_codec, save_model
from facelab.model.train import load_images, split_ids
from facelab.store import workspace as ws
from facelab.ui import state

from builders import SMALL, blob_images, training_workspace
from conftest import REPO

LEGACY_CONFIG = ('{"batch_size": 64, "beta": 1.0, "compile": false, "epochs": 300, "image_size": 64, '
                 '"kind": "betavae", "kl_warmup_epochs": 0, "latent_dim": 32, "lr": 0.001, "recon": "bce", '
                 '"seed": 0}')


pytestmark = pytest.mark.usefixtures("one_thread")  # bit-equal results, no crawling


def test_page_cli_and_config_share_one_set_of_defaults(home: Path) -> None:
    d = ModelConfig()
    assert (d.steps, d.beta) == (1500, 1.0)  # a budget in steps, and β = 1 (see ModelConfig)
    training_workspace("defaults", blob_images(30, size=64))
    at = AppTest.from_file(str(REPO / "pages" / "train.py"), default_timeout=60)
    at.session_state[state.WORKSPACE] = "defaults"
    at.run()
    assert not at.exception, at.exception
    form = {"kind": at.selectbox(key="fl_kind").value, "arch": at.selectbox(key="fl_arch").value,
            "beta": at.number_input(key="fl_beta").value, "latent_dim": at.selectbox(key="fl_latent").value,
            "steps": at.number_input(key="fl_steps").value, "batch_size": at.selectbox(key="fl_batch").value,
            "recon": at.selectbox(key="fl_recon").value, "lr": at.number_input(key="fl_lr").value,
            "seed": at.number_input(key="fl_seed").value, "augment": at.selectbox(key="fl_augment").value}
    assert form == {k: getattr(d, k) for k in form}

    from facelab.cli import make_parser
    from facelab.cli.train import _config_from_args

    config, given = _config_from_args(make_parser().parse_args(["train", "-w", "defaults"]))
    assert given == {} and config == d


def test_nan_and_infinite_settings_are_refused(home: Path, capsys) -> None:
    for bad in ({"beta": math.nan}, {"lr": math.inf}, {"lr": -math.inf}, {"grad_clip": math.nan}):
        with pytest.raises(ModelError, match="must be a finite number"):
            ModelConfig(**bad)
    training_workspace("nan", blob_images(30))
    for flag, value, words in (("--lr", "nan", "learning rate"), ("--beta", "inf", "β"),
                               ("--grad-clip", "nan", "gradient clip")):
        assert cli(["train", "-w", "nan", flag, value]) == 2
        err = capsys.readouterr().err
        assert f"{words} must be a finite number" in err and "Traceback" not in err
    assert cli(["train", "-w", "nan", "--epochs", "5"]) == 2
    assert "--steps" in capsys.readouterr().err
    assert jobs.list_runs(ws.open_workspace("nan")) == []  # nothing was created


def test_a_non_finite_loss_ends_the_run_failed_with_its_reason(home: Path) -> None:
    w = training_workspace("diverge", blob_images(60))
    # A finite but absurd learning rate: the weights overflow within the first interval.
    run_id = jobs.create_run(w, ModelConfig(**{**SMALL, "lr": 1e30, "steps": 20, "eval_every": 5}))
    summary = jobs.run_job(w, run_id)
    s = jobs.status(w, run_id)
    assert summary["state"] == s.state == "failed"
    assert "training diverged: the loss became" in s.error and "lower learning rate" in s.error
    assert not (w.run_dir(run_id) / "model.pt").exists()  # no NaN model stored
    rows = jobs.epoch_metrics(w, run_id)
    assert all(math.isfinite(r["train_loss"]) for r in rows)


def test_a_run_from_before_step_budgets_still_loads(tmp_path: Path) -> None:
    config = ModelConfig.from_json(LEGACY_CONFIG)
    assert (config.arch, config.legacy_epochs, config.lr_schedule, config.intervals) == ("paper", 300, "constant", 300)
    # runs from before augmentation keep training (and resuming) without it
    assert config.augment == "none" and ModelConfig.from_json('{"steps": 900}').augment == "none"
    assert ModelConfig().augment == "shift"  # measured better on every clip (benchmarks/train_quality.py)
    torch.manual_seed(0)
    save_model(tmp_path, BetaVAE(config), config)
    (tmp_path / "config.json").write_text(LEGACY_CONFIG)  # exactly as such runs wrote it
    codec = load_codec(tmp_path)
    assert codec.decode(np.zeros((2, 32), np.float32)).shape == (2, 64, 64, 3)


def test_default_recipe_leaves_the_prior_on_a_real_150_crop_clip(home: Path) -> None:
    w = ws.create("short")
    report = dataset.build(w, REPO / "sample" / "WolfgangLanger_Pexels.mp4", dataset.BuildSettings(fps=7.5))
    assert 130 <= report.kept <= 170
    config = ModelConfig(steps=200, eval_every=100)  # the defaults, on a reduced budget
    summary = jobs.run_job(w, jobs.create_run(w, config))
    assert summary["state"] == "done", summary
    split = split_ids(w)
    base = quality.compute_baselines(load_images(w, split.train_ids, 64), load_images(w, split.val_ids, 64))
    (s,) = jobs.list_runs(w)
    assert s.metrics["val_psnr"] >= base["mean_crop_psnr"] + 4.0, (s.metrics["val_psnr"], base)
    assert s.metrics["active_units"] >= config.latent_dim // 4

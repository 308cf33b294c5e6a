"""Training: splits, the loop learns, exact mid-epoch resume, train_run end to end, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from facelab.model.jobs import create_run, epoch_metrics
from facelab.model.models import ModelConfig, load_codec
from facelab.model.train import CHECKPOINT_FILE, Trainer, TrainError, split_ids, train_run
from facelab.store import workspace as ws

from builders import SMALL, blob_images, real_crops, training_workspace

pytestmark = pytest.mark.usefixtures("one_thread")  # bit-equal results, no crawling


def test_split_uses_the_column_and_skips_deleted(home) -> None:
    w = training_workspace("s", blob_images(50), deleted=(0, 45))
    s = split_ids(w)
    assert s.val_ids.tolist() == [40, 41, 42, 43, 44, 46, 47, 48, 49]
    assert 0 not in s.train_ids and len(s.train_ids) == 39 and s.note == ""


def test_split_falls_back_to_the_last_tenth_by_time(home) -> None:
    w = training_workspace("f", blob_images(30), val_block=None)
    s = split_ids(w)
    assert s.val_ids.tolist() == [27, 28, 29]
    assert "last 3 by time" in s.note


def test_split_falls_back_when_the_held_out_blocks_caught_too_few_faces(home) -> None:
    w = training_workspace("few", blob_images(100), val_block=None)
    with w.connect(write=True) as c:  # the held-out blocks of a short clip fell where faces were rare
        c.execute("UPDATE faces SET split = 'val' WHERE id IN (20, 21)")
    s = split_ids(w)
    assert s.val_ids.tolist() == list(range(90, 100)) and 20 in s.train_ids
    assert "only 2 of its faces are in the held-out ('val') time blocks" in s.note
    assert "last 10 by time" in s.note


def test_no_faces_is_a_clear_error(home) -> None:
    w = ws.create("empty")
    run = create_run(w, ModelConfig(**SMALL))
    with pytest.raises(TrainError, match="has no faces: build a dataset"):
        train_run(w, run)


def test_training_learns_on_generated_images() -> None:
    torch.manual_seed(0)
    images = blob_images(320)
    # The paper's network starts from noise, so its held-out PSNR must rise (the default
    # network starts at PCA's; see test_train_defaults.py).
    t = Trainer(ModelConfig(**SMALL, steps=96, eval_every=16, arch="paper"), images[:256], images[256:])
    rows = [t.run_interval() for _ in range(6)]
    assert t.done and rows[-1]["step"] == 96
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] * 0.97
    assert rows[-1]["val_psnr"] > rows[0]["val_psnr"] + 1.0
    assert len(rows[-1]["kl_per_dim"]) == 8 and rows[-1]["active_units"] >= 1


def test_augmentation_moves_whole_pixels_and_mirrors_the_same_way_at_each_step() -> None:
    """Each augmented crop is its original (or mirror image) moved by at most SHIFT_PX whole
    pixels; the same step always gives the same batch (so resuming needs no state)."""
    from facelab.model.models import SHIFT_PX, to_float_images

    images = (np.random.default_rng(0).random((24, 32, 32, 3)) * 255).astype(np.uint8)
    x = to_float_images(torch.from_numpy(images))
    seen = set()
    for mode in ("none", "shift", "flip", "flip_shift"):
        t = Trainer(ModelConfig(**{**SMALL, "augment": mode, "steps": 1}), images, images[:4])
        y = t._augment(x.clone(), 7)
        torch.testing.assert_close(y, t._augment(x.clone(), 7), rtol=0, atol=0)
        assert not torch.equal(y, t._augment(x.clone(), 8)) or mode == "none"
        reach = max(1, round(SHIFT_PX * 32 / 64))
        for i in range(len(x)):
            matches = [(f, dx, dy) for f in (False, True) for dx in range(-reach, reach + 1)
                       for dy in range(-reach, reach + 1)
                       if torch.equal(torch.roll(x[i].flip(-1) if f else x[i], (dy, dx), (1, 2))[:, 2:-2, 2:-2],
                                      y[i][:, 2:-2, 2:-2])]
            assert matches, f"{mode}: crop {i} is not a whole-pixel move of the original"
            seen.add((mode, any(f for f, _, _ in matches), any((dx, dy) != (0, 0) for _, dx, dy in matches)))
    assert ("none", False, False) in seen and not {m for m, f, moved in seen if m == "none" and (f or moved)}
    assert ("shift", False, True) in seen and not [1 for m, f, _ in seen if m == "shift" and f]
    assert ("flip", True, False) in seen and ("flip_shift", True, True) in seen


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_precision_sets_the_training_forwards_dtype_and_keeps_weights_and_losses_fp32(precision: str) -> None:
    images = blob_images(80, seed=2)
    t = Trainer(ModelConfig(**{**SMALL, "steps": 4, "eval_every": 4, "precision": precision}), images[:64], images[64:])
    seen = []
    first_conv = next(m for m in t.model.modules() if isinstance(m, torch.nn.Conv2d))  # training and held-out
    first_conv.register_forward_pre_hook(lambda m, _: seen.append(
        (m.training, torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)))
    row = t.run_interval()
    want = torch.bfloat16 if precision == "bf16" else None
    assert [dtype for training, dtype in seen if training] == [want] * 4
    assert [dtype for training, dtype in seen if not training] == [None], "held-out figures are fp32"
    assert t.precision == precision and np.isfinite(row["train_loss"]) and np.isfinite(row["val_psnr"])
    assert all(p.dtype == torch.float32 for p in t.model.parameters())


def test_auto_precision_is_bf16_only_where_the_cpu_computes_it_and_old_runs_stay_fp32() -> None:
    from facelab.model.device import native_bf16, train_dtype

    cpu = torch.device("cpu")
    assert train_dtype("auto", cpu) == (torch.bfloat16 if native_bf16(cpu) else None)
    assert train_dtype("auto", torch.device("cuda")) is None and train_dtype("fp32", cpu) is None
    assert ModelConfig().precision == "auto"
    old = json.loads(ModelConfig().to_json())
    del old["precision"]  # a run made before the setting trained in fp32, and resumes so
    assert ModelConfig.from_json(json.dumps(old)).precision == "fp32"
    with pytest.raises(ValueError, match="precision"):
        ModelConfig(precision="fp16")


@pytest.mark.parametrize("kind,recon,warmup,arch,augment", [
    ("betavae", "bce", 0, "paper", "none"), ("ae", "mse", 0, "pcares", "shift"),
    ("vae", "bce", 14, "pcares", "flip_shift"), ("betavae", "mse", 0, "pcares", "shift")])
def test_resume_mid_interval_is_exact(kind: str, recon: str, warmup: int, arch: str, augment: str) -> None:
    images = blob_images(120, seed=1)
    # 100 crops, batch 16: a pass is 7 steps, so intervals of 9 steps straddle passes.
    config = ModelConfig(**{**SMALL, "kind": kind, "recon": recon, "kl_warmup_steps": warmup,
                            "arch": arch, "steps": 25, "eval_every": 9, "lr_warmup_steps": 5,
                            "augment": augment})
    straight = Trainer(config, images[:100], images[100:])
    want = [straight.run_interval() for _ in range(3)]
    assert straight.done and [r["step"] for r in want] == [9, 18, 25]

    first = Trainer(config, images[:100], images[100:])
    first.run_interval()
    calls = iter(range(1000))
    assert first.run_interval(should_stop=lambda: next(calls) == 3) is None  # stop after 3 steps
    state = first.state_dict()
    assert (state["interval"], state["step"]) == (1, 12)

    again = Trainer(config, images[:100], images[100:])
    again.load_state_dict(state)
    got = [again.run_interval(), again.run_interval()]
    for k, v in straight.model.state_dict().items():
        torch.testing.assert_close(again.model.state_dict()[k], v, rtol=0, atol=0)
    for a, b in zip(got, want[1:]):
        for key in ("epoch", "step", "train_loss", "val_loss", "val_psnr", "kl_per_dim", "beta", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-9), key


def test_train_run_on_real_crops_records_everything(home) -> None:
    w = training_workspace("real", real_crops(30), val_block=3)
    run = create_run(w, ModelConfig(**{**SMALL, "steps": 4, "eval_every": 2}))
    updates: list[dict] = []
    summary = train_run(w, run, progress=updates.append)
    assert summary["state"] == "done" and summary["steps_done"] == 4
    assert (summary["n_train"], summary["n_val"]) == (20, 10)
    rows = epoch_metrics(w, run)
    assert [r["epoch"] for r in rows] == [1, 2]
    for key in ("train_loss", "val_loss", "recon", "kl", "val_psnr", "val_ssim", "kl_per_dim",
                "active_units", "seconds"):
        assert key in rows[-1], key
    assert [u["phase"] for u in updates if u["phase"] != "train"] == ["start", "epoch", "epoch", "done"]
    run_dir = w.run_dir(run)
    assert json.loads((run_dir / "config.json").read_text())["latent_dim"] == 8
    state = torch.load(run_dir / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert (run_dir / CHECKPOINT_FILE).exists()
    codec = load_codec(run_dir)
    mu, _ = codec.encode(real_crops(30)[:4])
    assert mu.shape == (4, 8)
    # Training again to the same number of steps is a no-op that keeps the result.
    assert train_run(w, run)["steps_done"] == 4


def test_pca_run_and_fallback_note(home) -> None:
    w = training_workspace("p", blob_images(40), val_block=None)
    run = create_run(w, ModelConfig(kind="pca", image_size=32, latent_dim=6))
    summary = train_run(w, run)
    assert summary["state"] == "done" and "held out the last 4" in summary["split_note"]
    assert summary["val_psnr"] > 15
    assert load_codec(w.run_dir(run)).config.kind == "pca"


def test_crops_of_another_size_are_resized(home) -> None:
    w = training_workspace("big", blob_images(40, size=64))
    run = create_run(w, ModelConfig(**{**SMALL, "steps": 2}))
    assert train_run(w, run)["state"] == "done"
    assert load_codec(w.run_dir(run)).decode(np.zeros((1, 8), np.float32)).shape == (1, 32, 32, 3)

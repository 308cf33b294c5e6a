"""Training: splits, the loop learns, exact mid-epoch resume, train_run end to end, errors.

`make_workspace` and `real_crops` are imported by the other training tests too.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch

from media import media_file
from facelab import workspace as ws
from facelab.db import now_iso
from facelab.jobs import create_run, epoch_metrics
from facelab.models import ModelConfig, load_codec
from facelab.storage import save_npy_atomic
from facelab.train import CHECKPOINT_FILE, Trainer, TrainError, split_ids, train_run


def make_workspace(name: str, images: np.ndarray, val_block: int | None = 5,
                   deleted: tuple[int, ...] = ()) -> ws.Workspace:
    """A workspace holding `images` as crops of one source, 10 per second; with `val_block`,
    every val_block-th block of 10 crops is held out ('val'), like the dataset builder's time
    blocks."""
    w = ws.create(name)
    save_npy_atomic(w.faces_path, images)
    with w.connect(write=True) as c:
        c.execute("INSERT INTO sources(id, name, settings, counts, created_at) "
                  "VALUES(1, 'test', '{}', '{}', ?)", (now_iso(),))
        rows = []
        for i in range(len(images)):
            split = "val" if val_block and (i // 10) % val_block == val_block - 1 else "train"
            rows.append((i, i, i / 10, images.shape[1], split, int(i in deleted)))
        c.executemany(
            "INSERT INTO faces(id, source_id, frame_index, t_seconds, x, y, w, h, split, deleted) "
            "VALUES(?, 1, ?, ?, 0, 0, ?, ?, ?, ?)",
            [(i, f, t, s, s, sp, d) for i, f, t, s, sp, d in rows],
        )
    return w


def blob_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Structured generated faces-ish images: a bright disc whose position and colour vary
    smoothly (two true factors), on a dark background, with a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    cx, cy = rng.uniform(0.3, 0.7, n), rng.uniform(0.3, 0.7, n)
    hue = rng.uniform(0, 1, n)
    disc = ((xx[None] - cx[:, None, None]) ** 2 + (yy[None] - cy[:, None, None]) ** 2) < 0.04
    colour = np.stack([hue, 1 - hue, np.full(n, 0.5)], 1)
    img = disc[..., None] * colour[:, None, None, :] * 220 + 20 + rng.normal(0, 4, (n, size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=None)
def real_crops(n: int = 30, size: int = 32) -> np.ndarray:
    """Face crops from the Pexels clip (Haar on a downscaled grey frame, largest box)."""
    import cv2

    cap = cv2.VideoCapture(str(media_file("WolfgangLanger_Pexels.mp4")))
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    crops, index = [], 0
    while len(crops) < n:
        if not cap.grab():
            break
        index += 1
        if index % 8:
            continue
        ok, frame = cap.retrieve()
        small = cv2.resize(frame, (320, 180))
        boxes = cascade.detectMultiScale(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), 1.1, 5, minSize=(22, 22))
        if len(boxes) == 0:
            continue
        x, y, w, h = (int(v * 2) for v in max(boxes, key=lambda b: b[2] * b[3]))
        crop = cv2.resize(frame[y : y + h, x : x + w], (size, size), interpolation=cv2.INTER_AREA)
        crops.append(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
    cap.release()
    assert len(crops) == n, f"only {len(crops)} faces found in the clip"
    return np.stack(crops)


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Train with one thread here (and in jobs started by these tests): results compared across
    processes stay bit-equal, and tests do not crawl when other work shares the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("FACELAB_THREADS", "1")
    yield
    torch.set_num_threads(before)


SMALL = dict(image_size=32, latent_dim=8, batch_size=16, lr=1e-3, beta=1.0)


def test_split_uses_the_column_and_skips_deleted(home) -> None:
    w = make_workspace("s", blob_images(50), deleted=(0, 45))
    s = split_ids(w)
    assert s.val_ids.tolist() == [40, 41, 42, 43, 44, 46, 47, 48, 49]
    assert 0 not in s.train_ids and len(s.train_ids) == 39 and s.note == ""


def test_split_falls_back_to_the_last_tenth_by_time(home) -> None:
    w = make_workspace("f", blob_images(30), val_block=None)
    s = split_ids(w)
    assert s.val_ids.tolist() == [27, 28, 29]
    assert "last 3 by time" in s.note


def test_split_falls_back_when_the_held_out_blocks_caught_too_few_faces(home) -> None:
    w = make_workspace("few", blob_images(100), val_block=None)
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
    from facelab.models import SHIFT_PX, to_float_images

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
    w = make_workspace("real", real_crops(30), val_block=3)
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
    w = make_workspace("p", blob_images(40), val_block=None)
    run = create_run(w, ModelConfig(kind="pca", image_size=32, latent_dim=6))
    summary = train_run(w, run)
    assert summary["state"] == "done" and "held out the last 4" in summary["split_note"]
    assert summary["val_psnr"] > 15
    assert load_codec(w.run_dir(run)).config.kind == "pca"


def test_crops_of_another_size_are_resized(home) -> None:
    w = make_workspace("big", blob_images(40, size=64))
    run = create_run(w, ModelConfig(**{**SMALL, "steps": 2}))
    assert train_run(w, run)["state"] == "done"
    assert load_codec(w.run_dir(run)).decode(np.zeros((1, 8), np.float32)).shape == (1, 32, 32, 3)

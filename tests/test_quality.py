"""Honest figures: every run beside the mean crop's and PCA-32's held-out PSNR, a warning for a
run that learned nothing, and a held-out split for every clip longer than about 5 s."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from facelab.cli import main
from facelab.data import dataset
from facelab.data.dataset import split_for
from facelab.model import jobs, quality
from facelab.model.models import ModelConfig
from facelab.model.train import load_images, split_ids
from facelab.store import workspace as wsmod
from facelab.ui import state

from conftest import REPO
from media import SAMPLE, media_file


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, wsmod.Workspace, str, str]:
    """A workspace of the sample clip (32-px crops) with a PCA-32 run and a VAE trained one
    step whose last metrics row says no latent unit is active (a collapsed run)."""
    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("FACELAB_HOME", str(home))
    w = wsmod.create("q", home)
    dataset.build(w, media_file("WolfgangLanger_Pexels.mp4"), dataset.BuildSettings(fps=8, size=32))
    pca = jobs.create_run(w, ModelConfig(kind="pca", latent_dim=32, image_size=32), "pca")
    jobs.run_job(w, pca)
    vae = jobs.create_run(w, ModelConfig(kind="vae", latent_dim=8, image_size=32, steps=1, eval_every=1),
                          "one step")
    jobs.run_job(w, vae)
    with w.connect(write=True) as c:
        row = c.execute("SELECT epoch, metrics FROM epochs WHERE run_id = ?", (vae,)).fetchone()
        m = {**json.loads(row["metrics"]), "active_units": 0}
        c.execute("UPDATE epochs SET metrics = ? WHERE run_id = ? AND epoch = ?",
                  (json.dumps(m), vae, row["epoch"]))
    yield home, w, pca, vae
    mp.undo()


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) / 255) ** 2
    return 10 * np.log10(1 / mse.reshape(len(a), -1).mean(1))


def test_baselines_match_a_direct_computation(trained) -> None:
    from sklearn.decomposition import PCA

    _, w, _, _ = trained
    split = split_ids(w)
    tr, va = load_images(w, split.train_ids, 32), load_images(w, split.val_ids, 32)
    mean = tr.mean(0).round()
    pca = PCA(32, svd_solver="full").fit(tr.reshape(len(tr), -1) / 255.0)
    rec = pca.inverse_transform(pca.transform(va.reshape(len(va), -1) / 255.0))
    rec = (np.clip(rec, 0, 1) * 255).round().reshape(va.shape)
    got = quality.baselines(w, 32)
    assert got["mean_crop_psnr"] == pytest.approx(psnr(np.broadcast_to(mean, va.shape), va).mean(), abs=0.01)
    assert got["pca32_psnr"] == pytest.approx(psnr(rec, va).mean(), abs=0.05)
    assert got["pca32_psnr"] > got["mean_crop_psnr"] + 2
    # Cached (a deleted held-out face changes the figures: see the next test).
    assert quality.baselines(w, 32) == got
    assert "32" in json.loads((w.path / quality.CACHE_FILE).read_text())


def test_the_pages_warning_needs_only_the_mean_crop(tmp_path: Path, monkeypatch) -> None:
    """The model picker's "learned nothing" check runs on every page of a run; it must not fit
    PCA-32 (7 s on 15,000 crops) when only the mean crop's figure decides it."""
    from facelab.model.models import PCABaseline

    w = wsmod.create("m", tmp_path)
    dataset.build(w, media_file("WolfgangLanger_Pexels.mp4"), dataset.BuildSettings(fps=2, size=32))
    real_fit = PCABaseline.fit
    fits = []
    monkeypatch.setattr(PCABaseline, "fit", lambda self, x: fits.append(len(x)) or real_fit(self, x))
    quick = quality.baselines(w, 32, pca=False)
    assert fits == [] and quick["pca32_psnr"] is None and quick["mean_crop_psnr"] > 0
    full = quality.baselines(w, 32)  # the Train page's table asks for both: PCA is fitted now
    assert len(fits) == 1 and full["pca32_psnr"] is not None
    assert full["mean_crop_psnr"] == pytest.approx(quick["mean_crop_psnr"])
    assert quality.baselines(w, 32, pca=False) == full and len(fits) == 1  # and kept


def test_baselines_follow_deleted_faces(tmp_path: Path) -> None:
    w = wsmod.create("d", tmp_path)
    dataset.build(w, media_file("WolfgangLanger_Pexels.mp4"), dataset.BuildSettings(fps=2, size=32))
    before = quality.baselines(w, 32)
    dataset.delete_faces(w, split_ids(w).val_ids[:3])
    after = quality.baselines(w, 32)
    assert after != before


def test_runs_json_shape_and_values(trained, capsys) -> None:
    _, w, pca, vae = trained
    assert main(["runs", "-w", "q", "--json"]) == 0
    runs = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(runs) == {pca, vae}
    keys = {"id", "state", "kind", "latent_dim", "val_psnr", "active_units", "mean_crop_psnr",
            "pca32_psnr", "seconds"}
    for r in runs.values():
        assert keys <= set(r)
        assert r["state"] == "done" and r["seconds"] >= 0
    p = runs[pca]
    assert (p["kind"], p["latent_dim"]) == ("pca", 32)
    assert p["val_psnr"] == pytest.approx(p["pca32_psnr"], abs=0.05)  # the same model on the same split
    assert p["val_psnr"] == pytest.approx(jobs.status(w, pca).metrics["val_psnr"])
    assert p["warning"] is None
    assert runs[vae]["kind"] == "vae" and runs[vae]["latent_dim"] == 8


def test_collapsed_run_is_warned_in_runs_and_on_the_train_page(trained, capsys) -> None:
    _, w, pca, vae = trained
    assert main(["runs", "-w", "q"]) == 0
    out = capsys.readouterr().out
    assert f"warning: run {vae}: This model learned nothing" in out
    assert f"warning: run {pca}" not in out

    at = AppTest.from_file(str(REPO / "pages" / "train.py"), default_timeout=60)
    at.session_state[state.WORKSPACE] = "q"
    at.session_state[state.RUN] = vae
    at.run()
    assert not at.exception, at.exception
    assert any("learned nothing" in x.value for x in at.warning)
    assert any("mean crop" in c.value for c in at.caption)
    table = at.dataframe[0].value
    assert table["learned nothing"].tolist() == [True, False]  # newest first


def test_a_verdict_for_too_few_active_units() -> None:
    assert quality.verdict("betavae", 32, 30.0, 3, 22.0) is not None  # 3 < 32 // 8
    assert quality.verdict("betavae", 32, 30.0, 4, 22.0) is None
    assert quality.verdict("ae", 32, 30.0, 0, 22.0) is None  # an AE has no KL to count
    assert quality.verdict("pca", 32, 22.5, None, 22.0) is not None  # not 1 dB above the mean crop


@pytest.mark.parametrize("page", ["explore", "label", "shift"])
def test_pages_warn_about_a_collapsed_run_and_do_not_raise(trained, page: str) -> None:
    _, _, _, vae = trained
    at = AppTest.from_file(str(REPO / "pages" / f"{page}.py"), default_timeout=60)
    at.session_state[state.WORKSPACE] = "q"
    at.session_state[state.RUN] = vae
    at.run()
    assert not at.exception, at.exception
    assert any("learned nothing" in x.value for x in at.warning)


# --- item 5: a held-out split for every clip ------------------------------------------------
def held_out_share(duration: float, fps: float = 8.0) -> float:
    t = np.arange(0, duration, 1 / fps)
    return float(np.mean([split_for(x, duration) == "val" for x in t]))


def test_every_clip_over_5_s_holds_out_about_a_tenth() -> None:
    assert 0.08 <= held_out_share(8) <= 0.12
    assert 0.08 <= held_out_share(12) <= 0.12
    assert held_out_share(60) == pytest.approx(0.1, abs=0.01)
    # A 60-s clip: whole 2-s blocks, as before.
    val = [t for t in np.arange(0, 60, 0.125) if split_for(t, 60) == "val"]
    assert min(val) == 18.0 and max(val) < 60 and len(val) == 3 * 16
    assert held_out_share(3) == 0.0  # too short: all training (train.split_ids falls back)


def test_an_8_second_clip_gets_a_held_out_block(tmp_path: Path) -> None:
    cap = cv2.VideoCapture(str(SAMPLE))
    fps = cap.get(cv2.CAP_PROP_FPS)
    clip = tmp_path / "eight.mp4"
    out = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                          (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))))
    for _ in range(int(8 * fps)):
        ok, frame = cap.read()
        assert ok
        out.write(frame)
    out.release()
    cap.release()
    w = wsmod.create("eight", tmp_path)
    dataset.build(w, clip, dataset.BuildSettings(fps=8, size=32))
    faces = dataset.faces_table(w)
    val = [f["t_seconds"] for f in faces if f["split"] == "val"]
    assert val and min(val) >= 7.0  # one whole block at the end
    split = split_ids(w)
    assert split.note == "" and len(split.val_ids) == len(val)

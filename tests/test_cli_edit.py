"""`facelab interpolate | shift | shift-eval` on a real workspace: the Pexels clip, a tiny trained AE.

The workspace is built and trained once for the module (6-20 s, by machine load): 158 crops at 8 fps, an
autoencoder with 8 latents trained for 90 steps (an AE, because a VAE this short collapses
its codes to the prior and then no direction changes anything). A "smile" label is made up
from the sign of the code's busiest dimension, so the label is learnable from codes by design.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from facelab.cli import main as cli
from facelab.edits.directions import Direction, fit_label_direction, load_directions, save_direction
from facelab.store import workspace as ws

from media import media_file


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from facelab.data import dataset, labels
    from facelab.model import jobs, train
    from facelab.model.models import ModelConfig
    from facelab.space.latent import active_latents, load_latents

    home = tmp_path_factory.mktemp("home")
    w = ws.create("me", home)
    report = dataset.build(w, media_file("WolfgangLanger_Pexels.mp4"), dataset.BuildSettings(fps=8))
    assert report.kept > 100
    run_id = jobs.create_run(w, ModelConfig(kind="ae", latent_dim=8, steps=90, batch_size=16, lr=1e-3))
    # One torch thread: on a 2-core machine shared with other test processes, two spinning
    # OpenMP threads made this tiny training 30x slower. (The count is per thread; restored.)
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACELAB_THREADS", "1")
        train.train_run(w, run_id)
    torch.set_num_threads(threads)
    ids, mu = active_latents(w, load_latents(w, run_id, compute=True))
    k = int(np.argmax(mu.std(0)))
    smile = mu[:, k] > np.median(mu[:, k])
    labels.set_labels(w, ids[smile], "smile")
    labels.set_labels(w, ids[~smile], "neutral")
    save_direction(w, run_id, fit_label_direction(w, run_id, "smile"))
    return {"home": str(home), "ws": w, "run": run_id, "ids": ids, "mu": mu}


def run_cli(trained: dict, *args: str) -> int:
    return cli(["--home", trained["home"], *args])


def base(trained: dict, cmd: str) -> list[str]:
    return [cmd, "--workspace", "me", trained["run"]]


def test_interpolate_writes_a_pingpong_gif_and_a_png_strip(trained: dict, tmp_path: Path, capsys) -> None:
    a, b = (str(int(i)) for i in trained["ids"][[0, -1]])
    gif = tmp_path / "strip.gif"
    assert run_cli(trained, *base(trained, "interpolate"), a, b, "--steps", "7", "--out", str(gif),
                   "--method", "slerp", "--duration", "50") == 0
    assert "wrote" in capsys.readouterr().out
    with Image.open(gif) as im:  # drawn on the 128-px crops, at the default scale 4
        assert im.n_frames == 2 * 7 - 2 and im.size == (512, 512)
    # detail-preserving (the default): the strip itself starts and ends on the real (128-px) crops
    png = tmp_path / "strip.png"
    assert run_cli(trained, *base(trained, "interpolate"), a, b, "--steps", "5", "--out", str(png),
                   "--scale", "2") == 0
    img = np.asarray(Image.open(png))
    assert img.shape == (256, 5 * 256, 3)
    from facelab.data.dataset import sharp_faces

    sharp = sharp_faces(trained["ws"], [int(a), int(b)])
    np.testing.assert_array_equal(img[::2, :256:2], sharp[0])
    np.testing.assert_array_equal(img[::2, -256::2], sharp[1])
    faces = trained["ws"].faces()
    # --plain: the decoded frames, with the real crops added at the ends
    assert run_cli(trained, *base(trained, "interpolate"), a, b, "--steps", "5", "--out", str(png),
                   "--scale", "2", "--plain") == 0
    img = np.asarray(Image.open(png))
    assert img.shape == (128, 7 * 128 + 2 * 4, 3)
    np.testing.assert_array_equal(img[::2, :128:2], faces[int(a)])
    assert not np.array_equal(img[::2, 132:260:2], faces[int(a)]), "the first decoded frame is not the crop"


def test_interpolate_errors_are_one_line(trained: dict, tmp_path: Path, capsys) -> None:
    assert run_cli(trained, *base(trained, "interpolate"), "0", "99999", "--out", str(tmp_path / "x.gif")) == 2
    assert "no face 99999" in capsys.readouterr().err
    assert run_cli(trained, *base(trained, "interpolate"), "0", "1", "--out", str(tmp_path / "x.jpg")) == 2
    assert ".png, .gif or .mp4" in capsys.readouterr().err
    assert run_cli(trained, "interpolate", "-w", "me", "nope-run", "0", "1", "--out", str(tmp_path / "x.gif")) == 2
    assert "no run 'nope-run'" in capsys.readouterr().err
    assert run_cli(trained, *base(trained, "interpolate"), "0", "1", "--steps", "1", "--out", str(tmp_path / "x.gif")) == 2
    assert "steps" in capsys.readouterr().err
    assert not list(tmp_path.iterdir()), "a failed command must not write files"


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cap = cv2.VideoCapture(str(media_file("WolfgangLanger_Pexels.mp4")))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 200)
    ok, frame = cap.read()
    cap.release()
    assert ok
    path = tmp_path_factory.mktemp("photos") / "me.jpg"
    cv2.imwrite(str(path), frame)
    return path


def test_shift_a_photo(trained: dict, photo: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.png"
    assert run_cli(trained, *base(trained, "shift"), str(photo), "--direction", "smile", "--alpha", "3",
                   "--out", str(out)) == 0
    assert "smile +3" in capsys.readouterr().out
    shifted = np.asarray(Image.open(out))
    assert shifted.shape == (512, 512, 3)  # the photo's 128-px crop plus the change, at scale 4
    cmp_path = tmp_path / "cmp.png"
    assert run_cli(trained, *base(trained, "shift"), str(photo), "-d", "smile", "-a", "-3",
                   "--out", str(cmp_path), "--compare", "--scale", "1") == 0
    panels = np.asarray(Image.open(cmp_path))
    assert panels.shape == (128, 384, 3)
    recon, down = panels[:, 128:256].astype(int), panels[:, 256:].astype(int)
    assert np.abs(recon - down).mean() > 0.5, "alpha -3 must change the face"
    # a centre target: s=1 lands on it
    mu = trained["mu"]
    save_direction(trained["ws"], trained["run"], Direction("mean face", "centre", mu.mean(0), 1.0))
    assert run_cli(trained, *base(trained, "shift"), str(photo), "--toward", "mean face", "--strength", "1",
                   "--out", str(tmp_path / "c.png")) == 0


def test_page_cli_and_webcam_make_the_same_edit(trained: dict, photo: Path, tmp_path: Path) -> None:
    """The same sliders (a direction's alpha and a strength toward a centre) give the same latent
    and the same face on the Shift page (its helper), in `facelab shift` and in the webcam's
    pipeline: all of them call `facelab.edits.edit.compose`, with the default ("mouth") direction and
    the slider's unit (1 = the labelled faces' mean projection)."""
    from facelab.data.photo import faces_in_photo, photo_face_crop
    from facelab.edits.directions import DEFAULT_METHOD, load_direction
    from facelab.edits.edit import LatentBounds
    from facelab.live import LivePipeline
    from facelab.model.models import load_codec
    from facelab.ui.shift import slider_edit

    w, run_id = trained["ws"], trained["run"]
    mu = trained["mu"]
    save_direction(w, run_id, Direction("far corner", "centre", mu.max(0), 1.0))
    smile, corner = load_direction(w, run_id, "smile"), load_direction(w, run_id, "far corner")
    assert smile.kind == DEFAULT_METHOD == "mouth" and smile.label_mean is not None and smile.normal is not None
    codec = load_codec(w.run_dir(run_id))
    bounds = LatentBounds.from_latents(mu)
    alpha, strength = 2.0, 0.5

    # the CLI's face, written plain and at scale 1, and the page helper on the same crop
    frame, boxes = faces_in_photo(photo)
    crop = photo_face_crop(w, frame, boxes, None, photo.name, codec.config.image_size)  # as page and CLI do
    z0 = codec.encode(crop[None])[0][0]
    z_page, _, plain = slider_edit(codec, crop, z0, {"smile": smile}, {"smile": alpha}, corner.vector,
                                   strength, bounds, detail=False)
    n = smile.normal  # progress is measured along the normal the mouth direction was bent from
    step = alpha * (smile.label_mean - float(z0 @ n)) / float(smile.vector @ n) * smile.vector
    expected = z0 + strength * (corner.vector - z0) + step
    np.testing.assert_allclose(z_page, expected, rtol=1e-5, atol=1e-5)
    out = tmp_path / "cli.png"
    args = [str(photo), "-d", "smile", "-a", str(alpha), "--toward", "far corner", "--strength", str(strength),
            "--scale", "1", "--out", str(out)]
    assert run_cli(trained, *base(trained, "shift"), *args[:-1], str(out), "--plain") == 0
    np.testing.assert_array_equal(np.asarray(Image.open(out)), plain)
    # the default, detail-preserving face: the crop plus the decoded change, on both
    _, _, kept = slider_edit(codec, crop, z0, {"smile": smile}, {"smile": alpha}, corner.vector,
                             strength, bounds)
    assert run_cli(trained, *base(trained, "shift"), *args) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(out)), kept)

    # the webcam: the live face's code, moved by the same settings, lands where the page puts it
    pipe = LivePipeline.for_run(w, run_id, torch_threads=None)
    pipe.update(shifts=((smile, alpha),), target=corner.vector, strength=strength)
    live = pipe.process(cv2.imread(str(photo)))
    z_live = live.latents[0]
    z_page_live, _, _ = slider_edit(codec, crop, z_live, {"smile": smile}, {"smile": alpha}, corner.vector,
                                    strength, pipe.bounds, detail=False)
    np.testing.assert_array_equal(live.edited[0], z_page_live)
    assert np.abs(live.shifted[0].astype(int) - codec.decode(z_page_live[None])[0]).max() <= 1


def test_shift_errors(trained: dict, photo: Path, tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "o.png")
    assert run_cli(trained, *base(trained, "shift"), str(photo), "-d", "frown", "--out", out) == 2
    err = capsys.readouterr().err
    assert "no direction 'frown' (it has: " in err and "smile" in err

    multi = media_file("multi_face.jpg")
    assert run_cli(trained, *base(trained, "shift"), str(multi), "-d", "smile", "--out", out) == 2
    err = capsys.readouterr().err
    assert "faces found in multi_face.jpg" in err and "--face N" in err and "1: " in err and "2: " in err
    assert run_cli(trained, *base(trained, "shift"), str(multi), "-d", "smile", "--face", "2", "--out", out) == 0
    assert run_cli(trained, *base(trained, "shift"), str(multi), "-d", "smile", "--face", "9", "--out", out) == 2
    assert "--face 9" in capsys.readouterr().err

    cap = cv2.VideoCapture(str(media_file("no_face.mp4")))
    ok, frame = cap.read()
    cap.release()
    empty = tmp_path / "empty.png"
    cv2.imwrite(str(empty), frame)
    assert run_cli(trained, *base(trained, "shift"), str(empty), "-d", "smile", "--out", out) == 2
    assert "no face found in empty.png" in capsys.readouterr().err
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    assert run_cli(trained, *base(trained, "shift"), str(tmp_path / "junk.jpg"), "-d", "smile", "--out", out) == 2
    assert "not an image" in capsys.readouterr().err


def test_shift_eval_raises_the_probe_score(trained: dict, capsys) -> None:
    assert run_cli(trained, *base(trained, "shift-eval"), "smile", "--alpha", "2", "--json") == 0
    q = json.loads(capsys.readouterr().out)
    assert q["n"] == len(trained["ws"].active_face_ids("val")) > 5
    assert q["probe_after"] > q["probe_before"]
    # judged on the decoded pictures, encoded again: the face itself became more "smile"
    assert q["image_probe_after"] > q["image_probe_before"] + 0.02
    assert q["latent_along"] > 0 and q["pixel_inside"] > 0 and q["pixel_outside"] > 0
    # the independent judge (pictures only) reports beside the probe
    assert q["judge_error"] is None, q["judge_error"]
    assert {"judge_before", "judge_after", "change_inside", "change_outside"} <= set(q)
    assert q["judge_n"] >= 5 and q["change_inside"] > 0
    # beside it, the ceiling of an edit of the mouth alone, on the same frames by the same judge
    assert 0 <= q["ceiling_after"] <= 1 and q["ceiling_psnr_outside"] > 25
    assert q["ceiling_gain"] == pytest.approx(q["ceiling_after"] - q["judge_before"])
    # shifting the other way lowers it
    assert run_cli(trained, *base(trained, "shift-eval"), "smile", "--alpha", "-2", "--json") == 0
    q = json.loads(capsys.readouterr().out)
    assert q["image_probe_after"] < q["image_probe_before"]
    # the table form, with a stored direction
    assert run_cli(trained, *base(trained, "shift-eval"), "smile", "--direction", "smile") == 0
    text = capsys.readouterr().out
    assert "stored direction 'smile'" in text and "mouth region" in text
    assert "shifted by alpha +1 (0 = as is, 1 = your average smile)" in text  # the slider's unit, not spreads
    assert "independent judge (HOG" in text and "the most an edit of the mouth alone can show" in text, text


def test_shift_eval_with_too_few_labels(trained: dict, capsys) -> None:
    assert run_cli(trained, *base(trained, "shift-eval"), "surprise") == 2
    err = capsys.readouterr().err
    assert "5 more face(s) labelled 'surprise' (has 0)" in err
    assert load_directions(trained["ws"], trained["run"])["smile"].kind == "mouth"


def test_live_pipeline_for_a_trained_run(trained: dict, photo: Path) -> None:
    """`LivePipeline.for_run` (what the Webcam page uses) on this run: same crop geometry as the
    workspace's faces, bounds from their codes, and the stored direction moves the codes."""
    from facelab.data.dataset import build_settings_of
    from facelab.edits.directions import load_direction
    from facelab.live import LivePipeline

    w, run_id = trained["ws"], trained["run"]
    build = build_settings_of(w)
    pipe = LivePipeline.for_run(w, run_id, torch_threads=None)
    assert (pipe.margin, pipe.crop_shift) == (build.margin, build.shift)
    assert np.all(pipe.bounds.high > trained["mu"].max(0))
    frame = cv2.imread(str(photo))
    plain = pipe.process(frame)
    assert len(plain.boxes) == 1
    smile = load_direction(w, run_id, "smile")
    pipe.update(shifts=((smile, 3.0),))
    shifted = pipe.process(frame)
    # the live crop of a training frame lands near that frame's stored code
    d = np.linalg.norm(trained["mu"] - plain.latents[0], axis=1)
    assert d.min() < np.median(d)
    assert np.abs(shifted.shifted[0].astype(int) - plain.shifted[0].astype(int)).mean() > 0.5


def test_direction_commands(trained: dict, capsys) -> None:
    assert run_cli(trained, "direction", "fit", "-w", "me", trained["run"], "neutral") == 0
    assert "stored mouth direction 'neutral'" in capsys.readouterr().out
    # 'neutral' is exactly 'not smile' here: removing it from smile leaves nothing
    assert run_cli(trained, "direction", "fit", "-w", "me", trained["run"], "smile", "--name", "s2",
                   "--without", "neutral") == 2
    assert "nothing is left" in capsys.readouterr().err
    assert run_cli(trained, "direction", "centre", "-w", "me", trained["run"], "neutral", "--name", "calm") == 0
    assert run_cli(trained, "direction", "list", "-w", "me", trained["run"]) == 0
    listing = capsys.readouterr().out
    assert "neutral " in listing and "mouth" in listing and "calm " in listing and "centre" in listing
    assert "s2" not in listing
    found = load_directions(trained["ws"], trained["run"])
    assert found["neutral"].spec["positives"] > 5 and found["neutral"].spec["split"] == "train"
    # the neutral direction points against the smile one (the labels are complements)
    assert float(found["neutral"].vector @ found["smile"].vector) < -0.99
    assert run_cli(trained, "direction", "delete", "-w", "me", trained["run"], "calm") == 0
    assert run_cli(trained, "direction", "delete", "-w", "me", trained["run"], "calm") == 2
    assert "no direction 'calm'" in capsys.readouterr().err
    assert "calm" not in load_directions(trained["ws"], trained["run"])


def test_decode_at_field_and_path(trained: dict, tmp_path: Path, capsys) -> None:
    """The map as an instrument from the shell: a place on the PCA map, the face field, a path."""
    from facelab.model.models import load_codec
    from facelab.space import generative_map as gm
    from facelab.space import projection as pj

    w, run = trained["ws"], trained["run"]
    at = tmp_path / "at.png"
    assert run_cli(trained, *base(trained, "decode-at"), "--x", "0.3", "--y", "-0.2", "--out", str(at), "--scale", "1") == 0
    assert "pca map, exactly" in capsys.readouterr().out
    # the face written is the codec's face for the code whose PCA place is (0.3, -0.2)
    proj = pj.get_projection(w, run, pj.ProjectionSettings("pca"))
    inv = gm.MapInverse.fit(proj.xy, trained["mu"], linear=True)
    z = inv.latents_at([[0.3, -0.2]])
    np.testing.assert_allclose(inv.place(z), [[0.3, -0.2]], atol=1e-4)
    np.testing.assert_array_equal(np.asarray(Image.open(at).convert("RGB")), load_codec(w.run_dir(run)).decode(z)[0])

    field = tmp_path / "field.png"
    assert run_cli(trained, *base(trained, "field"), "--size", "4", "--out", str(field)) == 0
    assert "4 x 4 faces over the pca map" in capsys.readouterr().out
    size = load_codec(w.run_dir(run)).config.image_size
    assert Image.open(field).size == (4 * size + 3 * 2, 4 * size + 3 * 2)

    ids = [int(i) for i in trained["ids"][[0, 50, 100]]]
    gif = tmp_path / "path.gif"
    assert run_cli(trained, *base(trained, "path"), *map(str, ids), "--steps", "4", "--out", str(gif)) == 0
    assert f"7 frames through faces {ids[0]} -> {ids[1]} -> {ids[2]}" in capsys.readouterr().out
    assert Image.open(gif).n_frames > 1
    mp4 = tmp_path / "path.mp4"
    assert run_cli(trained, *base(trained, "path"), *map(str, ids), "--steps", "4", "--out", str(mp4)) == 0
    assert mp4.read_bytes()[4:8] == b"ftyp"

    assert run_cli(trained, *base(trained, "path"), str(ids[0]), "--out", str(gif)) == 2
    assert "at least two face ids" in capsys.readouterr().err
    assert run_cli(trained, *base(trained, "field"), "--size", "99", "--out", str(field)) == 2
    assert "2 to 40" in capsys.readouterr().err
    assert run_cli(trained, *base(trained, "decode-at"), "--x", "0", "--y", "0", "--out", str(tmp_path / "a.jpg")) == 2
    assert "must end in .png" in capsys.readouterr().err


def test_timeline_png_and_csv(trained: dict, tmp_path: Path, capsys) -> None:
    """P(smile) over the video: every frame once, in time order, the CSV's numbers drawn in the PNG."""
    import pandas as pd

    csv, png = tmp_path / "t.csv", tmp_path / "t.png"
    assert run_cli(trained, "timeline", "-w", "me", trained["run"], "--label", "smile", "--out", str(csv)) == 0
    assert "P(smile) of" in capsys.readouterr().out
    table = pd.read_csv(csv)
    assert sorted(table["frame_id"]) == sorted(trained["ids"].tolist())
    assert (table["time"].diff().dropna() > 0).all() and table["p"].between(0, 1).all()
    smiles = set(np.flatnonzero(trained["mu"][:, int(np.argmax(trained["mu"].std(0)))] >
                                np.median(trained["mu"][:, int(np.argmax(trained["mu"].std(0)))])))
    is_smile = table["frame_id"].map(lambda i: int(np.flatnonzero(trained["ids"] == i)[0]) in smiles)
    assert table.loc[is_smile, "p"].mean() > table.loc[~is_smile, "p"].mean() + 0.3  # it follows the label
    assert run_cli(trained, "timeline", "-w", "me", trained["run"], "--label", "smile", "--out", str(png)) == 0
    image = np.asarray(Image.open(png).convert("RGB"))
    assert image.shape == (240, 900, 3) and (image != 255).any(axis=2).sum() > 2000  # a line was drawn
    assert run_cli(trained, "timeline", "-w", "me", trained["run"], "--label", "nosuch", "--out", str(png)) == 2
    assert "needs 5 frames" in capsys.readouterr().err
    assert run_cli(trained, "timeline", "-w", "me", trained["run"], "--label", "smile", "--out", str(tmp_path / "t.gif")) == 2

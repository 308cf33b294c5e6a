"""Model quality on real clips: candidate recipes against the mean crop and PCA-32, per clip.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/train_quality.py \
        [--clips pexels8,lp_d11] [--candidates default,paper] [--steps 800] [--out bench-out/quality]

Each clip is built into a workspace of its own (under --home, kept between runs) with the real
builder, `facelab.data.dataset.build`, and its split; each candidate trains through the real code path
(`jobs.create_run` + `train.train_run`). Per clip it prints the mean-crop and PCA-32 held-out PSNR
and, per candidate, held-out PSNR, SSIM, active units, wall seconds and CPU milliseconds per step
(CPU time, so that candidates compare fairly on a machine shared with other work); it writes a
PNG of held-out reconstructions per candidate (originals on the odd rows). On the Pexels clips it
also checks that the expression survives reconstruction: a HOG + logistic-regression judge trained
on the labelled original crops (models/sample/labels.json) labels each reconstruction; printed is
the share that gets the original's label, on held-out and on all labelled frames.

Clips (../shared/data, or FACELAB_SHARED_DATA): the Pexels clip at 8 fps, at 24 fps and its first
8 seconds (24 fps), and the five liveportrait_*.mp4 at their own frame rate.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("FACELAB_SHARED_DATA", REPO.parent / "shared" / "data"))
PEXELS = "WolfgangLanger_Pexels.mp4"
CLIPS = {  # name: (file, fps (None = the video's own), seconds (None = all))
    "pexels8": (PEXELS, 8.0, None),
    "pexels24": (PEXELS, 24.0, None),
    "pexels24_8s": (PEXELS, 24.0, 8.0),
    **{f"lp_{k}": (f"liveportrait_{k}.mp4", None, None) for k in ("d0", "d11", "d12", "d13", "d20")},
}
CANDIDATES = {  # name: ModelConfig changes from the defaults
    "default": {},
    "paper": {"arch": "paper", "recon": "bce", "lr_schedule": "constant", "lr_warmup_steps": 0},
    "fp32": {"precision": "fp32"},  # the default without bf16 autocast ("auto" picks it where native)
    "paper_fp32": {"arch": "paper", "recon": "bce", "lr_schedule": "constant", "lr_warmup_steps": 0,
                   "precision": "fp32"},
    "paper_mse": {"arch": "paper", "recon": "mse"},
    "pcares_bce": {"recon": "bce"},
    "pcares_const": {"lr_schedule": "constant", "lr_warmup_steps": 0},
    "pcares_kl": {"kl_warmup_steps": 1000},
    "pcares_clip": {"grad_clip": 100.0},
    "pcares_b4": {"beta": 4.0},
    "flip": {"augment": "flip"},
    "shift": {"augment": "shift"},
    "flip_shift": {"augment": "flip_shift"},
    "none": {"augment": "none"},
}


def trim(video: Path, seconds: float, out: Path) -> Path:
    """The first `seconds` of `video`, re-encoded (mp4v) to `out`."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS)
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for _ in range(int(round(fps * seconds))):
        ok, frame = cap.read()
        if not ok:
            break
        writer.write(frame)
    writer.release()
    cap.release()
    return out


def clip_workspace(name: str, home: Path):
    """The clip's workspace, built once with the real builder (reused when it exists)."""
    from facelab.data.dataset import BuildSettings, build
    from facelab.data.video import probe
    from facelab.store import workspace as ws

    try:
        return ws.open_workspace(name, home)
    except ws.WorkspaceError:
        pass
    file, fps, seconds = CLIPS[name]
    video = DATA / file
    if seconds is not None:
        video = trim(video, seconds, Path(tempfile.mkdtemp()) / f"{name}.mp4")
    fps = fps or probe(video).fps
    w = ws.create(name, home)
    report = build(w, video, BuildSettings(fps=fps), name=file)
    print(f"built {name}: {report.kept} crops", flush=True)
    return w


def times_of(w, ids: np.ndarray) -> np.ndarray:
    with w.connect() as c:
        t = dict(c.execute("SELECT id, t_seconds FROM faces").fetchall())
    return np.array([t[int(i)] for i in ids])


def labels_at(times: np.ndarray) -> np.ndarray:
    spans = json.loads((REPO / "models" / "sample" / "labels.json").read_text())["spans"]
    out = np.array([""] * len(times), dtype=object)
    for s in spans:
        out[(times >= s["from"]) & (times <= s["to"])] = s["label"]
    return out


def expression_check(codec, w, split, train_x, val_x) -> str:
    """Share of labelled frames whose reconstruction the judge labels as the original."""
    from facelab.edits.judge import hog_classifier

    tr_lab, va_lab = labels_at(times_of(w, split.train_ids)), labels_at(times_of(w, split.val_ids))
    x_all = np.concatenate([train_x, val_x])
    lab_all = np.concatenate([tr_lab, va_lab])
    keep = lab_all != ""
    if len(set(lab_all[keep])) < 2:
        return "expression check: fewer than 2 labels in this clip"
    judge = hog_classifier().fit(x_all[keep], lab_all[keep])  # facelab.edits.judge's HOG + logreg
    parts = []
    for what, x, lab in (("held-out", val_x, va_lab), ("all labelled", x_all, lab_all)):
        m = lab != ""
        if not m.any():
            parts.append(f"{what}: no labelled frames")
            continue
        orig = judge.predict(x[m])
        rec = judge.predict(codec.decode(codec.encode(x[m])[0]))
        counts = {k: int((lab[m] == k).sum()) for k in sorted(set(lab[m]))}
        parts.append(f"{what} {m.sum()} {counts}: same label {np.mean(orig == rec) * 100:.1f} %"
                     f" (judge right on originals {np.mean(orig == lab[m]) * 100:.0f} %,"
                     f" on reconstructions {np.mean(rec == lab[m]) * 100:.0f} %)")
    return "expression check: " + "; ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", default=",".join(CLIPS))
    ap.add_argument("--candidates", default="default,paper")
    ap.add_argument("--steps", type=int, help="steps per run (default: ModelConfig's)")
    ap.add_argument("--home", default=str(Path(tempfile.gettempdir()) / "facelab-bench-quality"))
    ap.add_argument("--out", default=str(REPO / "bench-out" / "quality"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    os.environ.setdefault("FACELAB_THREADS", "2")

    from facelab.model import evaluate, jobs, quality
    from facelab.model.models import ModelConfig, load_codec
    from facelab.model.train import load_images, split_ids, train_run

    out, home = Path(args.out), Path(args.home)
    base = ModelConfig()
    results: dict = {}
    for clip in args.clips.split(","):
        w = clip_workspace(clip, home)
        for old in jobs.list_runs(w):  # the bench's own workspace: runs of an earlier call go
            jobs.delete_run(w, old.run_id)
        split = split_ids(w)
        train_x, val_x = (load_images(w, split.train_ids, base.image_size),
                          load_images(w, split.val_ids, base.image_size))
        b = quality.compute_baselines(train_x, val_x)
        print(f"\n== {clip}: {len(train_x)} train / {len(val_x)} held-out crops; mean crop "
              f"{b['mean_crop_psnr']:.2f} dB, PCA-32 {b['pca32_psnr']:.2f} dB {split.note}", flush=True)
        print(f"{'candidate':<14} {'steps':>6} {'PSNR dB':>8} {'vs PCA':>7} {'SSIM':>6} {'active':>7} "
              f"{'seconds':>8} {'CPU ms/step':>11}", flush=True)
        rng = np.random.default_rng(0)
        pick = np.sort(rng.choice(len(val_x), min(8, len(val_x)), replace=False))
        for cand in args.candidates.split(","):
            config = replace(base, **CANDIDATES[cand], **({"steps": args.steps} if args.steps else {}))
            config = replace(config, eval_every=min(config.eval_every, config.steps))
            run_id = jobs.create_run(w, config, f"{cand} {config.steps}")
            t0, c0 = time.perf_counter(), time.process_time()
            s = train_run(w, run_id)
            secs, cpu = time.perf_counter() - t0, time.process_time() - c0
            codec = load_codec(w.run_dir(run_id))
            row = {"psnr": s["val_psnr"], "ssim": s["val_ssim"], "active": s["active_units"],
                   "seconds": secs, "cpu_seconds": cpu, "steps": config.steps, **b}
            results.setdefault(clip, {})[cand] = row
            print(f"{cand:<14} {config.steps:>6} {row['psnr']:>8.2f} {row['psnr'] - b['pca32_psnr']:>+7.2f} "
                  f"{row['ssim']:>6.3f} {row['active']:>4}/{config.latent_dim:<2} {secs:>8.1f} "
                  f"{cpu / config.steps * 1000:>11.1f}", flush=True)
            evaluate.save_png(out / f"{clip}_{cand}.png", evaluate.reconstructions(codec, val_x[pick]), 2)
            if clip.startswith("pexels") and cand == "default":
                print("  " + expression_check(codec, w, split, train_x, val_x), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\nwrote PNGs and results.json to {out}")


if __name__ == "__main__":
    main()

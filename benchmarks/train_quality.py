"""Model quality: a β-VAE (β=1, 32 latents) against PCA with 32 components, same split.

    .venv/bin/python benchmarks/train_quality.py [--epochs 60] [--out bench-out/quality]

Every frame of the Pexels clip (24 fps) → 64×64 face crops; held-out = every fifth 2-second
block (time blocks, as the dataset builder does, so neighbouring near-identical frames do not
leak between train and val). Prints held-out PSNR/SSIM and active units for both, and writes
PNGs: reconstructions (originals above), the three-point triangle, and traversals.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_speed import pexels_crops  # noqa: E402

from facelab import evaluate  # noqa: E402
from facelab.models import ModelConfig, PCABaseline, TorchCodec  # noqa: E402
from facelab.train import Trainer, pca_metrics  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--latent", type=int, default=32)
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=1e-3, help="(1e-4, the default, needs ~10× the epochs)")
    ap.add_argument("--out", default=str(REPO / "bench-out" / "quality"))
    args = ap.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    out = Path(args.out)

    images, times = pexels_crops(64, every=1)
    val = (times // 2.0).astype(int) % 5 == 4
    train_x, val_x = images[~val], images[val]
    print(f"crops: {len(images)} (train {len(train_x)}, held-out {len(val_x)} in 2-s blocks)")

    config = ModelConfig(kind="vae" if args.beta == 1 else "betavae", beta=args.beta,
                         latent_dim=args.latent, image_size=64, lr=args.lr, epochs=args.epochs)
    pca = PCABaseline(ModelConfig(kind="pca", latent_dim=args.latent, image_size=64)).fit(train_x)
    p = pca_metrics(pca, val_x)

    t = time.perf_counter()
    trainer = Trainer(config, train_x, val_x)
    for e in range(args.epochs):
        row = trainer.run_epoch()
        if (e + 1) % 10 == 0 or e == 0:
            print(f"  epoch {e + 1:>3}: loss {row['train_loss']:.1f}  val PSNR {row['val_psnr']:.2f}  "
                  f"active {row['active_units']}", flush=True)
    v = trainer.validate()
    seconds = time.perf_counter() - t
    vae = TorchCodec(trainer.model, torch.device("cpu"))

    print(f"\n{'model':<28} {'val PSNR dB':>11} {'val SSIM':>9} {'active':>7}")
    print(f"{'PCA, ' + str(args.latent) + ' components':<28} {p['val_psnr']:>11.2f} {p['val_ssim']:>9.3f} "
          f"{p['active_units']:>7}")
    print(f"{config.kind + f' β={config.effective_beta:g}, z={args.latent}':<28} {v['val_psnr']:>11.2f} "
          f"{v['val_ssim']:>9.3f} {v['active_units']:>7}   ({args.epochs} epochs, {seconds:.0f} s)")
    print(f"β-VAE − PCA: {v['val_psnr'] - p['val_psnr']:+.2f} dB")

    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(val_x), 8, replace=False))
    mu_vae = vae.encode(val_x)[0]
    mu_pca = pca.encode(val_x)[0]
    corners = [0, len(val_x) // 2, len(val_x) - 1]  # three real held-out frames
    for name, codec, mu in (("vae", vae, mu_vae), ("pca", pca, mu_pca)):
        evaluate.save_png(out / f"{name}_reconstructions.png", evaluate.reconstructions(codec, val_x[pick]), 2)
        evaluate.save_png(out / f"{name}_triangle_data.png", evaluate.three_point(codec, mu[corners]), 2)
        evaluate.save_png(out / f"{name}_triangle_prior.png", evaluate.three_point(codec, seed=1), 2)
        evaluate.save_png(out / f"{name}_samples.png", evaluate.prior_samples(codec, 16), 2)
    trav, _ = evaluate.traversals(vae, mu_vae[0], v["kl_per_dim"], n_dims=8)
    evaluate.save_png(out / "vae_traversals.png", trav, 2)
    print(f"wrote PNGs to {out}")


if __name__ == "__main__":
    main()

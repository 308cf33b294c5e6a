"""Training speed: facelab's loop against a plain PyTorch reference loop, in the same run.

    .venv/bin/python benchmarks/train_speed.py [--steps 60] [--compile] [--threads N]

All train on real 64×64 face crops from the Pexels clip.
- reference: the β-VAE paper network, a `Dataset` that decodes one PNG crop from disk per
  item, a DataLoader with the default collate, NCHW, eager, batch 128, default Adam;
- ours: `facelab.model.train.Trainer` (whole dataset one uint8 tensor, batches by indexing,
  channels_last, fused Adam, no per-step sync) on the paper network (`arch="paper"`) at batch
  64 and 128, and on the default network (`arch="pcares"`) at batch 64; each in fp32 and with
  the forward in bf16 (`ModelConfig.precision`, which "auto" picks on a CPU with native bf16).
Prints images/s, the ratio to the reference, and the fraction of the machine's matmul limit:
each network's FLOPs per image, forward + backward (counted by `torch.utils.flop_counter` on
one batch), against fp32 `torch.mm` 2048² measured here (and, for the bf16 rows, also
against bf16 `torch.mm`). Targets: >= 1,000 img/s for the
paper network and >= 60 % of the limit for the default one, at batch 64 on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CLIP = Path(os.environ.get("FACELAB_SHARED_DATA", REPO.parent / "shared" / "data")) / "WolfgangLanger_Pexels.mp4"


def pexels_crops(size: int = 64, every: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Face crops of the Pexels clip (every `every`-th frame) and their times in seconds.

    Haar on the frame scaled to 320 wide, largest box, square crop, resized with INTER_AREA.
    Cached in the temp folder (detection takes 10-30 s on 2 busy cores).
    """
    import cv2

    cache = Path(tempfile.gettempdir()) / f"facelab-bench-pexels-{size}-{every}.npz"
    if cache.exists():
        with np.load(cache) as f:
            return f["crops"], f["times"]

    cap = cv2.VideoCapture(str(CLIP))
    fps = cap.get(cv2.CAP_PROP_FPS) or 24.0
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    crops, times, i = [], [], -1
    while cap.grab():
        i += 1
        if i % every:
            continue
        frame = cap.retrieve()[1]
        k = 320 / frame.shape[1]
        small = cv2.cvtColor(cv2.resize(frame, None, fx=k, fy=k), cv2.COLOR_BGR2GRAY)
        boxes = cascade.detectMultiScale(small, 1.1, 5, minSize=(small.shape[0] // 8,) * 2)
        if len(boxes) == 0:
            continue
        x, y, w, h = max(boxes, key=lambda b: b[2] * b[3]) / k
        side = max(w, h)
        cx, cy = x + w / 2, y + h / 2
        x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
        crop = frame[y0 : y0 + int(side), x0 : x0 + int(side)]
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
        crops.append(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
        times.append(i / fps)
    cap.release()
    crops_a, times_a = np.stack(crops), np.array(times)
    np.savez(cache, crops=crops_a, times=times_a)
    return crops_a, times_a


def matmul_gflops(n: int = 2048, reps: int = 10, dtype: torch.dtype = torch.float32) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    t = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def mflop_per_image(images: np.ndarray, arch: str, batch: int = 64) -> float:
    """MFLOP of one training step per image (forward, loss, backward) of network `arch`."""
    from torch.utils.flop_counter import FlopCounterMode

    from facelab.model.models import ModelConfig
    from facelab.model.train import Trainer

    config = ModelConfig(kind="betavae", arch=arch, latent_dim=32, image_size=64, batch_size=batch)
    trainer = Trainer(config, images, images[:64], device=torch.device("cpu"))
    model = trainer.model
    x = torch.from_numpy(images[:batch]).permute(0, 3, 1, 2).float().div(255)
    with FlopCounterMode(display=False) as counter:
        out = model(x, torch.randn(batch, 32))
        sum(o.float().sum() for o in out if isinstance(o, torch.Tensor)).backward()
    return counter.get_total_flops() / batch / 1e6


def bench_ours(images: np.ndarray, batch: int, steps: int, compile: bool = False, warmup: int = 5,
               arch: str = "paper", precision: str = "fp32") -> float:
    from facelab.model.models import ModelConfig
    from facelab.model.train import Trainer

    config = ModelConfig(kind="betavae", arch=arch, latent_dim=32, image_size=64, batch_size=batch, compile=compile,
                         precision=precision)
    trainer = Trainer(config, images, images[:64], device=torch.device("cpu"))
    budget = {"n": warmup}
    stop = lambda: budget["n"] <= 0  # noqa: E731

    def count(step, total):
        budget["n"] -= 1

    def run(n: int) -> float:
        budget["n"] = n
        t = time.perf_counter()
        while budget["n"] > 0:
            if trainer.train_interval(stop, count) is not None:  # interval ended: go on with the next
                trainer.interval += 1
        float(trainer._sums[0])  # wait for the device
        return time.perf_counter() - t

    run(warmup)  # compile / allocator warm-up
    return steps * batch / run(steps)


class PngCrops(torch.utils.data.Dataset):
    """The textbook way: one PNG decoded per item."""

    def __init__(self, folder: Path):
        self.files = sorted(folder.glob("*.png"))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        from PIL import Image

        with Image.open(self.files[i]) as im:
            return torch.from_numpy(np.asarray(im.convert("RGB"))).permute(2, 0, 1).float() / 255.0


def bench_reference(images: np.ndarray, steps: int, batch: int = 128, warmup: int = 2) -> float:
    from PIL import Image

    from facelab.model.models import BetaVAE, ModelConfig

    with tempfile.TemporaryDirectory() as tmp:
        for i, im in enumerate(images):
            Image.fromarray(im).save(Path(tmp) / f"{i:05d}.png")
        loader = torch.utils.data.DataLoader(PngCrops(Path(tmp)), batch_size=batch, shuffle=True)
        torch.manual_seed(0)
        model = BetaVAE(ModelConfig(latent_dim=32, image_size=64))
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        done, t, seen = 0, 0.0, 0
        while done < steps + warmup:
            for x in loader:
                if done == warmup:
                    t, seen = time.perf_counter(), 0
                logits, mu, logvar = model(x, torch.randn(len(x), 32))
                recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
                kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum() / len(x)
                loss = recon + 4.0 * kl
                opt.zero_grad()
                loss.backward()
                opt.step()
                print(f"\r  reference step {done + 1}: loss {loss.item():.1f}", end="", file=sys.stderr)
                seen += len(x)
                done += 1
                if done >= steps + warmup:
                    break
        print(file=sys.stderr)
        return seen / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60, help="timed steps per variant")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (slow to start)")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    t = time.perf_counter()
    images, _ = pexels_crops(64)
    print(f"crops: {len(images)} of 64×64 from {CLIP.name} in {time.perf_counter() - t:.1f} s")
    print(f"threads: {torch.get_num_threads()}  OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    peak = matmul_gflops()
    mflop = {arch: mflop_per_image(images, arch) for arch in ("paper", "pcares")}
    limit = {arch: peak * 1e3 / m for arch, m in mflop.items()}
    print(f"fp32 matmul: {peak:.0f} GFLOP/s; per image and step: " + ", ".join(
        f"{arch} {m:.0f} MFLOP → {limit[arch]:.0f} img/s at matmul speed" for arch, m in mflop.items()))

    from facelab.model.device import native_bf16, train_dtype

    auto = "bf16" if train_dtype("auto", torch.device("cpu")) is not None else "fp32"
    bf16_peak = matmul_gflops(dtype=torch.bfloat16)
    print(f"bf16 matmul: {bf16_peak:.0f} GFLOP/s ({'native' if native_bf16(torch.device('cpu')) else 'emulated'}); "
          f"precision 'auto' (the default) trains in {auto} on this CPU")
    ref = bench_reference(images, max(6, args.steps // 4))
    results = [("reference: paper net, PNG Dataset + DataLoader, NCHW, batch 128", "paper", ref, "fp32")]
    for precision in ("fp32", "bf16"):
        results.append((f"ours, paper net: uint8 tensor, channels_last, fused Adam, batch 64, {precision}", "paper",
                        bench_ours(images, 64, args.steps, precision=precision), precision))
        results.append((f"ours, paper net, batch 128, {precision}", "paper",
                        bench_ours(images, 128, args.steps // 2, precision=precision), precision))
        results.append((f"ours, default net (pcares), batch 64, {precision}", "pcares",
                        bench_ours(images, 64, args.steps, arch="pcares", precision=precision), precision))
    if args.compile:
        results.append(("ours + torch.compile, paper net, batch 64, fp32", "paper",
                        bench_ours(images, 64, args.steps, compile=True), "fp32"))
    print(f"\n{'variant':<78} {'img/s':>7} {'× ref':>6} {'of fp32 limit':>14} {'of bf16 limit':>14}")
    for name, arch, rate, precision in results:
        of_bf16 = f"{rate / (limit[arch] * bf16_peak / peak):>14.0%}" if precision == "bf16" else f"{'':>14}"
        print(f"{name:<78} {rate:>7.0f} {rate / ref:>6.2f} {rate / limit[arch]:>14.0%} {of_bf16}")


if __name__ == "__main__":
    main()

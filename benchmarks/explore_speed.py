"""How fast is the Explore backend on 15,000 crops: encode, maps, clusters, and chart size?

In one run, on N crops (default 15,000; 64×64 frames cut from the Pexels clip in
../shared/data, jittered, so thumbnails compress like real faces):

  baseline        fp32 torch.mm 2048² (GFLOP/s): how busy the machine is right now
  encode          `facelab.space.latent.encode_run` with the shipped sample model (models/sample; random
                  weights when it is missing) into a fresh workspace (includes writing the
                  cache); target ≤ 10 s
  pca / tsne / umap   `facelab.space.projection.project` on the μ; t-SNE is openTSNE (FFT), and is
                  compared with scikit-learn's TSNE (the fallback when openTSNE is missing) on
                  the same points (or the first --sklearn-n of them: sklearn takes minutes)
  kmeans / gmm    `facelab.space.clusters.fit` (k = 6), and a k = 2..12 `sweep`
  pca + kmeans    the page's first map; target ≤ 2 s
  decode anywhere per map (issue 15): fit the map's inverse, decode one place (target ≤ 0.3 s),
                  the 10×10 face field (target ≤ 1 s), Explore's 16×16 hover cells with their
                  thumbnails, and how far a decoded place lands from where it was asked for
                  when placed back (PCA: exactly; t-SNE / UMAP: mean error)
  chart           bytes of an Altair spec (frame_id, x, y, cluster, t) of N points, and the
                  estimated bytes once each point carries its thumbnail as a data URI

    .venv/bin/python benchmarks/explore_speed.py                 # everything, 15k crops
    .venv/bin/python benchmarks/explore_speed.py --skip-slow     # no t-SNE / UMAP
    .venv/bin/python benchmarks/explore_speed.py --n 3000
    .venv/bin/python benchmarks/explore_speed.py --tsne-only --sklearn-n 5000   # t-SNE vs sklearn

Timings on a shared machine are noisy (the load average is printed with them): compare the
ratios to the targets, measured within one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SOURCE = Path(os.environ.get("FACELAB_SHARED_DATA", REPO.parent / "shared" / "data")) / "WolfgangLanger_Pexels.mp4"


def timed(label: str, fn, results: dict, target: float | None = None):
    t = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t
    results[label] = dt
    extra = f"   target ≤ {target:g} s: {'ok' if dt <= target else 'MISSED'} ({dt / target:.2f}× target)" if target else ""
    print(f"{label:<22} {dt:8.2f} s{extra}", flush=True)
    return out


def baseline_gflops() -> float:
    import torch

    a = torch.randn(2048, 2048)
    b = torch.randn(2048, 2048)
    a @ b
    t = time.perf_counter()
    reps = 5
    for _ in range(reps):
        a @ b
    return reps * 2 * 2048**3 / (time.perf_counter() - t) / 1e9


def real_crops(n: int, size: int = 64) -> np.ndarray:
    """N crops: centre squares of the Pexels clip's frames, shifted and flipped to vary them."""
    import cv2

    frames = []
    cap = cv2.VideoCapture(str(SOURCE))
    while len(frames) < 200:
        ok, bgr = cap.read()
        if not ok:
            break
        h, w = bgr.shape[:2]
        s = min(h, w)
        sq = bgr[(h - s) // 2 : (h + s) // 2, (w - s) // 2 : (w + s) // 2]
        frames.append(cv2.cvtColor(cv2.resize(sq, (size + 8, size + 8), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))
    cap.release()
    rng = np.random.default_rng(0)
    if not frames:  # no clip: smooth random images (compress about like faces)
        print(f"({SOURCE} not found: using smooth random crops)")
        small = rng.integers(0, 256, size=(200, 9, 9, 3), dtype=np.uint8)
        frames = [cv2.resize(f, (size + 8, size + 8), interpolation=cv2.INTER_CUBIC) for f in small]
    base = np.stack(frames)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        f = base[rng.integers(len(base))]
        dy, dx = rng.integers(0, 9, 2)
        c = f[dy : dy + size, dx : dx + size]
        out[i] = c[:, ::-1] if rng.random() < 0.5 else c
    return out


def fake_workspace(crops: np.ndarray):
    """A temporary workspace holding `crops` and run 'bench' with random BetaVAE weights."""
    from facelab.data.dataset import append_crops
    from facelab.model import models
    from facelab.store import workspace as ws_mod

    home = Path(tempfile.mkdtemp(prefix="facelab-bench-"))
    w = ws_mod.create("bench", home)
    append_crops(w, crops, np.arange(len(crops)) / 8.0, source="bench")
    shipped = REPO / "models" / "sample"
    if (shipped / "model.pt").exists():  # a trained model: real latents (random weights give one μ for all)
        w.run_dir("bench").mkdir(parents=True, exist_ok=True)
        for name in ("model.pt", "config.json", "run.json"):
            shutil.copy(shipped / name, w.run_dir("bench") / name)
    else:
        config = models.ModelConfig(latent_dim=32, image_size=64)
        models.save_model(w.run_dir("bench"), models.build_model(config), config)
    return w, home


def decode_anywhere(w, mu: np.ndarray, maps: dict[str, np.ndarray], r: dict) -> None:
    """Issue 15's figures: a place back to a face, the 10 x 10 face field (target <= 1 s), the
    Explore page's hover cells (16 x 16, decoded and made thumbnails), and where a decoded place
    lands when placed back on the map (PCA: exactly; t-SNE / UMAP: mean error, % of the map's span)."""
    from facelab.data.thumbs import data_uris
    from facelab.model.models import load_codec
    from facelab.space import generative_map as gm

    codec = load_codec(w.run_dir("bench"))
    codec.decode(mu[:1])  # the first decode loads the weights: not a hover's cost
    for name, xy in maps.items():
        def fit() -> gm.MapInverse:  # with the neighbour radii a non-linear map's places need (once per map)
            inv = gm.MapInverse.fit(xy, mu, linear=name == "pca")
            return inv if inv.linear else (inv, inv.latent_radius)[0]

        inverse = timed(f"{name}: fit inverse", fit, r)
        one = timed(f"{name}: decode one place", lambda: codec.decode(inverse.latents_at(xy[:1] + 0.1)), r, 0.3)
        field = timed(f"{name}: face field 10x10", lambda: gm.face_field(codec, inverse), r, 1.0)
        timed(f"{name}: hover cells 16x16",
              lambda: data_uris(gm.face_field(codec, inverse, 16).faces, 96), r)
        back = inverse.place(inverse.latents_at(field.places))
        err = np.linalg.norm(back - field.places, axis=1).mean()
        span = float(np.ptp(xy, axis=0).mean())
        print(f"{name + ': placed back':<22} {err:8.3f} map units mean error ({100 * err / span:.2f} % of the "
              f"map's span); {int(field.near.sum())} of 100 field places have a frame near; "
              f"{len(one)} face decoded", flush=True)


def sklearn_tsne(mu: np.ndarray) -> np.ndarray:
    """`project(mu, "tsne")` as it runs without openTSNE: scikit-learn's TSNE (the fallback)."""
    from facelab.space import projection as pj

    saved = sys.modules.get("openTSNE")
    sys.modules["openTSNE"] = None  # makes `import openTSNE` raise ImportError
    try:
        return pj.project(mu, "tsne")
    finally:
        if saved is None:
            del sys.modules["openTSNE"]
        else:
            sys.modules["openTSNE"] = saved


def tsne_vs_sklearn(mu: np.ndarray, sklearn_n: int | None, r: dict) -> np.ndarray:
    """t-SNE of `mu` with openTSNE, and scikit-learn's on (a part of) the same points; the map."""
    from facelab.space import projection as pj

    n = len(mu)
    if not np.ptp(mu, axis=0).any():  # a random-weight model can map every crop to the same μ
        print("(every μ is the same: t-SNE timed on 32-D latents from a mixture of 12 Gaussians instead)")
        rng = np.random.default_rng(0)
        centres = rng.normal(scale=4.0, size=(12, mu.shape[1]))
        mu = (centres[rng.integers(12, size=n)] + rng.normal(size=(n, mu.shape[1]))).astype(np.float32)
    xy = timed(f"tsne (openTSNE) {n}", lambda: pj.project(mu, "tsne"), r, 30.0 if n >= 15000 else None)
    m = n if sklearn_n is None else min(sklearn_n, n)
    if m <= 0:
        return xy
    if m != n:  # the ratio compares like with like
        timed(f"tsne (openTSNE) {m}", lambda: pj.project(mu[:m], "tsne"), r)
    timed(f"tsne (sklearn) {m}", lambda: sklearn_tsne(mu[:m]), r)
    ratio = r[f"tsne (sklearn) {m}"] / r[f"tsne (openTSNE) {m}"]
    print(f"{'tsne sklearn/openTSNE':<22} {ratio:8.2f}×  on {m} points "
          f"(load average {os.getloadavg()[0]:.1f})", flush=True)
    return xy


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=15000)
    ap.add_argument("--skip-slow", action="store_true", help="skip t-SNE and UMAP")
    ap.add_argument("--tsne-only", action="store_true", help="encode, then only t-SNE (openTSNE vs sklearn)")
    ap.add_argument("--sklearn-n", type=int, default=None,
                    help="time sklearn's TSNE on the first this many points (default all N; 0: skip)")
    args = ap.parse_args()

    t = time.perf_counter()
    import sklearn.cluster  # noqa: F401  (imported once per app process; not part of a map's time)
    import sklearn.decomposition  # noqa: F401
    import sklearn.mixture  # noqa: F401

    from facelab.space import clusters as cl  # noqa: F401  (its import time is counted)
    from facelab.space import projection as pj
    from facelab.space.latent import encode_run

    import_s = time.perf_counter() - t

    print(f"{args.n} crops · {os.cpu_count()} cores · load average {os.getloadavg()[0]:.1f} · "
          f"idle threads used for maps/clusters: {pj.idle_threads()}")
    print(f"{'imports (sklearn)':<22} {import_s:8.2f} s (once per process)")
    gf = baseline_gflops()
    print(f"{'baseline torch.mm':<22} {gf:8.1f} GFLOP/s (TESTING.md: about 187 on an idle machine)")
    r: dict[str, float] = {}
    crops = real_crops(args.n)
    try:
        import facelab.model.models  # noqa: F401

        w, home = fake_workspace(crops)
        lat = timed("encode (encode_run)", lambda: encode_run(w, "bench"), r, 10.0)
        print(f"{'':<22} {args.n / r['encode (encode_run)']:8.0f} crops/s")
        mu = lat.mu
    except ModuleNotFoundError:
        print("facelab.model.models is missing: encode not timed; using random latents")
        w, home = None, None
        mu = np.random.default_rng(0).normal(size=(args.n, 32)).astype(np.float32)
    try:
        return measure(args, crops, mu, w, r)
    finally:
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)


def measure(args: argparse.Namespace, crops: np.ndarray, mu: np.ndarray, w, r: dict) -> int:
    from facelab.space import clusters as cl  # noqa: F401  (its import time is counted)
    from facelab.space import projection as pj

    if args.tsne_only:
        tsne_vs_sklearn(mu, args.sklearn_n, r)
        return 0
    xy = timed("pca", lambda: pj.project(mu, "pca"), r)
    km = timed("kmeans k=6", lambda: cl.Clusterer("kmeans", 6).fit(mu), r)
    print(f"{'pca + kmeans':<22} {r['pca'] + r['kmeans k=6']:8.2f} s   target ≤ 2 s: "
          f"{'ok' if r['pca'] + r['kmeans k=6'] <= 2 else 'MISSED'}")
    timed("gmm k=6 (diag)", lambda: cl.Clusterer("gmm", 6).fit(mu), r)
    timed("sweep k=2..12", lambda: cl.sweep(mu), r)
    maps = {"pca": xy}
    if not args.skip_slow:
        maps["tsne"] = tsne_vs_sklearn(mu, args.sklearn_n, r)
        if pj.umap_available():
            maps["umap"] = timed("umap (incl. JIT)", lambda: pj.project(mu, "umap"), r)
        else:
            print(pj.UMAP_HINT)
    if w is not None and np.ptp(mu, axis=0).any():
        decode_anywhere(w, mu, maps, r)

    import altair as alt
    import pandas as pd

    df = pd.DataFrame({
        "frame_id": np.arange(args.n), "x": xy[:, 0], "y": xy[:, 1],
        "cluster": km.labels_.astype(str), "t": np.arange(args.n) / 8.0,
    })
    chart = alt.Chart(df).mark_circle(size=12).encode(
        x="x:Q", y="y:Q", color="cluster:N", tooltip=["frame_id:Q", "t:Q"]
    )
    # Altair refuses > 5,000 rows inline by default: a page drawing every frame must lift that.
    with alt.data_transformers.disable_max_rows():
        spec = timed("altair to_json", chart.to_json, r)
    import cv2

    sample = crops[:: max(1, args.n // 200)]
    jpg = np.mean([len(cv2.imencode(".jpg", c[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 80])[1]) for c in sample])
    png = np.mean([len(cv2.imencode(".png", c[:, :, ::-1])[1]) for c in sample])
    uri = lambda b: len("data:image/jpeg;base64,") + 4 * int(np.ceil(b / 3))  # noqa: E731
    print(f"{'chart spec':<22} {len(spec) / 1e6:8.2f} MB ({len(spec) / args.n:.0f} B/point)")
    print(f"{'thumbnail data URI':<22} {uri(jpg):8.0f} B JPEG q80, {uri(png):.0f} B PNG (64×64)")
    print(f"{'spec with thumbnails':<22} {(len(spec) + args.n * uri(jpg)) / 1e6:8.2f} MB (JPEG), "
          f"{(len(spec) + args.n * uri(png)) / 1e6:.2f} MB (PNG)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

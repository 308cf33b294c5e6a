"""Is a trained run any good? Its held-out PSNR beside two baselines, and a verdict.

A held-out PSNR means little alone: a model that draws every face as the average face already
scores 20-odd dB on one person's crops. So every run's figure is shown beside the PSNR of the
mean training crop and of PCA with 32 components, both on the run's own split, and a run that
does not beat the mean crop by `MIN_GAIN_DB`, or whose VAE kept too few latent units active,
gets a warning instead of a map, clusters and edits drawn from noise.

The baselines are cached per workspace in `quality.json`, keyed on what they depend on (the
faces, the deleted ones, the split, the image size), so pages can ask on every rerun.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from facelab.model.model_config import kind_of
from facelab.store.storage import write_json_atomic
from facelab.store.workspace import Workspace

CACHE_FILE = "quality.json"
PCA_DIM = 32
MIN_GAIN_DB = 1.0  # a run must beat the mean crop's held-out PSNR by this much
# The mean crop and PCA are fitted on at most this many training crops (evenly spaced): reading
# all 13,500 of a 15,000-crop set for the mean took 2 s of Explore's first visit, for a figure
# that moves by hundredths of a dB.
MAX_FIT_IMAGES = 5000
NO_BASELINES = {"mean_crop_psnr": None, "pca32_psnr": None}


def _cache_key(workspace: Workspace, val_ids: np.ndarray, image_size: int) -> str:
    h = hashlib.sha256(json.dumps({"crops": workspace.crops_key(), "image_size": image_size,
                                   "pca_dim": PCA_DIM, "fit_max": MAX_FIT_IMAGES}).encode())
    h.update(np.ascontiguousarray(val_ids, np.int64).tobytes())  # the split
    return h.hexdigest()


def _fit_step(n: int) -> int:
    """Every how many training crops one is used, so that at most MAX_FIT_IMAGES are."""
    return max(1, -(-n // MAX_FIT_IMAGES))


def compute_baselines(train_images: np.ndarray, val_images: np.ndarray, pca: bool = True) -> dict:
    """Mean held-out PSNR (dB) of the mean training crop and of PCA-32 fitted on the training
    crops (uint8 N×S×S×3 arrays of one size); with pca=False the PCA figure is None (fitting
    it takes 7 s on 15,000 crops, the mean crop well under one)."""
    from facelab.model import metrics
    from facelab.model.models import ModelConfig, PCABaseline
    from facelab.model.train import pca_metrics

    mean = train_images.mean(0, dtype=np.float64).round().astype(np.uint8)
    mean_psnr = float(metrics.psnr(np.broadcast_to(mean, val_images.shape), val_images).mean())
    if not pca:
        return {"mean_crop_psnr": mean_psnr, "pca32_psnr": None}
    step = _fit_step(len(train_images))
    config = ModelConfig(kind="pca", latent_dim=PCA_DIM, image_size=train_images.shape[1])
    pca = PCABaseline(config).fit(train_images[::step])
    return {"mean_crop_psnr": mean_psnr, "pca32_psnr": float(pca_metrics(pca, val_images)["val_psnr"])}


def baselines(workspace: Workspace, image_size: int, pca: bool = True) -> dict:
    """{mean_crop_psnr, pca32_psnr} on the workspace's train/held-out split (`train.split_ids`,
    its fallback included) at `image_size`; both None when the workspace cannot be split.
    pca=False: the mean crop's figure is enough (PCA-32's is what was cached, or None)."""
    _, val_ids, _ = workspace.held_out_split()  # what `split_ids` holds out, without torch on a hit
    key = _cache_key(workspace, val_ids, image_size)
    path = Path(workspace.path) / CACHE_FILE
    try:
        cache = json.loads(path.read_text())
        if not isinstance(cache, dict):
            cache = {}
    except (OSError, ValueError):
        cache = {}
    hit = cache.get(str(image_size))
    if isinstance(hit, dict) and hit.get("key") == key and (hit.get("pca32_psnr") is not None or not pca):
        return {k: hit.get(k) for k in NO_BASELINES}
    from facelab.model.train import TrainError, load_images, split_ids  # torch: only to compute them

    try:
        split = split_ids(workspace)
    except TrainError:
        return dict(NO_BASELINES)
    found = compute_baselines(load_images(workspace, split.train_ids[::_fit_step(len(split.train_ids))], image_size),
                              load_images(workspace, split.val_ids, image_size), pca)
    cache[str(image_size)] = {"key": key, **found}
    try:
        write_json_atomic(path, cache)
    except OSError:
        pass  # a cache only: a read-only workspace still gets its figures
    return found


def verdict(kind: str, latent_dim: int, val_psnr: float | None, active_units: int | None,
            mean_crop_psnr: float | None) -> str | None:
    """A warning for a run that learned nothing, else None.

    Nothing learned: held-out PSNR under the mean crop's + `MIN_GAIN_DB` (it draws about the
    same face whatever it is given), or, for a VAE, fewer than max(1, latent_dim // 8) active
    latent units (posterior collapse: the latents carry next to no information).
    """
    if val_psnr is None:
        return None
    if mean_crop_psnr is not None and val_psnr < mean_crop_psnr + MIN_GAIN_DB:
        return (f"This model learned nothing useful: its held-out PSNR ({val_psnr:.2f} dB) is not "
                f"{MIN_GAIN_DB:g} dB above the mean crop's ({mean_crop_psnr:.2f} dB), so it draws "
                "about the same face whatever it is given. Its map, clusters and edits would be "
                "noise: train longer, or with a lower β.")
    need = max(1, latent_dim // 8)
    if kind_of(kind).variational and active_units is not None and active_units < need:
        return (f"This model learned nothing useful: only {active_units} of its {latent_dim} latent "
                f"units are active (at least {need} expected), so its latents say next to nothing "
                "about the face. Its map, clusters and edits would be noise: train longer, or "
                "with a lower β.")
    return None


def run_report(workspace: Workspace, run, pca: bool = True) -> dict:
    """One run's figures beside the baselines (a `jobs.RunStatus`): id, name, state, kind,
    latent_dim, val_psnr, active_units, mean_crop_psnr, pca32_psnr, seconds (wall time of
    training) and warning (`verdict`, for finished runs only; else None). pca=False: only what
    the warning needs is computed (`baselines`)."""
    m = {**(run.summary or {}), **(run.metrics or {})}  # the last metrics row, else the summary
    config = run.config
    latent_dim = config.latent_dim if config is not None else None
    base = baselines(workspace, config.image_size, pca) if config is not None else dict(NO_BASELINES)
    seconds = (run.summary or {}).get("seconds")
    if seconds is None and run.state == "done":
        from facelab.model import jobs

        rows = jobs.epoch_metrics(workspace, run.run_id)
        seconds = sum(r.get("seconds") or 0.0 for r in rows) if rows else None
    warning = None
    if run.state == "done" and latent_dim is not None:
        warning = verdict(run.kind, latent_dim, m.get("val_psnr"), m.get("active_units"),
                          base["mean_crop_psnr"])
    return {"id": run.run_id, "name": run.name, "state": run.state, "kind": run.kind,
            "latent_dim": latent_dim, "val_psnr": m.get("val_psnr"),
            "active_units": m.get("active_units"), **base,
            "seconds": None if seconds is None else float(seconds), "warning": warning}

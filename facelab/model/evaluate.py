"""Looking at a trained model: image grids and figures, for any Codec.

Each grid function returns one uint8 H×W×3 image (pages show it with st.image, the CLI saves it
with `save_png`): reconstructions beside originals, samples from the prior, the three-point
triangle (mode-collapse check), latent traversals. `compression_curve` trains small models of
several latent sizes and is slow by nature, so it is only ever called explicitly.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from facelab.model import metrics
from facelab.model.models import Codec, ModelConfig, PCABaseline, load_codec, resize_images
from facelab.store.storage import write_bytes_atomic

BACKGROUND = 255


def grid(images: np.ndarray | Sequence[np.ndarray | None], ncols: int, pad: int = 2) -> np.ndarray:
    """Tile N×S×S×3 images row by row; a `None` entry leaves its cell blank."""
    images = list(images)
    if not images:
        return np.full((1, 1, 3), BACKGROUND, np.uint8)
    size = next(im for im in images if im is not None).shape[0]
    nrows = math.ceil(len(images) / ncols)
    h, w = nrows * (size + pad) + pad, ncols * (size + pad) + pad
    out = np.full((h, w, 3), BACKGROUND, np.uint8)
    for i, im in enumerate(images):
        if im is None:
            continue
        r, c = divmod(i, ncols)
        y, x = pad + r * (size + pad), pad + c * (size + pad)
        out[y : y + size, x : x + size] = im
    return out


def reconstructions(codec: Codec, images: np.ndarray, n: int = 8) -> np.ndarray:
    """Originals (odd rows) above their reconstructions from μ (even rows), n pairs."""
    originals = resize_images(np.asarray(images[:n]), codec.config.image_size)
    mu, _ = codec.encode(originals)
    recon = codec.decode(mu)
    ncols = min(8, max(1, len(originals)))
    cells: list[np.ndarray | None] = []
    for i in range(0, len(originals), ncols):
        row_o, row_r = list(originals[i : i + ncols]), list(recon[i : i + ncols])
        fill = [None] * (ncols - len(row_o))
        cells += row_o + fill + row_r + fill
    return grid(cells, ncols)


def _sample_latents(
    codec: Codec, n: int, seed: int, reference_mu: np.ndarray | None = None
) -> np.ndarray:
    """n latents from the prior N(0, I); for an AE (no prior) from a diagonal Gaussian fitted to
    `reference_mu` (the μ of real crops) when given."""
    rng = np.random.default_rng(seed)
    d = codec.config.latent_dim
    z = rng.standard_normal((n, d)).astype(np.float32)
    if not codec.config.spec.prior and reference_mu is not None and len(reference_mu) > 1:
        z = z * reference_mu.std(0) + reference_mu.mean(0)
    return z.astype(np.float32)


def prior_samples(
    codec: Codec, n: int = 32, seed: int = 0, reference_mu: np.ndarray | None = None, ncols: int = 8
) -> np.ndarray:
    """Random faces decoded from the prior."""
    return grid(codec.decode(_sample_latents(codec, n, seed, reference_mu)), ncols)


def triangle_latents(corners: np.ndarray, steps: int = 6) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Barycentric blends of three latents: row i (0..steps) holds i+1 points; row 0 is A,
    the last row runs from B to C. Returns the latents and each one's (row, column)."""
    a, b, c = np.asarray(corners, np.float32)[:3]
    zs, where = [], []
    for i in range(steps + 1):
        t = i / steps  # from A toward the B–C edge
        for j in range(i + 1):
            s = j / i if i else 0.0  # along the row, from the B side to the C side
            zs.append((1 - t) * a + t * ((1 - s) * b + s * c))
            where.append((i, j))
    return np.stack(zs).astype(np.float32), where


def three_point(
    codec: Codec,
    corners: np.ndarray | None = None,
    steps: int = 6,
    seed: int = 0,
    reference_mu: np.ndarray | None = None,
) -> np.ndarray:
    """The three-point check: decode a triangle of interpolations between three latents
    (sampled from the prior unless given). Faces that barely change inside the triangle,
    or the same face everywhere, point to mode collapse or an ignored latent."""
    if corners is None:
        corners = _sample_latents(codec, 3, seed, reference_mu)
    zs, where = triangle_latents(corners, steps)
    decoded = codec.decode(zs)
    cells: list[np.ndarray | None] = [None] * ((steps + 1) * (steps + 1))
    for im, (i, j) in zip(decoded, where):
        cells[i * (steps + 1) + j] = im
    return grid(cells, steps + 1)


def traversals(
    codec: Codec,
    z0: np.ndarray | None = None,
    kl_per_dim: Sequence[float] | None = None,
    n_dims: int = 10,
    n_steps: int = 7,
    span: float = 3.0,
    scale: np.ndarray | None = None,
) -> tuple[np.ndarray, list[int]]:
    """Rows = latent dimensions, most informative first (by KL); columns = z0 moved along that
    dimension from −span·σ to +span·σ (σ = 1, or `scale` per dimension for an AE/PCA).
    Returns the grid and the dimension shown in each row."""
    d = codec.config.latent_dim
    z0 = np.zeros(d, np.float32) if z0 is None else np.asarray(z0, np.float32).reshape(d)
    order = list(range(d)) if kl_per_dim is None else list(np.argsort(-np.asarray(kl_per_dim), kind="stable"))
    dims = [int(i) for i in order[: max(1, min(n_dims, d))]]
    sigma = np.ones(d, np.float32) if scale is None else np.asarray(scale, np.float32)
    offsets = np.linspace(-span, span, n_steps, dtype=np.float32)
    zs = np.repeat(z0[None], len(dims) * n_steps, axis=0)
    for r, dim in enumerate(dims):
        zs[r * n_steps : (r + 1) * n_steps, dim] += offsets * sigma[dim]
    return grid(codec.decode(zs), n_steps), dims


def heldout_figures(codec: Codec, images: np.ndarray) -> dict:
    """PSNR / SSIM of reconstructions from μ, KL per dimension and active units."""
    images = resize_images(np.asarray(images), codec.config.image_size)
    mu, logvar = codec.encode(images)
    recon = codec.decode(mu)
    variational = codec.config.spec.variational
    kl = metrics.kl_per_dim(mu, logvar) if variational else metrics.kl_stand_in(mu)
    return {
        "n": int(len(images)),
        "psnr": float(metrics.psnr(recon, images).mean()),
        "ssim": float(metrics.ssim(recon, images).mean()),
        "kl_per_dim": [float(v) for v in kl],
        "active_units": metrics.active_units(kl),
        "mu": mu,
    }


def save_png(path: str | Path, image: np.ndarray, scale: int = 1) -> Path:
    """Write an RGB uint8 image as PNG (atomically), optionally enlarged `scale`× (nearest)."""
    from PIL import Image

    if scale > 1:
        image = image.repeat(scale, 0).repeat(scale, 1)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG")
    return write_bytes_atomic(path, buf.getvalue())


def evaluation_grids(codec: Codec, val: np.ndarray, figs: dict, seed: int = 0) -> tuple[dict[str, np.ndarray], list[int]]:
    """The four grids of a run (reconstructions, prior samples, the three-point triangle,
    traversals) from its held-out crops and their `heldout_figures`; and the traversed dims.
    Traversals step by 1 where the latents follow N(0, I), else by each dimension's spread."""
    mu = figs["mu"]
    scale = None if codec.config.spec.variational else mu.std(0)
    trav, dims = traversals(codec, mu[0], figs["kl_per_dim"], scale=scale)
    return {
        "reconstructions": reconstructions(codec, val, n=16),
        "samples": prior_samples(codec, 32, seed, mu),
        "triangle": three_point(codec, seed=seed, reference_mu=mu),
        "traversals": trav,
    }, dims


def evaluate_run(workspace, run_id: str, out_dir: str | Path | None = None, seed: int = 0) -> dict:
    """Held-out figures of a trained run, and (with `out_dir`) its four PNG grids."""
    from facelab.model.train import load_images, split_ids

    codec = load_codec(workspace.run_dir(run_id))
    split = split_ids(workspace)
    val = load_images(workspace, split.val_ids, codec.config.image_size)
    figs = heldout_figures(codec, val)
    result = {"run": run_id, "kind": codec.config.kind, "latent_dim": codec.config.latent_dim,
              "split_note": split.note, **{k: v for k, v in figs.items() if k != "mu"}, "files": {}}
    if out_dir is not None:
        images, result["traversal_dims"] = evaluation_grids(codec, val, figs, seed)
        for name, im in images.items():
            result["files"][name] = str(save_png(Path(out_dir) / f"{name}.png", im, scale=2))
    return result


def compression_curve(
    train_images: np.ndarray,
    val_images: np.ndarray,
    latent_sizes: Sequence[int] = (2, 4, 8, 16, 32),
    kinds: Sequence[str] = ("pca", "ae", "betavae"),
    epochs: int = 10,
    image_size: int = 32,
    beta: float = 1.0,
    seed: int = 0,
    progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    lr: float = 1e-3,
    min_steps: int = 600,
) -> list[dict]:
    """Held-out PSNR against latent size for each kind: a small model per point.

    Slow (it trains len(kinds) × len(latent_sizes) models), so it is small by default
    (32-pixel crops, 10 epochs). `progress` gets {"done", "total", "kind", "latent_dim"}.
    Returns one dict per point: kind, latent_dim, val_psnr, val_ssim, active_units.
    """
    from facelab.model.train import Trainer, pca_metrics

    train_images = resize_images(np.asarray(train_images), image_size)
    val_images = resize_images(np.asarray(val_images), image_size)
    total = len(kinds) * len(latent_sizes)
    points: list[dict] = []
    for kind in kinds:
        for d in latent_sizes:
            if should_stop is not None and should_stop():
                return points
            if progress is not None:
                progress({"done": len(points), "total": total, "kind": kind, "latent_dim": d})
            # Small models on a small dataset: a higher lr and at least `min_steps` updates, or
            # the neural points would measure under-training rather than latent size.
            steps_per_epoch = max(1, math.ceil(len(train_images) / ModelConfig().batch_size))
            n_steps = max(min_steps, epochs * steps_per_epoch)
            config = ModelConfig(kind=kind, latent_dim=d, beta=beta, image_size=image_size,
                                 steps=n_steps, eval_every=n_steps, seed=seed, lr=lr)
            if kind == "pca":
                m = pca_metrics(PCABaseline(config).fit(train_images), val_images)
            else:
                m = Trainer(config, train_images, val_images).run(should_stop)
                if m is None:
                    return points
            points.append({"kind": kind, "latent_dim": d, "val_psnr": m["val_psnr"],
                           "val_ssim": m["val_ssim"], "active_units": m["active_units"]})
    if progress is not None:
        progress({"done": total, "total": total})
    return points


def workspace_compression_curve(workspace, image_size: int = 32, **kwargs) -> list[dict]:
    """`compression_curve` on a workspace's own crops and held-out split (see there)."""
    from facelab.model.train import load_images, split_ids

    split = split_ids(workspace)
    return compression_curve(load_images(workspace, split.train_ids, image_size),
                             load_images(workspace, split.val_ids, image_size),
                             image_size=image_size, **kwargs)

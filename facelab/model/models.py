"""The models: β-VAE networks (the paper's, and a PCA-started residual one), AE/VAE variants, PCA.

Every kind is used through one `Codec` interface, numpy in and out, so pages never care which
model a run holds: `encode(uint8 N×S×S×3) -> (μ, logσ²)` and `decode(z) -> uint8 images`.
A run folder holds `config.json` plus `model.pt` (a state_dict) or `pca.npz` (plain arrays), so
nothing is ever unpickled.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from facelab.model import metrics
from facelab.model.model_config import (  # noqa: F401  (re-exported: models is where callers look)
    ARCHS,
    AUGMENTS,
    CONFIG_FILE,
    IMAGE_SIZES,
    LEGACY,
    LR_SCHEDULES,
    MODEL_FILE,
    MSE_SIGMA,
    PCA_FILE,
    RECONS,
    SHIFT_PX,
    WEIGHTS_FILES,
    Kind,
    ModelConfig,
    ModelError,
    kind_of,
    kinds,
    register_kind,
)
from facelab.store.storage import write_atomic, write_bytes_atomic


# --- the networks --------------------------------------------------------------------------
class BetaVAE(nn.Module):
    """The β-VAE paper's CelebA network (arch "paper"), for 32/64/128-pixel inputs.

    Encoder: four 4×4 stride-2 convolutions (32, 32, 64, 64 channels) → FC 256 → μ and logσ².
    Decoder: the mirror image with transposed convolutions. ReLU throughout. The decoder returns
    logits; `image()` (a sigmoid) turns them into the image in [0, 1]. With `config.kind == "ae"`
    there is no logσ² head and no sampling: it is a plain deterministic autoencoder.
    """

    logits = True  # decode() gives logits (BCE applies to them directly)

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        d, s = config.latent_dim, config.image_size
        self.feat = s // 16
        flat = 64 * self.feat * self.feat
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 32, 4, 2, 1), nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, 4, 2, 1), nn.ReLU(inplace=True),
            nn.Flatten(),
            nn.Linear(flat, 256), nn.ReLU(inplace=True),
        )
        self.to_stats = nn.Linear(256, d if config.deterministic else 2 * d)
        self.decoder_fc = nn.Sequential(
            nn.Linear(d, 256), nn.ReLU(inplace=True),
            nn.Linear(256, flat), nn.ReLU(inplace=True),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(32, 3, 4, 2, 1),
        )

    def init_from_data(self, images_u8: np.ndarray) -> None:
        """Data-dependent initialisation before training: none for the paper's network."""

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stats = self.to_stats(self.encoder(x))
        if self.config.deterministic:
            return stats, torch.zeros_like(stats)
        mu, logvar = stats.chunk(2, dim=1)
        return mu, logvar

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: float N×3×S×S in [0, 1] → (μ, logσ²); an AE gives logσ² = zeros."""
        return self._stats(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z → the network's raw output N×3×S×S (logits here); `image()` maps it to [0, 1]."""
        h = self.decoder_fc(z).view(-1, 64, self.feat, self.feat)
        return self.decoder(h)

    def image(self, out: torch.Tensor) -> torch.Tensor:
        """The decoder's raw output → the image in [0, 1]."""
        return torch.sigmoid(out)

    def forward(
        self, x: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (raw output, μ, logσ²); `noise` ~ N(0, I) is given by the caller so that the
        training loop owns (and checkpoints) every random number."""
        mu, logvar = self.encode(x)
        z = mu if noise is None or self.config.deterministic else mu + noise * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar


class PCAResidualVAE(BetaVAE):
    """Arch "pcares": decoded = mean + W z + residual(z), μ = P (x − mean) + residual(x).

    W and P start as the training crops' PCA basis scaled for unit-variance codes (the whitened
    PCA of `PCABaseline`), so the model reconstructs like PCA from step 0 and training only has
    to learn what is non-linear; the residual paths are the paper's convolutional networks with
    their last layer zeroed. A short clip gets a good model in minutes this way, where the
    paper's network alone starts from a grey blur. Outputs pixels, not logits. Everything
    learned or fitted is a parameter, so it lives in the state_dict.
    """

    logits = False
    LOGVAR_INIT = -4.0  # posterior σ ≈ 0.14 of a unit-variance code at the start

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        n, d = 3 * config.image_size ** 2, config.latent_dim
        self.mean = nn.Parameter(torch.full((n,), 0.5))
        self.enc_basis = nn.Parameter(torch.zeros(n, d))
        self.dec_basis = nn.Parameter(torch.zeros(d, n))
        nn.init.zeros_(self.to_stats.weight)
        nn.init.zeros_(self.to_stats.bias)
        if not config.deterministic:
            self.to_stats.bias.data[d:] = self.LOGVAR_INIT
        last = self.decoder[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    @torch.no_grad()
    def init_from_data(self, images_u8: np.ndarray, max_images: int = 3000) -> None:
        """Fit the linear path to (at most `max_images` of) the training crops' PCA."""
        images = np.asarray(images_u8)
        if len(images) > max_images:
            rng = np.random.default_rng(self.config.seed)
            images = images[np.sort(rng.choice(len(images), max_images, replace=False))]
        pca = PCABaseline(self.config).fit(images)
        k = pca.components_.shape[0]
        dev = self.mean.device
        self.mean.copy_(torch.from_numpy(pca.mean_).to(dev))
        self.enc_basis.zero_()
        self.dec_basis.zero_()
        self.enc_basis[:, :k] = torch.from_numpy(pca.components_.T / pca.scale_).to(dev)
        self.dec_basis[:k] = torch.from_numpy(pca.components_ * pca.scale_[:, None]).to(dev)

    def _flat(self, x: torch.Tensor) -> torch.Tensor:  # N×3×S×S → N×(S·S·3), PCABaseline's order
        return x.permute(0, 2, 3, 1).reshape(len(x), -1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self._stats(x)
        return mu + (self._flat(x) - self.mean) @ self.enc_basis, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        s = self.config.image_size
        linear = (z @ self.dec_basis + self.mean).view(-1, s, s, 3).permute(0, 3, 1, 2)
        return linear + super().decode(z)

    def image(self, out: torch.Tensor) -> torch.Tensor:
        return out.clamp(0.0, 1.0)


NETWORKS = {"paper": BetaVAE, "pcares": PCAResidualVAE}


def to_float_images(batch_u8: torch.Tensor) -> torch.Tensor:
    """uint8 N×S×S×3 → float N×3×S×S in [0, 1], channels_last in memory (a view, no copy
    of the layout: NHWC data *is* channels_last NCHW)."""
    return batch_u8.permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8_images(x: torch.Tensor) -> np.ndarray:
    """float N×3×S×S in [0, 1] → uint8 N×S×S×3 numpy."""
    return metrics.to_8bit(x).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


# --- PCA ---------------------------------------------------------------------------------
class PCABaseline:
    """Linear baseline: whitened PCA scores as the latent code.

    Whitening makes each code dimension unit variance over the training crops, so prior
    samples from N(0, I), ±3σ traversals and interpolations mean the same as for the VAE.
    sklearn style: `fit(images)` returns self; learned arrays end in `_`.
    """

    def __init__(self, config: ModelConfig):
        self.config = config

    def fit(self, images: np.ndarray, seed: int | None = None) -> "PCABaseline":
        from sklearn.decomposition import PCA

        x = _flat(images, self.config.image_size)
        k = min(self.config.latent_dim, x.shape[0], x.shape[1])
        if k < 1:
            raise ModelError("PCA needs at least one training image")
        pca = PCA(n_components=k, svd_solver="randomized" if k < min(x.shape) // 2 else "full",
                  random_state=self.config.seed if seed is None else seed)
        pca.fit(x)
        self.mean_ = pca.mean_.astype(np.float32)
        self.components_ = pca.components_.astype(np.float32)
        self.scale_ = np.sqrt(np.maximum(pca.explained_variance_, 1e-12)).astype(np.float32)
        return self

    def _pad(self, z: np.ndarray) -> np.ndarray:
        d = self.config.latent_dim
        return z if z.shape[1] == d else np.pad(z, ((0, 0), (0, d - z.shape[1])))

    def encode(self, images: np.ndarray, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
        x = _flat(images, self.config.image_size)
        z = ((x - self.mean_) @ self.components_.T) / self.scale_
        z = self._pad(z.astype(np.float32))
        return z, np.zeros_like(z)

    def decode(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, np.float32)[:, : self.components_.shape[0]]
        x = (z * self.scale_) @ self.components_ + self.mean_
        s = self.config.image_size
        return (np.clip(x, 0, 1) * 255).round().astype(np.uint8).reshape(-1, s, s, 3)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean_, "components": self.components_, "scale": self.scale_}

    @classmethod
    def from_arrays(cls, config: ModelConfig, arrays) -> "PCABaseline":
        self = cls(config)
        self.mean_ = np.asarray(arrays["mean"], np.float32)
        self.components_ = np.asarray(arrays["components"], np.float32)
        self.scale_ = np.asarray(arrays["scale"], np.float32)
        return self


def _flat(images: np.ndarray, size: int) -> np.ndarray:
    images = resize_images(np.asarray(images), size)
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 N×s×s×3 → N×size×size×3 (area filter when shrinking); a no-op when equal."""
    images = _check_images(images)
    if images.shape[1] == size:
        return images
    import cv2

    interp = cv2.INTER_AREA if images.shape[1] > size else cv2.INTER_LINEAR
    out = np.empty((len(images), size, size, 3), np.uint8)
    for i, im in enumerate(images):
        out[i] = cv2.resize(im, (size, size), interpolation=interp)
    return out


def _check_images(images: np.ndarray) -> np.ndarray:
    if images.ndim != 4 or images.shape[3] != 3 or images.shape[1] != images.shape[2]:
        raise ModelError(f"expected square RGB crops N×S×S×3, got an array of shape {images.shape}")
    if images.dtype != np.uint8:
        raise ModelError(f"expected uint8 crops, got {images.dtype}")
    return images


# --- the one interface pages use ---------------------------------------------------------
class Codec(Protocol):
    """What every page uses, numpy in/out, any model kind."""

    config: ModelConfig

    def encode(self, images: np.ndarray, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]: ...

    def decode(self, z: np.ndarray) -> np.ndarray: ...


class TorchCodec:
    """A trained BetaVAE (any of betavae/vae/ae) behind the numpy Codec interface."""

    def __init__(self, model: BetaVAE, device: torch.device | None = None):
        from facelab.model.device import pick_device

        self.config = model.config
        self.device = device or pick_device()
        self.model = model.to(self.device).to(memory_format=torch.channels_last).eval()

    @torch.inference_mode()
    def encode(self, images: np.ndarray, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
        images = resize_images(np.asarray(images), self.config.image_size)
        mus, logvars = [], []
        for i in range(0, len(images), batch_size):
            x = to_float_images(torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size])).to(self.device))
            mu, logvar = self.model.encode(x)
            mus.append(mu.float().cpu())
            logvars.append(logvar.float().cpu())
        d = self.config.latent_dim
        if not mus:
            return np.zeros((0, d), np.float32), np.zeros((0, d), np.float32)
        return torch.cat(mus).numpy(), torch.cat(logvars).numpy()

    @torch.inference_mode()
    def decode(self, z: np.ndarray, batch_size: int = 512) -> np.ndarray:
        z = np.asarray(z, np.float32)
        if z.ndim != 2 or z.shape[1] != self.config.latent_dim:
            raise ModelError(f"expected latents N×{self.config.latent_dim}, got shape {z.shape}")
        out = []
        for i in range(0, len(z), batch_size):
            raw = self.model.decode(torch.from_numpy(z[i : i + batch_size]).to(self.device))
            out.append(to_uint8_images(self.model.image(raw)))
        s = self.config.image_size
        return np.concatenate(out) if out else np.zeros((0, s, s, 3), np.uint8)


def build_model(config: ModelConfig) -> BetaVAE:
    """A freshly initialised network, the same for the same config.seed."""
    if config.spec.fitted:
        raise ModelError(f"a {config.spec.label} run has no network")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return NETWORKS[config.arch](config)


def save_model(run_dir: str | Path, model_or_pca: BetaVAE | PCABaseline, config: ModelConfig) -> None:
    """Write the weights (state_dict or PCA arrays), then config.json, each atomically."""
    run_dir = Path(run_dir)
    if isinstance(model_or_pca, PCABaseline):
        write_atomic(run_dir / PCA_FILE, lambda f: np.savez(f, **model_or_pca.arrays()))
    else:
        model = getattr(model_or_pca, "_orig_mod", model_or_pca)  # unwrap torch.compile
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        write_atomic(run_dir / MODEL_FILE, lambda f: torch.save(state, f))
    write_bytes_atomic(run_dir / CONFIG_FILE, config.to_json().encode())


def load_config(run_dir: str | Path) -> ModelConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        raise ModelError(f"run {Path(run_dir).name!r} has no trained model yet")
    return ModelConfig.from_json(path.read_text())


def load_codec(run_dir: str | Path, device: torch.device | None = None) -> Codec:
    """The trained model of a run folder behind the Codec interface."""
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    if config.spec.fitted:
        with np.load(run_dir / PCA_FILE, allow_pickle=False) as arrays:
            return PCABaseline.from_arrays(config, arrays)
    path = run_dir / MODEL_FILE
    if not path.exists():
        raise ModelError(f"run {run_dir.name!r} has no model.pt")
    try:
        state = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        # weights_only refuses anything but tensors and plain containers: a damaged file, or
        # one holding arbitrary objects, ends up here and is never unpickled.
        raise ModelError(f"model.pt of run {run_dir.name!r} is damaged or not a facelab model ({e})") from None
    if not isinstance(state, dict):
        raise ModelError(f"model.pt of run {run_dir.name!r} does not hold a state_dict")
    model = NETWORKS[config.arch](config)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ModelError(f"model.pt of run {run_dir.name!r} does not match its config: {e}") from None
    return TorchCodec(model, device)

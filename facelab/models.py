"""The models: the β-VAE of Higgins et al. (2017), its AE/VAE variants, a PCA baseline.

Every kind is used through one `Codec` interface, numpy in and out, so pages never care which
model a run holds: `encode(uint8 N×S×S×3) -> (μ, logσ²)` and `decode(z) -> uint8 images`.
A run folder holds `config.json` plus `model.pt` (a state_dict) or `pca.npz` (plain arrays), so
nothing is ever unpickled.
"""

from __future__ import annotations

import io
import json
import pickle
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from facelab.storage import write_atomic, write_bytes_atomic

KINDS = ("betavae", "vae", "ae", "pca")
IMAGE_SIZES = (32, 64, 128)
RECONS = ("bce", "mse")
CONFIG_FILE = "config.json"
MODEL_FILE = "model.pt"
PCA_FILE = "pca.npz"


class ModelError(ValueError):
    """A bad model setting or a run folder that cannot be loaded; the message is for the user."""


@dataclass
class ModelConfig:
    """Everything that defines a run's model and its training; saved as config.json."""

    kind: str = "betavae"  # "betavae" | "vae" (β=1) | "ae" (deterministic) | "pca"
    latent_dim: int = 32
    beta: float = 4.0
    image_size: int = 64  # 32 / 64 / 128; crops of another size are resized once at load
    recon: str = "bce"  # "bce" (Bernoulli) | "mse" (Gaussian)
    lr: float = 1e-4
    batch_size: int = 64
    epochs: int = 50
    kl_warmup_epochs: int = 0
    seed: int = 0
    compile: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "ModelConfig":
        if self.kind not in KINDS:
            raise ModelError(f"unknown model kind {self.kind!r}: choose one of {', '.join(KINDS)}")
        if self.image_size not in IMAGE_SIZES:
            raise ModelError(f"image size must be one of {IMAGE_SIZES}, not {self.image_size}")
        if self.recon not in RECONS:
            raise ModelError(f"reconstruction loss must be 'bce' or 'mse', not {self.recon!r}")
        if not 1 <= int(self.latent_dim) <= 1024:
            raise ModelError(f"latent size must be between 1 and 1024, not {self.latent_dim}")
        if self.beta < 0:
            raise ModelError(f"β must be 0 or more, not {self.beta}")
        if not self.lr > 0:
            raise ModelError(f"learning rate must be positive, not {self.lr}")
        if self.batch_size < 1 or self.epochs < 1 or self.kl_warmup_epochs < 0:
            raise ModelError("batch size and epochs must be at least 1, KL warm-up 0 or more")
        return self

    @property
    def effective_beta(self) -> float:
        """β as trained: 1 for a plain VAE, 0 for an AE (which has no KL term)."""
        return {"vae": 1.0, "ae": 0.0}.get(self.kind, float(self.beta))

    @property
    def deterministic(self) -> bool:
        return self.kind == "ae"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> "ModelConfig":
        try:
            data = json.loads(s)
        except json.JSONDecodeError as e:
            raise ModelError(f"model config is not valid JSON: {e}") from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(f"unknown model settings: {', '.join(unknown)}")
        return cls(**data)


# --- the network ---------------------------------------------------------------------------
class BetaVAE(nn.Module):
    """The β-VAE paper's CelebA network, for 32/64/128-pixel inputs.

    Encoder: four 4×4 stride-2 convolutions (32, 32, 64, 64 channels) → FC 256 → μ and logσ².
    Decoder: the mirror image with transposed convolutions. ReLU throughout. The decoder returns
    logits; `torch.sigmoid` of them is the image in [0, 1] (for both BCE and MSE losses, which
    keeps MSE outputs in range too). With `config.kind == "ae"` there is no logσ² head and no
    sampling: it is a plain deterministic autoencoder.
    """

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

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: float N×3×S×S in [0, 1] → (μ, logσ²); an AE gives logσ² = zeros."""
        stats = self.to_stats(self.encoder(x))
        if self.config.deterministic:
            return stats, torch.zeros_like(stats)
        mu, logvar = stats.chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z → logits N×3×S×S (channels_last when the model is)."""
        h = self.decoder_fc(z).view(-1, 64, self.feat, self.feat)
        return self.decoder(h)

    def forward(
        self, x: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (logits, μ, logσ²); `noise` ~ N(0, I) is given by the caller so that the
        training loop owns (and checkpoints) every random number."""
        mu, logvar = self.encode(x)
        z = mu if noise is None or self.config.deterministic else mu + noise * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar


def to_float_images(batch_u8: torch.Tensor) -> torch.Tensor:
    """uint8 N×S×S×3 → float N×3×S×S in [0, 1], channels_last in memory (a view, no copy
    of the layout: NHWC data *is* channels_last NCHW)."""
    return batch_u8.permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8_images(x: torch.Tensor) -> np.ndarray:
    """float N×3×S×S in [0, 1] → uint8 N×S×S×3 numpy."""
    return (x.clamp(0, 1) * 255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


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
        from facelab.device import pick_device

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
            logits = self.model.decode(torch.from_numpy(z[i : i + batch_size]).to(self.device))
            out.append(to_uint8_images(torch.sigmoid(logits)))
        s = self.config.image_size
        return np.concatenate(out) if out else np.zeros((0, s, s, 3), np.uint8)


def build_model(config: ModelConfig) -> BetaVAE:
    """A freshly initialised network, the same for the same config.seed."""
    if config.kind == "pca":
        raise ModelError("a PCA run has no network")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return BetaVAE(config)


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
    if config.kind == "pca":
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
    model = BetaVAE(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ModelError(f"model.pt of run {run_dir.name!r} does not match its config: {e}") from None
    return TorchCodec(model, device)

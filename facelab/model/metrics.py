"""Image and latent metrics: PSNR, SSIM, KL per latent dimension, active units.

One implementation each, in torch (so training computes them on its own device without a trip
through numpy), with numpy wrappers for pages and the CLI.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

ACTIVE_KL_NATS = 0.01  # a latent dimension is "active" when its mean KL exceeds this


def psnr_torch(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB of N×C×H×W tensors (capped at 100 dB for identical images)."""
    mse = (x.float() - y.float()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(data_range**2 / mse.clamp_min(1e-10))).clamp_max(100.0)


def to_8bit(x: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] rounded to a uint8 image's 256 levels (still float, 0-255): the
    picture shown and saved, so held-out PSNR during training and after it measure the same."""
    return x.clamp(0, 1).mul(255.0).round_()


def _gauss_window(size: int, sigma: float, channels: int, device, dtype) -> torch.Tensor:
    g = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(g**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim_torch(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004: 11×11 Gaussian window, σ 1.5, 'valid' borders),
    averaged over channels, of N×C×H×W tensors."""
    x, y = x.float().contiguous(), y.float().contiguous()
    c = x.shape[1]
    size = min(11, x.shape[2], x.shape[3])
    w = _gauss_window(size, 1.5, c, x.device, x.dtype)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = F.conv2d(x, w, groups=c), F.conv2d(y, w, groups=c)
    sxx = F.conv2d(x * x, w, groups=c) - mu_x**2
    syy = F.conv2d(y * y, w, groups=c) - mu_y**2
    sxy = F.conv2d(x * y, w, groups=c) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1)


def _u8_to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image PSNR (dB) of two uint8 N×H×W×3 arrays."""
    return psnr_torch(_u8_to_tensor(a), _u8_to_tensor(b)).numpy()


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image SSIM of two uint8 N×H×W×3 arrays."""
    return ssim_torch(_u8_to_tensor(a), _u8_to_tensor(b)).numpy()


def kl_per_dim_torch(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per image and dimension, N×D, in nats."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def kl_per_dim(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """Mean KL per latent dimension over the images (D,), in nats."""
    return kl_per_dim_torch(torch.from_numpy(mu), torch.from_numpy(logvar)).mean(0).numpy()


def kl_stand_in(mu: np.ndarray) -> np.ndarray:
    """Half the variance of μ per dimension (D,): what stands in for the KL of a kind without a
    posterior (AE, PCA), the KL it would have with unit-variance posteriors."""
    mu = np.asarray(mu, np.float64)
    return 0.5 * mu.var(0) if len(mu) > 1 else np.zeros(mu.shape[1])


def active_units(kl_dims: np.ndarray | list[float], threshold: float = ACTIVE_KL_NATS) -> int:
    """How many dimensions carry information (mean KL above `threshold` nats)."""
    return int((np.asarray(kl_dims) > threshold).sum())

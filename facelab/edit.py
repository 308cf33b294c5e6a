"""Edits in latent space: interpolation between two faces, and shifts along directions.

Everything here is a pure function of numpy latents (float32 N x D), so the Explore and
Shift pages, the webcam pipeline and the CLI share one implementation. A codec (see
`facelab.models`) is only needed to turn latents back into pictures.

Shifts are clipped to a box around the data (`LatentBounds`, default mean +- 6 std per
dimension) so that a slider pushed to its end, or a huge alpha typed into the CLI, still gives
finite latents the decoder has a chance of drawing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:  # imported for hints only: facelab.models pulls in torch
    from facelab.directions import Direction
    from facelab.models import Codec

Method = Literal["linear", "slerp"]
METHODS: tuple[str, ...] = ("linear", "slerp")
# Below this angle (radians) two latents are treated as parallel and slerp falls back to lerp.
PARALLEL_EPS = 1e-4
BOUND_SIGMAS = 6.0


class EditError(ValueError):
    """An edit that cannot be done as asked; the message is meant for the user."""


# --- interpolation ------------------------------------------------------------------------
def _as_vector(z: np.ndarray, name: str) -> np.ndarray:
    v = np.asarray(z, dtype=np.float64)
    if v.ndim == 2 and v.shape[0] == 1:
        v = v[0]
    if v.ndim != 1 or v.size == 0:
        raise EditError(f"{name} must be one latent vector, got shape {np.shape(z)}")
    if not np.all(np.isfinite(v)):
        raise EditError(f"{name} has non-finite values")
    return v


def _weights(steps: int) -> np.ndarray:
    if int(steps) != steps or steps < 2:
        raise EditError(f"steps must be a whole number >= 2 (both ends included), got {steps}")
    return np.linspace(0.0, 1.0, int(steps))


def lerp(z_a: np.ndarray, z_b: np.ndarray, steps: int) -> np.ndarray:
    """`steps` latents on the straight line from z_a to z_b, both ends included (steps x D)."""
    a, b = _as_vector(z_a, "z_a"), _as_vector(z_b, "z_b")
    if a.shape != b.shape:
        raise EditError(f"latents differ in size: {a.size} vs {b.size}")
    t = _weights(steps)[:, None]
    out = (1.0 - t) * a + t * b
    out[0], out[-1] = a, b  # exact ends, no rounding
    return out.astype(np.float32)


def slerp(z_a: np.ndarray, z_b: np.ndarray, steps: int) -> np.ndarray:
    """Spherical interpolation: along the great circle between the directions of z_a and z_b.

    Why: a Gaussian prior puts almost all its mass near a sphere, and a straight line between
    two points passes through the low-norm middle; slerp keeps the norm (exactly, for unit
    vectors; for others the norm moves smoothly between |z_a| and |z_b|). Parallel (and
    anti-parallel) vectors have no unique great circle, so those fall back to lerp.
    """
    a, b = _as_vector(z_a, "z_a"), _as_vector(z_b, "z_b")
    if a.shape != b.shape:
        raise EditError(f"latents differ in size: {a.size} vs {b.size}")
    t = _weights(steps)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0.0 or nb == 0.0:
        return lerp(a, b, steps)
    cos = float(np.clip(np.dot(a / na, b / nb), -1.0, 1.0))
    omega = np.arccos(cos)
    if omega < PARALLEL_EPS or np.pi - omega < PARALLEL_EPS:
        return lerp(a, b, steps)
    so = np.sin(omega)
    wa = np.sin((1.0 - t) * omega) / so
    wb = np.sin(t * omega) / so
    out = wa[:, None] * a + wb[:, None] * b
    out[0], out[-1] = a, b
    return out.astype(np.float32)


def interpolate(z_a: np.ndarray, z_b: np.ndarray, steps: int, method: Method = "linear") -> np.ndarray:
    if method == "linear":
        return lerp(z_a, z_b, steps)
    if method == "slerp":
        return slerp(z_a, z_b, steps)
    raise EditError(f"unknown interpolation {method!r}: use one of {', '.join(METHODS)}")


def interpolation_strip(
    codec: "Codec", z_a: np.ndarray, z_b: np.ndarray, steps: int, method: Method = "linear"
) -> np.ndarray:
    """The decoded faces between two latents: uint8 steps x S x S x 3 RGB."""
    return codec.decode(interpolate(z_a, z_b, steps, method))


# --- shifts -------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)  # holds arrays: compare fields, not objects
class LatentBounds:
    """A box in latent space that shifted latents are clipped into."""

    low: np.ndarray
    high: np.ndarray

    @classmethod
    def from_latents(cls, latents: np.ndarray, sigmas: float = BOUND_SIGMAS) -> "LatentBounds":
        z = np.asarray(latents, dtype=np.float64)
        if z.ndim != 2 or z.shape[0] == 0:
            raise EditError(f"need a non-empty N x D array of latents, got shape {z.shape}")
        mean, std = z.mean(0), z.std(0)
        std = np.where(std > 0, std, 1.0)
        return cls((mean - sigmas * std).astype(np.float32), (mean + sigmas * std).astype(np.float32))

    @classmethod
    def prior(cls, dim: int, sigmas: float = BOUND_SIGMAS) -> "LatentBounds":
        """The box of a standard normal prior, used when no data is at hand."""
        return cls(np.full(dim, -sigmas, np.float32), np.full(dim, sigmas, np.float32))

    def clip(self, z: np.ndarray) -> np.ndarray:
        return np.clip(z, self.low, self.high)


def _step_of(direction: "Direction | np.ndarray", alpha: float) -> np.ndarray:
    """alpha x spread x unit vector for a Direction; alpha x vector for a plain array."""
    if not np.isfinite(alpha):
        raise EditError(f"alpha must be a finite number, got {alpha}")
    vector = getattr(direction, "vector", None)
    if vector is None:
        return float(alpha) * np.asarray(direction, dtype=np.float64)
    if getattr(direction, "kind", "") == "centre":
        raise EditError(
            f"{direction.name!r} is a centre, not a direction: move toward it with `toward`"
        )
    return float(alpha) * float(direction.spread) * np.asarray(vector, dtype=np.float64)


def shift(
    z: np.ndarray,
    directions_and_alphas: Iterable[tuple["Direction | np.ndarray", float]],
    bounds: LatentBounds | None = None,
) -> np.ndarray:
    """z' = z + sum(alpha_i * spread_i * d_i), clipped into `bounds` (default: prior +- 6).

    A `Direction`'s alpha is in units of its spread (the std of the data along it), so a
    slider from -3 to 3 covers the same share of the data for every direction. A plain
    array is used as the full step per unit alpha. `z` may be one vector or N x D.
    """
    z64 = np.asarray(z, dtype=np.float64)
    if z64.ndim not in (1, 2) or z64.shape[-1] == 0:
        raise EditError(f"z must be a latent vector or an N x D array, got shape {z64.shape}")
    out = z64.copy()
    for direction, alpha in directions_and_alphas:
        step = _step_of(direction, alpha)
        if step.shape != (z64.shape[-1],):
            raise EditError(f"direction has {step.size} values, the latents have {z64.shape[-1]}")
        out = out + step
    return _finish(out, bounds, z64.shape[-1])


def toward(
    z: np.ndarray, centre: np.ndarray, s: float, bounds: LatentBounds | None = None
) -> np.ndarray:
    """z' = z + s (c - z), s in [0, 1]: 0 leaves the face, 1 lands on the centre."""
    if not np.isfinite(s) or not 0.0 <= s <= 1.0:
        raise EditError(f"strength s must be between 0 and 1, got {s}")
    z64 = np.asarray(z, dtype=np.float64)
    c = np.asarray(centre, dtype=np.float64)
    if c.shape != (z64.shape[-1],):
        raise EditError(f"centre has shape {c.shape}, the latents have {z64.shape[-1]} values")
    if s == 0.0:
        return z64.astype(np.float32)
    if s == 1.0:
        return np.broadcast_to(c, z64.shape).astype(np.float32)
    return _finish(z64 + s * (c - z64), bounds, z64.shape[-1])


def _finish(z: np.ndarray, bounds: LatentBounds | None, dim: int) -> np.ndarray:
    bounds = bounds or LatentBounds.prior(dim)
    # nan_to_num first: inf - inf from two opposite huge sliders would otherwise give nan.
    z = np.nan_to_num(z, nan=0.0, posinf=np.finfo(np.float32).max, neginf=-np.finfo(np.float32).max)
    return bounds.clip(z).astype(np.float32)


def decode_one(codec: "Codec", z: np.ndarray) -> np.ndarray:
    """One latent vector -> one uint8 S x S x 3 face (what a slider update draws)."""
    return codec.decode(np.asarray(z, dtype=np.float32).reshape(1, -1))[0]


# --- how good is a shift ------------------------------------------------------------------
# The mouth region of a crop as fractions (rows from, rows to, columns from, columns to): the
# lower third, centre half. Expression edits should change pixels here more than elsewhere.
MOUTH_REGION = (2 / 3, 1.0, 0.25, 0.75)


@dataclass(frozen=True)
class ShiftQuality:
    """What a shift along a label direction did to a set of faces (means over the faces).

    probe_*: a linear probe's P(label) on the codes; image_probe_*: the same probe on the codes
    of the decoded pictures encoded again, which says whether the *picture* changed, not just
    the numbers. latent_along / latent_orthogonal: how far those re-encoded codes moved along
    the direction and across it (what else changed). pixel_inside / pixel_outside: mean
    absolute change (0-255) of the decoded pictures inside and outside the mouth region.
    """

    n: int
    alpha: float
    probe_before: float
    probe_after: float
    image_probe_before: float
    image_probe_after: float
    latent_along: float
    latent_orthogonal: float
    pixel_inside: float
    pixel_outside: float

    @property
    def focus(self) -> float:
        """pixel_inside / pixel_outside: above 1 when the change stays in the mouth region."""
        return self.pixel_inside / self.pixel_outside if self.pixel_outside > 0 else float("inf")


def region_mask(size: int, region: tuple[float, float, float, float] = MOUTH_REGION) -> np.ndarray:
    """Boolean size x size mask of a region given as fractions of the crop."""
    r0, r1, c0, c1 = (int(round(f * size)) for f in region)
    mask = np.zeros((size, size), dtype=bool)
    mask[r0:r1, c0:c1] = True
    return mask


def shift_quality(
    codec: "Codec",
    z: np.ndarray,
    direction: "Direction",
    probe,
    alpha: float = 2.0,
    bounds: LatentBounds | None = None,
    region: tuple[float, float, float, float] = MOUTH_REGION,
) -> ShiftQuality:
    """Shift the latents `z` (N x D) by alpha spreads along `direction` and measure the change.

    `probe` has `score(z) -> P(label)` (see `facelab.directions.LinearProbe`).
    """
    z = np.asarray(z, dtype=np.float32)
    if z.ndim != 2 or len(z) == 0:
        raise EditError(f"need latents of at least one face, got shape {z.shape}")
    z2 = shift(z, [(direction, alpha)], bounds)
    before, after = codec.decode(z), codec.decode(z2)
    r_before, _ = codec.encode(before)
    r_after, _ = codec.encode(after)
    d = np.asarray(direction.vector, dtype=np.float64)
    d = d / np.linalg.norm(d)
    move = np.asarray(r_after, np.float64) - np.asarray(r_before, np.float64)
    along = move @ d
    across = np.linalg.norm(move - along[:, None] * d, axis=1)
    diff = np.abs(after.astype(np.int16) - before.astype(np.int16)).mean(axis=3)  # N x S x S
    mask = region_mask(diff.shape[1], region)
    return ShiftQuality(
        n=len(z),
        alpha=float(alpha),
        probe_before=float(np.mean(probe.score(z))),
        probe_after=float(np.mean(probe.score(z2))),
        image_probe_before=float(np.mean(probe.score(r_before))),
        image_probe_after=float(np.mean(probe.score(r_after))),
        latent_along=float(along.mean()),
        latent_orthogonal=float(across.mean()),
        pixel_inside=float(diff[:, mask].mean()),
        pixel_outside=float(diff[:, ~mask].mean()),
    )

"""Edits in latent space: interpolation between two faces, and shifts along directions.

Everything here is a pure function of numpy latents (float32 N x D), so the Explore and
Shift pages, the webcam pipeline and the CLI share one implementation. A codec (see
`facelab.model.models`) is only needed to turn latents back into pictures.

Every move (slider steps along directions, toward a centre) goes through `compose`, clipped to
a box around the data (`LatentBounds`, default mean +- 6 std per dimension) so that a slider
pushed to its end, or a huge alpha typed into the CLI, still gives finite latents the decoder
has a chance of drawing. Pictures of an edit are detail-preserving by default (`with_change`,
`shift_faces`, `interpolation_strip(ends=...)`): the real face plus the decoded change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from facelab.errors import FacelabError

if TYPE_CHECKING:  # imported for hints only: facelab.model.models pulls in torch
    from facelab.edits.directions import Direction
    from facelab.model.models import Codec

Method = Literal["linear", "slerp"]
METHODS: tuple[str, ...] = ("linear", "slerp")
# Below this angle (radians) two latents are treated as parallel and slerp falls back to lerp.
PARALLEL_EPS = 1e-4
BOUND_SIGMAS = 6.0
MIN_ALONG = 0.05  # a label direction's vector . its normal, at least (see `_step_of`)


class EditError(FacelabError):
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
    codec: "Codec", z_a: np.ndarray, z_b: np.ndarray, steps: int, method: Method = "linear",
    ends: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The faces between two latents: uint8 steps x S x S x 3 RGB.

    With `ends` (the two real faces a and b, the latents' own crops) the strip preserves
    detail: frame t = (1 - t)(a + dec(z_t) - dec(z_a)) + t (b + dec(z_t) - dec(z_b)). Each real
    face carries its own detail along its path and the two paths blend, so the strip starts at
    a and ends at b exactly and only what the decoder changes on the way moves. Without
    `ends`: the plain decoded faces.
    """
    decoded = codec.decode(interpolate(z_a, z_b, steps, method))
    if ends is None:
        return decoded
    t = _weights(steps).astype(np.float32)[:, None, None, None]
    from_a = _plus_change(ends[0], decoded[0], decoded)
    from_b = _plus_change(ends[1], decoded[-1], decoded)
    return _to_uint8((1.0 - t) * from_a + t * from_b)


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


def _step_of(direction: "Direction | np.ndarray", alpha: float, z: np.ndarray) -> np.ndarray:
    """The step for `z` (D or N x D): for a label Direction alpha x (label_mean - z . n) / (d . n)
    x d, so alpha 1 moves each face along d until its score along n (the classifier normal a
    "mouth" direction was bent from, else d itself) is the labelled faces' mean; for a
    Direction made without labels alpha x spread x d; for a plain array alpha x vector."""
    if not np.isfinite(alpha):
        raise EditError(f"alpha must be a finite number, got {alpha}")
    vector = getattr(direction, "vector", None)
    if vector is None:
        return float(alpha) * np.asarray(direction, dtype=np.float64)
    if getattr(direction, "kind", "") == "centre":
        raise EditError(
            f"{direction.name!r} is a centre, not a direction: move toward it with a target"
        )
    d = np.asarray(vector, dtype=np.float64)
    if d.shape != z.shape[-1:]:
        raise EditError(f"direction has {d.size} values, the latents have {z.shape[-1]}")
    mean = getattr(direction, "label_mean", None)
    if mean is None:
        return float(alpha) * float(direction.spread) * d
    normal = getattr(direction, "normal", None)
    n = d if normal is None else normal
    # d . n > 0 for a bent direction: d = (A + rI)^-1 n with A + rI positive definite.
    along = float(d @ n) if n.shape == d.shape else 0.0
    if along < MIN_ALONG:
        raise EditError(f"{direction.name!r} has a broken normal (it must have {d.size} values and "
                        "point the same way as the direction): fit the direction again")
    return float(alpha) * ((mean - z @ n) / along)[..., None] * d


def unit_of(direction: "Direction") -> str:
    """What a slider's 1 means for this direction, in words for the page and the CLI."""
    if getattr(direction, "label_mean", None) is not None:
        label = direction.spec.get("label", direction.name)
        return f"0 = as is, 1 = your average {label}"
    return "in spreads of the data along it"


Shifts = Iterable[tuple["Direction | np.ndarray", float]]
FULL_ALPHA = 1.0  # "full": a label direction's average labelled face (the setting the judge measures)
SLIDER_END = 2.0  # the sliders reach twice that, to exaggerate


def compose(
    z: np.ndarray,
    shifts: Shifts = (),
    target: np.ndarray | None = None,
    strength: float = 0.0,
    bounds: LatentBounds | None = None,
) -> np.ndarray:
    """Every latent edit facelab makes: z' = z + s (c - z) + sum(step_i), clipped.

    The one composition the Shift page, `facelab shift` and the webcam share, so the same
    settings give the same face everywhere. Toward the centre first, then the slider steps
    added whole: a slider keeps its meaning whatever the strength (at s = 1 you land on the
    centre and the sliders still move you from there), where z + s (c - z) + (1 - s) d would
    silence every slider at full strength. A label `Direction`'s alpha is in units a person
    reads: 0 = as is, 1 = the labelled faces' mean projection ("your average smile"), measured
    from z's own projection along d_i, or along the normal n_i a "mouth" direction was bent
    from: step_i = alpha_i (label_mean_i - z . n_i) / (d_i . n_i) d_i (`_step_of`); one made
    without labels steps alpha_i x its spread; a plain array is the full step per unit alpha.
    `z` may be one vector or N x D.

    Clipped once, at the end, into `bounds` (default: the prior's +-6) widened to hold z
    itself: a slider pushed to its end stays drawable, and a face that already lies outside
    the box (an unusual photo) is not pulled in, so no move gives back z exactly.
    """
    z64 = np.asarray(z, dtype=np.float64)
    if z64.ndim not in (1, 2) or z64.shape[-1] == 0:
        raise EditError(f"z must be a latent vector or an N x D array, got shape {z64.shape}")
    dim = z64.shape[-1]
    if not np.isfinite(strength) or not 0.0 <= strength <= 1.0:
        raise EditError(f"strength s must be between 0 and 1, got {strength}")
    out = z64.copy()
    if target is not None and strength > 0:
        c = np.asarray(target, dtype=np.float64)
        if c.shape != (dim,):
            raise EditError(f"centre has shape {c.shape}, the latents have {dim} values")
        out = np.broadcast_to(c, z64.shape).copy() if strength == 1.0 else z64 + strength * (c - z64)
    for direction, alpha in shifts:
        step = _step_of(direction, alpha, z64)
        if step.shape[-1:] != (dim,):
            raise EditError(f"direction has {step.size} values, the latents have {dim}")
        out = out + step
    bounds = bounds or LatentBounds.prior(dim)
    # nan_to_num first: inf - inf from two opposite huge sliders would otherwise give nan.
    big = np.finfo(np.float32).max
    out = np.nan_to_num(out, nan=0.0, posinf=big, neginf=-big)
    z32 = z64.astype(np.float32)
    return np.clip(out, np.minimum(bounds.low, z32), np.maximum(bounds.high, z32)).astype(np.float32)


# --- detail-preserving pictures -----------------------------------------------------------
# A 64-px decoder blurs a person into the model's average of them: shown as is, a shift looks
# like a change of face. Showing the original plus only what the shift changed in the decoded
# picture keeps the person's own detail and lets just the expression move.
def _change(before: np.ndarray, after: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """float32 after - before (N x S x S x 3 or S x S x 3), resized to `size` (h, w) if needed."""
    change = np.asarray(after, np.float32) - np.asarray(before, np.float32)
    h, w = size
    if change.shape[-3:-1] != (h, w):
        import cv2

        lead = change.shape[:-3]
        flat = change.reshape(-1, *change.shape[-3:])
        change = np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) for c in flat])
        change = change.reshape(*lead, h, w, 3)
    return change


def _plus_change(original: np.ndarray, before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """float32 original + (after - before), unclipped (to blend several before rounding)."""
    orig = np.asarray(original)
    return orig.astype(np.float32) + _change(before, after, orig.shape[-3:-1])


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def with_change(original: np.ndarray, before: np.ndarray, after: np.ndarray,
                mask: np.ndarray | None = None) -> np.ndarray:
    """original + (after - before) as uint8: the detail-preserving face.

    `before`/`after` are the decoded pictures of z and z'; where they are equal the result is
    the original exactly. `original` may be larger than the decoded faces (a sharper crop, a
    face's square in a video frame): the change is resized to it. `mask` (float S x S in 0..1,
    any S, e.g. `feathered_mask`) scales the change where it lands. Broadcasts like numpy.
    """
    import cv2

    orig = np.asarray(original, np.uint8)
    h, w = orig.shape[-3:-1]
    change = _change(before, after, (h, w))
    if mask is not None:
        m = np.asarray(mask, np.float32)
        if m.shape != (h, w):
            m = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
        change = change * m[:, :, None]
    shape = np.broadcast_shapes(orig.shape, change.shape)
    o = np.broadcast_to(orig, shape).reshape(-1, h, w, 3)
    c = np.broadcast_to(change, shape).reshape(-1, h, w, 3)
    # cv2.add saturates and rounds in one pass: ~15x faster than numpy on a webcam-sized face
    out = [cv2.add(np.ascontiguousarray(oi), np.ascontiguousarray(ci), dtype=cv2.CV_8U) for oi, ci in zip(o, c)]
    return np.stack(out).reshape(shape)


def decode_change(codec: "Codec", z: np.ndarray, z_new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(decode(z), decode(z_new)) in one batch; z is one vector (decoded once) or N x D like z_new.

    Rows where z_new equals z get the very same picture, so "no move" is no change bit for bit
    whatever the decoder's batch arithmetic does.
    """
    z = np.asarray(z, np.float32)
    z_new = np.asarray(z_new, np.float32).reshape(-1, z.shape[-1])
    one = z.ndim == 1
    same = np.all(z == z_new, axis=1)
    if same.all():  # nothing moved (sliders at rest): one decode is enough
        after = codec.decode(z_new)
        return (after[0].copy() if one else after.copy()), after
    decoded = codec.decode(np.concatenate([z[None] if one else z, z_new]))
    k = 1 if one else len(z)
    before, after = decoded[:k], decoded[k:].copy()
    after[same] = np.broadcast_to(before, after.shape)[same]
    return (before[0] if one else before), after


def shift_faces(
    codec: "Codec", original: np.ndarray, z: np.ndarray, z_new: np.ndarray, detail: bool = True,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(reconstruction of z, the shifted faces to show, N x S x S x 3) for N x D `z_new`.

    `z` and `original` are one latent and its face, or N of each. detail=True (the default
    everywhere): the original plus the decoded change (times `mask`, if given; the faces are
    as large as `original`, e.g. a 128-px crop); False: the plain decoded faces.
    """
    before, after = decode_change(codec, z, z_new)
    return before, (with_change(original, before, after, mask) if detail else after)


# --- how good is a shift ------------------------------------------------------------------
# The mouth region of a crop as fractions (rows from, rows to, columns from, columns to): rows
# [38, 64) x columns [12, 52) of a 64-px crop, the lips, their corners when smiling and the chin,
# checked by eye on the sample's crops (frontal, turned, tilted; `judge.draw_mouth_box`). The
# lower third x centre half used before cut off smile corners and the upper lip. Expression
# edits should change pixels here more than elsewhere.
MOUTH_REGION = (38 / 64, 1.0, 12 / 64, 52 / 64)


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


FEATHER = 3 / 64  # the feathered mask's Gaussian sigma, as a share of the crop


def feathered_mask(size: int, region: tuple[float, float, float, float] = MOUTH_REGION,
                   feather: float = FEATHER) -> np.ndarray:
    """float32 size x size: 1 inside the region, falling smoothly to 0 outside (a blurred box),
    to make a detail-preserving change land only there without a visible seam."""
    import cv2

    box = region_mask(size, region).astype(np.float32)
    sigma = max(feather * size, 0.5)
    return np.clip(cv2.GaussianBlur(box, (0, 0), sigma) * 2.0, 0.0, 1.0)


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

    `probe` has `score(z) -> P(label)` (see `facelab.space.probe.LinearProbe`).
    """
    z = np.asarray(z, dtype=np.float32)
    if z.ndim != 2 or len(z) == 0:
        raise EditError(f"need latents of at least one face, got shape {z.shape}")
    z2 = compose(z, [(direction, alpha)], bounds=bounds)
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

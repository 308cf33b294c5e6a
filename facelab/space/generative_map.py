"""The map as an instrument: any place on a 2-D map of latents back to a latent, and to a face.

Embedding explorers show points that exist; facelab has a decoder, so an empty place on the map
can be shown too (issue 15). `MapInverse` turns map coordinates into latents:

- on a PCA map (linear) exactly: the point's two coordinates, every other component at the
  data's mean, so placing the latent back lands on the point itself;
- on a t-SNE or UMAP map (no inverse) as the distance-weighted mean of the latents of the
  frames nearest on the map, so the face drawn there is a blend of its neighbours.

`face_field` decodes a grid of places laid over the map (the classic picture of a VAE's
manifold, here of one person's face), `path_frames` the way through several frames in order,
and `axes_map` a map whose axes the user chooses (smile against surprise, or against time).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from facelab.errors import FacelabError

if TYPE_CHECKING:
    from facelab.edits.directions import Direction
    from facelab.model.models import Codec

NEIGHBOURS = 8  # frames blended for a place on a non-linear map
FIELD_SIZE = 10  # faces per side of the face field
FIELD_MARGIN = 0.02  # the field spans the map's 2nd to 98th percentile (outliers don't stretch it)
FADE = 0.6  # how far a face with no frame near its place is faded toward white


class MapDecodeError(FacelabError):
    """A place cannot be decoded as asked; the message says why."""


@dataclass(frozen=True, eq=False)  # holds arrays
class MapInverse:
    """Map coordinates -> latents for one map of one run's latents (see the module docstring)."""

    xy: np.ndarray  # N x 2, the frames' places on the map
    mu: np.ndarray  # N x D, their latents
    linear: bool
    centre: np.ndarray  # D, the latents' mean (linear maps)
    basis: np.ndarray  # D x 2: map = (z - centre) @ basis (linear maps)
    k: int = NEIGHBOURS

    @classmethod
    def fit(cls, xy: np.ndarray, mu: np.ndarray, linear: bool, k: int = NEIGHBOURS) -> "MapInverse":
        """`linear`: the map is a linear projection of the latents (PCA), recovered here by least
        squares (so signs and scaling of the stored map are respected)."""
        xy, mu = np.asarray(xy, np.float64), np.asarray(mu, np.float64)
        if xy.ndim != 2 or xy.shape[1] != 2 or mu.ndim != 2 or len(xy) != len(mu):
            raise MapDecodeError(f"need N x 2 map places and N x D latents, got {xy.shape} and {mu.shape}")
        if len(xy) < 2:
            raise MapDecodeError("the map needs at least 2 frames to decode places on it")
        centre = mu.mean(0)
        basis = np.zeros((mu.shape[1], 2))
        if linear:
            basis = np.linalg.lstsq(mu - centre, xy - xy.mean(0), rcond=None)[0]
            if np.linalg.matrix_rank(basis) < 2:
                linear = False  # a degenerate map (all frames on a line): fall back to neighbours
        return cls(xy, mu, linear, centre, basis, max(1, min(int(k), len(xy))))

    @classmethod
    def of_map(cls, map_ids: np.ndarray, xy: np.ndarray, ids: np.ndarray, mu: np.ndarray,
               linear: bool) -> "MapInverse":
        """`fit` on a stored map (its frame ids and places) and the run's latents (`ids`, `mu`),
        matched by face id; frames deleted since the map was made are left out."""
        row = {int(i): r for r, i in enumerate(np.asarray(ids).tolist())}
        keep = [j for j, i in enumerate(np.asarray(map_ids).tolist()) if int(i) in row]
        rows = [row[int(map_ids[j])] for j in keep]
        return cls.fit(np.asarray(xy)[keep], np.asarray(mu)[rows], linear)

    @property
    def how(self) -> str:
        """How a place becomes a latent, in words for a caption."""
        if self.linear:
            return "exactly: the place's two map coordinates, every other direction at the average face"
        return f"a blend of the {self.k} frames nearest to the place on the map, the nearest weighing most"

    def latents_at(self, places: np.ndarray) -> np.ndarray:
        """P x 2 map places -> P x D float32 latents."""
        p = np.atleast_2d(np.asarray(places, np.float64))
        if p.shape[1] != 2 or not np.isfinite(p).all():
            raise MapDecodeError(f"places must be finite x, y pairs, got shape {p.shape}")
        if self.linear:
            offset = self.xy.mean(0)
            return (self.centre + (p - offset) @ np.linalg.pinv(self.basis)).astype(np.float32)
        d2 = ((p[:, None] - self.xy[None]) ** 2).sum(-1)  # P x N
        near = np.argsort(d2, axis=1, kind="stable")[:, : self.k]
        w = 1.0 / (np.take_along_axis(d2, near, 1) + self._eps2)
        # Neighbours on a t-SNE / UMAP map may come from far apart in latent space (two groups
        # side by side); their mean is no face at all. Blend only those close, in latent space,
        # to the nearest frame: within that frame's own k-th latent neighbour distance.
        first = self.mu[near[:, 0]]
        gap = np.sqrt(((self.mu[near] - first[:, None]) ** 2).sum(-1))
        w = np.where(gap <= self.latent_radius[near[:, :1]], w, 0.0)
        w /= w.sum(1, keepdims=True)
        return np.einsum("pk,pkd->pd", w, self.mu[near]).astype(np.float32)

    def place(self, z: np.ndarray) -> np.ndarray:
        """P x D latents -> P x 2 map places (a decoded place put back, or a new face placed):
        the projection itself on a linear map; else the same weighting over the frames nearest
        in latent space."""
        z = np.atleast_2d(np.asarray(z, np.float64))
        if self.linear:
            return ((z - self.centre) @ self.basis + self.xy.mean(0)).astype(np.float32)
        d2 = ((z[:, None] - self.mu[None]) ** 2).sum(-1)
        near = np.argsort(d2, axis=1, kind="stable")[:, : self.k]
        eps2 = float((1e-3 * np.median(self.latent_radius)) ** 2) + 1e-12  # a frame's own code: its place
        w = 1.0 / (np.take_along_axis(d2, near, 1) + eps2)
        w /= w.sum(1, keepdims=True)
        return np.einsum("pk,pkc->pc", w, self.xy[near]).astype(np.float32)

    @cached_property
    def latent_radius(self) -> np.ndarray:
        """N: each frame's distance to its k-th nearest other frame in latent space."""
        k = min(self.k, len(self.mu) - 1)
        sq = (self.mu ** 2).sum(1)
        out = np.empty(len(self.mu))
        for start in range(0, len(self.mu), 1024):  # 1024 x N distances at a time
            rows = slice(start, start + 1024)
            d2 = sq[rows, None] + sq[None] - 2 * self.mu[rows] @ self.mu.T
            out[rows] = np.partition(d2, k, axis=1)[:, k]  # column 0 is the frame itself
        return np.sqrt(np.maximum(out, 0))

    @property
    def _eps2(self) -> float:
        """A small squared distance (1 % of the map's spread) so a place on a frame is that frame."""
        return float((0.01 * self.xy.std(0).mean()) ** 2) + 1e-12

    def extent(self, margin: float = FIELD_MARGIN) -> tuple[float, float, float, float]:
        """(x0, x1, y0, y1): the part of the map the frames fill, without the outermost few."""
        (x0, y0), (x1, y1) = np.quantile(self.xy, [margin, 1 - margin], axis=0)
        if x1 <= x0:
            x0, x1 = x0 - 0.5, x1 + 0.5
        if y1 <= y0:
            y0, y1 = y0 - 0.5, y1 + 0.5
        return float(x0), float(x1), float(y0), float(y1)


TIME_AXIS = "time"


@dataclass
class Axes:
    """A map on two chosen axes (the Embedding Projector's custom linear projection), as an
    estimator: `fit` on the frames learns where their mean lies along each axis, `transform`
    places any latent on the same map (a frame, a cluster's centre, the live webcam face).
    An axis is a stored direction, in spreads from the frames' mean along it, or `TIME_AXIS`
    (seconds into the video; then `transform` needs the times too)."""

    x: "Direction | str"
    y: "Direction | str"

    def fit(self, mu: np.ndarray) -> "Axes":
        mu = np.asarray(mu, np.float64)
        self.means_ = [0.0 if a == TIME_AXIS else float((mu @ self._vector(a, mu.shape[1])).mean())
                       for a in (self.x, self.y)]
        return self

    def transform(self, z: np.ndarray, times: np.ndarray | None = None) -> np.ndarray:
        """N x 2 places of latents `z` (with their `times` when an axis is time)."""
        z = np.atleast_2d(np.asarray(z, np.float64))
        out = []
        for axis, mean in zip((self.x, self.y), self.means_):
            if axis == TIME_AXIS:
                if times is None:
                    raise MapDecodeError("a face without a time cannot be placed on a time axis")
                out.append(np.asarray(times, np.float64))
            else:
                out.append((z @ self._vector(axis, z.shape[1]) - mean) / max(float(axis.spread), 1e-12))
        return np.stack(out, 1).astype(np.float32)

    @property
    def linear(self) -> bool:
        """Two directions: a linear map of the latents (`MapInverse.fit(..., linear=True)`)."""
        return TIME_AXIS not in (self.x, self.y)

    @staticmethod
    def _vector(axis: "Direction | str", dim: int) -> np.ndarray:
        if isinstance(axis, str):
            raise MapDecodeError(f"an axis is a stored direction or {TIME_AXIS!r}, not {axis!r}")
        if axis.kind == "centre":
            raise MapDecodeError(f"{axis.name!r} is a centre (a place), not a direction: it cannot be an axis")
        if axis.dim != dim:
            raise MapDecodeError(f"direction {axis.name!r} has {axis.dim} values, the latents {dim}")
        return np.asarray(axis.vector, np.float64)


def axes_map(mu: np.ndarray, times: np.ndarray, x: "Direction | str", y: "Direction | str") -> np.ndarray:
    """N x 2 places of the frames `mu` (at `times`) on two chosen axes (see `Axes`)."""
    return Axes(x, y).fit(mu).transform(mu, times)


def field_places(inverse: MapInverse, n: int = FIELD_SIZE) -> np.ndarray:
    """n*n places of an even grid over the map's extent, row by row from the top (high y) left."""
    if not 2 <= n <= 40:
        raise MapDecodeError(f"a face field has 2 to 40 faces a side, not {n}")
    x0, x1, y0, y1 = inverse.extent()
    xs, ys = np.linspace(x0, x1, n), np.linspace(y1, y0, n)
    return np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2).astype(np.float32)


@dataclass(frozen=True, eq=False)
class FaceField:
    """The faces the model draws on an n x n grid of places over a map, row by row from the top."""

    n: int
    places: np.ndarray  # n*n x 2
    faces: np.ndarray  # n*n x S x S x 3 uint8, as decoded
    near: np.ndarray  # n*n bool: a frame lies within one grid step of the place

    def picture(self, gap: int = 2, fade: float = FADE) -> np.ndarray:
        """The field as one picture; places with no frame near are faded toward white, since
        what the model draws far from every frame of the video is a guess."""
        faces = self.faces.astype(np.float32)
        faces[~self.near] = faces[~self.near] * (1 - fade) + 255 * fade
        return tile(faces.round().astype(np.uint8), self.n, gap)


def face_field(codec: "Codec", inverse: MapInverse, n: int = FIELD_SIZE) -> FaceField:
    """Decode an n x n grid of places over the part of the map the frames fill."""
    places = field_places(inverse, n)
    x0, x1, y0, y1 = inverse.extent()
    cell = max((x1 - x0) / (n - 1), (y1 - y0) / (n - 1))
    nearest = np.sqrt(((places[:, None].astype(np.float64) - inverse.xy[None]) ** 2).sum(-1).min(1))
    return FaceField(n, places, codec.decode(inverse.latents_at(places)), nearest <= cell)


def tile(faces: np.ndarray, n: int, gap: int = 0) -> np.ndarray:
    """n*n faces (row by row) as one n x n picture, `gap` white pixels between them."""
    faces = np.asarray(faces, np.uint8)
    if len(faces) != n * n:
        raise MapDecodeError(f"{len(faces)} faces do not make a {n} x {n} field")
    s = faces.shape[1]
    out = np.full((n * s + (n - 1) * gap, n * s + (n - 1) * gap, 3), 255, np.uint8)
    for i, face in enumerate(faces):
        r, c = divmod(i, n)
        out[r * (s + gap): r * (s + gap) + s, c * (s + gap): c * (s + gap) + s] = face
    return out


def path_frames(codec: "Codec", z: np.ndarray, steps: int, ends: np.ndarray | None = None,
                method: str = "linear") -> np.ndarray:
    """The way through the latents `z` (K >= 2, in order), `steps` frames per leg, each joint once.

    With `ends` (the K real faces) every leg preserves detail (`facelab.edits.edit.interpolation_strip`):
    the animation passes exactly through each real frame. `method`: linear or slerp legs."""
    from facelab.edits.edit import interpolation_strip

    z = np.asarray(z, np.float32)
    if z.ndim != 2 or len(z) < 2:
        raise MapDecodeError(f"a path needs at least 2 frames, got {len(z) if z.ndim == 2 else 0}")
    if steps < 2:
        raise MapDecodeError(f"each leg needs at least 2 steps, got {steps}")
    legs = []
    for i in range(len(z) - 1):
        leg_ends = None if ends is None else (ends[i], ends[i + 1])
        leg = interpolation_strip(codec, z[i], z[i + 1], steps, method, ends=leg_ends)
        legs.append(leg if i == 0 else leg[1:])
    return np.concatenate(legs)

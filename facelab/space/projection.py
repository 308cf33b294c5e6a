"""2D maps of the latent space: PCA (instant), t-SNE and UMAP (slow: run in a child process).

Every map is cached in `runs/<id>/projections/<method>-<params hash>.npz` together with the
face ids it covers and the latents key it was computed from, so a new model or a deleted crop
makes it stale without any bookkeeping. t-SNE and UMAP on 15,000 points take minutes on two
cores, and Streamlit cannot host long work in a thread, so `start_projection` runs
`python -m facelab project ...` in a child process; the child writes a status file with a
heartbeat and then the cache, and the page polls `projection_state`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facelab.errors import FacelabError
from facelab.space.generative_map import MapInverse
from facelab.space.latent import LatentsMissing, active_latents, load_latents, require_latents
from facelab.store import processes
from facelab.store.storage import make_folder, write_atomic, write_json_atomic
from facelab.store.workspace import Workspace

METHODS = ("pca", "tsne", "umap")
SLOW_METHODS = ("tsne", "umap")
UMAP_HINT = "UMAP is not installed; install it with: pip install 'facelab[umap]'"
MIN_POINTS_NONLINEAR = 5
TSNE_FFT_FROM = 10_000  # points from which openTSNE's FFT gradient beats Barnes-Hut
# FFT grid: one interval per 2 map units instead of 1. On 15,000 real latents (the sample model on
# the Pexels clip, 2 cores) the 500 main iterations took 17 s instead of 68 s, and 70.0 % of each
# point's 10 nearest latent neighbours stayed its map neighbours (71.8 % at 1; 67.3 % at 3).
TSNE_FFT_INTS = 2.0


class ProjectionError(FacelabError):
    """A map cannot be made as asked; the message says why."""


def umap_available() -> bool:
    return importlib.util.find_spec("umap") is not None


@dataclass(frozen=True)
class ProjectionSettings:
    """Which map: the method and the few parameters that change its look."""

    method: str = "pca"
    perplexity: float = 30.0  # t-SNE
    n_neighbors: int = 15  # UMAP
    min_dist: float = 0.1  # UMAP
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ProjectionError(f"unknown map method {self.method!r}: use one of {', '.join(METHODS)}")

    def params(self) -> dict[str, Any]:
        """Only the parameters the method uses (so a t-SNE cache ignores UMAP's settings)."""
        if self.method == "tsne":
            return {"perplexity": float(self.perplexity), "seed": int(self.seed)}
        if self.method == "umap":
            return {"n_neighbors": int(self.n_neighbors), "min_dist": float(self.min_dist), "seed": int(self.seed)}
        return {"seed": int(self.seed)}

    @property
    def slug(self) -> str:
        h = hashlib.sha1(json.dumps(self.params(), sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.method}-{h}"

    @property
    def is_slow(self) -> bool:
        return self.method in SLOW_METHODS

    def cli_args(self) -> list[str]:
        return [
            "--method", self.method, "--perplexity", str(self.perplexity),
            "--n-neighbors", str(self.n_neighbors), "--min-dist", str(self.min_dist),
            "--seed", str(self.seed),
        ]


@dataclass(eq=False)  # holds learned arrays
class Projector:
    """A 2D map of latents as an estimator (like `generative_map.Axes`): `fit` makes the map of the
    frames (`embedding_`, N×2 float32), `transform` places other latents (a shifted or live face)
    on that same map.

    PCA places them exactly: the very PCA that made the map, so a face lands where Explore's PCA map
    would put it. t-SNE and UMAP learn places, not a function one can reuse (openTSNE's and UMAP's own
    `transform` re-optimise against a fitted model this code does not keep: a slow map is made in a
    child process and cached as places), so a new latent goes to the distance-weighted mean of the
    places of its nearest frames in latent space (`MapInverse.place`): an approximation that puts
    a face among the frames whose codes are nearest its own."""

    settings: ProjectionSettings = field(default_factory=ProjectionSettings)

    def fit(self, mu: np.ndarray) -> "Projector":
        s = self.settings
        x = np.asarray(mu, dtype=np.float32)
        if x.ndim != 2:
            raise ProjectionError(f"expected an N×D array of latents, got shape {x.shape}")
        n = x.shape[0]
        if s.method != "pca" and 0 < n < MIN_POINTS_NONLINEAR:
            raise ProjectionError(f"{s.method} needs at least {MIN_POINTS_NONLINEAR} frames, this run has {n}")
        self.pca_ = self.neighbours_ = None
        self.mean_ = x.mean(0) if n else np.zeros(x.shape[1], np.float32)
        if n == 0:
            self.embedding_ = np.zeros((0, 2), np.float32)
        elif s.method == "pca":
            self.embedding_, self.pca_ = _pca(x, int(s.seed))
        elif s.method == "tsne":
            self.embedding_ = _tsne(x, int(s.seed), float(s.perplexity))
        else:
            self.embedding_ = _umap(x, int(s.seed), int(s.n_neighbors), float(s.min_dist))
        if n and s.method != "pca":
            self.neighbours_ = MapInverse.fit(self.embedding_, x, linear=False)
        return self

    def transform(self, z: np.ndarray) -> np.ndarray:
        """P×D latents -> P×2 float32 places on the fitted map (see the class docstring)."""
        z = np.atleast_2d(np.asarray(z, dtype=np.float32))
        if not len(self.embedding_):
            raise ProjectionError("the map has no frames: there is nothing to place a face among")
        if z.shape[1] != len(self.mean_):
            raise ProjectionError(f"the map was made from {len(self.mean_)}-value latents, not {z.shape[1]}")
        if self.neighbours_ is not None:
            return self.neighbours_.place(z)
        if self.pca_ is not None:
            return self.pca_.transform(z).astype(np.float32)
        return _pad(z - self.mean_)


def project(mu: np.ndarray, method: str = "pca", *, seed: int = 0, **params: Any) -> np.ndarray:
    """N×D latents → N×2 float32 map (`Projector`'s `embedding_`). `params`: perplexity (t-SNE);
    n_neighbors, min_dist (UMAP)."""
    return Projector(ProjectionSettings(method, seed=seed, **params)).fit(mu).embedding_


def _pad(x: np.ndarray) -> np.ndarray:
    """The first two columns of centred latents, zeros where there are fewer."""
    out = np.zeros((x.shape[0], 2), np.float32)
    out[:, : min(x.shape[1], 2)] = x[:, :2]
    return out


def _pca(x: np.ndarray, seed: int) -> tuple[np.ndarray, Any]:
    """(the map, the fitted PCA that made it; None where there is nothing to rotate)."""
    n, d = x.shape
    if n < 2 or d < 2:  # nothing to rotate: keep what there is, pad with zeros
        return _pad(x - x.mean(0)), None
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=seed)
    return pca.fit_transform(x).astype(np.float32), pca


def idle_threads() -> int:
    """Threads for t-SNE / UMAP: the cores not already busy (at least one).

    Their OpenMP / numba threads meet at a barrier every iteration; when another process
    (a training job, another tab's worker) keeps the cores busy, a second thread made t-SNE
    10-20× slower here (60 points: 9.7 s with 2 threads, 0.8 s with 1, load 10 on 2 cores).
    """
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    return int(max(1, min(cores, round(cores - busy))))


def _tsne(x: np.ndarray, seed: int, perplexity: float) -> np.ndarray:
    """openTSNE (Barnes-Hut below 10,000 points, FFT above); scikit-learn's TSNE if it is missing."""
    from threadpoolctl import threadpool_limits

    if not np.isfinite(x).all():
        raise ProjectionError("the latents contain NaN or infinite values: re-encode the run")
    if not np.ptp(x, axis=0).any():  # every point the same: nothing to spread out (and openTSNE's
        return np.zeros((x.shape[0], 2), np.float32)  # PCA start divides by 0, then crashes)
    threads = idle_threads()
    # Both need perplexity well under n (k ≈ 3 × perplexity neighbours); a third of n keeps tiny
    # sets meaningful.
    perplexity = float(max(1.0, min(perplexity, (x.shape[0] - 1) / 3)))
    try:
        from openTSNE import TSNE, affinity

        # openTSNE imports pynndescent (installed with UMAP) only to ask whether it is there, for
        # sparse data or unusual metrics; with numba's cache cold (a fresh install) that import
        # compiles for about 21 s before every first map. Asking without importing is the same answer.
        affinity.is_package_installed = lambda name: importlib.util.find_spec(name) is not None

        # FFT's grid costs ~15 ms an iteration whatever n (60 points: 12 s, Barnes-Hut 0.2 s); it
        # wins on large maps only. openTSNE's own "auto" switches at the same 10,000.
        tsne = TSNE(
            n_components=2, perplexity=perplexity, initialization="pca",
            negative_gradient_method="fft" if x.shape[0] >= TSNE_FFT_FROM else "bh",
            ints_in_interval=TSNE_FFT_INTS if x.shape[0] >= TSNE_FFT_FROM else 1,
            random_state=seed, n_jobs=threads,
        )
        fit = lambda: tsne.fit(x)  # noqa: E731  (a TSNEEmbedding: an N×2 ndarray)
    except ImportError:  # an environment from before openTSNE was a dependency
        from sklearn.manifold import TSNE

        tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed)
        fit = lambda: tsne.fit_transform(x)  # noqa: E731
    with threadpool_limits(limits=threads):
        return np.array(fit(), dtype=np.float32)


def _umap(x: np.ndarray, seed: int, n_neighbors: int, min_dist: float) -> np.ndarray:
    if not umap_available():
        raise ProjectionError(UMAP_HINT)
    import numba
    import umap
    from sklearn.neighbors import NearestNeighbors

    numba.set_num_threads(min(idle_threads(), numba.config.NUMBA_NUM_THREADS))
    n_neighbors = int(max(2, min(n_neighbors, x.shape[0] - 1)))
    # The exact neighbours, from scikit-learn: 0.5 s for 15,000 x 32, where UMAP's own search
    # (pynndescent) spends about 45 s compiling itself with numba in every new process.
    dist, idx = NearestNeighbors(n_neighbors=n_neighbors).fit(x).kneighbors(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden by random_state" and numba chatter
        reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=min_dist, random_state=seed,
                            precomputed_knn=(idx, dist, None))
        return np.asarray(reducer.fit_transform(x), dtype=np.float32)


# --- cache per run ------------------------------------------------------------------------


@dataclass(frozen=True)
class Projection:
    ids: np.ndarray  # face ids, one per row of xy
    xy: np.ndarray  # N×2 float32
    settings: ProjectionSettings
    latents_key: str


def projections_dir(workspace: Workspace, run_id: str) -> Path:
    return workspace.run_dir(run_id) / "projections"


def _cache_path(workspace: Workspace, run_id: str, settings: ProjectionSettings) -> Path:
    return projections_dir(workspace, run_id) / f"{settings.slug}.npz"


def _status_path(workspace: Workspace, run_id: str, settings: ProjectionSettings) -> Path:
    return projections_dir(workspace, run_id) / f"{settings.slug}.status.json"


def _read(path: Path) -> tuple[np.ndarray, np.ndarray, str] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["ids"], z["xy"], str(z["latents_key"])
    except (FileNotFoundError, KeyError, ValueError, OSError):
        return None


def load_projection(
    workspace: Workspace, run_id: str, settings: ProjectionSettings, latents_key: str | None = None
) -> Projection | None:
    """The cached map if it was made from the run's current latents, else None."""
    if latents_key is None:
        lat = load_latents(workspace, run_id)
        if lat is None:
            return None
        latents_key = lat.key
    got = _read(_cache_path(workspace, run_id, settings))
    if got is None or got[2] != latents_key:
        return None
    return Projection(ids=got[0], xy=got[1], settings=settings, latents_key=latents_key)


def compute_projection(workspace: Workspace, run_id: str, settings: ProjectionSettings) -> Projection:
    """Compute the map of the active crops now (blocking) and cache it."""
    lat = require_latents(workspace, run_id)
    ids, mu = active_latents(workspace, lat)
    xy = Projector(settings).fit(mu).embedding_
    path = _cache_path(workspace, run_id, settings)
    key = np.array(lat.key)
    write_atomic(path, lambda f: np.savez(f, ids=ids, xy=xy, latents_key=key))
    return Projection(ids=ids, xy=xy, settings=settings, latents_key=lat.key)


def get_projection(workspace: Workspace, run_id: str, settings: ProjectionSettings) -> Projection | None:
    """The cached map; PCA is computed on the spot, a slow method returns None until it is ready."""
    lat = require_latents(workspace, run_id)
    cached = load_projection(workspace, run_id, settings, lat.key)
    if cached is not None or settings.is_slow:
        return cached
    return compute_projection(workspace, run_id, settings)


# --- background computation ---------------------------------------------------------------


@dataclass(frozen=True)
class ProjectionState:
    state: str  # "ready" | "running" | "failed" | "missing"
    message: str = ""
    started_at: float | None = None


def projection_state(workspace: Workspace, run_id: str, settings: ProjectionSettings) -> ProjectionState:
    """Where the map stands: ready (cached and current), running, failed (with why), or missing."""
    processes.reap()
    lat = load_latents(workspace, run_id)
    if lat is None:
        return ProjectionState("missing", str(LatentsMissing()))
    if load_projection(workspace, run_id, settings, lat.key) is not None:
        return ProjectionState("ready")
    try:
        status = json.loads(_status_path(workspace, run_id, settings).read_text())
    except (FileNotFoundError, ValueError):
        return ProjectionState("missing")
    if status.get("latents_key") != lat.key:
        return ProjectionState("missing")  # about older latents: irrelevant now
    if status.get("state") == "failed":
        return ProjectionState("failed", status.get("error", "the map could not be computed"))
    if status.get("state") == "running":
        if not processes.dead(int(status.get("pid", 0)), float(status.get("heartbeat", 0))):
            return ProjectionState("running", f"computing {settings.method} map", status.get("started_at"))
        return ProjectionState("failed", "the map worker stopped before it finished")
    return ProjectionState("missing")


def start_projection(
    workspace: Workspace, run_id: str, settings: ProjectionSettings
) -> ProjectionState:
    """Start `python -m facelab project ...` unless the map is ready or already being made."""
    state = projection_state(workspace, run_id, settings)
    if state.state in ("ready", "running"):
        return state
    if settings.method == "umap" and not umap_available():
        raise ProjectionError(UMAP_HINT)
    lat = require_latents(workspace, run_id)
    home = workspace.path.parent.parent
    args = ["--home", str(home), "project", "--workspace", workspace.name, "--run", run_id,
            *settings.cli_args()]
    log = make_folder(projections_dir(workspace, run_id))
    now = time.time()
    # Says "running" until the child (a second or more to start) writes its own status; if the
    # child never does, the heartbeat goes stale and the state turns to failed.
    write_json_atomic(
        _status_path(workspace, run_id, settings),
        {"state": "running", "pid": os.getpid(), "started_at": now, "heartbeat": now,
         "latents_key": lat.key, "settings": asdict(settings)},
    )
    try:
        processes.spawn(args, workspace.path, log / f"{settings.slug}.log")
    except OSError as e:
        write_json_atomic(
            _status_path(workspace, run_id, settings),
            {"state": "failed", "error": f"could not start the map worker: {e}", "latents_key": lat.key},
        )
        raise ProjectionError(f"could not start the map worker: {e}") from None
    return ProjectionState("running", f"computing {settings.method} map", now)


def run_projection_job(workspace: Workspace, run_id: str, settings: ProjectionSettings) -> Projection:
    """The child's work: status 'running' with a heartbeat, the map, then the cache (or 'failed')."""
    lat = require_latents(workspace, run_id)
    status_path = _status_path(workspace, run_id, settings)
    status: dict[str, Any] = {
        "state": "running", "pid": os.getpid(), "started_at": time.time(), "heartbeat": time.time(),
        "latents_key": lat.key, "settings": asdict(settings),
    }
    write_json_atomic(status_path, status)
    hb = processes.Heartbeat(lambda: write_json_atomic(status_path, {**status, "heartbeat": time.time()})).start()
    try:
        result = compute_projection(workspace, run_id, settings)
    except BaseException as e:
        hb.stop()
        write_json_atomic(status_path, {**status, "state": "failed", "error": str(e) or type(e).__name__})
        raise
    hb.stop()
    write_json_atomic(status_path, {**status, "state": "done", "heartbeat": time.time()})
    return result


# --- a PNG of the map without matplotlib --------------------------------------------------

PALETTE = [  # Tableau 10: distinct on white, the colours Altair uses by default
    (78, 121, 167), (242, 142, 43), (225, 87, 89), (118, 183, 178), (89, 161, 79),
    (237, 201, 72), (176, 122, 161), (255, 157, 167), (156, 117, 95), (186, 176, 172),
]


def _ramp(t: np.ndarray) -> np.ndarray:
    """0..1 → a blue-to-yellow ramp (viridis-like, from its ends and middle)."""
    stops = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], float)
    pos = np.clip(t, 0, 1) * (len(stops) - 1)
    i = np.minimum(pos.astype(int), len(stops) - 2)
    f = (pos - i)[:, None]
    return (stops[i] * (1 - f) + stops[i + 1] * f).astype(np.uint8)


def scatter_png(
    xy: np.ndarray,
    values: np.ndarray | None = None,
    *,
    categorical: bool = True,
    size: int = 800,
    radius: int = 2,
    title: str = "",
) -> bytes:
    """Draw the map as a PNG: dots coloured by category (cluster) or by a number (time)."""
    from PIL import Image, ImageDraw

    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    margin = 12 + radius
    if len(xy):
        lo, hi = xy.min(0), xy.max(0)
        span = np.where(hi - lo > 0, hi - lo, 1.0)
        pts = margin + (xy - lo) / span * (size - 2 * margin)
        pts[:, 1] = size - pts[:, 1]  # y up
        if values is None:
            colours = np.tile(np.array(PALETTE[0], np.uint8), (len(xy), 1))
        elif categorical:
            codes = np.unique(np.asarray(values), return_inverse=True)[1]
            colours = np.array(PALETTE, np.uint8)[codes % len(PALETTE)]
        else:
            v = np.asarray(values, dtype=np.float64)
            rng = np.ptp(v) if len(v) else 0.0
            colours = _ramp((v - v.min()) / rng if rng > 0 else np.zeros_like(v))
        for (px, py), c in zip(pts.tolist(), colours.tolist()):
            draw.ellipse((px - radius, py - radius, px + radius, py + radius), fill=tuple(c))
    if title:
        draw.text((6, 4), title, fill=(40, 40, 40))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()

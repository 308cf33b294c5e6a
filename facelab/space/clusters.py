"""Clusters of expressions in latent space: K-means and Gaussian mixtures on μ.

`sweep` helps choose k (inertia for an elbow, BIC, silhouette), `Clusterer` gives labels,
centres and a representative frame per cluster. A run's assignments are cached in
`runs/<id>/clusters/<method>-k<k>.npz` (with the face ids and the latents key they came
from); the names the user gives clusters live in the `cluster_names` table.

Speed on two cores: a full-covariance mixture on 15,000 × 32 took seconds per k and minutes
for a sweep, so mixtures use diagonal covariances by default, and the sweep works on a
random subsample (5,000 points; silhouette on 2,000). Like the maps, they use only the idle
cores (`facelab.space.projection.idle_threads`): K-means on 15,000 points took 8.2 s with two
OpenMP threads while another process kept the cores busy, 0.7 s with one.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from facelab.data import labels as labels_mod
from facelab.errors import FacelabError
from facelab.space.latent import LatentsMissing, active_latents, require_latents
from facelab.space.projection import idle_threads
from facelab.store.storage import write_atomic
from facelab.store.workspace import Workspace

METHODS = ("kmeans", "gmm")
DEFAULT_KS = range(2, 13)
DEFAULT_K = 6  # the clusters Explore opens with (and a finished run caches ahead of it)
MAX_NAME_LEN = 64


def k_range(n_faces: int) -> tuple[int, int]:
    """(largest k offered, the k a page opens with) for a map of n_faces frames (n >= 3)."""
    k_max = min(DEFAULT_KS[-1], n_faces - 1)
    return k_max, min(DEFAULT_K, k_max)


def nearest_centre(z: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """P x D latents -> the number of the nearest of K x D centres (Euclidean): how a new face
    joins a clustering (`Clusterer.predict`, the live webcam face)."""
    return ((np.atleast_2d(z)[:, None] - centres[None]) ** 2).sum(-1).argmin(1)


class ClusterError(FacelabError):
    """Clusters cannot be made or named as asked; the message says why."""


def _check(mu: np.ndarray, method: str, k: int) -> np.ndarray:
    if method not in METHODS:
        raise ClusterError(f"unknown clustering method {method!r}: use one of {', '.join(METHODS)}")
    x = np.asarray(mu, dtype=np.float64)
    if x.ndim != 2:
        raise ClusterError(f"expected an N×D array of latents, got shape {x.shape}")
    if k < 1:
        raise ClusterError(f"k must be at least 1, got {k}")
    if k > x.shape[0]:
        raise ClusterError(f"k={k} is more than the {x.shape[0]} frames there are: pick k ≤ {x.shape[0]}")
    return x


def _kmeans(k: int, seed: int):
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=3, random_state=seed)


def _gmm(k: int, seed: int, covariance: str):
    from sklearn.mixture import GaussianMixture

    return GaussianMixture(n_components=k, covariance_type=covariance, random_state=seed, reg_covar=1e-5)


# --- choosing k ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepRow:
    k: int
    inertia: float  # K-means within-cluster sum of squares (for the elbow)
    bic: float  # Gaussian mixture BIC (lower is better)
    silhouette: float | None  # of the K-means labels; None where undefined (k = 1)


def sweep(
    mu: np.ndarray,
    ks=DEFAULT_KS,
    *,
    seed: int = 0,
    max_points: int = 5000,
    silhouette_points: int = 2000,
    covariance: str = "diag",
) -> list[SweepRow]:
    """K-means inertia, mixture BIC and silhouette for each k (k > N frames are left out)."""
    from sklearn.metrics import silhouette_score

    x = np.asarray(mu, dtype=np.float64)
    n = x.shape[0]
    ks = [int(k) for k in ks if 1 <= int(k) <= n]
    if not ks:
        raise ClusterError(f"no k to try: there are {n} frames")
    rng = np.random.default_rng(seed)
    if n > max_points:
        x = x[np.sort(rng.choice(n, max_points, replace=False))]
    rows = []
    for k in ks:
        with threadpool_limits(limits=idle_threads()):
            km = _kmeans(k, seed).fit(x)
            gm = _gmm(k, seed, covariance).fit(x)
        sil = None
        if 2 <= k < x.shape[0]:
            try:
                sil = float(
                    silhouette_score(x, km.labels_, sample_size=min(silhouette_points, x.shape[0]), random_state=seed)
                )
            except ValueError:  # the sample drew a single cluster
                sil = None
        rows.append(SweepRow(k=k, inertia=float(km.inertia_), bic=float(gm.bic(x)), silhouette=sil))
    return rows


def knee(ks: list[int], values: list[float]) -> int:
    """The k where a falling curve bends most: farthest below the chord from first to last."""
    if len(ks) < 3:
        return ks[0]
    x = np.asarray(ks, float)
    y = np.asarray(values, float)
    xn = (x - x[0]) / (x[-1] - x[0])
    yr = y.max() - y.min()
    yn = (y - y.min()) / yr if yr > 0 else np.zeros_like(y)
    chord = yn[0] + (yn[-1] - yn[0]) * xn
    return int(ks[int(np.argmax(chord - yn))])


def bic_minimum(rows: list[SweepRow]) -> int | None:
    """The k of the lowest BIC when it lies inside the range tried, else None: a lowest BIC at
    the largest k tried only says BIC was still falling, not that this k is best."""
    if len(rows) < 3:
        return None
    best = suggest_k(rows, "bic")
    return None if best in (rows[0].k, rows[-1].k) else best


def k_advice(rows: list[SweepRow]) -> tuple[str, int]:
    """(one plain sentence on the sweep, the k to offer): BIC's minimum when it has one inside
    the range, else the inertia curve's bend."""
    elbow = knee([r.k for r in rows], [r.inertia for r in rows])
    best = bic_minimum(rows)
    if best is None:
        lowest = suggest_k(rows, "bic")
        edge = "largest" if lowest == rows[-1].k else "smallest"
        return (f"BIC has no minimum between k = {rows[0].k} and {rows[-1].k} (lowest at the {edge}, "
                f"k = {lowest}), so it suggests nothing here; the inertia curve bends at **k = {elbow}**.", elbow)
    if best == elbow:
        return f"Lowest BIC and the inertia curve's bend agree: **k = {best}**.", best
    return (f"Lowest BIC at **k = {best}**; the inertia curve bends at **k = {elbow}**. BIC weighs fit "
            "against complexity and is the one to prefer.", best)


def suggest_k(rows: list[SweepRow], by: str = "bic") -> int:
    """Best k by lowest BIC ("bic"), the inertia knee ("elbow") or highest silhouette."""
    if not rows:
        raise ClusterError("the sweep is empty")
    if by == "bic":
        return min(rows, key=lambda r: r.bic).k
    if by == "elbow":
        return knee([r.k for r in rows], [r.inertia for r in rows])
    if by == "silhouette":
        scored = [r for r in rows if r.silhouette is not None]
        if not scored:
            raise ClusterError("no k has a silhouette score")
        return max(scored, key=lambda r: r.silhouette).k
    raise ClusterError(f"unknown criterion {by!r}: use bic, elbow or silhouette")


# --- one clustering -----------------------------------------------------------------------


def medoids(x: np.ndarray, labels: np.ndarray, centres: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each cluster's medoid, estimated: among the 500 members nearest the centre, the one with
    the least summed distance to up to 1,000 sampled members (exact for small clusters)."""
    rng = np.random.default_rng(seed)
    out = np.full(len(centres), -1, dtype=np.int64)
    for c in range(len(centres)):
        members = np.flatnonzero(labels == c)
        if len(members) == 0:
            continue
        pts = x[members]
        near = np.argsort(((pts - centres[c]) ** 2).sum(1))[:500]
        ref = pts if len(pts) <= 1000 else pts[rng.choice(len(pts), 1000, replace=False)]
        cand = pts[near]
        sq = (cand**2).sum(1)[:, None] + (ref**2).sum(1)[None, :] - 2.0 * cand @ ref.T
        d = np.sqrt(np.maximum(sq, 0)).sum(1)
        out[c] = members[near[int(np.argmin(d))]]
    return out


@dataclass(eq=False)  # holds learned arrays
class Clusterer:
    """K-means or a Gaussian mixture on μ as an estimator (like `generative_map.Axes`): `fit`
    learns `labels_` (each row's cluster), `cluster_centers_` (k×D float32, in latent space) and
    `medoids_` (row index of each cluster's representative frame, -1 if empty); `predict` puts
    other latents (a shifted or live face) in a cluster."""

    method: str = "kmeans"
    k: int = 6
    seed: int = 0
    covariance: str = "diag"  # mixtures only

    def fit(self, mu: np.ndarray) -> "Clusterer":
        x = _check(mu, self.method, self.k)
        with threadpool_limits(limits=idle_threads()):
            if self.method == "kmeans":
                model = _kmeans(self.k, self.seed).fit(x)
                lab, centres = model.labels_, model.cluster_centers_
            else:
                model = _gmm(self.k, self.seed, self.covariance).fit(x)
                lab, centres = model.predict(x), model.means_
        lab = lab.astype(np.int64)
        return self._learned(lab, centres, medoids(x, lab, centres, self.seed))

    def _learned(self, labels: np.ndarray, centres: np.ndarray, medoid_rows: np.ndarray) -> "Clusterer":
        """Set what `fit` learns; also how a saved clustering is restored without refitting."""
        self.labels_, self.cluster_centers_, self.medoids_ = labels, np.asarray(centres, np.float32), medoid_rows
        return self

    def predict(self, z: np.ndarray) -> np.ndarray:
        """P×D latents -> P cluster numbers: the nearest centre. K-means' own rule; for a mixture
        an approximation that ignores its spreads, since a saved clustering keeps only the centres."""
        z = np.atleast_2d(np.asarray(z, np.float32))
        if z.shape[1] != self.cluster_centers_.shape[1]:
            raise ClusterError(f"the clusters are of {self.cluster_centers_.shape[1]}-value latents, not {z.shape[1]}")
        return nearest_centre(z, self.cluster_centers_)

    @property
    def sizes(self) -> np.ndarray:
        return np.bincount(self.labels_, minlength=self.k)


# --- per run: cached assignments and names ------------------------------------------------


@dataclass(frozen=True)
class RunClusters:
    ids: np.ndarray  # face ids, one per row of clustering.labels_
    clustering: Clusterer  # fitted
    latents_key: str

    def members(self, cluster: int) -> np.ndarray:
        return self.ids[self.clustering.labels_ == cluster]

    def medoid_face_ids(self) -> np.ndarray:
        m = self.clustering.medoids_
        return np.where(m >= 0, self.ids[np.maximum(m, 0)], -1)


def _path(workspace: Workspace, run_id: str, method: str, k: int) -> Path:
    return workspace.run_dir(run_id) / "clusters" / f"{method}-k{int(k)}.npz"


def load_clusters(
    workspace: Workspace, run_id: str, method: str, k: int, seed: int = 0
) -> RunClusters | None:
    """The cached assignments if made from the current latents with this seed, else None."""
    lat = require_latents(workspace, run_id)
    try:
        with np.load(_path(workspace, run_id, method, k), allow_pickle=False) as z:
            if str(z["latents_key"]) != lat.key or int(z["seed"]) != seed:
                return None
            c = Clusterer(method, int(k), seed)._learned(z["labels"], z["centres"], z["medoids"])
            return RunClusters(ids=z["ids"], clustering=c, latents_key=lat.key)
    except (FileNotFoundError, KeyError, ValueError, OSError):
        return None


def cluster_run(workspace: Workspace, run_id: str, method: str = "kmeans", k: int = 6, seed: int = 0) -> RunClusters:
    """Cluster the run's active crops (cached per method and k)."""
    cached = load_clusters(workspace, run_id, method, k, seed)
    if cached is not None:
        return cached
    lat = require_latents(workspace, run_id)
    ids, mu = active_latents(workspace, lat)
    c = Clusterer(method, k, seed).fit(mu)
    arrays = dict(  # the file's names predate `Clusterer`: workspaces saved before still load
        ids=ids, labels=c.labels_, centres=c.cluster_centers_, medoids=c.medoids_,
        seed=np.array(seed), latents_key=np.array(lat.key),
    )
    write_atomic(_path(workspace, run_id, method, k), lambda f: np.savez(f, **arrays))
    return RunClusters(ids=ids, clustering=c, latents_key=lat.key)


def cluster_names(workspace: Workspace, run_id: str, method: str, k: int) -> dict[int, str]:
    """{cluster: name} for the run's current clustering.

    A name is stored with one frame of its cluster (`anchor`); when the latents are re-made
    (crops added or deleted, a re-encode) cluster numbers can permute, so each name goes to the
    cluster that now holds its frame (the stored numbers are brought up to date), and a name
    whose frame was deleted is dropped. Names stored before anchors existed keep their number."""
    key = (run_id, method, int(k))
    with workspace.connect() as c:
        rows = [(int(r[0]), r[1], r[2]) for r in c.execute(
            "SELECT cluster, name, face_id FROM cluster_names WHERE run_id = ? AND method = ? AND k = ? "
            "ORDER BY cluster", key)]
    where = _cluster_of_face(workspace, run_id, method, k) if any(r[2] is not None for r in rows) else {}
    if any(f is not None for _, _, f in rows) and not where:
        return {c: n for c, n, _ in rows}  # no latents to place them: as stored
    kept: dict[int, tuple[str, int | None]] = {}
    for cluster, name, face in rows:
        now = cluster if face is None else where.get(int(face))
        if now is not None and now not in kept:
            kept[now] = (name, face)
    if sorted(kept) != [c for c, _, _ in rows] or any(kept[c][0] != n for c, n, _ in rows if c in kept):
        with workspace.connect(write=True) as c:
            c.execute("DELETE FROM cluster_names WHERE run_id = ? AND method = ? AND k = ?", key)
            c.executemany("INSERT INTO cluster_names(run_id, method, k, cluster, name, face_id) VALUES(?, ?, ?, ?, ?, ?)",
                          [(*key, cl, n, f) for cl, (n, f) in kept.items()])
    return {cl: n for cl, (n, _) in kept.items()}


def _cluster_of_face(workspace: Workspace, run_id: str, method: str, k: int) -> dict[int, int]:
    """{face id: cluster} of the run's current clustering; empty without latents."""
    try:
        rc = cluster_run(workspace, run_id, method, k)
    except LatentsMissing:
        return {}
    return dict(zip(rc.ids.tolist(), rc.clustering.labels_.tolist()))


def _anchor(workspace: Workspace, run_id: str, method: str, k: int, cluster: int) -> int | None:
    """The frame a new name is stored with: the cluster's medoid, else its first member."""
    try:
        rc = cluster_run(workspace, run_id, method, k)
    except LatentsMissing:
        return None
    medoid = int(rc.medoid_face_ids()[cluster]) if cluster < rc.clustering.k else -1
    members = rc.members(cluster)
    return medoid if medoid >= 0 else (int(members[0]) if len(members) else None)


def set_cluster_name(
    workspace: Workspace,
    run_id: str,
    method: str,
    k: int,
    cluster: int,
    name: str,
    *,
    label_members: bool = False,
) -> labels_mod.UndoRecord | None:
    """Name a cluster (an empty name removes it); `label_members` also labels its frames."""
    if method not in METHODS:
        raise ClusterError(f"unknown clustering method {method!r}: use one of {', '.join(METHODS)}")
    if not 0 <= int(cluster) < int(k):
        raise ClusterError(f"cluster {cluster} does not exist for k={k} (clusters are 0 to {int(k) - 1})")
    name = " ".join((name or "").split())
    if len(name) > MAX_NAME_LEN:
        raise ClusterError(f"a cluster name has at most {MAX_NAME_LEN} characters")
    cluster_names(workspace, run_id, method, k)  # stored numbers brought up to date first
    anchor = _anchor(workspace, run_id, method, k, int(cluster))
    try:
        with workspace.connect(write=True) as c:
            if not name:
                c.execute(
                    "DELETE FROM cluster_names WHERE run_id = ? AND method = ? AND k = ? AND cluster = ?",
                    (run_id, method, int(k), int(cluster)),
                )
                return None
            c.execute(
                "INSERT INTO cluster_names(run_id, method, k, cluster, name, face_id) VALUES(?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(run_id, method, k, cluster) DO UPDATE SET name = excluded.name, face_id = excluded.face_id",
                (run_id, method, int(k), int(cluster), name, anchor),
            )
    except sqlite3.IntegrityError:
        raise ClusterError(f"no run {run_id!r} in this workspace") from None
    if label_members:
        return label_cluster(workspace, run_id, method, k, cluster, name)
    return None


def label_cluster(
    workspace: Workspace, run_id: str, method: str, k: int, cluster: int, label: str, seed: int = 0
) -> labels_mod.UndoRecord:
    """Give every frame of a cluster the label; returns the undo record."""
    rc = cluster_run(workspace, run_id, method, k, seed)
    if not 0 <= int(cluster) < rc.clustering.k:
        raise ClusterError(f"cluster {cluster} does not exist for k={k}")
    return labels_mod.set_labels(workspace, rc.members(int(cluster)), label)

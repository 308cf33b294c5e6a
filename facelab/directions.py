"""Directions in latent space: what "more smile" or "toward my laughing cluster" means.

Three ways to get one, each shaped like a scikit-learn estimator (`__init__` stores the
settings, `fit` returns self, learned values end in `_`):

- `LabelDirection` from labelled latents: the difference of class means, or the unit normal of
  a linear classifier's boundary (logistic regression or linear SVM, as InterFaceGAN does);
- `CentreTarget`: the mean latent of a cluster or label, to move toward with
  `facelab.edit.compose` (z' = z + s (c - z) + the slider steps);
- `ConditionalDirection`: one direction with its components along others removed
  (Gram-Schmidt), e.g. "smile without opening the mouth".

Directions are unit vectors; `spread_` is the std of the data projected on them, so a slider
alpha in [-3, 3] means alpha x spread. They are stored per run in the `directions` table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from facelab.db import now_iso

MIN_EXAMPLES = 5
# Share of a unit direction that must survive `orthogonalize`; below it what is left is the
# fitting noise of two nearly parallel directions, not a direction.
MIN_KEPT = 0.05
KINDS = ("mean_diff", "logistic", "svm", "conditional", "centre", "custom")
LabelMethod = Literal["mean_diff", "logistic", "svm"]
Negatives = Literal["auto", "labelled", "all"]
NEGATIVES = ("auto", "labelled", "all")
NAME_MAX = 64


class DirectionError(ValueError):
    """A direction that cannot be made or found; the message is meant for the user."""


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields, not objects
class Direction:
    """A stored direction (or, for kind 'centre', a target point) of one run."""

    name: str
    kind: str
    vector: np.ndarray  # float32 D: a unit vector, or the centre itself for kind 'centre'
    spread: float = 1.0  # std of the data along `vector` (alpha is in these units)
    spec: dict[str, Any] = field(default_factory=dict)  # how it was made: labels, counts, ...
    created_at: str = ""

    @property
    def dim(self) -> int:
        return int(self.vector.shape[0])


# --- helpers ------------------------------------------------------------------------------
def _latents(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] == 0:
        raise DirectionError(f"need an N x D array of latents, got shape {z.shape}")
    if not np.all(np.isfinite(z)):
        raise DirectionError("the latents have non-finite values")
    return z


def unit(v: np.ndarray, what: str = "direction") -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    n = float(np.linalg.norm(v))
    if not np.isfinite(n) or n < 1e-12:
        raise DirectionError(f"the {what} has zero length (nothing separates the examples)")
    return v / n


def spread_along(z: np.ndarray, vector: np.ndarray) -> float:
    """Std of the latents projected on a unit vector; never 0, so alpha steps always move."""
    s = float(np.std(_latents(z) @ np.asarray(vector, dtype=np.float64)))
    return s if s > 1e-8 else 1.0


def orthogonalize(vector: np.ndarray, remove: Sequence[np.ndarray]) -> np.ndarray:
    """`vector` minus its components along every vector in `remove`, as a unit vector.

    The removed vectors are first made orthonormal (Gram-Schmidt), so removing two correlated
    directions takes out their whole span, not one of them twice.
    """
    basis: list[np.ndarray] = []
    for r in remove:
        r = np.asarray(r, dtype=np.float64)
        for b in basis:
            r = r - (r @ b) * b
        n = np.linalg.norm(r)
        if n > 1e-8:
            basis.append(r / n)
    v = unit(vector)
    for b in basis:
        v = v - (v @ b) * b
    if np.linalg.norm(v) < MIN_KEPT:
        raise DirectionError(
            "the direction lies (almost) inside the ones removed: nothing is left of it"
        )
    return unit(v)


def binary_targets(
    face_ids: np.ndarray,
    labels_of: Mapping[int, set[str]],
    label: str,
    negatives: Negatives = "auto",
    minimum: int = MIN_EXAMPLES,
) -> tuple[np.ndarray, np.ndarray, str]:
    """(mask of faces used, y, negatives_from) for one label, given `face_id -> labels`.

    negatives='labelled': faces labelled with something else and not the label (explicit
    "not L" judgments); 'all': every face without the label (unlabelled ones may secretly be
    L); 'auto' (as `facelab.probe` does): 'labelled' when there are at least `minimum` of
    those, else 'all'. `negatives_from` says which was used.
    """
    if negatives not in NEGATIVES:
        raise DirectionError(f"negatives must be one of {', '.join(NEGATIVES)}, got {negatives!r}")
    tags = [labels_of.get(int(i), ()) for i in np.asarray(face_ids)]
    has = np.array([label in t for t in tags], dtype=bool)
    labelled_neg = np.array([bool(t) and label not in t for t in tags], dtype=bool)
    if negatives == "auto":
        negatives = "labelled" if labelled_neg.sum() >= minimum else "all"
    used = has | labelled_neg if negatives == "labelled" else np.ones(len(tags), dtype=bool)
    return used, has[used], negatives


def check_examples(
    y: np.ndarray, label: str, minimum: int = MIN_EXAMPLES, negatives: str | None = None
) -> tuple[int, int]:
    """(positives, negatives); raises saying how many more of each are needed.

    `negatives='labelled'` words the missing negatives as faces with another label (what
    `binary_targets` counts as negatives then).
    """
    y = np.asarray(y, dtype=bool)
    pos, neg = int(y.sum()), int((~y).sum())
    others = "with another label and not" if negatives == "labelled" else "without"
    missing = []
    if pos < minimum:
        missing.append(f"{minimum - pos} more face(s) labelled {label!r} (has {pos})")
    if neg < minimum:
        missing.append(f"{minimum - neg} more face(s) {others} {label!r} (has {neg})")
    if missing:
        raise DirectionError(
            f"too few examples for a {label!r} direction (at least {minimum} of each are needed): "
            f"label {' and '.join(missing)}"
        )
    return pos, neg


# --- estimators ---------------------------------------------------------------------------
class LabelDirection:
    """The direction in which a label grows, learned from latents and a yes/no per latent."""

    def __init__(
        self,
        method: LabelMethod = "logistic",
        C: float = 1.0,
        min_examples: int = MIN_EXAMPLES,
        label: str = "label",
    ) -> None:
        self.method = method
        self.C = C
        self.min_examples = min_examples
        self.label = label

    def fit(self, z: np.ndarray, y: np.ndarray) -> "LabelDirection":
        z = _latents(z)
        y = np.asarray(y, dtype=bool)
        if y.shape != (z.shape[0],):
            raise DirectionError(f"{z.shape[0]} latents but {y.size} labels")
        self.n_positive_, self.n_negative_ = check_examples(y, self.label, self.min_examples)
        if self.method == "mean_diff":
            raw = z[y].mean(0) - z[~y].mean(0)
        elif self.method in ("logistic", "svm"):
            clf = _linear_classifier(self.method, self.C).fit(z, y)
            raw = clf.coef_[0]
        else:
            raise DirectionError(f"unknown method {self.method!r}: use mean_diff, logistic or svm")
        self.vector_ = unit(raw).astype(np.float32)
        self.spread_ = spread_along(z, self.vector_)
        # How far apart the classes sit along the direction, in spreads (a quick quality cue).
        proj = z @ self.vector_.astype(np.float64)
        self.separation_ = float((proj[y].mean() - proj[~y].mean()) / self.spread_)
        return self

    def to_direction(self, name: str | None = None, **spec: Any) -> Direction:
        return Direction(
            name=name or self.label,
            kind=self.method,
            vector=self.vector_,
            spread=self.spread_,
            spec={
                "label": self.label, "positives": self.n_positive_, "negatives": self.n_negative_,
                "C": self.C, "separation": round(self.separation_, 4), **spec,
            },
        )


class CentreTarget:
    """The mean latent of a group of faces (a cluster or a label): a place to move toward."""

    def __init__(self, min_members: int = 1, label: str = "centre") -> None:
        self.min_members = min_members
        self.label = label

    def fit(self, z: np.ndarray, members: np.ndarray) -> "CentreTarget":
        z = _latents(z)
        m = np.asarray(members)
        if m.dtype != bool:  # row indices
            idx = m.astype(np.int64)
            m = np.zeros(z.shape[0], dtype=bool)
            m[idx] = True
        if m.shape != (z.shape[0],):
            raise DirectionError(f"{z.shape[0]} latents but a mask of {m.size}")
        self.n_members_ = int(m.sum())
        if self.n_members_ < max(1, self.min_members):
            raise DirectionError(
                f"{self.label!r} has {self.n_members_} face(s); at least "
                f"{max(1, self.min_members)} are needed for a centre"
            )
        self.centre_ = z[m].mean(0).astype(np.float32)
        # Mean distance of the members to their centre: how tight the group is.
        self.spread_ = float(np.linalg.norm(z[m] - self.centre_, axis=1).mean()) or 1.0
        return self

    def to_direction(self, name: str | None = None, **spec: Any) -> Direction:
        return Direction(
            name=name or self.label, kind="centre", vector=self.centre_, spread=self.spread_,
            spec={"label": self.label, "members": self.n_members_, **spec},
        )


class ConditionalDirection:
    """One direction with its components along others removed (Gram-Schmidt)."""

    def __init__(self, base: np.ndarray | Direction, remove: Sequence[np.ndarray | Direction]) -> None:
        self.base = base
        self.remove = remove

    def fit(self, z: np.ndarray) -> "ConditionalDirection":
        vec = lambda d: d.vector if isinstance(d, Direction) else d  # noqa: E731
        for d in (self.base, *self.remove):
            if isinstance(d, Direction) and d.kind == "centre":
                raise DirectionError(f"{d.name!r} is a centre, not a direction")
        self.vector_ = orthogonalize(vec(self.base), [vec(r) for r in self.remove]).astype(np.float32)
        self.spread_ = spread_along(z, self.vector_)
        self.kept_ = float(abs(np.dot(self.vector_, unit(vec(self.base)))))  # cosine with the base
        return self

    def to_direction(self, name: str, **spec: Any) -> Direction:
        names = lambda d: d.name if isinstance(d, Direction) else "vector"  # noqa: E731
        return Direction(
            name=name, kind="conditional", vector=self.vector_, spread=self.spread_,
            spec={"base": names(self.base), "removed": [names(r) for r in self.remove],
                  "kept": round(self.kept_, 4), **spec},
        )


def _linear_classifier(method: str, C: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    if method == "svm":
        return LinearSVC(C=C, class_weight="balanced", max_iter=5000)
    return LogisticRegression(C=C, class_weight="balanced", max_iter=2000)


class LinearProbe:
    """A logistic regression telling how much a latent looks like a label (probability 0..1).

    Used to judge a shift: does the shifted face become more "smile"? Kept apart from the
    direction's own classifier so it can be fitted on other faces than the direction was.
    """

    def __init__(self, C: float = 1.0) -> None:
        self.C = C

    def fit(self, z: np.ndarray, y: np.ndarray) -> "LinearProbe":
        self.model_ = _linear_classifier("logistic", self.C).fit(_latents(z), np.asarray(y, bool))
        return self

    def score(self, z: np.ndarray) -> np.ndarray:
        """P(label | z) for each latent."""
        z = np.asarray(z, dtype=np.float64).reshape(-1, self.model_.coef_.shape[1])
        return self.model_.predict_proba(z)[:, 1]


# --- storage ------------------------------------------------------------------------------
def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > NAME_MAX:
        raise DirectionError(f"a direction needs a name of 1-{NAME_MAX} characters, got {name!r}")
    return name


def save_direction(ws, run_id: str, direction: Direction, replace: bool = True) -> Direction:
    """Store (or with replace=True overwrite) a direction of a run; returns what was stored."""
    name = _check_name(direction.name)
    if direction.kind not in KINDS:
        raise DirectionError(f"unknown direction kind {direction.kind!r}")
    vector = np.asarray(direction.vector, dtype=np.float32)
    if vector.ndim != 1 or vector.size == 0 or not np.all(np.isfinite(vector)):
        raise DirectionError(f"direction {name!r} must be a finite 1-D vector")
    if not np.isfinite(direction.spread) or direction.spread <= 0:
        raise DirectionError(f"direction {name!r} has an invalid spread {direction.spread}")
    created = direction.created_at or now_iso()
    spec = {**direction.spec, "spread": float(direction.spread), "dim": int(vector.size)}
    with ws.connect(write=True) as c:
        if c.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
            raise DirectionError(f"no run {run_id!r} in workspace {ws.name!r}")
        exists = c.execute(
            "SELECT 1 FROM directions WHERE run_id = ? AND name = ?", (run_id, name)
        ).fetchone()
        if exists and not replace:
            raise DirectionError(f"run {run_id!r} already has a direction named {name!r}")
        c.execute(
            "INSERT INTO directions(run_id, name, kind, spec, vector, created_at) "
            "VALUES(?, ?, ?, ?, ?, ?) ON CONFLICT(run_id, name) DO UPDATE SET "
            "kind = excluded.kind, spec = excluded.spec, vector = excluded.vector, "
            "created_at = excluded.created_at",
            (run_id, name, direction.kind, json.dumps(spec, sort_keys=True), vector.tobytes(), created),
        )
    return Direction(name, direction.kind, vector, float(direction.spread), dict(direction.spec), created)


def _row_to_direction(row) -> Direction:
    spec = json.loads(row["spec"])
    spread = float(spec.pop("spread", 1.0))
    spec.pop("dim", None)
    vector = np.frombuffer(row["vector"], dtype=np.float32).copy()
    return Direction(row["name"], row["kind"], vector, spread, spec, row["created_at"])


def load_directions(ws, run_id: str) -> dict[str, Direction]:
    """Every stored direction of a run, by name, in the order they were first saved."""
    with ws.connect() as c:
        rows = c.execute(
            "SELECT * FROM directions WHERE run_id = ? ORDER BY rowid", (run_id,)
        ).fetchall()
    return {r["name"]: _row_to_direction(r) for r in rows}


def load_direction(ws, run_id: str, name: str) -> Direction:
    found = load_directions(ws, run_id)
    if name not in found:
        have = ", ".join(found) or "none yet"
        raise DirectionError(f"run {run_id!r} has no direction {name!r} (it has: {have})")
    return found[name]


def delete_direction(ws, run_id: str, name: str) -> None:
    with ws.connect(write=True) as c:
        gone = c.execute(
            "DELETE FROM directions WHERE run_id = ? AND name = ?", (run_id, name)
        ).rowcount
    if not gone:
        raise DirectionError(f"run {run_id!r} has no direction {name!r}")


# --- from a workspace ---------------------------------------------------------------------
def labelled_latents(
    ws, run_id: str, label: str, negatives: Negatives = "auto",
    split: str | None = "train", codec=None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """(μ, y, negatives_from) of the faces that say something about `label`, from one split
    (None: all). Latents come from the run's cache (`facelab.latent`; encoded if stale)."""
    from facelab.labels import labels_of
    from facelab.latent import active_latents, load_latents

    ids, mu = active_latents(ws, load_latents(ws, run_id, compute=True, codec=codec))
    if split is not None:
        keep = np.isin(ids, ws.active_face_ids(split))
        ids, mu = ids[keep], mu[keep]
    used, y, negatives_from = binary_targets(ids, labels_of(ws), label, negatives)
    return mu[used], y, negatives_from


def fit_label_direction(
    ws, run_id: str, label: str, method: LabelMethod = "logistic",
    negatives: Negatives = "auto", split: str | None = "train", codec=None,
) -> Direction:
    """A label's direction fitted on a run's latents (not stored: see `save_direction`).

    Fitted on the training split by default, so held-out faces stay unseen for `shift-eval`.
    """
    z, y, negatives_from = labelled_latents(ws, run_id, label, negatives, split, codec)
    check_examples(y, label, negatives=negatives_from)  # before fitting: how many more are needed
    fitted = LabelDirection(method=method, label=label).fit(z, y)
    return fitted.to_direction(label, negatives_from=negatives_from, split=split or "all")

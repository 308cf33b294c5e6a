"""Directions in latent space: what "more smile" or "toward my laughing cluster" means.

Three ways to get one, each shaped like a scikit-learn estimator (`__init__` stores the
settings, `fit` returns self, learned values end in `_`):

- `LabelDirection` from labelled latents: the difference of class means, or the unit normal of
  a linear classifier's boundary (logistic regression or linear SVM, as InterFaceGAN does);
- `CentreTarget`: the mean latent of a cluster or label, to move toward with
  `facelab.edits.edit.compose` (z' = z + s (c - z) + the slider steps);
- `ConditionalDirection`: one direction with its components along others removed
  (Gram-Schmidt), e.g. "smile without opening the mouth".

Directions are unit vectors. A label direction also keeps `label_mean`, the mean projection of
the faces with the label on it (on the classifier's `normal` for "mouth", below): a slider's 1
moves a face until its own projection is there ("your average smile",
`facelab.edits.edit.compose`); a direction without one (custom vectors, old stored ones) moves
by alpha x `spread`, the std of the data along it. They are stored per run in the `directions`
table.

Method "mouth" (the default) bends the classifier's normal away from what changes the picture
outside the mouth region, measured through the decoder (`outside_gram`): the sample's smiles
are also a later stretch of the clip with another head pose, and a direction fitted on the
codes alone moved the upper face as much as the mouth. It keeps the normal it was bent from,
and its slider measures progress along that normal: along the bent vector the classes sit
closer, and "your average smile" moved the mouth a third as far as the plain normal does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from facelab.data.labels import MIN_EXAMPLES, Negatives, binary_targets
from facelab.errors import FacelabError
from facelab.store.db import now_iso

# Share of a unit direction that must survive `orthogonalize`; below it what is left is the
# fitting noise of two nearly parallel directions, not a direction.
MIN_KEPT = 0.05
KINDS = ("mean_diff", "logistic", "svm", "mouth", "conditional", "centre", "custom")
LabelMethod = Literal["mouth", "mean_diff", "logistic", "svm"]
# The default: on the sample it moved the judged smile as far as the others with the least
# change outside the mouth (benchmarks/shift_quality.py; README "Directions").
DEFAULT_METHOD: LabelMethod = "mouth"
METHOD_NAMES = {"mouth": "mouth only (keeps the rest of the face)", "logistic": "classifier normal (InterFaceGAN)",
                "mean_diff": "difference of means", "svm": "linear SVM normal"}
# "mouth": how much plain length counts against change outside the region (x the mean of
# A's diagonal, see `MouthDirection`), and how many training latents the decoder is probed at.
MOUTH_RIDGE = 0.05
MOUTH_ANCHORS = 32
NAME_MAX = 64


class DirectionError(FacelabError):
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

    @property
    def label_mean(self) -> float | None:
        """Mean projection of the faces with the label on `normal` (or, without one, on
        `vector`): where a slider's 1 takes a face. None when made without labels (the slider
        then counts spreads)."""
        m = self.spec.get("label_mean")
        return None if m is None or self.kind == "centre" else float(m)

    @property
    def normal(self) -> np.ndarray | None:
        """The classifier's unit normal a "mouth" direction was bent from: the slider measures
        progress along it (`facelab.edits.edit.compose`). None for the other kinds, and for
        mouth directions stored before it was kept (their slider measures along `vector`)."""
        n = self.spec.get("normal")
        return None if n is None else np.asarray(n, dtype=np.float64)

    @property
    def stale(self) -> bool:
        """A mouth direction stored before it kept its normal: its slider's 1 is the weaker
        smile of before, until it is learnt again."""
        return self.kind == "mouth" and self.label_mean is not None and self.normal is None


def describe(d: Direction) -> str:
    """How a stored direction was made, in words for the Shift page (not its raw spec)."""
    spec = d.spec
    if d.kind in METHOD_NAMES:
        return (f"{METHOD_NAMES[d.kind]}, from {spec.get('positives', '?')} frames labelled "
                f"“{spec.get('label', d.name)}” and {spec.get('negatives', '?')} without"
                + ("; stored by an older facelab, whose 1 was a weaker smile: learn it again" if d.stale else ""))
    if d.kind == "centre":
        return f"a centre: the mean of {spec.get('members', '?')} frames (“{spec.get('label', d.name)}”)"
    if d.kind == "conditional":
        removed = ", ".join(map(str, spec.get("removed", []))) or "nothing"
        return f"{spec.get('base', '?')} without its part along {removed}"
    return "a custom vector"


# --- helpers ------------------------------------------------------------------------------
def check_latents(z: np.ndarray) -> np.ndarray:
    """μ as a finite N×D float64 array, or a DirectionError saying what is wrong."""
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
    s = float(np.std(check_latents(z) @ np.asarray(vector, dtype=np.float64)))
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
    """The direction in which a label grows, learned from latents and a yes/no per latent.

    method "mouth" (`DEFAULT_METHOD` where a run's model is at hand) needs the run's `codec`
    (its decoder says what each latent direction does to the picture); the others, the
    latents alone.
    """

    def __init__(
        self,
        method: LabelMethod = "logistic",
        C: float = 1.0,
        min_examples: int = MIN_EXAMPLES,
        label: str = "label",
        codec=None,
    ) -> None:
        self.method = method
        self.C = C
        self.min_examples = min_examples
        self.label = label
        self.codec = codec

    def fit(self, z: np.ndarray, y: np.ndarray) -> "LabelDirection":
        z = check_latents(z)
        y = np.asarray(y, dtype=bool)
        if y.shape != (z.shape[0],):
            raise DirectionError(f"{z.shape[0]} latents but {y.size} labels")
        self.n_positive_, self.n_negative_ = check_examples(y, self.label, self.min_examples)
        self.normal_: np.ndarray | None = None  # set by "mouth" only; a refit must not keep an old one
        if self.method == "mean_diff":
            raw = z[y].mean(0) - z[~y].mean(0)
        elif self.method in ("logistic", "svm", "mouth"):
            clf = _linear_classifier("logistic" if self.method == "mouth" else self.method, self.C).fit(z, y)
            raw = clf.coef_[0]
            if self.method == "mouth":
                if self.codec is None:
                    raise DirectionError("the 'mouth' method needs the run's model (codec) to see what "
                                         "each direction does to the picture")
                self.normal_ = unit(raw)
                raw = keep_outside(self.normal_, outside_gram(self.codec, z))
        else:
            raise DirectionError(f"unknown method {self.method!r}: use one of {', '.join(METHOD_NAMES)}")
        self.vector_ = unit(raw).astype(np.float32)
        self.spread_ = spread_along(z, self.vector_)
        # How far apart the classes sit along the direction, in spreads (a quick quality cue).
        proj = z @ self.vector_.astype(np.float64)
        self.separation_ = float((proj[y].mean() - proj[~y].mean()) / self.spread_)
        # The slider's 1: the labelled faces' mean score along the normal the direction was
        # bent from, when it was bent. Measured along the bent vector itself, the classes sit
        # closer (it gave up some of the normal to keep the upper face), and "your average
        # smile" moved the mouth a third as far as the plain difference of means (d13).
        self.label_mean_ = float((z[y] @ self.normal_).mean() if self.normal_ is not None else proj[y].mean())
        return self

    def to_direction(self, name: str | None = None, **spec: Any) -> Direction:
        return Direction(
            name=name or self.label,
            kind=self.method,
            vector=self.vector_,
            spread=self.spread_,
            spec={
                "label": self.label, "positives": self.n_positive_, "negatives": self.n_negative_,
                "C": self.C, "separation": round(self.separation_, 4),
                "label_mean": round(self.label_mean_, 6),
                **({"normal": [round(float(v), 6) for v in self.normal_]} if self.normal_ is not None else {}),
                **spec,
            },
        )


class CentreTarget:
    """The mean latent of a group of faces (a cluster or a label): a place to move toward."""

    def __init__(self, min_members: int = 1, label: str = "centre") -> None:
        self.min_members = min_members
        self.label = label

    def fit(self, z: np.ndarray, members: np.ndarray) -> "CentreTarget":
        z = check_latents(z)
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

    def fit(self, z: np.ndarray, positives: np.ndarray | None = None) -> "ConditionalDirection":
        """`positives`: latents of the faces with the label, for `label_mean_` (the slider's 1);
        without them the result moves in spreads."""
        vec = lambda d: d.vector if isinstance(d, Direction) else d  # noqa: E731
        for d in (self.base, *self.remove):
            if isinstance(d, Direction) and d.kind == "centre":
                raise DirectionError(f"{d.name!r} is a centre, not a direction")
        self.vector_ = orthogonalize(vec(self.base), [vec(r) for r in self.remove]).astype(np.float32)
        self.spread_ = spread_along(z, self.vector_)
        self.kept_ = float(abs(np.dot(self.vector_, unit(vec(self.base)))))  # cosine with the base
        self.label_mean_ = None
        if positives is not None and len(positives):
            self.label_mean_ = float(np.mean(check_latents(positives) @ self.vector_.astype(np.float64)))
        return self

    def to_direction(self, name: str, **spec: Any) -> Direction:
        names = lambda d: d.name if isinstance(d, Direction) else "vector"  # noqa: E731
        return Direction(
            name=name, kind="conditional", vector=self.vector_, spread=self.spread_,
            spec={"base": names(self.base), "removed": [names(r) for r in self.remove],
                  "kept": round(self.kept_, 4),
                  **({} if self.label_mean_ is None else {"label_mean": round(self.label_mean_, 6)}), **spec},
        )


def outside_gram(codec, z: np.ndarray, region=None, anchors: int = MOUTH_ANCHORS, seed: int = 0) -> np.ndarray:
    """A = mean over anchor latents of J_out^T J_out (D x D): how much a latent step changes the
    decoded picture outside `region` (default: the mouth, `facelab.edits.edit.MOUTH_REGION`), so
    d^T A d is the squared change outside per unit step along d.

    J_out is the decoder's Jacobian restricted to the pixels outside the region, by central
    differences of half a std along each latent at up to `anchors` of the latents `z` (so the
    direction suits the faces it will move): 2 x anchors x D decodes.
    """
    from facelab.edits.edit import MOUTH_REGION, region_mask

    z = check_latents(z)
    rng = np.random.default_rng(seed)
    pick = z[np.sort(rng.choice(len(z), min(anchors, len(z)), replace=False))]
    k, dim = pick.shape
    h = 0.5 * np.where(z.std(0) > 1e-6, z.std(0), 1.0)
    steps = np.eye(dim) * h  # row i: the step along latent i
    batch = np.concatenate([pick[:, None] + steps[None], pick[:, None] - steps[None]]).reshape(-1, dim)
    pics = codec.decode(batch.astype(np.float32)).astype(np.float32).reshape(2, k, dim, -1, 3)
    size = int(round(np.sqrt(pics.shape[3])))
    outside = ~region_mask(size, region or MOUTH_REGION)
    jac = (pics[0] - pics[1])[:, :, outside.ravel()] / (2 * h[None, :, None, None])  # k x D x P x 3
    jac = jac.reshape(k, dim, -1)
    return np.einsum("kip,kjp->ij", jac, jac) / k


def keep_outside(w: np.ndarray, gram: np.ndarray, ridge: float = MOUTH_RIDGE) -> np.ndarray:
    """The unit d with the least change outside the region per unit of progress along `w`:
    argmin d^T (A + r I) d subject to d . w = 1, i.e. d ∝ (A + r I)^-1 w, with r = ridge x the
    mean of A's diagonal (r keeps d from running off along directions the decoder ignores)."""
    a = np.asarray(gram, np.float64)
    r = ridge * float(np.trace(a)) / len(a) + 1e-12
    return unit(np.linalg.solve(a + r * np.eye(len(a)), np.asarray(w, np.float64)))


def _linear_classifier(method: str, C: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    if method == "svm":
        return LinearSVC(C=C, class_weight="balanced", max_iter=5000)
    return LogisticRegression(C=C, class_weight="balanced", max_iter=2000)


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


def moves_of(stored: Mapping[str, Direction]) -> dict[str, Direction]:
    """The stored directions one can slide along or use as an axis (centres are places, not
    directions)."""
    return {n: d for n, d in stored.items() if d.kind != "centre"}


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
    (None: all). Latents come from the run's cache (`facelab.space.latent`; encoded if stale)."""
    from facelab.data.labels import labels_of
    from facelab.space.latent import active_latents, load_latents

    ids, mu = active_latents(ws, load_latents(ws, run_id, compute=True, codec=codec))
    if split is not None:
        keep = np.isin(ids, ws.active_face_ids(split))
        ids, mu = ids[keep], mu[keep]
    used, y, negatives_from = binary_targets(ids, labels_of(ws), label, negatives)
    return mu[used], y, negatives_from


def fit_label_direction(
    ws, run_id: str, label: str, method: LabelMethod = DEFAULT_METHOD,
    negatives: Negatives = "auto", split: str | None = "train", codec=None,
) -> Direction:
    """A label's direction fitted on a run's latents (not stored: see `save_direction`).

    Fitted on the training split by default, so held-out faces stay unseen for `shift-eval`.
    """
    if method == "mouth" and codec is None:
        from facelab.model.models import load_codec

        codec = load_codec(ws.run_dir(run_id))
    z, y, negatives_from = labelled_latents(ws, run_id, label, negatives, split, codec)
    check_examples(y, label, negatives=negatives_from)  # before fitting: how many more are needed
    fitted = LabelDirection(method=method, label=label, codec=codec).fit(z, y)
    return fitted.to_direction(label, negatives_from=negatives_from, split=split or "all")

"""How well the latent space separates each label: linear probes, spread, centre, what to label next.

Negatives. For a label L, the negatives are the frames the user labelled with something else
and not L: those are explicit "not L" judgments. If there are fewer than `min_count` of them
(e.g. the user has only labelled smiles so far), the negatives are all other frames without L,
labelled or not; unlabelled frames may secretly be L, so that AUC is a lower bound. Each
insight says which negatives it used (`negatives_from`).

Probe: standardised μ → logistic regression (balanced classes), ROC-AUC from stratified
k-fold cross-validated probabilities. Spread: mean distance between two frames of L over mean
distance between two frames of the whole set (< 1: L is a compact region of the space).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

MIN_COUNT = 5
MAX_PAIRS_SAMPLE = 1000  # rows sampled for mean pairwise distances (O(n²) otherwise)


class ProbeError(ValueError):
    """Not enough labels to fit a probe; the message says what is needed."""


@dataclass(frozen=True)
class LabelInsight:
    label: str
    positives: int
    negatives: int
    negatives_from: str  # "labelled": frames with other labels; "all": every other frame
    auc: float | None  # None when there are too few positives or negatives
    spread: float | None  # within-label / overall mean distance; None with < 2 positives
    centre: np.ndarray  # mean μ of the label's frames (D)
    centre_xy: np.ndarray | None  # mean map position of its frames, when a map was given
    note: str = ""


def _label_masks(
    ids: np.ndarray, labels_of: Mapping[int, set[str]], label: str, min_count: int
) -> tuple[np.ndarray, np.ndarray, str]:
    tags = [labels_of.get(int(i), set()) for i in ids]
    pos = np.array([label in t for t in tags], dtype=bool)
    labelled_neg = np.array([bool(t) and label not in t for t in tags], dtype=bool)
    if labelled_neg.sum() >= min_count:
        return pos, labelled_neg, "labelled"
    return pos, ~pos, "all"


def _probe():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=1000))


def _mean_pairwise(x: np.ndarray, rng: np.random.Generator) -> float | None:
    if len(x) < 2:
        return None
    if len(x) > MAX_PAIRS_SAMPLE:
        x = x[rng.choice(len(x), MAX_PAIRS_SAMPLE, replace=False)]
    x = x.astype(np.float64)
    sq = (x**2).sum(1)
    d = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0))
    n = len(x)
    return float(d.sum() / (n * (n - 1)))


def cross_validated_auc(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    """ROC-AUC of the probe's out-of-fold probabilities."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    n_splits = int(min(folds, y.sum(), (~y).sum()))
    if n_splits < 2:
        raise ProbeError("a probe needs at least 2 frames with and 2 without the label")
    from threadpoolctl import threadpool_limits

    from facelab.projection import idle_threads

    cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with threadpool_limits(limits=idle_threads()):
        p = cross_val_predict(_probe(), x, y, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, p))


def label_insights(
    mu: np.ndarray,
    ids: np.ndarray,
    labels_of: Mapping[int, set[str]],
    xy: np.ndarray | None = None,
    *,
    min_count: int = MIN_COUNT,
    folds: int = 5,
    seed: int = 0,
) -> list[LabelInsight]:
    """One insight per label used on these frames (rows of `mu` are the faces `ids`)."""
    mu = np.asarray(mu, dtype=np.float64)
    ids = np.asarray(ids, dtype=np.int64)
    rng = np.random.default_rng(seed)
    overall = _mean_pairwise(mu, rng)
    present = sorted({lab for i in ids for lab in labels_of.get(int(i), ())})
    out = []
    for label in present:
        pos, neg, source = _label_masks(ids, labels_of, label, min_count)
        n_pos, n_neg = int(pos.sum()), int(neg.sum())
        auc, note = None, ""
        if n_pos < min_count or n_neg < min_count:
            note = f"needs {min_count} frames with and {min_count} without '{label}' for a probe"
        else:
            sel = pos | neg
            auc = cross_validated_auc(mu[sel], pos[sel], folds, seed)
        within = _mean_pairwise(mu[pos], rng)
        spread = within / overall if within is not None and overall else None
        out.append(
            LabelInsight(
                label=label, positives=n_pos, negatives=n_neg, negatives_from=source, auc=auc,
                spread=spread, centre=mu[pos].mean(0).astype(np.float32),
                centre_xy=None if xy is None else np.asarray(xy)[pos].mean(0).astype(np.float32),
                note=note,
            )
        )
    return out


def probe_probabilities(
    mu: np.ndarray, ids: np.ndarray, labels_of: Mapping[int, set[str]], label: str,
    *, min_count: int = MIN_COUNT,
) -> np.ndarray:
    """P(label) for every row, from a probe fit on all of the label's positives and negatives."""
    mu = np.asarray(mu, dtype=np.float64)
    pos, neg, _ = _label_masks(np.asarray(ids), labels_of, label, min_count)
    if pos.sum() < min_count or neg.sum() < min_count:
        raise ProbeError(
            f"label more frames: a probe for '{label}' needs {min_count} frames with it and {min_count} without"
        )
    from threadpoolctl import threadpool_limits

    from facelab.projection import idle_threads

    sel = pos | neg
    with threadpool_limits(limits=idle_threads()):
        model = _probe().fit(mu[sel], pos[sel])
        return model.predict_proba(mu)[:, 1]


def suggest_next(
    mu: np.ndarray, ids: np.ndarray, labels_of: Mapping[int, set[str]], label: str,
    n: int = 20, *, min_count: int = MIN_COUNT,
) -> np.ndarray:
    """Face ids of the unlabelled frames the probe for `label` is least sure about (p nearest 0.5)."""
    ids = np.asarray(ids, dtype=np.int64)
    p = probe_probabilities(mu, ids, labels_of, label, min_count=min_count)
    unlabelled = np.array([not labels_of.get(int(i)) for i in ids], dtype=bool)
    rows = np.flatnonzero(unlabelled)
    order = np.argsort(np.abs(p[rows] - 0.5), kind="stable")
    return ids[rows[order[:n]]]


def uncertainty(
    mu: np.ndarray, ids: np.ndarray, labels_of: Mapping[int, set[str]],
    labels: Iterable[str] | None = None, *, min_count: int = MIN_COUNT,
) -> np.ndarray:
    """Per row, 1 − 2·|p − 0.5| of the least sure probe (1 = a coin toss, 0 = certain).

    Uses every label (or those given) with enough frames; raises ProbeError if there is none.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if labels is None:
        labels = sorted({lab for i in ids for lab in labels_of.get(int(i), ())})
    best = None
    for label in labels:
        try:
            p = probe_probabilities(mu, ids, labels_of, label, min_count=min_count)
        except ProbeError:
            continue
        u = 1.0 - 2.0 * np.abs(p - 0.5)
        best = u if best is None else np.maximum(best, u)
    if best is None:
        raise ProbeError(
            f"no label has {min_count} frames with it and {min_count} without yet: label more to sort by uncertainty"
        )
    return best.astype(np.float32)


def run_insights(workspace, run_id: str, xy_projection=None, *, min_count: int = MIN_COUNT) -> list[LabelInsight]:
    """`label_insights` for a run's active crops; pass a `facelab.projection.Projection` for map centres."""
    from facelab.labels import labels_of
    from facelab.latent import active_latents, require_latents

    lat = require_latents(workspace, run_id)
    ids, mu = active_latents(workspace, lat)
    xy = None
    if xy_projection is not None:
        pos = {int(f): r for r, f in enumerate(xy_projection.ids)}
        keep = np.array([int(i) in pos for i in ids], dtype=bool)
        ids, mu = ids[keep], mu[keep]
        xy = xy_projection.xy[[pos[int(i)] for i in ids]]
    return label_insights(mu, ids, labels_of(workspace), xy, min_count=min_count)

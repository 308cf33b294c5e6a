"""How well the latent space separates each label: linear probes, spread, centre, what to label next.

Negatives. For a label L, the negatives are the frames the user labelled with something else
and not L: those are explicit "not L" judgments. If there are fewer than `min_count` of them
(e.g. the user has only labelled smiles so far), the negatives are all other frames without L,
labelled or not; unlabelled frames may secretly be L, so that AUC is a lower bound. Each
insight says which negatives it used (`negatives_from`).

Probe: standardised μ → logistic regression (balanced classes), ROC-AUC from stratified
k-fold cross-validated probabilities, with a 95 % interval and a rule for how many more labels
would make it trustworthy (`AucEstimate`; 30 labels gave cross-validated AUCs from 0.36 to 0.94
across draws of the same clip while the true one stayed near 0.55, so a bare number misleads).
Spread: mean distance between two frames of L over mean
distance between two frames of the whole set (< 1: L is a compact region of the space).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from facelab.data.labels import MIN_EXAMPLES, binary_targets
from facelab.errors import FacelabError

MAX_PAIRS_SAMPLE = 1000  # rows sampled for mean pairwise distances (O(n²) otherwise)
Z95 = 1.959964  # two-sided 95 % normal quantile
BOOTSTRAP = 1000  # resamples of the out-of-fold predictions for the AUC's interval
# An AUC is "trustworthy" when its 95 % interval is at most this wide (± 0.1): enough to tell
# a label the model separates well (0.9) from one it barely does (0.7).
TRUST_WIDTH = 0.2
MAX_SUGGESTED = 10_000  # more labels than this is "a lot more", not a number to act on


class ProbeError(FacelabError):
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
    estimate: "AucEstimate | None" = None  # the AUC with its interval; None when `auc` is

    @property
    def guidance(self) -> str:
        """One plain sentence on how far to trust the AUC and what to label next."""
        if self.estimate is None:
            return self.note
        return self.estimate.advice(self.label, self.negatives_from)


@dataclass(frozen=True)
class AucEstimate:
    """A cross-validated ROC-AUC with a 95 % interval and the labels it rests on.

    The interval is the wider, at each end, of two:
    - a stratified bootstrap over the out-of-fold predictions (positives and negatives resampled
      separately, `BOOTSTRAP` times, 2.5-97.5 percentiles): it uses every prediction, where the
      spread of 5 fold AUCs (a handful of positives each) is coarse and itself unreliable;
    - a Wilson interval for the AUC as a proportion over min(positives, negatives) trials, the
      classic upper bound on an AUC's variance, A(1 - A) / min(m, n) (van Dantzig 1951;
      Birnbaum & Klose 1957). The bootstrap alone collapses to 1.00-1.00 when 5 smiles and 5
      neutrals happen to be perfectly separated, which is exactly when it should say "unsure".
    Neither covers all of it: the probe is not refitted per resample, and a different split of
    the same labels moves the AUC too, so read the interval as a lower bound on the uncertainty.
    """

    auc: float
    low: float
    high: float
    positives: int
    negatives: int

    @property
    def width(self) -> float:
        return self.high - self.low

    @property
    def trustworthy(self) -> bool:
        return self.width <= TRUST_WIDTH

    def more_needed(self, target: float = TRUST_WIDTH) -> tuple[int, int]:
        """(more positives, more negatives) after which the interval should be `target` wide.

        Rule: an AUC's standard error shrinks like sqrt(1/positives + 1/negatives) at a fixed
        AUC (Hanley & McNeil 1982), so the width is scaled by that factor; labels go to the
        class whose next label shrinks it most (the smaller one). A rough guide: the AUC
        itself moves as labels come in. Capped at `MAX_SUGGESTED` per class.
        """
        if self.width <= target:
            return 0, 0
        p, n = self.positives, self.negatives
        goal = (1 / p + 1 / n) * (target / self.width) ** 2
        if goal <= 0:  # a zero-width target: no finite number of labels reaches it
            return MAX_SUGGESTED, MAX_SUGGESTED
        # Add to the smaller class until it matches the larger, then to both equally.
        lo, hi = min(p, n), max(p, n)
        if 1 / hi + 1 / hi <= goal:  # closing the gap is enough: 1/x + 1/hi <= goal
            x = int(np.ceil(1 / (goal - 1 / hi)))
            add_small, add_large = max(0, x - lo), 0
        else:  # both up to m: 2/m <= goal
            m = int(np.ceil(2 / goal))
            add_small, add_large = m - lo, m - hi
        add_small, add_large = min(add_small, MAX_SUGGESTED), min(add_large, MAX_SUGGESTED)
        return (add_small, add_large) if p <= n else (add_large, add_small)

    def advice(self, label: str, negatives_from: str = "labelled") -> str:
        """What the page says under the AUC: the interval, and how many more labels to add."""
        head = (f"'{label}': AUC {self.auc:.2f}, 95 % interval {self.low:.2f}-{self.high:.2f} "
                f"from {self.positives} with and {self.negatives} without")
        if self.trustworthy:
            return head + ": narrow enough to trust."
        more_p, more_n = self.more_needed()
        without = (f"labelled with something else (not '{label}')" if negatives_from == "labelled"
                   else f"without '{label}' (give them another label)")
        parts = [f"about {more_p} more frames with '{label}'"] if more_p else []
        if more_n:
            parts.append(f"about {more_n} more {without}")
        return (head + f": too uncertain to trust (wider than ± {TRUST_WIDTH / 2:.1f}). Label "
                + " and ".join(parts) + f" to bring it within ± {TRUST_WIDTH / 2:.1f} (a rough guide).")


def _label_masks(
    ids: np.ndarray, labels_of: Mapping[int, set[str]], label: str, min_count: int
) -> tuple[np.ndarray, np.ndarray, str]:
    """(positives, negatives, negatives_from) over all `ids`, by `labels.binary_targets`."""
    used, y, source = binary_targets(ids, labels_of, label, "auto", min_count)
    pos = np.zeros(len(used), dtype=bool)
    pos[used] = y
    return pos, used & ~pos, source


class LinearProbe:
    """The one latent probe: standardised latents → logistic regression with balanced classes,
    telling how much a latent looks like a label (probability 0..1).

    The Label page's AUC, its suggestions and timeline, and the Shift page's and `shift-eval`'s
    latent reading all use it. Standardising keeps one spread-out latent from drowning the rest;
    balancing keeps 20 smiles among 400 frames from reading as "never". Kept apart from a
    direction's own classifier so it can be fitted on other faces than the direction was.
    """

    def __init__(self, C: float = 1.0) -> None:
        self.C = C

    def estimator(self):
        """The unfitted scikit-learn pipeline (for cross-validation)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(C=self.C, class_weight="balanced", max_iter=1000))

    def fit(self, z: np.ndarray, y: np.ndarray) -> "LinearProbe":
        from threadpoolctl import threadpool_limits

        from facelab.edits.directions import check_latents  # the same check (and message) as a direction's
        from facelab.space.projection import idle_threads

        with threadpool_limits(limits=idle_threads()):
            self.model_ = self.estimator().fit(check_latents(z), np.asarray(y, bool))
        return self

    def score(self, z: np.ndarray) -> np.ndarray:
        """P(label | z) for each latent."""
        z = np.asarray(z, dtype=np.float64).reshape(-1, self.model_[-1].coef_.shape[1])
        return self.model_.predict_proba(z)[:, 1]


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


def _auc_rows(scores: np.ndarray, n_pos: int) -> np.ndarray:
    """Mann-Whitney AUC of each row of `scores`, whose first `n_pos` columns are positives."""
    from scipy.stats import rankdata

    ranks = rankdata(scores, axis=1)  # ties get their mean rank: a tie counts one half
    n_neg = scores.shape[1] - n_pos
    return (ranks[:, :n_pos].sum(1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def auc_interval(p: np.ndarray, y: np.ndarray, seed: int = 0,
                 resamples: int = BOOTSTRAP) -> AucEstimate:
    """The AUC of scores `p` for truths `y`, with the interval described in `AucEstimate`."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=bool)
    pos, neg = p[y], p[~y]
    m, n = len(pos), len(neg)
    if m == 0 or n == 0:
        raise ProbeError("an AUC needs frames with and without the label")
    auc = float(_auc_rows(np.concatenate([pos, neg])[None], m)[0])
    rng = np.random.default_rng(seed)
    boot = _auc_rows(np.concatenate([pos[rng.integers(0, m, (resamples, m))],
                                     neg[rng.integers(0, n, (resamples, n))]], axis=1), m)
    b_low, b_high = np.percentile(boot, [2.5, 97.5])
    k = min(m, n)  # Wilson score interval of a proportion `auc` over k trials
    centre = (auc + Z95**2 / (2 * k)) / (1 + Z95**2 / k)
    half = Z95 * np.sqrt(auc * (1 - auc) / k + Z95**2 / (4 * k * k)) / (1 + Z95**2 / k)
    low, high = min(b_low, centre - half), max(b_high, centre + half)
    return AucEstimate(auc=auc, low=float(max(0.0, low)), high=float(min(1.0, high)),
                       positives=m, negatives=n)


def cross_validated_auc(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0,
                        model=None) -> AucEstimate:
    """ROC-AUC of out-of-fold probabilities, with its interval.

    `model` is a scikit-learn classifier to use instead of the latent probe (the pixel judge
    of `facelab.edits.judge` passes its own), so both estimate and report an AUC the same way.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    y = np.asarray(y, dtype=bool)
    n_splits = int(min(folds, y.sum(), (~y).sum()))
    if n_splits < 2:
        raise ProbeError("a probe needs at least 2 frames with and 2 without the label")
    from threadpoolctl import threadpool_limits

    from facelab.space.projection import idle_threads

    cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with threadpool_limits(limits=idle_threads()):
        p = cross_val_predict(model if model is not None else LinearProbe().estimator(), x, y, cv=cv,
                              method="predict_proba")[:, 1]
    return auc_interval(p, y, seed)


def label_insights(
    mu: np.ndarray,
    ids: np.ndarray,
    labels_of: Mapping[int, set[str]],
    xy: np.ndarray | None = None,
    *,
    min_count: int = MIN_EXAMPLES,
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
        estimate, note = None, ""
        if n_pos < min_count or n_neg < min_count:
            note = f"needs {min_count} frames with and {min_count} without '{label}' for a probe"
        else:
            sel = pos | neg
            estimate = cross_validated_auc(mu[sel], pos[sel], folds, seed)
        within = _mean_pairwise(mu[pos], rng)
        spread = within / overall if within is not None and overall else None
        out.append(
            LabelInsight(
                label=label, positives=n_pos, negatives=n_neg, negatives_from=source,
                auc=None if estimate is None else estimate.auc,
                spread=spread, centre=mu[pos].mean(0).astype(np.float32),
                centre_xy=None if xy is None else np.asarray(xy)[pos].mean(0).astype(np.float32),
                note=note, estimate=estimate,
            )
        )
    return out


def insight_rows(insights: Iterable[LabelInsight]) -> list[dict]:
    """The Label page's table: one row per label, the AUC beside its interval and verdict."""
    rows = []
    for i in insights:
        e = i.estimate
        if e is None:
            more = ""
        elif e.trustworthy:
            more = "none: narrow enough to trust"
        else:
            more_p, more_n = e.more_needed()
            more = f"~{more_p} with, ~{more_n} without"
        rows.append({
            "label": i.label, "frames": i.positives, "probe ROC-AUC": i.auc,
            "95 % interval": None if e is None else f"{e.low:.2f}-{e.high:.2f}",
            "more labels to trust it": more,
            "within / overall distance": i.spread, "note": i.note,
        })
    return rows


def probe_probabilities(
    mu: np.ndarray, ids: np.ndarray, labels_of: Mapping[int, set[str]], label: str,
    *, min_count: int = MIN_EXAMPLES,
) -> np.ndarray:
    """P(label) for every row, from a probe fit on all of the label's positives and negatives."""
    mu = np.asarray(mu, dtype=np.float64)
    pos, neg, _ = _label_masks(np.asarray(ids), labels_of, label, min_count)
    if pos.sum() < min_count or neg.sum() < min_count:
        raise ProbeError(
            f"label more frames: a probe for '{label}' needs {min_count} frames with it and {min_count} without"
        )
    sel = pos | neg
    return LinearProbe().fit(mu[sel], pos[sel]).score(mu)


def suggest_next(
    mu: np.ndarray, ids: np.ndarray, labels_of: Mapping[int, set[str]], label: str,
    n: int = 20, *, min_count: int = MIN_EXAMPLES,
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
    labels: Iterable[str] | None = None, *, min_count: int = MIN_EXAMPLES,
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


def run_insights(workspace, run_id: str, xy_projection=None, *, min_count: int = MIN_EXAMPLES) -> list[LabelInsight]:
    """`label_insights` for a run's active crops; pass a `facelab.space.projection.Projection` for map centres."""
    from facelab.data.labels import labels_of
    from facelab.space.latent import active_latents, require_latents

    lat = require_latents(workspace, run_id)
    ids, mu = active_latents(workspace, lat)
    xy = None
    if xy_projection is not None:
        pos = {int(f): r for r, f in enumerate(xy_projection.ids)}
        keep = np.array([int(i) in pos for i in ids], dtype=bool)
        ids, mu = ids[keep], mu[keep]
        xy = xy_projection.xy[[pos[int(i)] for i in ids]]
    return label_insights(mu, ids, labels_of(workspace), xy, min_count=min_count)

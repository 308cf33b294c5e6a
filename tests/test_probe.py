"""Label insight: probes separate what the latent space separates, and point at unsure frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facelab import labels as lb
from facelab import probe as pr
from facelab import projection as pj
from test_latent import make_workspace


def two_blobs(n_per: int = 40, d: int = 8, gap: float = 6.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n_per)
    x = rng.normal(size=(2 * n_per, d))
    x[y == 1, 0] += gap
    return x.astype(np.float32), y


def test_separable_label_has_auc_one_and_tight_spread() -> None:
    x, y = two_blobs()
    ids = np.arange(100, 180)  # face ids need not be row numbers
    labels = {int(i): {"smile"} for i in ids[y == 1][:30]}
    labels.update({int(i): {"neutral"} for i in ids[y == 0][:30]})
    xy = np.c_[x[:, 0], x[:, 1]]
    out = {i.label: i for i in pr.label_insights(x, ids, labels, xy)}
    smile = out["smile"]
    assert smile.positives == 30 and smile.negatives == 30 and smile.negatives_from == "labelled"
    assert smile.auc > 0.98
    assert smile.spread < 0.8
    assert abs(smile.centre[0] - 6.0) < 0.6 and abs(smile.centre_xy[0] - 6.0) < 0.6
    assert out["neutral"].auc > 0.98


def test_random_label_has_auc_near_half() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 8)).astype(np.float32)
    ids = np.arange(200)
    labels = {int(i): {"smile"} for i in rng.choice(200, 100, replace=False)}
    (smile,) = pr.label_insights(x, ids, labels)
    assert smile.negatives_from == "all" and smile.negatives == 100
    assert 0.3 < smile.auc < 0.7
    assert 0.85 < smile.spread < 1.15


def test_too_few_frames_gives_no_auc_but_a_note() -> None:
    x, y = two_blobs()
    labels = {0: {"sad"}, 1: {"sad"}, 2: {"sad"}}
    (sad,) = pr.label_insights(x, np.arange(80), labels)
    assert sad.auc is None and sad.positives == 3 and "needs 5 frames" in sad.note
    with pytest.raises(pr.ProbeError, match="label more frames"):
        pr.suggest_next(x, np.arange(80), labels, "sad")
    with pytest.raises(pr.ProbeError, match="no label has 5"):
        pr.uncertainty(x, np.arange(80), labels)


def test_suggestions_and_uncertainty_point_at_the_boundary() -> None:
    x, y = two_blobs(gap=4.0)
    x[-1, 0] = 2.0  # an unlabelled frame right between the groups
    x[0, 0] = -3.0  # an unlabelled frame deep in the negative group
    ids = np.arange(80)
    labels = {int(i): {"smile"} for i in range(60, 75)}
    labels.update({int(i): {"neutral"} for i in range(10, 25)})
    nxt = pr.suggest_next(x, ids, labels, "smile", n=5)
    assert len(nxt) == 5 and 79 in nxt and not set(nxt) & set(labels)
    u = pr.uncertainty(x, ids, labels)
    assert u.shape == (80,) and u.min() >= 0 and u.max() <= 1
    assert u[79] > u[0]


def test_run_insights_use_active_frames_and_the_map(home: Path) -> None:
    w, group = make_workspace(15)
    bright = np.flatnonzero(group == 1)
    lb.set_labels(w, bright[:10], "smile")
    lb.set_labels(w, np.flatnonzero(group == 0)[:10], "neutral")
    proj = pj.get_projection(w, "r1", pj.ProjectionSettings("pca"))
    out = {i.label: i for i in pr.run_insights(w, "r1", proj)}
    assert out["smile"].auc > 0.95 and out["smile"].centre_xy.shape == (2,)
    expected = proj.xy[np.isin(proj.ids, bright[:10])].mean(0)
    np.testing.assert_allclose(out["smile"].centre_xy, expected, rtol=1e-5)

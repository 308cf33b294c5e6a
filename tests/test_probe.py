"""Label insight: probes separate what the latent space separates, and point at unsure frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facelab.data import labels as lb
from facelab.space import probe as pr
from facelab.space import projection as pj

from builders import mapped_workspace


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
    w, group = mapped_workspace(15)
    bright = np.flatnonzero(group == 1)
    lb.set_labels(w, bright[:10], "smile")
    lb.set_labels(w, np.flatnonzero(group == 0)[:10], "neutral")
    proj = pj.get_projection(w, "r1", pj.ProjectionSettings("pca"))
    out = {i.label: i for i in pr.run_insights(w, "r1", proj)}
    assert out["smile"].auc > 0.95 and out["smile"].centre_xy.shape == (2,)
    expected = proj.xy[np.isin(proj.ids, bright[:10])].mean(0)
    np.testing.assert_allclose(out["smile"].centre_xy, expected, rtol=1e-5)


def test_auc_interval_widens_as_labels_get_fewer() -> None:
    """Real cross-validation on overlapping blobs: fewer labels, a wider 95 % interval."""
    widths = {}
    for n in (8, 30, 150):
        x, y = two_blobs(n_per=n, gap=1.5, seed=3)
        e = pr.cross_validated_auc(x, y.astype(bool))
        assert e.low <= e.auc <= e.high and e.positives == e.negatives == n
        widths[n] = e.width
    assert widths[8] > widths[30] > widths[150]
    assert widths[8] > 0.3 and widths[150] < 0.25  # plainly unsure from 16 labels, not from 300


def test_perfect_separation_from_few_labels_is_not_certain() -> None:
    """5 + 5 labels ranked perfectly: the bootstrap alone would say 1.00-1.00."""
    y = np.repeat([False, True], 5)
    e = pr.auc_interval(y.astype(float), y)
    assert e.auc == 1.0 and e.high == 1.0 and e.low < 0.7 and not e.trustworthy
    more_pos, more_neg = e.more_needed()
    assert more_pos > 0 and more_neg > 0


def test_more_needed_shrinks_the_interval_and_goes_to_the_smaller_class() -> None:
    e = pr.AucEstimate(auc=0.8, low=0.6, high=0.95, positives=8, negatives=100)
    more_pos, more_neg = e.more_needed()
    assert more_pos > 0 and more_neg == 0  # the 8 positives are what keeps it wide
    p, n = 8 + more_pos, 100 + more_neg
    scale = np.sqrt((1 / p + 1 / n) / (1 / 8 + 1 / 100))
    assert e.width * scale <= pr.TRUST_WIDTH + 1e-9
    p -= 1  # and not more than needed
    assert e.width * np.sqrt((1 / p + 1 / n) / (1 / 8 + 1 / 100)) > pr.TRUST_WIDTH
    assert pr.AucEstimate(0.9, 0.85, 0.95, 50, 50).more_needed() == (0, 0)


def test_insights_say_how_uncertain_the_auc_is() -> None:
    x, y = two_blobs(n_per=40, gap=1.0)
    ids = np.arange(80)
    few = {int(i): {"smile"} for i in ids[y == 1][:6]} | {int(i): {"neutral"} for i in ids[y == 0][:6]}
    (neutral, smile) = pr.label_insights(x, ids, few)
    assert smile.estimate is not None and smile.auc == smile.estimate.auc
    assert not smile.estimate.trustworthy
    assert "too uncertain to trust" in smile.guidance and "more frames with 'smile'" in smile.guidance
    row = {r["label"]: r for r in pr.insight_rows([neutral, smile])}["smile"]
    assert row["95 % interval"] == f"{smile.estimate.low:.2f}-{smile.estimate.high:.2f}"
    assert row["more labels to trust it"].startswith("~")


def test_label_page_shows_the_interval_and_what_to_label(home: Path) -> None:
    from streamlit.testing.v1 import AppTest

    from facelab import sample
    from facelab.ui import state

    from conftest import REPO

    sample.ensure_sample(say=lambda _: None)
    at = AppTest.from_file(str(REPO / "pages" / "label.py"), default_timeout=120)
    at.session_state[state.WORKSPACE] = "sample"
    at.run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value.set_index("label")
    low, high = (float(v) for v in table.loc["smile", "95 % interval"].split("-"))
    assert low <= table.loc["smile", "probe ROC-AUC"] <= high
    # Each label's AUC is also said in words, with its interval and whether to trust it.
    said = [t.value.replace("\\", "") for t in [*at.warning, *at.caption]]  # without md()'s escapes
    assert any("neutral" in t and "95 % interval" in t and "trust" in t for t in said), said

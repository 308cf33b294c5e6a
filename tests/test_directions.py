"""Directions (facelab.edits.directions): fitted on generated latents, stored per run in SQLite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facelab.data.labels import LabelError, binary_targets
from facelab.edits.directions import (
    CentreTarget,
    ConditionalDirection,
    Direction,
    DirectionError,
    LabelDirection,
    delete_direction,
    describe,
    load_direction,
    load_directions,
    orthogonalize,
    save_direction,
)
from facelab.space.probe import LinearProbe
from facelab.store import workspace as ws


def separable(n: int = 400, dim: int = 16, seed: int = 0, margin: float = 1.5):
    """Latents whose label is which side of a random hyperplane they fall on, pushed apart."""
    rng = np.random.default_rng(seed)
    true = rng.normal(size=dim)
    true /= np.linalg.norm(true)
    z = rng.normal(size=(n, dim))
    y = z @ true > 0
    z += np.where(y, margin, -margin)[:, None] * true
    return z.astype(np.float32), y, true


@pytest.mark.parametrize("method", ["mean_diff", "logistic", "svm"])
def test_label_direction_points_the_right_way(method: str) -> None:
    z, y, true = separable()
    d = LabelDirection(method=method, label="smile").fit(z, y)
    assert d.vector_.dtype == np.float32 and abs(np.linalg.norm(d.vector_) - 1) < 1e-5
    assert float(d.vector_ @ true) > 0.9
    assert d.spread_ == pytest.approx(float(np.std(z @ d.vector_)), rel=1e-4)
    assert d.n_positive_ == int(y.sum()) and d.separation_ > 1
    # the scikit-learn shape: __init__ only stores, fit returns self
    assert not hasattr(LabelDirection(), "vector_")


class TwoPartCodec:
    """A linear 'decoder' on 8 x 8 pictures: latent 0 draws the mouth box, latent 1 draws the
    forehead, latent 2 draws both at once (a smile that comes with a pose), the rest nothing."""

    class config:  # noqa: N801 - stands in for ModelConfig
        image_size = 8

    def __init__(self, dim: int = 6) -> None:
        from facelab.edits.edit import region_mask

        mouth = region_mask(8).astype(np.float32)
        forehead = np.zeros((8, 8), np.float32)
        forehead[:3] = 1.0
        self.basis = np.zeros((dim, 8, 8, 3), np.float32)
        self.basis[0] = mouth[..., None]
        self.basis[1] = forehead[..., None]
        self.basis[2] = (mouth + forehead)[..., None]

    def decode(self, z: np.ndarray) -> np.ndarray:
        return 100.0 + np.einsum("nd,dhwc->nhwc", np.asarray(z, np.float32), self.basis)


def test_mouth_direction_keeps_the_upper_face_and_full_reaches_the_average_score() -> None:
    """'mouth' bends the classifier's normal away from what changes the picture outside the mouth
    box, and keeps the normal: the slider's 1 moves each face along the bent direction until
    its score along the normal is the labelled faces' mean (along the bent vector itself the
    classes sit closer, and "your average smile" moved the mouth a third as far; d13)."""
    from facelab.edits import edit

    rng = np.random.default_rng(0)
    z = rng.normal(size=(300, 6))
    y = z[:, 0] + z[:, 1] + z[:, 2] > 0  # the label comes with the forehead too
    z[y, :3] += 0.8
    fitted = LabelDirection(method="mouth", label="smile", codec=TwoPartCodec()).fit(z, y)
    d = fitted.to_direction()
    normal = d.normal
    assert normal is not None and d.spec["normal"] == pytest.approx(list(fitted.normal_), abs=1e-6)
    pic = TwoPartCodec().basis.reshape(6, -1)
    outside = ~np.repeat(edit.region_mask(8).ravel(), 3)
    # along the normal the forehead moves with the mouth; along the mouth direction it hardly does
    assert np.abs(normal @ pic[:, outside]).max() > 0.5
    assert np.abs(d.vector.astype(np.float64) @ pic[:, outside]).max() < 0.05
    assert 0.2 < float(d.vector @ normal) < 0.95
    # "full": every face's score along the normal lands on the labelled faces' mean
    neg = z[~y][:20].astype(np.float32)
    moved = edit.compose(neg, [(d, edit.FULL_ALPHA)], bounds=edit.LatentBounds.prior(6, 100.0))
    np.testing.assert_allclose(moved.astype(np.float64) @ normal, d.label_mean, atol=1e-4)
    assert d.label_mean == pytest.approx(float((z[y] @ normal).mean()), abs=1e-5)
    # the step is along the mouth direction only, and half the setting is half the step
    half = edit.compose(neg, [(d, 0.5)], bounds=edit.LatentBounds.prior(6, 100.0))
    np.testing.assert_allclose(half - neg, 0.5 * (moved - neg), atol=1e-4)
    step = (moved - neg).astype(np.float64)
    np.testing.assert_allclose(step - (step @ d.vector)[:, None] * d.vector, 0, atol=1e-4)
    # a direction stored without a normal (before it was kept) measures along its own vector
    old = Direction("smile", "mouth", d.vector, d.spread, {k: v for k, v in d.spec.items() if k != "normal"})
    moved_old = edit.compose(neg, [(old, edit.FULL_ALPHA)], bounds=edit.LatentBounds.prior(6, 100.0))
    np.testing.assert_allclose(moved_old @ d.vector, d.label_mean, atol=1e-4)
    assert "learn it again" in describe(old) and "learn it again" not in describe(d)
    # the same estimator refitted with another method keeps no normal from before
    fitted.method = "logistic"
    assert "normal" not in fitted.fit(z, y).to_direction().spec
    # a normal that does not fit the direction is refused, with what to do
    for broken in ([1.0, 0.0], list(-normal)):
        bad = Direction("smile", "mouth", d.vector, d.spread, {**d.spec, "normal": broken})
        with pytest.raises(edit.EditError, match="fit the direction again"):
            edit.compose(neg, [(bad, 1.0)])


def test_too_few_examples_says_how_many_more() -> None:
    z, y, _ = separable(n=60)
    y = np.zeros(60, bool)
    y[:3] = True
    with pytest.raises(DirectionError, match=r"2 more face\(s\) labelled 'smile' \(has 3\)"):
        LabelDirection(label="smile").fit(z, y)
    with pytest.raises(DirectionError, match=r"1 more face\(s\) without 'smile' \(has 4\)"):
        LabelDirection(label="smile").fit(z[:9], np.arange(9) < 5)


def test_conditional_direction_is_orthogonal_to_the_removed_ones() -> None:
    rng = np.random.default_rng(4)
    z = rng.normal(size=(300, 16))
    smile, mouth, other = (rng.normal(size=16) for _ in range(3))
    mouth_d = Direction("mouth_open", "logistic", (mouth / np.linalg.norm(mouth)).astype(np.float32))
    cond = ConditionalDirection(smile, [mouth_d, other]).fit(z)
    assert abs(float(cond.vector_ @ mouth_d.vector)) < 1e-5
    assert abs(float(cond.vector_ @ other)) < 1e-4
    assert abs(np.linalg.norm(cond.vector_) - 1) < 1e-5
    assert float(cond.vector_ @ smile) > 0 and 0 < cond.kept_ < 1
    stored = cond.to_direction("smile_closed")
    assert stored.kind == "conditional" and stored.spec["removed"] == ["mouth_open", "vector"]
    with pytest.raises(DirectionError, match="nothing is left"):
        orthogonalize(smile, [smile * 2])
    with pytest.raises(DirectionError, match="nothing is left"):  # parallel up to fitting noise
        orthogonalize(smile, [smile + 1e-3 * other])


def test_centre_target_and_binary_targets() -> None:
    z = np.array([[0, 0], [2, 0], [10, 10], [12, 10]], np.float32)
    c = CentreTarget(label="laugh").fit(z, np.array([2, 3]))
    np.testing.assert_allclose(c.centre_, [11, 10])
    assert c.n_members_ == 2 and c.spread_ == pytest.approx(1.0)
    with pytest.raises(DirectionError, match="0 face"):
        CentreTarget().fit(z, np.zeros(4, bool))
    labels = {1: {"smile"}, 2: {"neutral"}, 4: {"smile", "eyes_closed"}}
    ids = np.array([1, 2, 3, 4])
    used, y, how = binary_targets(ids, labels, "smile", negatives="labelled")
    assert used.tolist() == [True, True, False, True] and y.tolist() == [True, False, True]
    assert how == "labelled"
    used, y, how = binary_targets(ids, labels, "smile", negatives="all")
    assert used.all() and y.tolist() == [True, False, False, True] and how == "all"
    # auto: labelled negatives when there are enough of them, else every other face
    assert binary_targets(ids, labels, "smile")[2] == "all"
    assert binary_targets(ids, labels, "smile", minimum=1)[2] == "labelled"
    with pytest.raises(LabelError, match="negatives must be"):
        binary_targets(ids, labels, "smile", negatives="others")


def test_probe_scores_rise_along_the_direction() -> None:
    z, y, true = separable(seed=5)
    probe = LinearProbe().fit(z, y)
    d = LabelDirection(label="x").fit(z, y)
    before = probe.score(z[~y]).mean()
    after = probe.score(z[~y] + 3 * d.spread_ * d.vector_).mean()
    assert after > before + 0.3


def _workspace_with_run() -> tuple[ws.Workspace, str]:
    from facelab.model.jobs import create_run
    from facelab.model.models import ModelConfig

    w = ws.create("alice")
    return w, create_run(w, ModelConfig(latent_dim=8))


def test_directions_round_trip_the_database(home: Path) -> None:
    w, run = _workspace_with_run()
    z, y, _ = separable(dim=8)
    fitted = LabelDirection(method="svm", label="smile").fit(z, y)
    saved = save_direction(w, run, fitted.to_direction(split="train"))
    centre = CentreTarget(label="cluster 3").fit(z, y).to_direction("laugh", method="kmeans", k=6)
    save_direction(w, run, centre)

    found = load_directions(w, run)
    assert list(found) == ["smile", "laugh"], "in the order first saved"
    smile = found["smile"]
    assert smile.kind == "svm" and smile.vector.dtype == np.float32
    np.testing.assert_array_equal(smile.vector, fitted.vector_)
    assert smile.spread == pytest.approx(fitted.spread_)
    assert smile.spec["positives"] == fitted.n_positive_ and smile.spec["split"] == "train"
    assert smile.created_at == saved.created_at
    assert found["laugh"].kind == "centre" and found["laugh"].spec["k"] == 6

    # overwrite by name, refuse when asked not to, delete, errors name what exists
    save_direction(w, run, Direction("smile", "custom", np.ones(8, np.float32), 2.0))
    assert load_direction(w, run, "smile").kind == "custom"
    with pytest.raises(DirectionError, match="already has"):
        save_direction(w, run, Direction("smile", "custom", np.ones(8, np.float32)), replace=False)
    delete_direction(w, run, "smile")
    with pytest.raises(DirectionError, match=r"no direction 'smile' \(it has: laugh\)"):
        load_direction(w, run, "smile")
    with pytest.raises(DirectionError, match="no direction"):
        delete_direction(w, run, "smile")


def test_bad_directions_are_refused_and_nothing_is_lost(home: Path) -> None:
    w, run = _workspace_with_run()
    good = Direction("smile", "mean_diff", np.ones(4, np.float32) / 2)
    save_direction(w, run, good)
    bad = [
        (Direction("smile", "mean_diff", np.array([np.nan, 0, 0, 0], np.float32)), "finite"),
        (Direction("", "mean_diff", np.ones(4, np.float32)), "name"),
        (Direction("x", "weird", np.ones(4, np.float32)), "kind"),
        (Direction("x", "mean_diff", np.ones(4, np.float32), spread=0.0), "spread"),
    ]
    for d, msg in bad:
        with pytest.raises(DirectionError, match=msg):
            save_direction(w, run, d)
    with pytest.raises(DirectionError, match="no run 'nope'"):
        save_direction(w, "nope", good)
    assert list(load_directions(w, run)) == ["smile"]
    np.testing.assert_array_equal(load_direction(w, run, "smile").vector, good.vector)

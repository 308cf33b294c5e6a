"""Clusters: the sweep finds k, fits recover known groups, assignments and names are kept per run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facelab.data import labels as lb
from facelab.space import clusters as cl

from builders import mapped_workspace


def blobs(k: int = 2, n_per: int = 60, d: int = 6, gap: float = 10.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), n_per)
    centres = np.zeros((k, d))
    centres[:, 0] = np.arange(k) * gap
    centres[:, 1] = (np.arange(k) % 2) * gap
    return (centres[y] + rng.normal(size=(len(y), d))).astype(np.float32), y


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_sweep_two_blobs_best_bic_is_two() -> None:
    x, _ = blobs(2)
    rows = cl.sweep(x, ks=range(1, 7))
    assert [r.k for r in rows] == [1, 2, 3, 4, 5, 6]
    assert cl.suggest_k(rows, "bic") == 2
    assert cl.suggest_k(rows, "elbow") == 2
    assert cl.suggest_k(rows, "silhouette") == 2
    assert rows[0].silhouette is None and rows[1].silhouette > 0.7
    inertia = [r.inertia for r in rows]
    assert all(a >= b for a, b in zip(inertia, inertia[1:]))


def test_sweep_finds_four_and_skips_impossible_k() -> None:
    x, _ = blobs(4, n_per=40)
    rows = cl.sweep(x, ks=range(2, 9), max_points=100)  # subsampled
    assert cl.suggest_k(rows, "bic") == 4 and cl.suggest_k(rows, "elbow") == 4
    assert [r.k for r in cl.sweep(x[:5], ks=range(2, 13))] == [2, 3, 4, 5]
    with pytest.raises(cl.ClusterError, match="no k to try"):
        cl.sweep(x[:1], ks=range(2, 5))


@pytest.mark.parametrize("method", cl.METHODS)
def test_fit_recovers_groups_with_medoids_inside(method: str) -> None:
    x, y = blobs(3, n_per=50)
    c = cl.Clusterer(method, 3, seed=0).fit(x)
    assert c.labels_.shape == (150,) and c.cluster_centers_.shape == (3, 6) and list(c.sizes) == [50, 50, 50]
    assert same_partition(c.labels_, y)
    for k in range(3):
        m = c.medoids_[k]
        assert c.labels_[m] == k
        assert np.linalg.norm(x[m] - c.cluster_centers_[k]) < 2.5  # a typical member, near the centre
    again = cl.Clusterer(method, 3, seed=0).fit(x)
    np.testing.assert_array_equal(again.labels_, c.labels_)


@pytest.mark.parametrize("method", cl.METHODS)
def test_clusterer_places_new_faces_by_the_nearest_centre(method: str) -> None:
    x, y = blobs(3, n_per=50)
    c = cl.Clusterer(method, 3, seed=0).fit(x)
    assert c.cluster_centers_.dtype == np.float32
    for k in range(3):  # each centre is its members' mean: K-means' centres, the mixture's means
        np.testing.assert_allclose(c.cluster_centers_[k], x[c.labels_ == k].mean(0), atol=1e-3)
    np.testing.assert_array_equal(c.predict(x), c.labels_)  # a fitted frame: its own cluster
    new = x[[0, 50, 100]] + 0.1
    np.testing.assert_array_equal(c.predict(new), c.labels_[[0, 50, 100]])
    assert c.predict(x[7]).shape == (1,)  # one latent, as the live face comes
    with pytest.raises(cl.ClusterError, match="6-value latents, not 5"):
        c.predict(x[:2, :5])


def test_bad_k_or_method_is_a_clear_error() -> None:
    x, _ = blobs(2, n_per=3)
    with pytest.raises(cl.ClusterError, match="k=7 is more than the 6 frames"):
        cl.Clusterer("kmeans", 7).fit(x)
    with pytest.raises(cl.ClusterError, match="unknown clustering method"):
        cl.Clusterer("dbscan", 2).fit(x)
    with pytest.raises(cl.ClusterError, match="at least 1"):
        cl.Clusterer("gmm", 0).fit(x)


def test_knee_of_a_curve() -> None:
    assert cl.knee([1, 2, 3, 4, 5, 6], [100, 20, 15, 12, 10, 9]) == 2
    assert cl.knee([2, 3], [5, 1]) == 2


def test_run_clusters_cached_named_and_labelled(home: Path) -> None:
    w, group = mapped_workspace(20)
    rc = cl.cluster_run(w, "r1", "kmeans", 2)
    assert same_partition(rc.clustering.labels_, group) and list(rc.ids) == list(range(40))
    assert (cl.cluster_run(w, "r1", "kmeans", 2).clustering.labels_ == rc.clustering.labels_).all()
    assert (w.run_dir("r1") / "clusters" / "kmeans-k2.npz").exists()
    medoid_ids = rc.medoid_face_ids()
    assert all(rc.clustering.labels_[list(rc.ids).index(m)] == c for c, m in enumerate(medoid_ids))

    bright = int(rc.clustering.labels_[-1])
    cl.set_cluster_name(w, "r1", "kmeans", 2, bright, "  Bright  light ")
    assert cl.cluster_names(w, "r1", "kmeans", 2) == {bright: "Bright light"}
    assert cl.cluster_names(w, "r1", "gmm", 2) == {}
    cl.set_cluster_name(w, "r1", "kmeans", 2, bright, "")
    assert cl.cluster_names(w, "r1", "kmeans", 2) == {}

    record = cl.set_cluster_name(w, "r1", "kmeans", 2, bright, "Smile", label_members=True)
    assert set(lb.faces_with(w, "smile")) == set(range(20, 40)) and len(record.face_ids) == 20
    lb.undo(w, record)
    assert len(lb.faces_with(w, "smile")) == 0
    assert cl.cluster_names(w, "r1", "kmeans", 2) == {bright: "Smile"}, "undo of labels keeps the name"

    rec = cl.label_cluster(w, "r1", "kmeans", 2, 1 - bright, "neutral")
    assert set(rec.face_ids) == set(range(20))


def test_a_clustering_saved_before_clusterer_still_loads(home: Path) -> None:
    from facelab.space.latent import require_latents

    w, _ = mapped_workspace(20)
    key = require_latents(w, "r1").key
    centres = np.zeros((2, 3), np.float32)
    centres[1] = 1.0
    saved = dict(ids=np.arange(40), labels=(np.arange(40) >= 20).astype(np.int64), centres=centres,
                 medoids=np.array([3, 25]), seed=np.array(0), latents_key=np.array(key))
    path = w.run_dir("r1") / "clusters" / "kmeans-k2.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **saved)  # the names a workspace holds on disk
    rc = cl.load_clusters(w, "r1", "kmeans", 2)
    assert rc is not None and isinstance(rc.clustering, cl.Clusterer) and rc.clustering.k == 2
    np.testing.assert_array_equal(rc.clustering.labels_, saved["labels"])
    np.testing.assert_array_equal(rc.clustering.cluster_centers_, centres)
    assert list(rc.medoid_face_ids()) == [3, 25] and list(rc.clustering.sizes) == [20, 20]
    assert list(rc.clustering.predict(np.array([[0.1, 0, 0], [0.9, 1, 1]]))) == [0, 1]
    np.testing.assert_array_equal(cl.cluster_run(w, "r1", "kmeans", 2).clustering.cluster_centers_, centres)


def test_cluster_names_need_a_real_run_and_cluster(home: Path) -> None:
    w, _ = mapped_workspace(5)
    with pytest.raises(cl.ClusterError, match="no run 'nope'"):
        cl.set_cluster_name(w, "nope", "kmeans", 2, 0, "x")
    with pytest.raises(cl.ClusterError, match="does not exist"):
        cl.set_cluster_name(w, "r1", "kmeans", 2, 5, "x")
    with pytest.raises(cl.ClusterError, match="more than the 10 frames"):
        cl.cluster_run(w, "r1", "kmeans", 11)


def test_cli_clusters_with_sweep(home: Path, capsys: pytest.CaptureFixture) -> None:
    from facelab.cli import main as cli

    mapped_workspace(20)
    assert cli(["clusters", "--workspace", "w", "r1", "--k", "2", "--sweep"]) == 0
    out = capsys.readouterr().out
    assert "cluster  frames  medoid" in out and "suggested k: 2 (lowest BIC)" in out
    sizes = [int(line.split()[1]) for line in out.splitlines()[1:3]]
    assert sizes == [20, 20]
    assert cli(["clusters", "--workspace", "w", "r1", "--k", "2", "--method", "gmm"]) == 0


def test_k_advice_says_when_bic_has_no_minimum_in_the_range() -> None:
    row = lambda k, bic, inertia: cl.SweepRow(k=k, inertia=inertia, bic=bic, silhouette=None)  # noqa: E731
    inertia = [100, 40, 30, 25, 22, 20]  # bends at k = 3
    falling = [row(k, 1000 - 10 * k, i) for k, i in zip(range(2, 8), inertia)]
    assert cl.bic_minimum(falling) is None
    text, offer = cl.k_advice(falling)
    assert "no minimum between k = 2 and 7" in text and "largest" in text and offer == 3
    dip = [row(k, abs(k - 5), i) for k, i in zip(range(2, 8), inertia)]
    assert cl.bic_minimum(dip) == 5
    text, offer = cl.k_advice(dip)
    assert "Lowest BIC at **k = 5**" in text and offer == 5


def test_explore_offers_the_advised_k(home) -> None:
    from streamlit.testing.v1 import AppTest

    from facelab import sample
    from facelab.ui import state

    from conftest import REPO

    sample.ensure_sample(say=lambda _: None)
    at = AppTest.from_file(str(REPO / "pages" / "explore.py"), default_timeout=180)
    at.session_state[state.WORKSPACE] = "sample"
    at.run()
    at.toggle(key="fl_k_help").set_value(True).run()
    assert not at.exception, at.exception
    use = at.button(key="fl_k_use")
    offer = int(use.label.split("= ")[1])
    if offer == at.slider(key="fl_k").value:  # already there: the button is off
        assert use.disabled
        return
    use.click().run()
    assert not at.exception, at.exception
    assert at.slider(key="fl_k").value == offer


def test_map_colours_are_distinct_and_labelled_points_stand_out() -> None:
    import numpy as np
    import pandas as pd

    from facelab.space.latent_map import PALETTE, UNLABELLED, UNLABELLED_COLOUR, category_colours, map_chart, swatch

    rgb = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in PALETTE], float)
    gaps = np.sqrt(((rgb[:, None] - rgb[None]) ** 2).sum(-1)) + np.eye(len(rgb)) * 999
    assert gaps.min() > 60, "two cluster colours pass for each other"
    assert category_colours(["b", UNLABELLED, "a"]) == {"b": PALETTE[0], UNLABELLED: UNLABELLED_COLOUR, "a": PALETTE[1]}
    assert swatch(PALETTE[2])[0, 0].tolist() == [0x2C, 0xA0, 0x2C]
    table = pd.DataFrame({"frame_id": [1, 2, 3], "x": [0.0, 1, 2], "y": [0.0, 1, 2], "time": [0.0, 1, 2],
                          "source": "a", "cluster": ["cluster 1", "cluster 0", "cluster 1"],
                          "label": ["smile", UNLABELLED, UNLABELLED], "image": ""})
    spec = map_chart(table, "cluster", order=["cluster 0", "cluster 1"]).to_dict()
    scale = spec["encoding"]["color"]["scale"]
    assert scale["domain"] == ["cluster 0", "cluster 1"] and scale["range"] == list(PALETTE[:2])
    spec = map_chart(table, "label").to_dict()
    assert spec["encoding"]["color"]["scale"]["range"] == [PALETTE[0], UNLABELLED_COLOUR]
    assert spec["encoding"]["opacity"]["condition"]["value"] == 0.3  # unlabelled faint, labelled opaque


def test_find_frames_by_number_time_label_or_cluster() -> None:
    import pandas as pd

    from facelab.space.latent_map import UNLABELLED, find_frames

    table = pd.DataFrame({"frame_id": [3, 4, 9], "time": [0.5, 1.0, 12.4], "label": ["smile, sad", UNLABELLED, "Smile"],
                          "cluster": ["cluster 0", "happy", "cluster 0"]})
    assert find_frames(table, "4")[0] == [4]
    assert find_frames(table, "5") == ([], "no frame 5 on this map")
    assert find_frames(table, "12.5 s")[0] == [9] and find_frames(table, "0.9s")[0] == [4]
    assert find_frames(table, "smile")[0] == [3, 9]  # whole label, any case, among several
    assert find_frames(table, "smi")[0] == []
    assert find_frames(table, "HAPPY")[0] == [4]
    assert find_frames(table, "  ") == ([], "")


def test_a_cluster_name_follows_its_frames_when_the_clusters_are_renumbered(home: Path) -> None:
    import numpy as np

    w, _ = mapped_workspace(20)
    rc = cl.cluster_run(w, "r1", "kmeans", 2)
    bright = int(rc.clustering.labels_[-1])
    cl.set_cluster_name(w, "r1", "kmeans", 2, bright, "Bright")
    # New latents numbered the same groups the other way round (as a re-encode may): the cache
    # now says cluster 0 is cluster 1 and back.
    path = w.run_dir("r1") / "clusters" / "kmeans-k2.npz"
    with np.load(path) as z:
        arrays = dict(z)
    arrays["labels"] = 1 - arrays["labels"]
    arrays["medoids"] = arrays["medoids"][::-1].copy()
    np.savez(path, **arrays)
    assert cl.cluster_names(w, "r1", "kmeans", 2) == {1 - bright: "Bright"}
    cl.set_cluster_name(w, "r1", "kmeans", 2, bright, "Dark")  # the other cluster now; both kept
    assert cl.cluster_names(w, "r1", "kmeans", 2) == {1 - bright: "Bright", bright: "Dark"}

"""Maps: PCA / t-SNE / UMAP keep structure, are cached per settings, and run in a child process."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facelab.space import projection as pj
from facelab.space.latent import active_latents, encode_run, require_latents

from builders import LinearCodec, delete_faces, mapped_workspace


def two_blobs(n: int = 60, d: int = 8, gap: float = 8.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    x = rng.normal(size=(n, d)).astype(np.float32)
    x[y == 1, 0] += gap
    return x, y


def separated(xy: np.ndarray, y: np.ndarray) -> bool:
    """Every point is nearer its own group's centre than the other's."""
    c0, c1 = xy[y == 0].mean(0), xy[y == 1].mean(0)
    d0 = np.linalg.norm(xy - c0, axis=1)
    d1 = np.linalg.norm(xy - c1, axis=1)
    return bool(np.all((d0 < d1) == (y == 0)))


@pytest.mark.parametrize("method", ["pca", "tsne", pytest.param("umap", marks=pytest.mark.slow)])
def test_methods_keep_two_blobs_apart(method: str) -> None:
    if method == "umap" and not pj.umap_available():
        pytest.skip(pj.UMAP_HINT)
    x, y = two_blobs()
    xy = pj.project(x, method, seed=0, perplexity=10, n_neighbors=10)
    assert xy.shape == (60, 2) and xy.dtype == np.float32 and np.isfinite(xy).all()
    assert separated(xy, y)


def test_pca_is_deterministic_and_handles_tiny_inputs() -> None:
    x, _ = two_blobs()
    np.testing.assert_array_equal(pj.project(x, "pca"), pj.project(x, "pca"))
    assert pj.project(np.zeros((0, 4)), "pca").shape == (0, 2)
    assert pj.project(np.ones((1, 4)), "pca").shape == (1, 2)
    one_dim = pj.project(np.arange(5, dtype=np.float32)[:, None], "pca")
    assert one_dim.shape == (5, 2) and np.ptp(one_dim[:, 0]) > 0


def test_projector_places_a_new_face_on_the_map_explore_shows(home: Path) -> None:
    w, _ = mapped_workspace(15)
    shown = pj.get_projection(w, "r1", pj.ProjectionSettings("pca"))  # Explore's PCA map
    ids, mu = active_latents(w, require_latents(w, "r1"))
    p = pj.Projector().fit(mu)  # what Shift and Webcam place faces with
    assert list(ids) == list(shown.ids) and np.array_equal(p.embedding_, shown.xy), "the same map, bit for bit"
    spread = float(np.ptp(shown.xy))
    np.testing.assert_allclose(p.transform(mu), shown.xy, atol=1e-5 * spread)  # a frame: its own place
    between = mu[3] + 0.25 * (mu[25] - mu[3])  # a face a quarter of the way from frame 3 to frame 25
    want = shown.xy[3] + 0.25 * (shown.xy[25] - shown.xy[3])
    np.testing.assert_allclose(p.transform(between)[0], want, atol=1e-5 * spread)
    assert p.transform(between).shape == (1, 2) and p.transform(between).dtype == np.float32


def test_projector_places_faces_on_tiny_and_non_linear_maps() -> None:
    line = np.arange(5, dtype=np.float32)[:, None]  # nothing to rotate
    p = pj.Projector().fit(line)
    np.testing.assert_array_equal(p.transform(line), p.embedding_)
    assert p.transform([[7.0]]).tolist() == [[5.0, 0.0]]  # 7 is 5 past the frames' mean, 2
    x, y = two_blobs()
    tsne = pj.Projector(pj.ProjectionSettings("tsne", perplexity=10)).fit(x)
    assert np.array_equal(tsne.embedding_, pj.project(x, "tsne", perplexity=10))
    np.testing.assert_allclose(tsne.transform(x), tsne.embedding_, atol=1e-3 * np.ptp(tsne.embedding_))
    new, new_y = two_blobs(20, seed=1)  # other faces of the two groups: placed among their own
    assert separated(np.vstack([tsne.embedding_, tsne.transform(new)]), np.r_[y, new_y])
    with pytest.raises(pj.ProjectionError, match="8-value latents, not 3"):
        tsne.transform(x[:, :3])
    with pytest.raises(pj.ProjectionError, match="no frames"):
        pj.Projector().fit(np.zeros((0, 4))).transform(np.zeros(4))


def test_bad_requests_are_clear_errors() -> None:
    with pytest.raises(pj.ProjectionError, match="unknown map method"):
        pj.project(np.zeros((10, 3)), "mds")
    with pytest.raises(pj.ProjectionError, match="needs at least 5 frames"):
        pj.project(np.zeros((3, 3)), "tsne")
    with pytest.raises(pj.ProjectionError, match="unknown map method"):
        pj.ProjectionSettings(method="lle")


def test_settings_key_only_on_what_the_method_uses() -> None:
    a = pj.ProjectionSettings("tsne", perplexity=30, n_neighbors=5)
    b = pj.ProjectionSettings("tsne", perplexity=30, n_neighbors=50)
    c = pj.ProjectionSettings("tsne", perplexity=10)
    assert a.slug == b.slug != c.slug
    assert pj.ProjectionSettings("umap").slug != pj.ProjectionSettings("pca").slug


def test_umap_missing_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pj, "umap_available", lambda: False)
    with pytest.raises(pj.ProjectionError, match=r"pip install 'facelab\[umap\]'"):
        pj.project(np.zeros((10, 3)), "umap")


def test_run_cache_follows_the_latents(home: Path) -> None:
    w, group = mapped_workspace(15)
    s = pj.ProjectionSettings("pca")
    assert pj.load_projection(w, "r1", s) is None
    p1 = pj.get_projection(w, "r1", s)
    assert p1 is not None and list(p1.ids) == list(range(30)) and separated(p1.xy, group)
    assert pj.projection_state(w, "r1", s).state == "ready"
    assert pj.get_projection(w, "r1", pj.ProjectionSettings("tsne")) is None, "slow maps are not made inline"

    delete_faces(w, [0, 1])
    encode_run(w, "r1", codec=LinearCodec())
    assert pj.load_projection(w, "r1", s) is None, "a deleted crop makes the map stale"
    p2 = pj.get_projection(w, "r1", s)
    assert 0 not in p2.ids and len(p2.ids) == 28


def test_background_worker_writes_the_cache(home: Path) -> None:
    w, group = mapped_workspace(15)
    s = pj.ProjectionSettings("tsne", perplexity=5)
    assert pj.projection_state(w, "r1", s).state == "missing"
    first = pj.start_projection(w, "r1", s)
    assert first.state == "running"
    assert pj.start_projection(w, "r1", s).state in ("running", "ready"), "no second worker"
    deadline = time.monotonic() + 120
    while (state := pj.projection_state(w, "r1", s)).state == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    log = (pj.projections_dir(w, "r1") / f"{s.slug}.log").read_text()
    assert state.state == "ready", f"{state} / worker log: {log}"
    proj = pj.load_projection(w, "r1", s)
    assert proj is not None and proj.xy.shape == (30, 2) and separated(proj.xy, group)


def test_failed_worker_reports_why(home: Path) -> None:
    w, _ = mapped_workspace(2)  # 4 frames: too few for t-SNE
    s = pj.ProjectionSettings("tsne")
    with pytest.raises(pj.ProjectionError):
        pj.run_projection_job(w, "r1", s)
    state = pj.projection_state(w, "r1", s)
    assert state.state == "failed" and "at least 5 frames" in state.message


def test_scatter_png_draws_coloured_dots() -> None:
    x, y = two_blobs()
    xy = pj.project(x, "pca")
    png = pj.scatter_png(xy, y, size=200, title="t")
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert img.shape == (200, 200, 3)
    colours = {tuple(c) for c in img.reshape(-1, 3)}
    assert pj.PALETTE[0] in colours and pj.PALETTE[1] in colours
    grad = np.asarray(Image.open(io.BytesIO(pj.scatter_png(xy, np.arange(60.0), categorical=False, size=100))))
    assert grad.shape == (100, 100, 3) and len({tuple(c) for c in grad.reshape(-1, 3)}) > 10


def test_cli_map_and_project(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from facelab.cli import main as cli

    mapped_workspace(10)
    out = tmp_path / "map.png"
    assert cli(["map", "--workspace", "w", "r1", "--method", "pca", "--out", str(out), "--size", "300"]) == 0
    assert Image.open(out).size == (300, 300)
    assert cli(["map", "--workspace", "w", "r1", "--k", "2", "--out", str(out)]) == 0
    assert cli(["project", "--workspace", "w", "--run", "r1", "--method", "tsne", "--perplexity", "5"]) == 0
    assert "tsne map of 20 frames cached" in capsys.readouterr().out
    assert cli(["map", "--workspace", "w", "nope", "--out", str(out)]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
    assert cli(["map", "--workspace", "w", "r1", "--k", "50", "--out", str(out)]) == 2
    assert "k=50 is more than the 20 frames" in capsys.readouterr().err


def test_tsne_is_deterministic_and_survives_identical_points() -> None:
    x, _ = two_blobs()
    a = pj.project(x, "tsne", seed=3, perplexity=10)
    np.testing.assert_array_equal(a, pj.project(x, "tsne", seed=3, perplexity=10))
    same = pj.project(np.ones((40, 8), np.float32), "tsne")  # openTSNE alone crashes on these
    assert same.shape == (40, 2) and same.dtype == np.float32 and np.isfinite(same).all()


def test_cached_tsne_map_is_reused(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w, group = mapped_workspace(15)
    s = pj.ProjectionSettings("tsne", perplexity=5)
    made = pj.compute_projection(w, "r1", s)
    monkeypatch.setattr(pj, "_tsne", lambda *a, **k: pytest.fail("the cached map was recomputed"))
    again = pj.get_projection(w, "r1", s)
    assert again is not None and np.array_equal(again.xy, made.xy) and separated(again.xy, group)
    assert pj.start_projection(w, "r1", s).state == "ready", "no worker for a map already cached"

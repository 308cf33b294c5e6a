"""Evaluation grids and figures: shapes, the triangle's geometry, traversal order, PNGs, the
compression curve (small)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facelab.model import evaluate, metrics
from facelab.model.models import ModelConfig, PCABaseline, TorchCodec, build_model

from builders import blob_images

pytestmark = pytest.mark.usefixtures("one_thread")  # bit-equal results, no crawling


@pytest.fixture(scope="module")
def pca():
    return PCABaseline(ModelConfig(kind="pca", image_size=32, latent_dim=5)).fit(blob_images(60))


def test_psnr_and_ssim_known_values() -> None:
    a = blob_images(4)
    assert metrics.psnr(a, a).tolist() == [100.0] * 4
    np.testing.assert_allclose(metrics.ssim(a, a), 1.0, atol=1e-5)
    b = np.clip(a.astype(int) + 10, 0, 255).astype(np.uint8)
    mse = ((a.astype(float) - b) ** 2).reshape(4, -1).mean(1)
    np.testing.assert_allclose(metrics.psnr(a, b), 10 * np.log10(255**2 / mse), rtol=1e-4)
    noisy = np.clip(a + np.random.default_rng(0).normal(0, 40, a.shape), 0, 255).astype(np.uint8)
    assert (metrics.ssim(a, noisy) < metrics.ssim(a, b)).all()
    assert metrics.active_units([0.5, 0.0, 0.02, 0.001]) == 2


def test_grids_have_the_expected_layout(pca, tmp_path) -> None:
    images = blob_images(10)
    rec = evaluate.reconstructions(pca, images, n=10)  # 8 columns: 2 rows of pairs
    assert rec.shape == (4 * 34 + 2, 8 * 34 + 2, 3) and rec.dtype == np.uint8
    np.testing.assert_array_equal(rec[2:34, 2:34], images[0])
    assert evaluate.prior_samples(pca, n=16, ncols=8).shape == (2 * 34 + 2, 8 * 34 + 2, 3)
    tri = evaluate.three_point(pca, steps=4)
    assert tri.shape == (5 * 34 + 2, 5 * 34 + 2, 3)
    assert (tri[2:34, 36:68] == evaluate.BACKGROUND).all(), "above the diagonal stays blank"
    path = evaluate.save_png(tmp_path / "t.png", tri, scale=2)
    assert Image.open(path).size == (tri.shape[1] * 2, tri.shape[0] * 2)


def test_triangle_corners_and_blends() -> None:
    corners = np.eye(3, 4, dtype=np.float32)
    zs, where = evaluate.triangle_latents(corners, steps=2)
    assert where == [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2)]
    np.testing.assert_allclose(zs[0], corners[0])
    np.testing.assert_allclose(zs[3], corners[1])
    np.testing.assert_allclose(zs[5], corners[2])
    np.testing.assert_allclose(zs[4], (corners[1] + corners[2]) / 2)
    np.testing.assert_allclose(zs.sum(1), 1.0, rtol=1e-6)


def test_traversals_sort_dimensions_by_kl_and_move_only_one() -> None:
    # The paper's network: untrained, its random weights already make every latent matter (the
    # default network starts from a data-fitted PCA basis, all zeros before it sees data).
    codec = TorchCodec(build_model(ModelConfig(image_size=32, latent_dim=4, arch="paper")))
    image, dims = evaluate.traversals(codec, kl_per_dim=[0.1, 2.0, 0.0, 0.5], n_dims=3, n_steps=5)
    assert dims == [1, 3, 0]
    assert image.shape == (3 * 34 + 2, 5 * 34 + 2, 3)
    row = [image[2:34, 2 + c * 34 : 34 + c * 34] for c in range(5)]
    assert not np.array_equal(row[0], row[4]), "moving a latent changes the face"


def test_compression_curve_is_small_and_sensible() -> None:
    images = blob_images(120)
    seen = []
    points = evaluate.compression_curve(images[:100], images[100:], latent_sizes=(1, 8),
                                        kinds=("pca", "ae"), epochs=2, min_steps=60,
                                        progress=seen.append)
    assert [(p["kind"], p["latent_dim"]) for p in points] == [("pca", 1), ("pca", 8), ("ae", 1), ("ae", 8)]
    pca_psnr = {p["latent_dim"]: p["val_psnr"] for p in points if p["kind"] == "pca"}
    assert pca_psnr[8] > pca_psnr[1]
    assert seen[-1] == {"done": 4, "total": 4}

"""Models: config JSON, the network's shapes, every kind behind one Codec, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from facelab.model.models import (
    BetaVAE,
    ModelConfig,
    ModelError,
    PCABaseline,
    TorchCodec,
    build_model,
    load_codec,
    save_model,
)

from builders import blob_images


def test_config_round_trips_json_and_rejects_bad_values() -> None:
    c = ModelConfig(kind="vae", latent_dim=10, beta=1.0, image_size=128, recon="mse", lr=3e-4,
                    batch_size=32, steps=700, kl_warmup_steps=2, seed=5, compile=True, arch="paper")
    assert ModelConfig.from_json(c.to_json()) == c
    assert json.loads(ModelConfig().to_json())["beta"] == 1.0
    assert ModelConfig(kind="vae", beta=4).effective_beta == 1.0
    assert ModelConfig(kind="ae").effective_beta == 0.0
    with pytest.raises(ModelError, match="unknown model settings: colour"):
        ModelConfig.from_json('{"colour": 1}')
    for bad, msg in [({"kind": "gan"}, "unknown model kind"), ({"image_size": 48}, "image size"),
                     ({"recon": "l1"}, "'bce' or 'mse'"), ({"latent_dim": 0}, "latent size"),
                     ({"beta": -1}, "β must be")]:
        with pytest.raises(ModelError, match=msg):
            ModelConfig(**bad)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_network_shapes_for_each_image_size(size: int) -> None:
    model = BetaVAE(ModelConfig(image_size=size, latent_dim=5))
    x = torch.rand(3, 3, size, size)
    logits, mu, logvar = model(x, torch.randn(3, 5))
    assert logits.shape == x.shape and mu.shape == logvar.shape == (3, 5)
    convs = [m for m in model.encoder if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs)


@pytest.mark.parametrize("kind", ["betavae", "vae", "ae", "pca"])
@pytest.mark.parametrize("size", [32, 64, 128])
def test_every_kind_shares_the_codec_interface(kind: str, size: int) -> None:
    config = ModelConfig(kind=kind, image_size=size, latent_dim=6)
    images = blob_images(12, size=size)
    codec = PCABaseline(config).fit(images) if kind == "pca" else TorchCodec(build_model(config))
    mu, logvar = codec.encode(images, batch_size=5)
    assert mu.shape == logvar.shape == (12, 6) and mu.dtype == logvar.dtype == np.float32
    if kind in ("ae", "pca"):
        assert not logvar.any()
    out = codec.decode(mu)
    assert out.shape == (12, size, size, 3) and out.dtype == np.uint8
    with pytest.raises(ModelError, match="expected"):
        codec.encode(images[..., 0])


def test_pca_codes_are_whitened_and_reconstruct_low_rank_data() -> None:
    rng = np.random.default_rng(0)
    basis = rng.uniform(0, 1, (3, 32 * 32 * 3))
    x = (rng.uniform(0, 1, (50, 3)) @ basis) / 3 * 255
    images = x.round().astype(np.uint8).reshape(50, 32, 32, 3)
    pca = PCABaseline(ModelConfig(kind="pca", image_size=32, latent_dim=3)).fit(images)
    z, _ = pca.encode(images)
    np.testing.assert_allclose(z.std(0), 1.0, rtol=0.05)
    assert np.abs(pca.decode(z).astype(int) - images).max() <= 2


def test_save_and_load_give_the_same_codec(tmp_path) -> None:
    config = ModelConfig(kind="betavae", image_size=32, latent_dim=4)
    model = build_model(config)
    save_model(tmp_path / "net", model, config)
    state = torch.load(tmp_path / "net" / "model.pt", weights_only=True)
    assert set(state) == set(model.state_dict())
    images = blob_images(6)
    a, b = TorchCodec(model).encode(images), load_codec(tmp_path / "net").encode(images)
    np.testing.assert_array_equal(a[0], b[0])
    assert build_model(config).state_dict()["to_stats.weight"].equal(model.state_dict()["to_stats.weight"])

    pconfig = ModelConfig(kind="pca", image_size=32, latent_dim=4)
    pca = PCABaseline(pconfig).fit(blob_images(20))
    save_model(tmp_path / "pca", pca, pconfig)
    loaded = load_codec(tmp_path / "pca")
    np.testing.assert_array_equal(loaded.decode(pca.encode(images)[0]), pca.decode(pca.encode(images)[0]))

    with pytest.raises(ModelError, match="no trained model yet"):
        load_codec(tmp_path / "nothing")
    (tmp_path / "net" / "config.json").write_text(ModelConfig(image_size=32, latent_dim=9).to_json())
    with pytest.raises(ModelError, match="does not match its config"):
        load_codec(tmp_path / "net")

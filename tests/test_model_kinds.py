"""The model-kind registry: a kind defined here, in the test alone, trains, loads, evaluates,
names its runs and is judged like the built-in ones, with no other file knowing of it."""

from __future__ import annotations

import pytest

from facelab.model import model_config, quality
from facelab.model.evaluate import evaluate_run
from facelab.model.jobs import create_run, default_name, epoch_metrics
from facelab.model.model_config import Kind, ModelConfig, ModelError, kind_of, kinds, register_kind
from facelab.model.models import load_codec
from facelab.model.train import train_run

from builders import SMALL, real_crops, training_workspace


@pytest.fixture
def heavy_vae():
    """A VAE whose β is always 4, known only while the test runs."""
    saved = dict(model_config._KINDS)
    yield register_kind(Kind("heavyvae", "VAE (β = 4)", "VAE4", beta=4.0))
    model_config._KINDS.clear()
    model_config._KINDS.update(saved)


def test_a_kind_defined_in_a_test_trains_loads_and_is_judged(home, heavy_vae) -> None:
    assert "heavyvae" in kinds() and kinds()[0] == ModelConfig().kind  # the default stays first
    config = ModelConfig(**{**SMALL, "kind": "heavyvae", "beta": 1.0, "steps": 4, "eval_every": 2})
    assert config.effective_beta == 4.0 and not config.deterministic
    assert default_name(config) == "VAE4 z8"

    w = training_workspace("k", real_crops(30), val_block=3)
    run = create_run(w, config)
    assert train_run(w, run)["state"] == "done"
    rows = epoch_metrics(w, run)
    assert rows[-1]["beta"] == 4.0  # the loss used the kind's β, not the run's
    codec = load_codec(w.run_dir(run))
    assert codec.config.kind == "heavyvae"
    figs = evaluate_run(w, run)
    assert figs["kind"] == "heavyvae" and len(figs["kl_per_dim"]) == 8
    # A variational kind is warned when its latents carry nothing, like a β-VAE.
    assert quality.verdict("heavyvae", 32, 30.0, 0, None) is not None
    assert quality.verdict("ae", 32, 30.0, 0, None) is None


def test_an_unknown_kind_is_refused_with_the_known_ones_listed() -> None:
    with pytest.raises(ModelError, match="unknown model kind 'nope'.*betavae"):
        ModelConfig(kind="nope")
    with pytest.raises(ModelError, match="weights go in"):
        register_kind(Kind("odd", "Odd", "ODD", weights_file="odd.bin"))
    assert kind_of("pca").fitted and not kind_of("ae").prior and kind_of("vae").beta == 1.0

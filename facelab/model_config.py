"""A run's settings, `ModelConfig`: the one place the training defaults are defined.

Kept free of torch so that the CLI can show the defaults in `--help` without loading torch;
`facelab.models` re-exports everything here.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from facelab.errors import FacelabError

KINDS = ("betavae", "vae", "ae", "pca")
ARCHS = ("pcares", "paper")  # the first is the default; see ModelConfig.arch
IMAGE_SIZES = (32, 64, 128)
RECONS = ("bce", "mse")
LR_SCHEDULES = ("cosine", "constant")
AUGMENTS = ("none", "shift", "flip", "flip_shift")  # see ModelConfig.augment
SHIFT_PX = 2  # "shift" and "flip_shift" move each training crop by up to this many pixels each way (at 64 px)
MSE_SIGMA = 0.1  # the Gaussian likelihood's fixed pixel scale (of [0, 1] pixels) for recon="mse"
CONFIG_FILE = "config.json"
MODEL_FILE = "model.pt"
PCA_FILE = "pca.npz"
# Settings of runs made before budgets were counted in steps: their config.json loads with these.
LEGACY = {"arch": "paper", "lr_schedule": "constant", "lr_warmup_steps": 0, "grad_clip": 0.0}


class ModelError(FacelabError):
    """A bad model setting or a run folder that cannot be loaded; the message is for the user."""


@dataclass
class ModelConfig:
    """Everything that defines a run's model and its training; saved as config.json.

    These defaults are THE defaults: the Train page and `facelab train` read them from here.
    The budget is counted in optimizer steps (not epochs), so a short clip trains as long as a
    long one: epochs would give a 150-crop set a few hundred steps, too few to leave the prior.
    """

    kind: str = "betavae"  # "betavae" | "vae" (β=1) | "ae" (deterministic) | "pca"
    arch: str = "pcares"  # "pcares" (mean + PCA basis + learned residual) | "paper" (β-VAE paper)
    latent_dim: int = 32
    beta: float = 1.0  # > 1 trades reconstruction for disentangling
    image_size: int = 64  # 32 / 64 / 128; crops of another size are resized once at load
    recon: str = "mse"  # "mse" (Gaussian, σ = MSE_SIGMA) | "bce" (Bernoulli)
    lr: float = 1e-3
    lr_schedule: str = "cosine"  # "cosine" (decay to 0 over the run) | "constant"
    lr_warmup_steps: int = 100  # linear learning-rate warm-up
    batch_size: int = 64
    steps: int = 1500  # optimizer steps in all (3-4 minutes on 2 CPU cores at 64 px)
    eval_every: int = 100  # steps between held-out evaluations (one metrics row each)
    kl_warmup_steps: int = 0  # linear KL warm-up from 0 to β
    grad_clip: float = 0.0  # clip the gradient norm to this; 0 = no clipping
    augment: str = "shift"  # "none" | "shift" (move each crop ±SHIFT_PX) | "flip" (mirror half) | "flip_shift"
    legacy_epochs: int = 0  # runs made before step budgets: their budget in epochs (not trainable)
    seed: int = 0
    compile: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "ModelConfig":
        for name, label in (("beta", "β"), ("lr", "learning rate"), ("grad_clip", "gradient clip")):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ModelError(f"{label} must be a finite number, not {v!r}")
        for name in ("latent_dim", "image_size", "batch_size", "steps", "eval_every",
                     "lr_warmup_steps", "kl_warmup_steps", "legacy_epochs", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ModelError(f"{name.replace('_', ' ')} must be a whole number, not {v!r}")
        if self.kind not in KINDS:
            raise ModelError(f"unknown model kind {self.kind!r}: choose one of {', '.join(KINDS)}")
        if self.arch not in ARCHS:
            raise ModelError(f"unknown network {self.arch!r}: choose one of {', '.join(ARCHS)}")
        if self.image_size not in IMAGE_SIZES:
            raise ModelError(f"image size must be one of {IMAGE_SIZES}, not {self.image_size}")
        if self.recon not in RECONS:
            raise ModelError(f"reconstruction loss must be 'bce' or 'mse', not {self.recon!r}")
        if self.augment not in AUGMENTS:
            raise ModelError(f"augmentation must be one of {', '.join(AUGMENTS)}, not {self.augment!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ModelError(f"learning-rate schedule must be 'cosine' or 'constant', not {self.lr_schedule!r}")
        if not 1 <= int(self.latent_dim) <= 1024:
            raise ModelError(f"latent size must be between 1 and 1024, not {self.latent_dim}")
        if self.beta < 0:
            raise ModelError(f"β must be 0 or more, not {self.beta}")
        if not self.lr > 0:
            raise ModelError(f"learning rate must be positive, not {self.lr}")
        if self.batch_size < 1 or self.steps < 1 or self.eval_every < 1:
            raise ModelError("batch size, steps and steps between evaluations must be at least 1")
        if min(self.lr_warmup_steps, self.kl_warmup_steps, self.legacy_epochs, self.seed) < 0 or self.grad_clip < 0:
            raise ModelError("warm-up steps, gradient clipping and seed must be 0 or more")
        return self

    @property
    def effective_beta(self) -> float:
        """β as trained: 1 for a plain VAE, 0 for an AE (which has no KL term)."""
        return {"vae": 1.0, "ae": 0.0}.get(self.kind, float(self.beta))

    @property
    def deterministic(self) -> bool:
        return self.kind == "ae"

    @property
    def intervals(self) -> int:
        """Evaluation intervals in the whole run (the metrics rows it writes)."""
        if self.kind == "pca":
            return 1
        return self.legacy_epochs or math.ceil(self.steps / self.eval_every)

    def interval_steps(self, interval: int) -> int:
        """Steps in evaluation interval `interval` (0-based): eval_every, the last one shorter."""
        return max(0, min(self.eval_every, self.steps - interval * self.eval_every))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> "ModelConfig":
        try:
            data = json.loads(s)
        except json.JSONDecodeError as e:
            raise ModelError(f"model config is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise ModelError("model config is not a JSON object")
        if "epochs" in data:  # a run from before step budgets: keep what it was trained with
            data = {**LEGACY, **data}
            data["legacy_epochs"] = data.pop("epochs")
            data.pop("kl_warmup_epochs", None)
        data.setdefault("augment", "none")  # runs from before augmentation trained without it
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(f"unknown model settings: {', '.join(unknown)}")
        return cls(**data)

"""A run's settings, `ModelConfig`, and the model kinds: the one place the training defaults
and what each kind is are defined.

Kept free of torch so that the CLI can show the defaults in `--help`, and an export can name a
run's files, without loading torch; `facelab.model.models` re-exports everything here.

Adding a model kind: `register_kind(Kind(...))` here says what the rest of facelab needs to know
(its name on the page, its weights file, its β, whether it has a posterior); a kind whose
weights are not a network's state_dict or PCA arrays also needs its loader in `facelab.model.models`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from facelab.errors import FacelabError

ARCHS = ("pcares", "paper")  # the first is the default; see ModelConfig.arch
IMAGE_SIZES = (32, 64, 128)
RECONS = ("bce", "mse")
LR_SCHEDULES = ("cosine", "constant")
AUGMENTS = ("none", "shift", "flip", "flip_shift")  # see ModelConfig.augment
PRECISIONS = ("auto", "fp32", "bf16")  # see ModelConfig.precision
SHIFT_PX = 2  # "shift" and "flip_shift" move each training crop by up to this many pixels each way (at 64 px)
MSE_SIGMA = 0.1  # the Gaussian likelihood's fixed pixel scale (of [0, 1] pixels) for recon="mse"
CONFIG_FILE = "config.json"
MODEL_FILE = "model.pt"  # a network's state_dict
PCA_FILE = "pca.npz"  # the PCA baseline's arrays
WEIGHTS_FILES = (MODEL_FILE, PCA_FILE)  # what a run's weights can be stored in
# Settings of runs made before budgets were counted in steps: their config.json loads with these.
LEGACY = {"arch": "paper", "lr_schedule": "constant", "lr_warmup_steps": 0, "grad_clip": 0.0}


class ModelError(FacelabError):
    """A bad model setting or a run folder that cannot be loaded; the message is for the user."""


@dataclass(frozen=True)
class Kind:
    """What facelab needs to know of a model kind, without torch.

    `beta` fixes the KL weight whatever the run's β (None: the run's own); `variational` kinds
    encode a posterior, so they have a KL term and a real KL per latent (for the others half the
    variance of μ stands in, `metrics.kl_stand_in`); `prior` kinds' latents follow N(0, I), so
    samples are drawn from it (the others from a Gaussian fitted to real faces' μ). A kind
    whose weights are a network's (`MODEL_FILE`) is trained by `facelab.model.train`'s Trainer with
    the run's `arch`; one whose weights are PCA arrays is fitted in one go by `PCABaseline`.
    """

    name: str
    label: str  # on the Train page
    short: str  # in default run names, "<short> z32"
    weights_file: str = MODEL_FILE
    beta: float | None = None
    variational: bool = True
    prior: bool = True

    @property
    def fitted(self) -> bool:
        """Fitted in one go (one metrics row, no steps) rather than trained."""
        return self.weights_file == PCA_FILE


_KINDS: dict[str, Kind] = {}


def weights_path(run_dir: str | Path) -> Path | None:
    """The run's weights file (whichever kind wrote it), or None before it is trained."""
    for name in WEIGHTS_FILES:
        path = Path(run_dir) / name
        if path.exists():
            return path
    return None


def register_kind(kind: Kind) -> Kind:
    """Make a kind known to ModelConfig, the Train page, `facelab train` and the loaders."""
    if kind.weights_file not in WEIGHTS_FILES:
        raise ModelError(f"a kind's weights go in one of {', '.join(WEIGHTS_FILES)}, not {kind.weights_file!r}")
    _KINDS[kind.name] = kind
    return kind


def kinds() -> tuple[str, ...]:
    """The kinds' names, the default first."""
    return tuple(_KINDS)


def kind_of(name: str) -> Kind:
    try:
        return _KINDS[name]
    except KeyError:
        raise ModelError(f"unknown model kind {name!r}: choose one of {', '.join(_KINDS)}") from None


register_kind(Kind("betavae", "β-VAE", "β-VAE"))
register_kind(Kind("vae", "VAE (β = 1)", "VAE", beta=1.0))
register_kind(Kind("ae", "Autoencoder (deterministic)", "AE", beta=0.0, variational=False, prior=False))
register_kind(Kind("pca", "PCA baseline", "PCA", weights_file=PCA_FILE, beta=0.0, variational=False))


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
    # The training steps' arithmetic: "bf16" runs the network's forward (and so its backward) in
    # bfloat16 under autocast, weights, optimizer and losses staying fp32; "auto" picks it on a CPU
    # that computes bf16 natively (`facelab.model.device.train_dtype`; on AVX-512 BF16 1.25x the
    # images/s of fp32, benchmarks/train_speed.py, and the same held-out PSNR: 22.37 against
    # 22.22 dB on the sample), fp32 elsewhere. Encoding and the held-out figures are always fp32.
    precision: str = "auto"

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
        kind_of(self.kind)
        if self.arch not in ARCHS:
            raise ModelError(f"unknown network {self.arch!r}: choose one of {', '.join(ARCHS)}")
        if self.image_size not in IMAGE_SIZES:
            raise ModelError(f"image size must be one of {IMAGE_SIZES}, not {self.image_size}")
        if self.recon not in RECONS:
            raise ModelError(f"reconstruction loss must be 'bce' or 'mse', not {self.recon!r}")
        if self.augment not in AUGMENTS:
            raise ModelError(f"augmentation must be one of {', '.join(AUGMENTS)}, not {self.augment!r}")
        if self.precision not in PRECISIONS:
            raise ModelError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
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
    def spec(self) -> Kind:
        return kind_of(self.kind)

    @property
    def effective_beta(self) -> float:
        """β as trained: 1 for a plain VAE, 0 for an AE (which has no KL term)."""
        beta = self.spec.beta
        return float(self.beta) if beta is None else beta

    @property
    def deterministic(self) -> bool:
        """No posterior: μ is the code (no sampling, no KL term)."""
        return not self.spec.variational

    @property
    def intervals(self) -> int:
        """Evaluation intervals in the whole run (the metrics rows it writes)."""
        if self.spec.fitted:
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
        data.setdefault("precision", "fp32")  # and those from before bf16 in fp32: resumed as they began
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(f"unknown model settings: {', '.join(unknown)}")
        return cls(**data)
